//! The storage seam of the request handlers and admin paths: everything they read goes through
//! a [`StateEngine`], never through a RocksDB handle, so that the same handlers run over
//! RocksDB ([`RocksEngine`], production) or a simulated disk (the simulator).
//!
//! A read runs on one [`ReadPoint`]: the applied state as of one applied index, which no
//! concurrent apply changes under it. While a snapshot install is under way the state is
//! incomplete, and a read that serves clients is refused ([`Incomplete::Refuse`]); `Status`
//! reads the state's bookkeeping even then ([`Incomplete::Allow`]).

use std::path::Path;
use std::sync::Arc;

use ledger_core::Store;
use rocksdb::{ReadOptions, DB};

use crate::backup::{BackupError, BackupHeader};
use crate::error::NodeError;
use crate::raft::log_store::saved_committed_index;
use crate::raft::snapshot_install::refuse_incomplete_state;
use crate::raft::state_machine::read_applied;
use crate::storage::state_store::StateView;

/// One consistent point of the applied state.
pub struct ReadPoint<'a> {
    /// The index of the last entry applied in this state (0: none yet).
    pub applied_index: u64,
    /// The state's records as of that index.
    pub store: &'a dyn Store,
}

/// Whether a read may see a state that a snapshot install has only partly replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incomplete {
    /// Refused with `UNAVAILABLE` while an install is under way (every client read).
    Refuse,
    /// Read anyway (the node's own bookkeeping, for `Status`).
    Allow,
}

/// Bytes held by one area of the storage, for `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageBytes {
    /// The area (a RocksDB column family).
    pub area: &'static str,
    /// `sst` (on disk) or `memtable` (in memory).
    pub kind: &'static str,
    pub bytes: u64,
}

/// What the request handlers and admin paths need from storage.
pub trait StateEngine: Send + Sync + 'static {
    /// Runs `query` once on a consistent [`ReadPoint`]. A record that cannot be read or decoded
    /// makes the read fail with `Unhealthy` (after `query` ran on what could be read).
    fn read(
        &self,
        incomplete: Incomplete,
        query: &mut dyn FnMut(&ReadPoint<'_>),
    ) -> Result<(), NodeError>;

    /// The commit index saved with the log (0: none yet).
    fn saved_committed_index(&self) -> Result<u64, NodeError>;

    /// Writes a backup of the state to `out` (`backup.rs`), using `work_dir` for scratch files.
    fn write_backup(
        &self,
        cluster: &str,
        node_id: u64,
        work_dir: &Path,
        out: &Path,
        nanos: u64,
    ) -> Result<BackupHeader, BackupError>;

    /// Bytes held by each area of the storage.
    fn storage_bytes(&self) -> Vec<StorageBytes>;
}

/// Runs `query` on a consistent point of `engine`'s state and returns its answer.
pub fn query<T>(
    engine: &dyn StateEngine,
    incomplete: Incomplete,
    query: impl FnOnce(&ReadPoint<'_>) -> T,
) -> Result<T, NodeError> {
    let mut query = Some(query);
    let mut answer = None;
    engine.read(incomplete, &mut |point| {
        if let Some(query) = query.take() {
            answer = Some(query(point));
        }
    })?;
    answer.ok_or_else(|| NodeError::Internal("the storage engine ran no query".into()))
}

/// The production engine: the node's RocksDB database.
pub struct RocksEngine {
    db: Arc<DB>,
}

impl RocksEngine {
    pub fn new(db: Arc<DB>) -> Self {
        Self { db }
    }
}

impl StateEngine for RocksEngine {
    fn read(
        &self,
        incomplete: Incomplete,
        query: &mut dyn FnMut(&ReadPoint<'_>),
    ) -> Result<(), NodeError> {
        let point = self.db.snapshot();
        if incomplete == Incomplete::Refuse {
            refuse_incomplete_state(&self.db, &point)?;
        }
        let mut options = ReadOptions::default();
        options.set_snapshot(&point);
        let applied_index = read_applied(&self.db, options)
            .map_err(|e| NodeError::Internal(e.to_string()))?
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0);
        let view = StateView::at_snapshot(&self.db, &point);
        query(&ReadPoint {
            applied_index,
            store: &view,
        });
        match view.error() {
            Some(e) => Err(NodeError::Unhealthy(e.to_string())),
            None => Ok(()),
        }
    }

    fn saved_committed_index(&self) -> Result<u64, NodeError> {
        saved_committed_index(&self.db).map_err(|e| NodeError::Internal(e.to_string()))
    }

    fn write_backup(
        &self,
        cluster: &str,
        node_id: u64,
        work_dir: &Path,
        out: &Path,
        nanos: u64,
    ) -> Result<BackupHeader, BackupError> {
        crate::backup::write_backup(&self.db, cluster, node_id, work_dir, out, nanos)
    }

    fn storage_bytes(&self) -> Vec<StorageBytes> {
        let mut figures = Vec::new();
        for area in crate::raft::log_store::column_families() {
            let Some(handle) = self.db.cf_handle(area) else {
                continue;
            };
            for (kind, property) in [
                ("sst", "rocksdb.live-sst-files-size"),
                ("memtable", "rocksdb.cur-size-all-mem-tables"),
            ] {
                if let Ok(Some(bytes)) = self.db.property_int_value_cf(&handle, property) {
                    figures.push(StorageBytes { area, kind, bytes });
                }
            }
        }
        figures
    }
}

#[cfg(test)]
mod tests {
    use ledger_core::{query, Account, Key, Table, Value};
    use openraft::{CommittedLeaderId, LogId};

    use super::*;
    use crate::raft::log_store::open_db;
    use crate::raft::snapshot_install::{install_in_batches, InstallMarker};
    use crate::raft::state_machine::{write_snapshot_file, AppliedState, APPLIED_KEY};
    use crate::storage::state_store::cf;

    /// A database holding accounts `ids`, applied up to `index`.
    fn db_with(dir: &Path, ids: &[u128], index: u64) -> Arc<DB> {
        let db = open_db(dir.join("db"), 8).expect("open db");
        let mut view = StateView::new(&db);
        for id in ids {
            let account = Account {
                id: *id,
                ledger: 1,
                code: 1,
                ..Account::default()
            };
            view.put(Key::Account(*id), Value::Account(account));
        }
        let mut batch = view.into_write_batch().expect("batch");
        let applied = AppliedState {
            last_applied: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
            ..AppliedState::default()
        };
        let meta = cf(&db, Table::Meta).expect("meta family");
        batch.put_cf(
            meta,
            APPLIED_KEY,
            postcard::to_stdvec(&applied).expect("encode"),
        );
        db.write(batch).expect("write");
        db
    }

    fn ids(
        engine: &dyn StateEngine,
        incomplete: Incomplete,
    ) -> Result<(Vec<u128>, u64), NodeError> {
        super::query(engine, incomplete, |point| {
            let found = query::list_accounts(point.store, 0, 100);
            (found.iter().map(|a| a.id).collect(), point.applied_index)
        })
    }

    #[test]
    fn a_read_sees_the_records_and_the_index_of_one_applied_point() {
        let dir = tempfile::tempdir().unwrap();
        let engine = RocksEngine::new(db_with(dir.path(), &[3, 7], 42));

        assert_eq!(ids(&engine, Incomplete::Refuse).unwrap(), (vec![3, 7], 42));
        assert_eq!(engine.saved_committed_index().unwrap(), 0);
        let areas: Vec<&str> = engine.storage_bytes().iter().map(|f| f.area).collect();
        assert!(areas.contains(&"accounts"), "{areas:?}");
    }

    #[test]
    fn a_client_read_is_refused_while_a_snapshot_install_is_under_way() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let many: Vec<u128> = (1..=2_000).collect();
        let source = db_with(dirs[0].path(), &many, 100);
        let target = db_with(dirs[1].path(), &[5_000], 40);
        let snapshots = dirs[1].path().join("snapshots");
        std::fs::create_dir_all(&snapshots).unwrap();
        let (meta, _) = write_snapshot_file(
            &source,
            &snapshots.join("incoming-0.snap"),
            "1-100-0".into(),
        )
        .expect("snapshot");
        let marker = InstallMarker {
            file: "incoming-0.snap".into(),
            meta,
            applied: None,
        };
        install_in_batches(&target, &snapshots, &marker, 16 << 10, Some(1))
            .expect_err("stopped mid-install");
        let engine = RocksEngine::new(target);

        let refused = ids(&engine, Incomplete::Refuse).expect_err("refused");
        assert!(
            matches!(&refused, NodeError::Unavailable(m) if m.contains("installing")),
            "{refused:?}"
        );
        // The node's own bookkeeping is still read (`Status`).
        let (partial, _) = ids(&engine, Incomplete::Allow).expect("read anyway");
        assert!(!partial.contains(&5_000), "the old state is gone");
    }
}
