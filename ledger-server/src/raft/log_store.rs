//! The Raft log on RocksDB: where an entry becomes durable.
//!
//! This module owns the node's one RocksDB ([`open_db`] creates every column family the node
//! uses, including the state machine's) and, inside it, the two column families of Raft's own
//! data:
//!
//! - `raft_log`: one record per entry, keyed by the entry's index as a big-endian `u64` so that
//!   key order is log order;
//! - `raft_meta`: the vote, the committed log id, the last purged log id, and the database's
//!   incarnation (a random number drawn when the database is created; `raft/identity.rs`).
//!
//! Every record is stored as `[crc32 of the payload, 4 bytes big-endian][payload]`, the payload
//! being the postcard encoding of the entry or metadata value.
//!
//! Data flows in from openraft through [`RaftLogStorage`]: `append`, `save_vote`, `truncate`
//! and `purge` write their batch (visible at once to readers), and only after the fsync thread
//! (`wal_sync.rs`) has fsynced RocksDB's write-ahead log is openraft told (through the
//! `LogFlushed` callback, or by returning) that the change is durable. A write that is not
//! fsynced can be lost in a power failure; a vote acknowledged that way could be cast a second
//! time in the same term. Data flows out through [`RaftLogReader`] to the replication tasks and
//! to the state machine.
//!
//! Every read checks the crc32, that the payload decodes, that the entry's index equals its key
//! and that the log has no hole. Damage is never served: the read fails with an openraft
//! `StorageError` (which stops the Raft core), the damage is logged, and the shared `corrupted`
//! flag lets the node report itself unhealthy. [`LogStore::verify_all`] runs the same checks over
//! the whole log, for start-up. A failed write poisons the store: every later write is refused
//! instead of retried, because after a failed fsync nobody knows what reached the disk.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{
    AnyError, Entry, ErrorSubject, ErrorVerb, LogId, RaftLogId, RaftTypeConfig, StorageError,
    StorageIOError, Vote,
};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType,
    DBRecoveryMode, Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::wal_sync::WalSync;
use crate::config::RAFT_PAYLOAD_BYTES_MAX;

/// Column family of the log entries, keyed by big-endian index.
pub const LOG_CF: &str = "raft_log";
/// Column family of the vote, the committed log id and the last purged log id.
pub const META_CF: &str = "raft_meta";

/// Column families of the state machine store, one per ledger-core table (the names are
/// `ledger_core::Table::name()`). They are created here because one RocksDB holds everything a
/// node stores and every column family has to be named when the database is opened.
pub const STATE_COLUMN_FAMILIES: &[&str] = &[
    "accounts",
    "transfers",
    "pending",
    "expiries",
    "failures",
    "account_entries",
    "markets",
    "bets",
    "market_bets",
    "liabilities",
    "settlements",
    "state_meta",
    "audit",
];

/// Smallest block cache `open_db` accepts; below it RocksDB thrashes on index blocks.
pub const BLOCK_CACHE_MB_MIN: usize = 8;
const BYTES_PER_MB: usize = 1 << 20;
/// Bloom filter size for the state column families (about 1% false positives).
const BLOOM_FILTER_BITS_PER_KEY: f64 = 10.0;
/// Share of each state memtable given to its bloom filter. Most point reads of an apply are of
/// keys that do not exist yet (new transfer ids), and without a filter each one walks the
/// memtable's skip list (13% of the leader's CPU at batch 1, docs/benchmarks.md).
const MEMTABLE_BLOOM_RATIO: f64 = 0.05;
/// Memtable size of each state column family (RocksDB's default is 64 MiB). Applying a full
/// batch inserts tens of thousands of records at random places of the memtables' skip lists,
/// and each insert and read walks a list as deep as the memtable is large: at 64 MiB, skip-list
/// inserts were a third of the leader's CPU at batch 8,189 (docs/benchmarks.md).
const STATE_WRITE_BUFFER_BYTES: usize = 16 << 20;
/// Level-0 files of a state column family that start a compaction into the level below
/// (RocksDB's default is 4). Transfers, account updates and account entries land at random
/// places of their key spaces, so every level-0 file overlaps the whole of the level below,
/// and each of those compactions rewrites all of it: the bytes rewritten per byte written are
/// about the family's size over the level-0 bytes merged at once. At 10 million accounts the
/// accounts family (10 million records) was rewritten every 4 flushes, 40 % of the leader's CPU
/// under full batches; waiting for 16 files cuts that fourfold (docs/benchmarks.md).
const STATE_L0_COMPACTION_TRIGGER: i32 = 16;
/// Level-0 files at which RocksDB slows writes down, and at which it stops them (RocksDB's
/// defaults are 20 and 36), raised with the trigger so that writes are not slowed while the
/// level-0 files wait for their compaction.
const STATE_L0_SLOWDOWN_TRIGGER: i32 = 40;
const STATE_L0_STOP_TRIGGER: i32 = 64;
/// Most bytes of write-ahead log kept before the column families holding the oldest file are
/// flushed (RocksDB's default is four times all memtables: about 2 GB here).
const WAL_BYTES_MAX: u64 = 256 << 20;
/// Size of the crc32 that prefixes every stored record.
const CHECKSUM_BYTES: usize = 4;

const VOTE_KEY: &str = "vote";
const COMMITTED_KEY: &str = "committed";
const PURGED_KEY: &str = "last_purged";
const INCARNATION_KEY: &str = "incarnation";

/// Opens (creating if needed) the node's one RocksDB with every column family it uses: the Raft
/// log and metadata, and [`STATE_COLUMN_FAMILIES`]. `block_cache_mb` bounds the block cache
/// shared by all column families (at least [`BLOCK_CACHE_MB_MIN`]).
pub fn open_db(path: impl AsRef<Path>, block_cache_mb: usize) -> Result<Arc<DB>, LogStoreError> {
    open_db_for_node(path, block_cache_mb, false)
}

/// [`open_db`], for a running node. With `simulate_power_loss` (a test-only hook, checked by
/// the caller), RocksDB keeps its write-ahead log in memory until the fsync thread syncs it
/// (`manual_wal_flush`), so killing the process loses every write that was not fsynced, as a
/// power failure does; SIGKILL alone loses nothing, the kernel keeps what was written.
pub fn open_db_for_node(
    path: impl AsRef<Path>,
    block_cache_mb: usize,
    simulate_power_loss: bool,
) -> Result<Arc<DB>, LogStoreError> {
    let cache = Cache::new_lru_cache(block_cache_mb.max(BLOCK_CACHE_MB_MIN) * BYTES_PER_MB);

    // The log is read by range scans, never by point lookups of absent keys, so a bloom filter
    // would only cost memory there.
    let mut log_table = BlockBasedOptions::default();
    log_table.set_block_cache(&cache);
    let mut raft_options = Options::default();
    raft_options.set_block_based_table_factory(&log_table);
    raft_options.set_compression_type(DBCompressionType::Lz4);

    let mut state_table = BlockBasedOptions::default();
    state_table.set_block_cache(&cache);
    state_table.set_bloom_filter(BLOOM_FILTER_BITS_PER_KEY, false);
    let mut state_options = Options::default();
    state_options.set_block_based_table_factory(&state_table);
    state_options.set_compression_type(DBCompressionType::Lz4);
    state_options.set_write_buffer_size(STATE_WRITE_BUFFER_BYTES);
    state_options.set_memtable_whole_key_filtering(true);
    state_options.set_memtable_prefix_bloom_ratio(MEMTABLE_BLOOM_RATIO);
    state_options.set_level_zero_file_num_compaction_trigger(STATE_L0_COMPACTION_TRIGGER);
    state_options.set_level_zero_slowdown_writes_trigger(STATE_L0_SLOWDOWN_TRIGGER);
    state_options.set_level_zero_stop_writes_trigger(STATE_L0_STOP_TRIGGER);

    let mut db_options = Options::default();
    db_options.create_if_missing(true);
    db_options.create_missing_column_families(true);
    // RocksDB's default (point-in-time) recovery silently stops replaying the WAL at the first
    // damaged record, dropping every later record, fsynced votes and entries included: a Raft
    // node would forget what it promised. Tolerating only a torn tail (which can only be a
    // write that was never acknowledged as synced) and failing the open on any other damage
    // turns that silent loss into a refusal to start.
    db_options.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
    // A write-ahead log file is kept until every column family with data in it has flushed,
    // and most state families are written rarely: without a bound, 10 million accounts left
    // about 150 log files (over 2 GB) per node, all replayed at the next start. Past this
    // total, RocksDB flushes the families that hold the oldest file.
    db_options.set_max_total_wal_size(WAL_BYTES_MAX);
    if simulate_power_loss {
        db_options.set_manual_wal_flush(true);
    }

    let families = [LOG_CF, META_CF]
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, raft_options.clone()))
        .chain(
            STATE_COLUMN_FAMILIES
                .iter()
                .map(|name| ColumnFamilyDescriptor::new(*name, state_options.clone())),
        );
    // RocksDB 10.4 loops for ever on one kind of torn tail: handled before it reads the logs.
    for torn in
        super::wal_tail::repair_looping_tails(path.as_ref()).map_err(LogStoreError::DamagedLog)?
    {
        tracing::warn!(
            file = %torn.file.display(),
            offset = torn.offset,
            dropped = torn.dropped,
            "write-ahead log ended in a torn write; dropped it before recovery"
        );
    }
    let db = DB::open_cf_descriptors(&db_options, path, families).map_err(LogStoreError::Open)?;
    Ok(Arc::new(db))
}

/// Every column family of a node's database: the Raft log's and the state's.
pub fn column_families() -> impl Iterator<Item = &'static str> {
    [LOG_CF, META_CF]
        .into_iter()
        .chain(STATE_COLUMN_FAMILIES.iter().copied())
}

/// What is wrong with a stored record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    #[error("record of {len} bytes is shorter than its checksum")]
    TooShort { len: usize },
    #[error("crc32 mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch { stored: u32, computed: u32 },
    #[error("checksum matches but the payload does not decode: {0}")]
    Undecodable(String),
    #[error("key is {len} bytes instead of 8")]
    MalformedKey { len: usize },
    #[error("record holds the entry of index {found}")]
    IndexMismatch { found: u64 },
    #[error("entry is missing: the next stored entry has index {next_present}")]
    Missing { next_present: u64 },
}

/// A log entry that failed its checks. `index` is the log index at which the damage was found:
/// the record's key, or for a malformed key or a hole, the index the scan expected next.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("raft log entry {index} is corrupt: {corruption}")]
pub struct CorruptLogEntry {
    pub index: u64,
    pub corruption: Corruption,
}

/// The log store's operating errors. They become openraft `StorageError`s at the trait boundary.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error("cannot open the database: {0}")]
    Open(#[source] rocksdb::Error),
    #[error("cannot open the database: {0}")]
    DamagedLog(String),
    #[error("column family {0} is missing; the database was not opened by open_db")]
    MissingColumnFamily(&'static str),
    #[error(transparent)]
    CorruptEntry(#[from] CorruptLogEntry),
    #[error("raft metadata `{key}` is corrupt: {corruption}")]
    CorruptMeta {
        key: &'static str,
        corruption: Corruption,
    },
    #[error("cannot encode a record: {0}")]
    Encode(#[source] postcard::Error),
    #[error("rocksdb read failed: {0}")]
    Read(#[source] rocksdb::Error),
    #[error("rocksdb write failed, the log store is now poisoned: {0}")]
    Write(#[source] rocksdb::Error),
    #[error(
        "the log store is poisoned by an earlier failed write and refuses writes; restart the node"
    )]
    Poisoned,
    #[error("cannot start the log's fsync thread: {0}")]
    SyncThread(#[source] std::io::Error),
    #[error("{0}")]
    Sync(String),
}

/// The Raft log and vote store over the node's shared RocksDB. Clones share the database and
/// the `corrupted` and `poisoned` flags; a clone serves as the log reader of replication tasks.
pub struct LogStore<C> {
    db: Arc<DB>,
    corrupted: Arc<AtomicBool>,
    poisoned: Arc<AtomicBool>,
    /// Purges done, for metrics.
    purges: prometheus_client::metrics::counter::Counter,
    /// Where log changes are fsynced (`wal_sync.rs`).
    wal_sync: Arc<WalSync>,
    _config: PhantomData<C>,
}

impl<C> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            corrupted: self.corrupted.clone(),
            poisoned: self.poisoned.clone(),
            purges: self.purges.clone(),
            wal_sync: self.wal_sync.clone(),
            _config: PhantomData,
        }
    }
}

impl<C> Debug for LogStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("path", &self.db.path())
            .field("corrupted", &self.corrupted.load(Ordering::SeqCst))
            .field("poisoned", &self.poisoned.load(Ordering::SeqCst))
            .finish()
    }
}

/// Returns `[crc32][postcard(value)]`: how every log entry and metadata value is stored.
pub fn seal<T: Serialize>(value: &T) -> Result<Vec<u8>, LogStoreError> {
    let payload = postcard::to_stdvec(value).map_err(LogStoreError::Encode)?;
    let mut record = Vec::with_capacity(CHECKSUM_BYTES + payload.len());
    record.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
    record.extend_from_slice(&payload);
    Ok(record)
}

/// The committed index as last saved (0 when none), for status reports. It may trail the
/// leader's true commit by the entries committed since the last save.
pub fn saved_committed_index(db: &DB) -> Result<u64, LogStoreError> {
    let cf = db
        .cf_handle(META_CF)
        .ok_or(LogStoreError::MissingColumnFamily(META_CF))?;
    let Some(record) = db
        .get_pinned_cf(cf, COMMITTED_KEY)
        .map_err(LogStoreError::Read)?
    else {
        return Ok(0);
    };
    let committed: Option<LogId<u64>> =
        unseal(&record).map_err(|corruption| LogStoreError::CorruptMeta {
            key: COMMITTED_KEY,
            corruption,
        })?;
    Ok(committed.map(|l| l.index).unwrap_or(0))
}

/// Checks a `[crc32][payload]` record and decodes its payload.
pub fn unseal<T: DeserializeOwned>(record: &[u8]) -> Result<T, Corruption> {
    let Some((stored, payload)) = record.split_first_chunk::<CHECKSUM_BYTES>() else {
        return Err(Corruption::TooShort { len: record.len() });
    };
    let stored = u32::from_be_bytes(*stored);
    let computed = crc32fast::hash(payload);
    if stored != computed {
        return Err(Corruption::ChecksumMismatch { stored, computed });
    }
    postcard::from_bytes(payload).map_err(|e| Corruption::Undecodable(e.to_string()))
}

/// Checks and decodes one `raft_log` record as RocksDB returns it: the key must be 8 bytes, be
/// the index the scan expects (`expected`, the previous index + 1, if a previous entry was
/// seen), and the record must pass its crc32, decode, and hold the entry of that index.
/// `position` names the damage when the key itself is malformed.
pub fn decode_entry<C>(
    key: &[u8],
    record: &[u8],
    position: u64,
    expected: Option<u64>,
) -> Result<Entry<C>, CorruptLogEntry>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>>,
{
    let corrupt = |index, corruption| CorruptLogEntry { index, corruption };
    let Ok(key) = <[u8; 8]>::try_from(key) else {
        return Err(corrupt(
            position,
            Corruption::MalformedKey { len: key.len() },
        ));
    };
    let index = u64::from_be_bytes(key);
    if let Some(expected) = expected.filter(|expected| *expected != index) {
        // The log must not have holes (openraft relies on it): an absent index between two
        // present ones means records were lost.
        return Err(corrupt(
            expected,
            Corruption::Missing {
                next_present: index,
            },
        ));
    }
    let entry: Entry<C> = unseal(record).map_err(|corruption| corrupt(index, corruption))?;
    let found = entry.get_log_id().index;
    if found != index {
        return Err(corrupt(index, Corruption::IndexMismatch { found }));
    }
    Ok(entry)
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Converts a store error met while reading the log into openraft's error, naming the damaged
/// index when there is one.
fn read_logs_error(e: LogStoreError) -> StorageError<u64> {
    match &e {
        LogStoreError::CorruptEntry(c) => {
            StorageIOError::<u64>::read_log_at_index(c.index, AnyError::new(&e))
        }
        _ => StorageIOError::<u64>::read_logs(AnyError::new(&e)),
    }
    .into()
}

fn storage_error(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    e: LogStoreError,
) -> StorageError<u64> {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>>,
{
    /// Builds the store over a database opened by [`open_db`]. It does not scan the log; call
    /// [`LogStore::verify_all`] for that.
    pub fn new(db: Arc<DB>) -> Result<Self, LogStoreError> {
        for name in [LOG_CF, META_CF] {
            if db.cf_handle(name).is_none() {
                return Err(LogStoreError::MissingColumnFamily(name));
            }
        }
        let poisoned = Arc::new(AtomicBool::new(false));
        let wal_sync = WalSync::start(&db, poisoned.clone()).map_err(LogStoreError::SyncThread)?;
        Ok(Self {
            db,
            corrupted: Arc::new(AtomicBool::new(false)),
            poisoned,
            purges: Default::default(),
            wal_sync: Arc::new(wal_sync),
            _config: PhantomData,
        })
    }

    /// The log's fsync thread (a test build's `InjectSyncDelay` slows it).
    pub fn wal_sync(&self) -> &Arc<WalSync> {
        &self.wal_sync
    }

    /// Counts purges into `counter` (a metric).
    pub fn with_purge_counter(
        mut self,
        counter: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        self.purges = counter;
        self
    }

    /// Returns the flag raised (and never lowered) when a stored record fails its checks.
    pub fn corrupted_flag(&self) -> Arc<AtomicBool> {
        self.corrupted.clone()
    }

    /// Returns the flag raised (and never lowered) when a write failed and the store stopped
    /// accepting writes.
    pub fn poisoned_flag(&self) -> Arc<AtomicBool> {
        self.poisoned.clone()
    }

    /// Returns whether a stored record failed its checks since the store was built.
    pub fn is_corrupted(&self) -> bool {
        self.corrupted.load(Ordering::SeqCst)
    }

    /// Returns whether the store refuses writes after a failed one.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    /// Returns the shared database.
    pub fn db(&self) -> &Arc<DB> {
        &self.db
    }

    /// Reads and checks every stored entry and the metadata records; returns how many entries
    /// there are. The first damaged entry is returned as [`LogStoreError::CorruptEntry`] with
    /// its index, and raises the `corrupted` flag.
    pub fn verify_all(&self) -> Result<u64, LogStoreError> {
        self.read_meta::<Vote<u64>>(VOTE_KEY)?;
        self.read_meta::<Option<LogId<u64>>>(COMMITTED_KEY)?;
        self.read_meta::<u64>(INCARNATION_KEY)?;
        let purged = self.read_meta::<LogId<u64>>(PURGED_KEY)?;
        // After a purge the log continues right behind the purged entry: a first entry past
        // `purged + 1` means entries were lost at the log's head, which no neighbour shows.
        // (The purged id and the deletion are one atomic batch, so nothing at or below it
        // remains.) Without a purge the first index is openraft's, not fixed here.
        let first = purged.and_then(|p| p.index.checked_add(1));
        let mut checked = 0u64;
        self.scan_from(first.unwrap_or(0), None, first, |_, _| {
            checked += 1;
            true
        })?;
        Ok(checked)
    }

    fn cf(&self, name: &'static str) -> Result<&ColumnFamily, LogStoreError> {
        self.db
            .cf_handle(name)
            .ok_or(LogStoreError::MissingColumnFamily(name))
    }

    /// Records damage: logged, flagged for the health endpoint, and returned as an error so
    /// that it is never served.
    fn damaged(&self, e: LogStoreError) -> LogStoreError {
        tracing::error!(
            error = %e,
            path = %self.db.path().display(),
            "raft storage damage detected; refusing to serve it"
        );
        self.corrupted.store(true, Ordering::SeqCst);
        e
    }

    /// Writes a batch unless the store is poisoned; a failure poisons it.
    fn write(&self, batch: WriteBatch, options: &WriteOptions) -> Result<(), LogStoreError> {
        if self.is_poisoned() {
            return Err(LogStoreError::Poisoned);
        }
        self.db.write_opt(batch, options).map_err(|e| {
            // After a failed (synced) write the on-disk state is unknown: RocksDB may have
            // written part of it, and the kernel may have dropped dirty pages. Retrying could
            // report as durable something that is not, so every later write is refused.
            self.poisoned.store(true, Ordering::SeqCst);
            tracing::error!(
                error = %e,
                path = %self.db.path().display(),
                "raft log write failed; log store poisoned, it refuses all further writes"
            );
            LogStoreError::Write(e)
        })
    }

    /// Writes a batch (visible at once), then waits until the fsync thread has made it
    /// durable: the fsync never runs on the async worker that awaits it.
    async fn write_durable(&self, batch: WriteBatch) -> Result<(), LogStoreError> {
        self.write(batch, &WriteOptions::default())?;
        self.wal_sync.synced().await.map_err(LogStoreError::Sync)
    }

    /// Writes a batch and fsyncs the WAL before returning, on the calling thread: for start-up
    /// and tools, never for the Raft calls of a running node.
    fn write_synced(&self, batch: WriteBatch) -> Result<(), LogStoreError> {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.write(batch, &options)
    }

    /// Returns this database's incarnation, drawing a random one (never 0) and storing it
    /// (fsynced) the first time: a database created empty, because the node is new or because
    /// its disk was lost, always has a new one. See `raft/identity.rs`.
    pub fn incarnation(&self, env: &dyn crate::env::Env) -> Result<u64, LogStoreError> {
        if let Some(incarnation) = self.read_meta::<u64>(INCARNATION_KEY)? {
            return Ok(incarnation);
        }
        let incarnation = loop {
            let drawn = env.random_u64();
            if drawn != 0 {
                break drawn;
            }
        };
        self.write_meta_synced(INCARNATION_KEY, &incarnation)?;
        Ok(incarnation)
    }

    fn read_meta<T: DeserializeOwned>(
        &self,
        key: &'static str,
    ) -> Result<Option<T>, LogStoreError> {
        let cf = self.cf(META_CF)?;
        let Some(record) = self
            .db
            .get_pinned_cf(cf, key)
            .map_err(LogStoreError::Read)?
        else {
            return Ok(None);
        };
        match unseal(&record) {
            Ok(value) => Ok(Some(value)),
            Err(corruption) => Err(self.damaged(LogStoreError::CorruptMeta { key, corruption })),
        }
    }

    fn write_meta_synced<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
    ) -> Result<(), LogStoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(META_CF)?, key, seal(value)?);
        self.write_synced(batch)
    }

    /// Checks one `raft_log` record (see [`decode_entry`]); damage is recorded.
    fn check_entry(
        &self,
        key: &[u8],
        record: &[u8],
        position: u64,
        expected: Option<u64>,
    ) -> Result<Entry<C>, LogStoreError> {
        decode_entry(key, record, position, expected).map_err(|e| self.damaged(e.into()))
    }

    /// Visits, in order, the checked entries with indexes in `[start, end)` (`end = None`:
    /// to the end of the log), each with the size of its record, until `visit` returns false.
    fn scan(
        &self,
        start: u64,
        end: Option<u64>,
        visit: impl FnMut(Entry<C>, usize) -> bool,
    ) -> Result<(), LogStoreError> {
        self.scan_from(start, end, None, visit)
    }

    /// [`Self::scan`], with the index the first entry must have, if known.
    fn scan_from(
        &self,
        start: u64,
        end: Option<u64>,
        first: Option<u64>,
        mut visit: impl FnMut(Entry<C>, usize) -> bool,
    ) -> Result<(), LogStoreError> {
        if end.is_some_and(|end| end <= start) {
            return Ok(());
        }
        let cf = self.cf(LOG_CF)?;
        let mut options = ReadOptions::default();
        // RocksDB's own block checksums catch damage below our records.
        options.set_verify_checksums(true);
        if let Some(end) = end {
            options.set_iterate_upper_bound(index_key(end));
        }
        let from = index_key(start);
        let mut expected = first;
        for item in
            self.db
                .iterator_cf_opt(cf, options, IteratorMode::From(&from, Direction::Forward))
        {
            let (key, record) = item.map_err(LogStoreError::Read)?;
            let position = expected.unwrap_or(start);
            let entry = self.check_entry(&key, &record, position, expected)?;
            expected = entry.get_log_id().index.checked_add(1);
            if !visit(entry, record.len()) {
                break;
            }
        }
        Ok(())
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId<u64>>, LogStoreError> {
        let cf = self.cf(LOG_CF)?;
        let Some(item) = self.db.iterator_cf(cf, IteratorMode::End).next() else {
            return Ok(None);
        };
        let (key, record) = item.map_err(LogStoreError::Read)?;
        let position = <[u8; 8]>::try_from(&key[..]).map_or(u64::MAX, u64::from_be_bytes);
        let entry = self.check_entry(&key, &record, position, None)?;
        Ok(Some(*entry.get_log_id()))
    }

    /// Adds to `batch` the deletion of every entry with index in `[from, ..)`.
    fn delete_from(&self, batch: &mut WriteBatch, from: u64) -> Result<(), LogStoreError> {
        let cf = self.cf(LOG_CF)?;
        // `delete_range` excludes its end key, so the last possible index is deleted apart.
        batch.delete_range_cf(cf, index_key(from), index_key(u64::MAX));
        batch.delete_cf(cf, index_key(u64::MAX));
        Ok(())
    }
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>>,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C>>, StorageError<u64>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => match i.checked_add(1) {
                Some(start) => start,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => i.checked_add(1),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        let mut entries = Vec::new();
        self.scan(start, end, |entry, _| {
            entries.push(entry);
            true
        })
        .map_err(read_logs_error)?;
        Ok(entries)
    }

    /// The entries one AppendEntries carries: from `start`, at most
    /// [`RAFT_PAYLOAD_BYTES_MAX`] of records, but always the first entry. openraft 0.9 gives
    /// each AppendEntries the heartbeat interval as its timeout, so an RPC must stay small by
    /// bytes, not only by entry count (`max_payload_entries` caps the count).
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<C>>, StorageError<u64>> {
        let mut entries = Vec::new();
        let mut bytes = 0;
        self.scan(start, Some(end), |entry, len| {
            bytes += len;
            if !entries.is_empty() && bytes > RAFT_PAYLOAD_BYTES_MAX {
                return false;
            }
            entries.push(entry);
            true
        })
        .map_err(read_logs_error)?;
        Ok(entries)
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>>,
{
    type LogReader = LogStore<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<u64>> {
        let last_purged_log_id: Option<LogId<u64>> = self
            .read_meta(PURGED_KEY)
            .map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        let last_entry = self.last_entry_log_id().map_err(read_logs_error)?;
        Ok(LogState {
            last_purged_log_id,
            // With every entry purged, the log still ends where the purge stopped.
            last_log_id: last_entry.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let result = async {
            let mut batch = WriteBatch::default();
            batch.put_cf(self.cf(META_CF)?, VOTE_KEY, seal(vote)?);
            self.write_durable(batch).await
        }
        .await;
        result.map_err(|e| storage_error(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    /// The stored vote, always reported as not committed. openraft reads the vote only at
    /// start, and a node whose committed vote names itself takes its leadership back at once,
    /// in the same term. Such a leader serves linearizable reads at its committed index (or
    /// its term's first entry, long applied), and the committed index it kept is not fsynced:
    /// after the whole cluster lost power it can trail transfers acknowledged before the loss,
    /// and the first read missed one (`tests/faults.rs`,
    /// `after_the_whole_cluster_loses_power_...`; found by the harness's `power-loss` faults).
    /// Reported uncommitted, the vote still counts as the node's (it votes for nobody else in
    /// that term), but the node starts as a follower: a leader after a restart is elected in a
    /// new term, and its reads wait for that term's first entry, which follows everything
    /// committed before.
    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        let vote: Option<Vote<u64>> = self
            .read_meta(VOTE_KEY)
            .map_err(|e| storage_error(ErrorSubject::Vote, ErrorVerb::Read, e))?;
        Ok(vote.map(|mut vote| {
            vote.committed = false;
            vote
        }))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        // Not synced: the committed id is a hint for re-applying entries after a restart, and
        // openraft tolerates a stale one. The WAL is ordered, so a committed id that survives a
        // crash never points past entries that did not (those were synced before it was
        // written).
        let result = (|| {
            let mut batch = WriteBatch::default();
            batch.put_cf(self.cf(META_CF)?, COMMITTED_KEY, seal(&committed)?);
            self.write(batch, &WriteOptions::default())
        })();
        result.map_err(|e| storage_error(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        let committed: Option<Option<LogId<u64>>> = self
            .read_meta(COMMITTED_KEY)
            .map_err(|e| storage_error(ErrorSubject::Store, ErrorVerb::Read, e))?;
        Ok(committed.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<C>> + Send,
        I::IntoIter: Send,
    {
        let result = (|| {
            let cf = self.cf(LOG_CF)?;
            let mut batch = WriteBatch::default();
            for entry in entries {
                batch.put_cf(cf, index_key(entry.get_log_id().index), seal(&entry)?);
            }
            let long = batch.size_in_bytes() >= super::BLOCKING_BYTES_MIN;
            // One atomic batch, visible at once; openraft hears through the callback only
            // once the fsync thread has made it durable.
            super::blocking(long, || self.write(batch, &WriteOptions::default()))
        })();
        match result {
            Ok(()) => {
                self.wal_sync.after_sync(Box::new(move |synced| {
                    callback.log_io_completed(synced.map_err(std::io::Error::other));
                }));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(storage_error(ErrorSubject::Logs, ErrorVerb::Write, e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        // Synced like every other change to the log, so that a crash cannot bring back
        // entries openraft was told are gone.
        let result = async {
            let mut batch = WriteBatch::default();
            self.delete_from(&mut batch, log_id.index)?;
            self.write_durable(batch).await
        }
        .await;
        if result.is_ok() {
            self.purges.inc();
        }
        result.map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let result = async {
            // The purged id goes first, in the same atomic batch as the deletion, so the log
            // state stays known (`last_log_id` falls back to it) even when no entry is left.
            let mut batch = WriteBatch::default();
            batch.put_cf(self.cf(META_CF)?, PURGED_KEY, seal(&log_id)?);
            match log_id.index.checked_add(1) {
                Some(end) => {
                    batch.delete_range_cf(self.cf(LOG_CF)?, index_key(0), index_key(end));
                }
                None => self.delete_from(&mut batch, 0)?,
            }
            self.write_durable(batch).await
        }
        .await;
        if result.is_ok() {
            self.purges.inc();
        }
        result.map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    openraft::declare_raft_types!(
        UnitConfig:
            D = u64,
            R = u64,
            SnapshotData = std::io::Cursor<Vec<u8>>,
    );

    #[test]
    fn a_failed_write_poisons_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_db(dir.path(), BLOCK_CACHE_MB_MIN).expect("open db");
        let store = LogStore::<UnitConfig>::new(db).expect("log store");
        store
            .write_meta_synced(VOTE_KEY, &Vote::<u64>::new(1, 1))
            .expect("a first synced write succeeds");

        // RocksDB rejects a synced write without a WAL: a real write failure, without a
        // broken disk.
        let mut invalid = WriteOptions::default();
        invalid.set_sync(true);
        invalid.disable_wal(true);
        let mut batch = WriteBatch::default();
        batch.put_cf(store.cf(META_CF).expect("meta cf"), VOTE_KEY, b"x");
        assert!(matches!(
            store.write(batch, &invalid),
            Err(LogStoreError::Write(_))
        ));
        assert!(store.is_poisoned());
        assert!(store.poisoned_flag().load(Ordering::SeqCst));

        // Every later write is refused, including ones that would succeed.
        assert!(matches!(
            store.write_meta_synced(VOTE_KEY, &Vote::<u64>::new(2, 1)),
            Err(LogStoreError::Poisoned)
        ));
        let vote: Option<Vote<u64>> = store.read_meta(VOTE_KEY).expect("reads still work");
        assert_eq!(vote, Some(Vote::new(1, 1)));
    }

    openraft::declare_raft_types!(
        BlobConfig:
            D = Vec<u8>,
            R = u64,
            SnapshotData = std::io::Cursor<Vec<u8>>,
    );

    #[tokio::test]
    async fn an_append_entries_payload_is_bounded_by_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_db(dir.path(), BLOCK_CACHE_MB_MIN).expect("open db");
        let mut store = LogStore::<BlobConfig>::new(db).expect("log store");
        // Entries 1-10 of a third of the budget, 11-20 of a few bytes, 21 over the budget.
        let size = |index: u64| match index {
            1..=10 => RAFT_PAYLOAD_BYTES_MAX / 3,
            11..=20 => 10,
            _ => 2 * RAFT_PAYLOAD_BYTES_MAX,
        };
        let mut batch = WriteBatch::default();
        for index in 1..=21 {
            let entry = Entry::<BlobConfig> {
                log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
                payload: openraft::EntryPayload::Normal(vec![7; size(index)]),
            };
            let cf = store.cf(LOG_CF).expect("log cf");
            batch.put_cf(cf, index_key(index), seal(&entry).expect("seal"));
        }
        store.write_synced(batch).expect("write");

        let sent = |start, end| {
            let mut store = store.clone();
            async move {
                let entries = store
                    .limited_get_log_entries(start, end)
                    .await
                    .expect("read");
                entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>()
            }
        };
        assert_eq!(sent(1, 22).await, [1, 2], "as many as fit in the budget");
        assert_eq!(
            sent(11, 21).await,
            (11..=20).collect::<Vec<_>>(),
            "small ones"
        );
        assert_eq!(sent(21, 22).await, [21], "one over the budget goes alone");
        assert_eq!(sent(20, 22).await, [20], "and not after another");
        assert_eq!(
            store.try_get_log_entries(1..22).await.expect("read").len(),
            21,
            "unbounded reads are whole"
        );
    }

    #[test]
    fn records_round_trip_and_damage_is_classified() {
        // The node id type is spelled out: an integer literal would make it an i32, which
        // postcard encodes differently.
        let committed = Some(LogId::<u64>::new(openraft::CommittedLeaderId::new(3, 1), 7));
        let record = seal(&committed).expect("seal");
        let back: Option<LogId<u64>> = unseal(&record).expect("unseal");
        assert_eq!(back, committed);

        assert_eq!(
            unseal::<u64>(&record[..3]),
            Err(Corruption::TooShort { len: 3 })
        );
        let mut flipped = record.clone();
        *flipped.last_mut().expect("non-empty") ^= 0x01;
        assert!(matches!(
            unseal::<Option<LogId<u64>>>(&flipped),
            Err(Corruption::ChecksumMismatch { .. })
        ));
        // A record whose crc matches garbage still fails: it does not decode.
        let garbage = [0xffu8; 3];
        let mut sealed_garbage = crc32fast::hash(&garbage).to_be_bytes().to_vec();
        sealed_garbage.extend_from_slice(&garbage);
        assert!(matches!(
            unseal::<LogId<u64>>(&sealed_garbage),
            Err(Corruption::Undecodable(_))
        ));
    }
}
