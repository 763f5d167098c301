//! The RocksDB Raft log store (`ledger_server::raft::log_store`) against openraft's storage
//! conformance suite, plus what the suite does not check: damaged records are refused and
//! reported, and everything survives closing and reopening the database.
//!
//! The suite needs a state machine too; a small in-memory one is defined here, only for the
//! suite, so that the log store is tested on its own.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use ledger_server::raft::log_store::{
    open_db, CorruptLogEntry, Corruption, LogStore, LogStoreError, BLOCK_CACHE_MB_MIN, LOG_CF,
    META_CF, STATE_COLUMN_FAMILIES,
};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    AnyError, BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, LogState, RaftLogReader,
    RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
    Vote,
};
use serde::{Deserialize, Serialize};
use tempfile::TempDir;

/// Application data of the test configuration: set `key` to `value`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetRequest {
    key: String,
    value: u64,
}

/// What applying a [`SetRequest`] returns: the previous value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetResponse(Option<u64>);

openraft::declare_raft_types!(
    /// A test configuration with the production store's constraints (u64 ids, `BasicNode`).
    pub TestConfig:
        D = SetRequest,
        R = SetResponse,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TestConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

type Store = LogStore<TestConfig>;

// ---------------------------------------------------------------------------------------------
// A minimal in-memory state machine, only so that the suite can run.

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct MemState {
    last_applied: Option<LogId<u64>>,
    last_membership: StoredMembership<u64, BasicNode>,
    data: BTreeMap<String, u64>,
}

#[derive(Default)]
struct MemInner {
    state: MemState,
    snapshot: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
    snapshots_built: u64,
}

/// The suite's state machine; clones share the state (a clone is the snapshot builder).
#[derive(Clone, Default)]
struct MemStateMachine {
    inner: Arc<Mutex<MemInner>>,
}

fn sm_error(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

impl RaftSnapshotBuilder<TestConfig> for MemStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TestConfig>, StorageError<u64>> {
        let mut inner = self.inner.lock().expect("state machine lock");
        let bytes = serde_json::to_vec(&inner.state).map_err(sm_error)?;
        inner.snapshots_built += 1;
        let meta = SnapshotMeta {
            last_log_id: inner.state.last_applied,
            last_membership: inner.state.last_membership.clone(),
            snapshot_id: format!("snapshot-{}", inner.snapshots_built),
        };
        inner.snapshot = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TestConfig> for MemStateMachine {
    type SnapshotBuilder = MemStateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let inner = self.inner.lock().expect("state machine lock");
        Ok((
            inner.state.last_applied,
            inner.state.last_membership.clone(),
        ))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<SetResponse>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TestConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.inner.lock().expect("state machine lock");
        let mut responses = Vec::new();
        for entry in entries {
            inner.state.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => SetResponse(None),
                EntryPayload::Normal(request) => {
                    SetResponse(inner.state.data.insert(request.key, request.value))
                }
                EntryPayload::Membership(membership) => {
                    inner.state.last_membership =
                        StoredMembership::new(Some(entry.log_id), membership);
                    SetResponse(None)
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let bytes = snapshot.into_inner();
        let mut state: MemState = serde_json::from_slice(&bytes).map_err(sm_error)?;
        state.last_applied = meta.last_log_id;
        state.last_membership = meta.last_membership.clone();
        let mut inner = self.inner.lock().expect("state machine lock");
        inner.state = state;
        inner.snapshot = Some((meta.clone(), bytes));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TestConfig>>, StorageError<u64>> {
        let inner = self.inner.lock().expect("state machine lock");
        Ok(inner.snapshot.as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes.clone())),
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// The conformance suite.

/// Builds each suite case on a fresh database in its own temporary directory, removed when the
/// case ends (the directory is the suite's guard, dropped after the stores).
struct RocksLogBuilder;

impl StoreBuilder<TestConfig, Store, MemStateMachine, TempDir> for RocksLogBuilder {
    async fn build(&self) -> Result<(TempDir, Store, MemStateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        let db = open_db(dir.path(), BLOCK_CACHE_MB_MIN)
            .map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        let store = LogStore::new(db).map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        Ok((dir, store, MemStateMachine::default()))
    }
}

#[test]
fn openraft_storage_suite() {
    // The suite builds its own tokio runtimes, so this test must not run inside one.
    Suite::<TestConfig, Store, MemStateMachine, RocksLogBuilder, TempDir>::test_all(
        RocksLogBuilder,
    )
    .expect("openraft storage suite");
}

// ---------------------------------------------------------------------------------------------
// Damage and restarts.

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn set_entry(term: u64, index: u64) -> Entry<TestConfig> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(SetRequest {
            key: format!("key-{index}"),
            value: index * 100,
        }),
    }
}

/// Entries 0..=last: a blank entry at 0, then set requests, all in term 1.
fn entries_upto(last: u64) -> Vec<Entry<TestConfig>> {
    std::iter::once(Entry {
        log_id: log_id(1, 0),
        payload: EntryPayload::Blank,
    })
    .chain((1..=last).map(|index| set_entry(1, index)))
    .collect()
}

fn open_store(path: &Path) -> Store {
    let db = open_db(path, BLOCK_CACHE_MB_MIN).expect("open db");
    LogStore::new(db).expect("log store")
}

/// Rewrites the stored record of `key` in `cf` through RocksDB, bypassing the store.
fn edit_record(store: &Store, cf: &str, key: &[u8], edit: impl FnOnce(&mut Vec<u8>)) {
    let db = store.db();
    let cf = db.cf_handle(cf).expect("column family");
    let mut record = db.get_cf(cf, key).expect("get").expect("record exists");
    edit(&mut record);
    db.put_cf(cf, key, record).expect("put");
}

fn corruption_of(result: Result<u64, LogStoreError>) -> CorruptLogEntry {
    match result {
        Err(LogStoreError::CorruptEntry(corrupt)) => corrupt,
        other => panic!("expected a corrupt entry, got {other:?}"),
    }
}

#[tokio::test]
async fn a_flipped_payload_byte_is_refused_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open_store(dir.path());
    store
        .blocking_append(entries_upto(5))
        .await
        .expect("append");
    assert_eq!(store.verify_all().expect("clean log"), 6);
    assert!(!store.is_corrupted());

    // Flip one bit in the last byte of entry 3's payload (after the 4-byte crc).
    edit_record(&store, LOG_CF, &3u64.to_be_bytes(), |record| {
        *record.last_mut().expect("non-empty record") ^= 0x01;
    });

    let error = store
        .try_get_log_entries(3..4)
        .await
        .expect_err("a damaged entry must not be served");
    assert!(
        error.to_string().contains("LogIndex(3)"),
        "the error names the damaged index: {error}"
    );
    assert!(store.is_corrupted());
    assert!(store.corrupted_flag().load(Ordering::SeqCst));

    // A range containing the damage fails as a whole; the entries before it are still served.
    store
        .try_get_log_entries(0..)
        .await
        .expect_err("a range through the damage must fail");
    let before = store
        .try_get_log_entries(0..3)
        .await
        .expect("undamaged entries are served");
    assert_eq!(before, entries_upto(2));

    let corrupt = corruption_of(store.verify_all());
    assert_eq!(corrupt.index, 3);
    assert!(matches!(
        corrupt.corruption,
        Corruption::ChecksumMismatch { .. }
    ));
}

#[tokio::test]
async fn a_flipped_checksum_byte_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open_store(dir.path());
    store
        .blocking_append(entries_upto(4))
        .await
        .expect("append");
    edit_record(&store, LOG_CF, &4u64.to_be_bytes(), |record| {
        record[0] ^= 0x80
    });

    // Entry 4 is the last one: the log state is read from it, and must not be trusted either.
    store
        .get_log_state()
        .await
        .expect_err("the last entry is damaged");
    assert!(store.is_corrupted());
    let corrupt = corruption_of(store.verify_all());
    assert_eq!(corrupt.index, 4);
    assert!(matches!(
        corrupt.corruption,
        Corruption::ChecksumMismatch { .. }
    ));
}

#[tokio::test]
async fn a_record_under_the_wrong_index_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open_store(dir.path());
    store
        .blocking_append(entries_upto(5))
        .await
        .expect("append");

    // A valid record (good crc, decodes) stored under another index.
    let db = store.db().clone();
    let cf = db.cf_handle(LOG_CF).expect("log cf");
    let record_of_2 = db
        .get_cf(cf, 2u64.to_be_bytes())
        .expect("get")
        .expect("entry 2");
    db.put_cf(cf, 4u64.to_be_bytes(), record_of_2).expect("put");

    let error = store
        .try_get_log_entries(4..=4)
        .await
        .expect_err("a misplaced entry must not be served");
    assert!(error.to_string().contains("LogIndex(4)"), "{error}");
    assert!(store.is_corrupted());
    assert_eq!(
        corruption_of(store.verify_all()),
        CorruptLogEntry {
            index: 4,
            corruption: Corruption::IndexMismatch { found: 2 }
        }
    );
}

#[tokio::test]
async fn a_hole_in_the_log_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open_store(dir.path());
    store
        .blocking_append(entries_upto(5))
        .await
        .expect("append");
    let db = store.db().clone();
    db.delete_cf(db.cf_handle(LOG_CF).expect("log cf"), 2u64.to_be_bytes())
        .expect("delete");

    store
        .try_get_log_entries(1..4)
        .await
        .expect_err("a range with a hole must fail");
    assert!(store.is_corrupted());
    assert_eq!(
        corruption_of(store.verify_all()),
        CorruptLogEntry {
            index: 2,
            corruption: Corruption::Missing { next_present: 3 }
        }
    );
}

#[tokio::test]
async fn a_lost_first_entry_after_the_purged_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open_store(dir.path());
    store
        .blocking_append(entries_upto(6))
        .await
        .expect("append");
    store.purge(log_id(1, 3)).await.expect("purge");
    // Entry 4, the first after the purged ones, is lost: the log now starts at 5, and no
    // neighbour on either side shows the hole, only the purged pointer does.
    let db = store.db().clone();
    db.delete_cf(db.cf_handle(LOG_CF).expect("log cf"), 4u64.to_be_bytes())
        .expect("delete");
    assert_eq!(
        corruption_of(store.verify_all()),
        CorruptLogEntry {
            index: 4,
            corruption: Corruption::Missing { next_present: 5 }
        }
    );
    assert!(store.is_corrupted());
}

#[tokio::test]
async fn damaged_metadata_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open_store(dir.path());
    store.save_vote(&Vote::new(7, 1)).await.expect("save vote");
    edit_record(&store, META_CF, b"vote", |record| {
        let last = record.len() - 1;
        record[last] ^= 0x01;
    });

    store
        .read_vote()
        .await
        .expect_err("a damaged vote must not be served");
    assert!(store.is_corrupted());
    assert!(matches!(
        store.verify_all(),
        Err(LogStoreError::CorruptMeta { key: "vote", .. })
    ));
}

#[tokio::test]
async fn damage_made_while_closed_is_found_after_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = open_store(dir.path());
        store
            .blocking_append(entries_upto(6))
            .await
            .expect("append");
    }
    {
        // Another process (or the disk) truncates entry 5's record while the node is down.
        let store = open_store(dir.path());
        edit_record(&store, LOG_CF, &5u64.to_be_bytes(), |record| {
            record.truncate(2)
        });
    }

    let mut store = open_store(dir.path());
    assert!(!store.is_corrupted(), "a new store starts clean");
    assert_eq!(
        corruption_of(store.verify_all()),
        CorruptLogEntry {
            index: 5,
            corruption: Corruption::TooShort { len: 2 }
        }
    );
    assert!(store.is_corrupted());
    store
        .try_get_log_entries(5..7)
        .await
        .expect_err("the damaged entry is still refused");
}

#[tokio::test]
async fn entries_vote_and_pointers_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vote = Vote::new_committed(3, 1);
    {
        let mut store = open_store(dir.path());
        store
            .blocking_append(entries_upto(10))
            .await
            .expect("append");
        store.save_vote(&vote).await.expect("save vote");
        store
            .save_committed(Some(log_id(1, 7)))
            .await
            .expect("save committed");
        store.purge(log_id(1, 2)).await.expect("purge");
        store.truncate(log_id(1, 9)).await.expect("truncate");
        // The store and the database close here.
    }

    let mut store = open_store(dir.path());
    assert_eq!(store.verify_all().expect("clean log"), 6);
    // The vote survives, reported as not committed: a node starts as a follower, and a leader
    // after a restart is elected in a new term (`LogStore::read_vote`).
    assert_eq!(
        store.read_vote().await.expect("read vote"),
        Some(Vote::new(3, 1))
    );
    assert_eq!(
        store.read_committed().await.expect("read committed"),
        Some(log_id(1, 7))
    );
    assert_eq!(
        store.get_log_state().await.expect("log state"),
        LogState {
            last_purged_log_id: Some(log_id(1, 2)),
            last_log_id: Some(log_id(1, 8)),
        }
    );
    let expected: Vec<_> = entries_upto(8).into_iter().skip(3).collect();
    assert_eq!(
        store.try_get_log_entries(..).await.expect("read log"),
        expected
    );

    // Purge everything, reopen: the log still ends where the purge stopped.
    store.purge(log_id(1, 8)).await.expect("purge all");
    drop(store);
    let mut store = open_store(dir.path());
    assert_eq!(store.verify_all().expect("empty log"), 0);
    assert_eq!(
        store.get_log_state().await.expect("log state"),
        LogState {
            last_purged_log_id: Some(log_id(1, 8)),
            last_log_id: Some(log_id(1, 8)),
        }
    );
    store
        .blocking_append([set_entry(2, 9)])
        .await
        .expect("append after purge");
    assert_eq!(
        store.try_get_log_entries(9..).await.expect("read"),
        vec![set_entry(2, 9)]
    );
}

#[test]
fn open_db_creates_every_column_family_the_node_uses() {
    let names: Vec<&str> = ledger_core::Table::ALL.iter().map(|t| t.name()).collect();
    assert_eq!(
        STATE_COLUMN_FAMILIES,
        names.as_slice(),
        "STATE_COLUMN_FAMILIES must name exactly ledger-core's tables"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path());
    for name in [LOG_CF, META_CF].iter().chain(STATE_COLUMN_FAMILIES) {
        assert!(
            store.db().cf_handle(name).is_some(),
            "column family {name} missing"
        );
    }
}

/// The 25 bytes that ended node 2's write-ahead log after a power loss in `ledger-sim run
/// --seed 3` (a torn tail of random bytes, the simulator's first model): their type byte (6)
/// reads as a recyclable record, on which RocksDB 10.4's log reader loops for ever
/// (`raft/wal_tail.rs`). The node never finished starting.
const TORN_TAIL_ROCKSDB_LOOPS_ON: [u8; 25] = [
    0xaa, 0x85, 0xc3, 0xcb, 0xb2, 0x54, 0x06, 0xa2, 0x47, 0x7a, 0xb7, 0x12, 0x32, 0x12, 0x81, 0x2e,
    0x7b, 0x99, 0xf3, 0x83, 0x44, 0xba, 0xf3, 0x4c, 0x77,
];

#[test]
fn a_log_ending_in_a_torn_write_rocksdb_loops_on_opens_with_its_synced_writes() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("db");
    {
        let db = open_db(&path, 8).expect("open");
        let cf = db.cf_handle(META_CF).expect("meta family");
        let mut synced = rocksdb::WriteOptions::default();
        synced.set_sync(true);
        for i in 0..10u32 {
            db.put_cf_opt(cf, format!("key-{i}"), i.to_le_bytes(), &synced)
                .expect("synced write");
        }
    }
    let mut logs: Vec<_> = std::fs::read_dir(&path)
        .expect("db folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let newest = logs.last().expect("a write-ahead log");
    let before = std::fs::metadata(newest).expect("log").len();
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(newest)
        .expect("log opens")
        .write_all(&TORN_TAIL_ROCKSDB_LOOPS_ON)
        .expect("torn tail written");

    // Opened on a thread of its own: on the old code the open never returned.
    let (tx, rx) = std::sync::mpsc::channel();
    let opening = path.clone();
    std::thread::spawn(move || {
        let _ = tx.send(open_db(&opening, 8).map_err(|e| e.to_string()));
    });
    let db = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the database opens within a minute instead of looping in recovery")
        .expect("the database opens");
    let cf = db.cf_handle(META_CF).expect("meta family");
    for i in 0..10u32 {
        assert_eq!(
            db.get_cf(cf, format!("key-{i}")).expect("read"),
            Some(i.to_le_bytes().to_vec()),
            "synced write {i} survives"
        );
    }
    assert_eq!(
        std::fs::metadata(newest).map(|m| m.len()).unwrap_or(before),
        before,
        "the torn tail was dropped"
    );
}
