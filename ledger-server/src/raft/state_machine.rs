//! The openraft state machine: a thin adapter around `ledger_core::apply_entry`.
//!
//! Data flow of `apply`: decode each committed entry, run ledger-core on a [`StateView`] (which
//! collects the writes), then write the collected changes together with the applied log id and
//! membership in ONE RocksDB `WriteBatch`, so the state and "how far it got" can never
//! disagree after a crash. The write is not fsynced: the log is, and on restart openraft
//! re-applies every entry after the applied id that reached disk.
//!
//! Between applies the state machine keeps the accounts it last committed in memory
//! ([`AccountCache`]): updated only after a write succeeds, emptied when a snapshot is
//! installed, so a read from it is a read of RocksDB without the skip-list walk.
//!
//! Snapshots: built from a consistent RocksDB snapshot into a checksummed file
//! (`storage/snapshot_file.rs`), streamed by openraft in chunks, verified end to end on the
//! receiver and installed in bounded write batches behind a crash-safe marker
//! (`raft/snapshot_install.rs`). Builds and installs take turns.

// openraft's StorageError is large by design, and the storage traits return it.
#![allow(clippy::result_large_err)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ledger_core::{apply_entry_reporting, ApplyCtx, Command, Table};

use crate::metrics::{count_events, StorageCounters};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use rocksdb::{IteratorMode, ReadOptions, DB};
use serde::{Deserialize, Serialize};

use crate::raft::snapshot_install::{install_snapshot_file, installing, InstallMarker};
use crate::raft::types::{LedgerResponse, LogId, StorageError, StoredMembership, TypeConfig};
use crate::storage::snapshot_file::{SnapshotMeta, SnapshotWriter};
use crate::storage::snapshot_handle::SnapshotHandle;
use crate::storage::state_store::{cf, AccountCache, StateView};

/// Key of the Raft bookkeeping in the `state_meta` column family (the core's own record is
/// under a one-byte key, so the two never collide).
pub(crate) const APPLIED_KEY: &[u8] = b"raft_applied";
/// Records a transfer writes (the transfer, two accounts, two account-entry records): sizes the
/// view of an apply.
const RECORDS_PER_EVENT: usize = 5;
/// Most accounts kept in the state machine's cache (about 200 bytes each); when full it is
/// emptied and fills again with the accounts in use.
const ACCOUNT_CACHE_MAX: usize = 1 << 18;
/// Name of the file that points at the current snapshot.
const CURRENT_SNAPSHOT_FILE: &str = "current";

/// What the state machine has applied, stored beside the state it describes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AppliedState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

/// Reads the applied state from the database (or a view of it).
pub fn read_applied(db: &DB, options: ReadOptions) -> Result<AppliedState, StorageError> {
    let cf = cf(db, Table::Meta).map_err(|e| StorageIOError::read_state_machine(&e))?;
    match db
        .get_cf_opt(cf, APPLIED_KEY, &options)
        .map_err(|e| StorageIOError::read_state_machine(&e))?
    {
        Some(bytes) => {
            postcard::from_bytes(&bytes).map_err(|e| StorageIOError::read_state_machine(&e).into())
        }
        None => Ok(AppliedState::default()),
    }
}

#[derive(Clone, Serialize, Deserialize)]
struct CurrentSnapshot {
    meta: SnapshotMeta,
    file: String,
}

/// State shared by the state machine and its snapshot builders.
struct Shared {
    db: Arc<DB>,
    dir: PathBuf,
    current: Mutex<Option<CurrentSnapshot>>,
    counter: AtomicU64,
    /// Held by a snapshot build or install from start to end: a build never reads a
    /// half-installed state, and an older build never becomes current after an install.
    turn: Mutex<()>,
}

impl Shared {
    /// Makes `file` the current snapshot and deletes the previous one.
    fn set_current(&self, meta: SnapshotMeta, file: String) -> Result<(), StorageError> {
        let snapshot = CurrentSnapshot { meta, file };
        let bytes = postcard::to_stdvec(&snapshot).map_err(|e| write_snapshot_error(&e))?;
        let tmp = self.dir.join("current.tmp");
        std::fs::write(&tmp, bytes).map_err(|e| write_snapshot_error(&e))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| write_snapshot_error(&e))?;
        std::fs::rename(&tmp, self.dir.join(CURRENT_SNAPSHOT_FILE))
            .map_err(|e| write_snapshot_error(&e))?;
        // The previous file is deleted under the lock that readers hold while they open the
        // current file (`get_current_snapshot`): a reader has either opened it already (an open
        // file outlives its deletion) or will read the new one.
        let mut current = self.current.lock().expect("snapshot lock");
        let previous = current.replace(snapshot.clone());
        if let Some(previous) = previous {
            if previous.file != snapshot.file {
                let _ = std::fs::remove_file(self.dir.join(previous.file));
            }
        }
        Ok(())
    }

    /// Ends an install: a snapshot received from the leader becomes the current snapshot; a
    /// restored backup's is removed (its membership is the old cluster's).
    fn finish_install(&self, marker: &InstallMarker) -> Result<(), StorageError> {
        let path = self.dir.join(&marker.file);
        if marker.applied.is_some() {
            let _ = std::fs::remove_file(&path);
            return Ok(());
        }
        let file = format!("snapshot-{}.snap", marker.meta.snapshot_id);
        std::fs::rename(&path, self.dir.join(&file)).map_err(|e| write_snapshot_error(&e))?;
        self.set_current(marker.meta.clone(), file)
    }

    /// Removes the snapshot files a crash left behind: received but never installed, or built
    /// but never made current.
    fn remove_stray_files(&self) {
        let current = self
            .current
            .lock()
            .expect("snapshot lock")
            .as_ref()
            .map(|c| c.file.clone());
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let snapshot = name.starts_with("incoming-") || name.starts_with("snapshot-");
            if snapshot && name.ends_with(".snap") && current.as_ref() != Some(&name) {
                tracing::info!(file = %name, "removing a stray snapshot file");
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Waits for any build or install under way, and holds off the next until dropped.
    fn take_turn(&self) -> std::sync::MutexGuard<'_, ()> {
        self.turn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn next_id(&self, last: Option<LogId>) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        match last {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, n),
            None => format!("0-0-{n}"),
        }
    }
}

pub(crate) fn write_snapshot_error(e: &(dyn std::error::Error + 'static)) -> StorageError {
    StorageIOError::write_snapshot(None, openraft::AnyError::from_dyn(e, None)).into()
}

pub(crate) fn read_snapshot_error(e: &(dyn std::error::Error + 'static)) -> StorageError {
    StorageIOError::read_snapshot(None, openraft::AnyError::from_dyn(e, None)).into()
}

/// The ledger state machine on RocksDB.
pub struct LedgerStateMachine {
    shared: Arc<Shared>,
    applied: AppliedState,
    /// The snapshot file being received, a name in the snapshot directory.
    receiving: Option<String>,
    counters: StorageCounters,
    /// Committed accounts, so that applies do not read them from RocksDB again; see
    /// [`AccountCache`].
    accounts: AccountCache,
    /// Raised when the last applied entry left pending transfers past their timeout for later
    /// entries (`ledger_core::EXPIRIES_PER_ENTRY_MAX`): the leader's expiry pulse reads it.
    expiries_due: Arc<std::sync::atomic::AtomicBool>,
}

impl LedgerStateMachine {
    /// Opens the state machine over `db`, keeping snapshot files in `snapshot_dir`.
    pub fn open(db: Arc<DB>, snapshot_dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(snapshot_dir).map_err(|e| write_snapshot_error(&e))?;
        let current = match std::fs::read(snapshot_dir.join(CURRENT_SNAPSHOT_FILE)) {
            Ok(bytes) => Some(
                postcard::from_bytes::<CurrentSnapshot>(&bytes)
                    .map_err(|e| read_snapshot_error(&e))?,
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(read_snapshot_error(&e)),
        };
        let shared = Arc::new(Shared {
            db,
            dir: snapshot_dir.to_path_buf(),
            current: Mutex::new(current),
            counter: AtomicU64::new(0),
            turn: Mutex::new(()),
        });
        // An install that a crash interrupted is finished before anything reads the state.
        if let Some(marker) = installing(&shared.db, ReadOptions::default())? {
            tracing::warn!(
                file = %marker.file,
                snapshot_id = %marker.meta.snapshot_id,
                "finishing an interrupted snapshot install"
            );
            install_snapshot_file(&shared.db, &shared.dir, &marker)
                .and_then(|_| shared.finish_install(&marker))
                .map_err(|e| {
                    let e = io::Error::other(format!(
                        "an interrupted install of snapshot {} cannot be finished: {e}; \
                         this node must be replaced (docs/operations.md)",
                        marker.meta.snapshot_id
                    ));
                    write_snapshot_error(&e)
                })?;
        }
        shared.remove_stray_files();
        let applied = read_applied(&shared.db, ReadOptions::default())?;
        Ok(Self {
            shared,
            applied,
            receiving: None,
            counters: StorageCounters::default(),
            accounts: AccountCache::default(),
            expiries_due: Default::default(),
        })
    }

    /// The flag raised while expiries wait for later entries (see the field).
    pub fn expiries_due_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.expiries_due.clone()
    }

    /// Counts applied events and snapshots into these metrics.
    pub fn with_counters(mut self, counters: StorageCounters) -> Self {
        self.counters = counters;
        self
    }

    pub fn db(&self) -> &Arc<DB> {
        &self.shared.db
    }
}

/// Builds snapshots from a consistent point of the database.
pub struct LedgerSnapshotBuilder {
    shared: Arc<Shared>,
    built: prometheus_client::metrics::counter::Counter,
}

impl RaftSnapshotBuilder<TypeConfig> for LedgerSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let shared = self.shared.clone();
        let started = std::time::Instant::now();
        let (meta, file) = crate::blocking::spawn(move || {
            let _turn = shared.take_turn();
            let (meta, file) = build_snapshot_file(&shared)?;
            shared.set_current(meta.clone(), file.clone())?;
            Ok::<_, StorageError>((meta, file))
        })
        .await
        .map_err(|e| write_snapshot_error(&e))??;
        let handle = SnapshotHandle::open(&self.shared.dir.join(&file))
            .map_err(|e| read_snapshot_error(&e))?;
        self.built.inc();
        let bytes = handle.len().await.unwrap_or(0);
        tracing::info!(
            snapshot_id = %meta.snapshot_id,
            bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "snapshot built"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(handle),
        })
    }
}

/// Writes every state record, as of one RocksDB snapshot, into a new snapshot file.
fn build_snapshot_file(shared: &Shared) -> Result<(SnapshotMeta, String), StorageError> {
    let db = &shared.db;
    let applied = read_applied(db, ReadOptions::default())?;
    let id = shared.next_id(applied.last_applied);
    let file = format!("snapshot-{id}.snap");
    let (meta, _) = write_snapshot_file(db, &shared.dir.join(&file), id)?;
    Ok((meta, file))
}

/// Writes every state record as of one consistent point of `db` into a snapshot file at
/// `path` (also how a backup is taken). Returns the snapshot's metadata and the ledger's own
/// metadata (state digest, audit chain) at that point.
pub fn write_snapshot_file(
    db: &DB,
    path: &Path,
    snapshot_id: String,
) -> Result<(SnapshotMeta, ledger_core::Meta), StorageError> {
    let point = db.snapshot();
    let mut options = ReadOptions::default();
    options.set_snapshot(&point);
    let applied = read_applied(db, options)?;
    let mut options = ReadOptions::default();
    options.set_snapshot(&point);
    if let Some(marker) = installing(db, options)? {
        let e = io::Error::other(format!(
            "this node is installing snapshot {}; its state is incomplete",
            marker.meta.snapshot_id
        ));
        return Err(write_snapshot_error(&e));
    }
    let ledger_meta = {
        let view = StateView::at_snapshot(db, &point);
        ledger_core::read_meta(&view)
    };
    let meta = SnapshotMeta {
        last_log_id: applied.last_applied,
        last_membership: applied.membership,
        snapshot_id,
    };
    let mut writer = SnapshotWriter::create(path, &meta).map_err(|e| write_snapshot_error(&e))?;
    for table in Table::ALL {
        let cf = cf(db, table).map_err(|e| write_snapshot_error(&e))?;
        let mut options = ReadOptions::default();
        options.set_snapshot(&point);
        for item in db.iterator_cf_opt(cf, options, IteratorMode::Start) {
            let (key, value) = item.map_err(|e| write_snapshot_error(&e))?;
            writer
                .add(table, &key, &value)
                .map_err(|e| write_snapshot_error(&e))?;
        }
    }
    writer.finish().map_err(|e| write_snapshot_error(&e))?;
    Ok((meta, ledger_meta))
}

impl RaftStateMachine<TypeConfig> for LedgerStateMachine {
    type SnapshotBuilder = LedgerSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<LedgerResponse>, StorageError>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        // Applying a run of entries reads and writes RocksDB synchronously: a long run is
        // handed off so that it does not hold a worker the Raft core needs.
        let entries: Vec<_> = entries.into_iter().collect();
        let events: usize = entries
            .iter()
            .map(|entry| match &entry.payload {
                EntryPayload::Normal(request) => request.commands.iter().map(Command::len).sum(),
                _ => 0,
            })
            .sum();
        crate::raft::blocking(events >= crate::raft::BLOCKING_EVENTS_MIN, || {
            let db = self.shared.db.clone();
            let mut view =
                StateView::with_account_cache(&db, events * RECORDS_PER_EVENT, &self.accounts);
            let mut applied = self.applied.clone();
            let mut responses = Vec::new();
            for entry in entries {
                applied.last_applied = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Blank => LedgerResponse::default(),
                    EntryPayload::Normal(request) => {
                        let ctx = ApplyCtx {
                            log_index: entry.log_id.index,
                            timestamp: request.timestamp,
                        };
                        let (results, more_due) =
                            apply_entry_reporting(&mut view, &request.commands, ctx);
                        self.expiries_due
                            .store(more_due, std::sync::atomic::Ordering::Relaxed);
                        tracing::debug!(
                            log_index = entry.log_id.index,
                            request_ids = ?request.request_ids,
                            "applied"
                        );
                        count_events(&self.counters.events, &results);
                        LedgerResponse { results }
                    }
                    EntryPayload::Membership(membership) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                        LedgerResponse::default()
                    }
                };
                responses.push(response);
            }
            let touched = view.touched_accounts();
            let mut batch = view
                .into_write_batch()
                .map_err(|e| StorageIOError::write_state_machine(&e))?;
            let meta_cf =
                cf(&db, Table::Meta).map_err(|e| StorageIOError::write_state_machine(&e))?;
            let bytes = postcard::to_stdvec(&applied)
                .map_err(|e| StorageIOError::write_state_machine(&e))?;
            batch.put_cf(meta_cf, APPLIED_KEY, bytes);
            db.write(batch)
                .map_err(|e| StorageIOError::write_state_machine(&e))?;
            // Only now are these the committed accounts.
            if self.accounts.len() + touched.len() > ACCOUNT_CACHE_MAX {
                self.accounts.clear();
            }
            for (id, account) in touched {
                match account {
                    Some(account) => self.accounts.insert(id, account),
                    None => self.accounts.remove(&id),
                };
            }
            self.applied = applied;
            Ok(responses)
        })
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        LedgerSnapshotBuilder {
            shared: self.shared.clone(),
            built: self.counters.snapshots_built.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotHandle>, StorageError> {
        let n = self.shared.counter.fetch_add(1, Ordering::Relaxed);
        let name = format!("incoming-{n}.snap");
        let path = self.shared.dir.join(&name);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| write_snapshot_error(&e))?;
        self.receiving = Some(name);
        Ok(Box::new(SnapshotHandle::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotHandle>,
    ) -> Result<(), StorageError> {
        // The snapshot replaces every account (and a failed install leaves nothing certain).
        self.accounts.clear();
        snapshot
            .sync_all()
            .await
            .map_err(|e| write_snapshot_error(&e))?;
        drop(snapshot);
        let Some(file) = self.receiving.take() else {
            let e = io::Error::other("install_snapshot without begin_receiving_snapshot");
            return Err(write_snapshot_error(&e));
        };
        let marker = InstallMarker {
            file,
            meta: meta.clone(),
            applied: None,
        };
        let shared = self.shared.clone();
        let started = std::time::Instant::now();
        let installed = crate::blocking::spawn(move || {
            let _turn = shared.take_turn();
            let installed = install_snapshot_file(&shared.db, &shared.dir, &marker)
                .and_then(|batches| shared.finish_install(&marker).map(|()| batches));
            if installed.is_err() {
                // The file stays while an install of it is under way: a restart finishes it.
                let under_way = installing(&shared.db, ReadOptions::default());
                if !matches!(under_way, Ok(Some(ref m)) if m.file == marker.file) {
                    let _ = std::fs::remove_file(shared.dir.join(&marker.file));
                }
            }
            installed
        })
        .await
        .map_err(|e| write_snapshot_error(&e))?;
        let batches = match installed {
            Ok(batches) => batches,
            Err(e) => {
                tracing::error!(error = %e, snapshot_id = %meta.snapshot_id, "snapshot refused");
                return Err(e);
            }
        };
        self.applied = AppliedState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        self.counters.snapshots_installed.inc();
        tracing::info!(
            snapshot_id = %meta.snapshot_id,
            batches,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "snapshot installed"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        // Opened under the lock that a build holds while it deletes the file it replaces, so
        // that the file cannot vanish between reading its name and opening it (an error here
        // stops openraft's state-machine worker, and the Raft core with it). Opening a file is
        // quick, and the lock is never held across an await.
        let (meta, file) = {
            let current = self.shared.current.lock().expect("snapshot lock");
            let Some(current) = current.as_ref() else {
                return Ok(None);
            };
            let file = std::fs::File::open(self.shared.dir.join(&current.file))
                .map_err(|e| read_snapshot_error(&e))?;
            (current.meta.clone(), file)
        };
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(SnapshotHandle::from_std(file)),
        }))
    }
}
