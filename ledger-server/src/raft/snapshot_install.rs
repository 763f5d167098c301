//! Installing a snapshot: the whole state is replaced by the records of a snapshot file, in
//! write batches of bounded size, so that a snapshot of any size installs in bounded memory.
//!
//! One RocksDB write batch would make the install atomic, but it holds the whole state in
//! memory twice (the batch, then the memtable it lands in): 8.8 GB on a follower installing
//! 10 million accounts (docs/benchmarks.md). The install is made atomic by a marker instead:
//!
//! 1. The file is verified end to end (every chunk's crc32, the trailer) before anything is
//!    written; a damaged snapshot leaves the state as it was.
//! 2. One synced batch deletes every state column family and writes the marker
//!    ([`InstallMarker`], in the meta family), which names the file.
//! 3. The records follow in batches of at most [`INSTALL_BATCH_BYTES`], not synced.
//! 4. One synced batch deletes the marker. Its fsync makes the write-ahead log, and so every
//!    batch before it, durable.
//!
//! While the marker is there the state is incomplete: reads, verification and backups on this
//! node refuse ([`installing`]), snapshot builds wait for the install to end, and a node that
//! restarts with the marker finishes the install from the same file before Raft starts (the
//! file is kept until the marker is gone).

// openraft's StorageError is large by design, and the storage traits return it.
#![allow(clippy::result_large_err)]

use std::io;
use std::path::Path;

use ledger_core::Table;
use rocksdb::{ReadOptions, Snapshot, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};

use crate::error::NodeError;
use crate::raft::state_machine::{
    read_snapshot_error, write_snapshot_error, AppliedState, APPLIED_KEY,
};
use crate::raft::types::StorageError;
use crate::storage::snapshot_file::{verify_snapshot, visit_snapshot, SnapshotMeta};
use crate::storage::state_store::cf;

/// Largest write batch of an install: what installing a snapshot holds in memory at once,
/// besides RocksDB's memtables.
pub const INSTALL_BATCH_BYTES: usize = 32 << 20;
/// Key of the marker in the `state_meta` column family (the core's own record is under a
/// one-byte key, the applied state under `raft_applied`).
const INSTALLING_KEY: &[u8] = b"raft_installing";

/// An install under way: which snapshot file is being installed, and what to write when it
/// is done.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InstallMarker {
    /// The snapshot file, a name in the node's snapshot directory.
    pub file: String,
    /// The metadata the snapshot was announced with; the file must hold the same log id.
    pub meta: SnapshotMeta,
    /// The applied state to write over the snapshot's own (a restore gives the new cluster's
    /// membership); `None` keeps the snapshot's.
    pub applied: Option<AppliedState>,
}

/// The install under way on `db` at the point `options` reads, if any.
pub fn installing(db: &DB, options: ReadOptions) -> Result<Option<InstallMarker>, StorageError> {
    let meta_cf = cf(db, Table::Meta).map_err(|e| read_snapshot_error(&e))?;
    match db
        .get_cf_opt(meta_cf, INSTALLING_KEY, &options)
        .map_err(|e| read_snapshot_error(&e))?
    {
        Some(bytes) => postcard::from_bytes(&bytes)
            .map(Some)
            .map_err(|e| read_snapshot_error(&e)),
        None => Ok(None),
    }
}

/// Refuses to hand out the state at `point` while an install is under way there.
pub fn refuse_incomplete_state(db: &DB, point: &Snapshot<'_>) -> Result<(), NodeError> {
    let mut options = ReadOptions::default();
    options.set_snapshot(point);
    match installing(db, options) {
        Ok(None) => Ok(()),
        Ok(Some(marker)) => Err(NodeError::Unavailable(format!(
            "this node is installing snapshot {}; its state is incomplete until then",
            marker.meta.snapshot_id
        ))),
        Err(e) => Err(NodeError::Internal(e.to_string())),
    }
}

/// Replaces the whole state with the records of the snapshot file `marker.file` in `dir`.
/// Returns the number of record batches written.
pub fn install_snapshot_file(
    db: &DB,
    dir: &Path,
    marker: &InstallMarker,
) -> Result<u64, StorageError> {
    install_in_batches(db, dir, marker, INSTALL_BATCH_BYTES, None)
}

/// [`install_snapshot_file`] with batches of `batch_bytes`; `stop_after` stops it, as a crash
/// would, once that many record batches are written (tests of the restart).
pub fn install_in_batches(
    db: &DB,
    dir: &Path,
    marker: &InstallMarker,
    batch_bytes: usize,
    stop_after: Option<u64>,
) -> Result<u64, StorageError> {
    let path = dir.join(&marker.file);
    let (file_meta, _records) = verify_snapshot(&path).map_err(|e| read_snapshot_error(&e))?;
    if file_meta.last_log_id != marker.meta.last_log_id {
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "snapshot file holds {:?}, announced {:?}",
                file_meta.last_log_id, marker.meta.last_log_id
            ),
        );
        return Err(read_snapshot_error(&e));
    }
    let meta_cf = cf(db, Table::Meta).map_err(|e| write_snapshot_error(&e))?;
    let mut synced = WriteOptions::default();
    synced.set_sync(true);

    // Every state key is at most 33 bytes long, so this bound is above all of them.
    let end = [0xffu8; 64];
    let mut begin = WriteBatch::default();
    for table in Table::ALL {
        let family = cf(db, table).map_err(|e| write_snapshot_error(&e))?;
        begin.delete_range_cf(family, &[][..], &end[..]);
    }
    let bytes = postcard::to_stdvec(marker).map_err(|e| write_snapshot_error(&e))?;
    begin.put_cf(meta_cf, INSTALLING_KEY, bytes);
    db.write_opt(begin, &synced)
        .map_err(|e| write_snapshot_error(&e))?;

    let mut batch = WriteBatch::default();
    let mut written = 0u64;
    let mut failed: Option<StorageError> = None;
    visit_snapshot(&path, |table, key, value| {
        if failed.is_some() {
            return;
        }
        match cf(db, table) {
            Ok(family) => batch.put_cf(family, key, value),
            Err(e) => {
                failed = Some(write_snapshot_error(&e));
                return;
            }
        }
        if batch.size_in_bytes() < batch_bytes {
            return;
        }
        if stop_after == Some(written) {
            failed = Some(write_snapshot_error(&io::Error::other("install stopped")));
            return;
        }
        // Not synced: the last batch's fsync makes the write-ahead log durable up to it.
        match db.write(std::mem::take(&mut batch)) {
            Ok(()) => written += 1,
            Err(e) => failed = Some(write_snapshot_error(&e)),
        }
    })
    .map_err(|e| read_snapshot_error(&e))?;
    if let Some(e) = failed {
        return Err(e);
    }
    if let Some(applied) = &marker.applied {
        let bytes = postcard::to_stdvec(applied).map_err(|e| write_snapshot_error(&e))?;
        batch.put_cf(meta_cf, APPLIED_KEY, bytes);
    }
    batch.delete_cf(meta_cf, INSTALLING_KEY);
    db.write_opt(batch, &synced)
        .map_err(|e| write_snapshot_error(&e))?;
    Ok(written + 1)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use openraft::{CommittedLeaderId, LogId};
    use rocksdb::IteratorMode;

    use super::*;
    use crate::raft::log_store::open_db;
    use crate::raft::state_machine::{read_applied, write_snapshot_file, LedgerStateMachine};

    type Record = (&'static str, Vec<u8>, Vec<u8>);

    /// A database holding `count` records of about 100 bytes in three state families, keyed
    /// from `first`, and an applied state at `index`.
    fn db_with(dir: &Path, first: u32, count: u32, index: u64) -> Arc<DB> {
        let db = open_db(dir.join("db"), 8).expect("open db");
        for n in first..first + count {
            let table = [Table::Accounts, Table::Transfers, Table::AccountEntries][n as usize % 3];
            let family = cf(&db, table).expect("family");
            let value = [n.to_le_bytes().as_slice(), &[7u8; 96]].concat();
            db.put_cf(family, n.to_be_bytes(), value).expect("put");
        }
        let applied = AppliedState {
            last_applied: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
            ..AppliedState::default()
        };
        let meta_cf = cf(&db, Table::Meta).expect("meta family");
        let bytes = postcard::to_stdvec(&applied).expect("encode");
        db.put_cf(meta_cf, APPLIED_KEY, bytes).expect("put applied");
        db
    }

    /// Every record of every state family.
    fn contents(db: &DB) -> Vec<Record> {
        let mut records = Vec::new();
        for table in Table::ALL {
            let family = cf(db, table).expect("family");
            for item in db.iterator_cf(family, IteratorMode::Start) {
                let (key, value) = item.expect("read");
                records.push((table.name(), key.to_vec(), value.to_vec()));
            }
        }
        records
    }

    /// A snapshot of `source` written as `file` in `dir`, and the marker that installs it.
    fn snapshot_of(source: &DB, dir: &Path, file: &str) -> InstallMarker {
        std::fs::create_dir_all(dir).expect("snapshot dir");
        let (meta, _) =
            write_snapshot_file(source, &dir.join(file), "1-100-0".into()).expect("snapshot");
        InstallMarker {
            file: file.to_string(),
            meta,
            applied: None,
        }
    }

    #[test]
    fn a_snapshot_installs_in_bounded_batches_and_replaces_the_whole_state() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let source = db_with(dirs[0].path(), 0, 2_000, 100);
        // Half of the target's keys are the source's, with other values; half are not.
        let target = db_with(dirs[1].path(), 1_000, 2_000, 40);
        let snapshots = dirs[1].path().join("snapshots");
        let marker = snapshot_of(&source, &snapshots, "incoming-0.snap");

        let batches =
            install_in_batches(&target, &snapshots, &marker, 16 << 10, None).expect("install");

        // About 230 kB of records in batches of 16 kB.
        assert!(batches >= 10, "{batches} batches");
        assert_eq!(contents(&target), contents(&source));
        assert!(installing(&target, ReadOptions::default())
            .expect("read marker")
            .is_none());
    }

    #[test]
    fn an_install_cut_short_is_finished_when_the_node_opens_again() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let source = db_with(dirs[0].path(), 0, 2_000, 100);
        let target = db_with(dirs[1].path(), 5_000, 300, 40);
        let snapshots = dirs[1].path().join("snapshots");
        let marker = snapshot_of(&source, &snapshots, "incoming-3.snap");
        std::fs::write(snapshots.join("incoming-9.snap"), b"left by a crash").unwrap();

        install_in_batches(&target, &snapshots, &marker, 16 << 10, Some(2))
            .expect_err("stopped after two batches");

        // Half installed: the marker says so, and nothing hands the state out.
        let under_way = installing(&target, ReadOptions::default())
            .expect("read marker")
            .expect("marker present");
        assert_eq!(under_way.file, "incoming-3.snap");
        let partial = contents(&target).len();
        assert!(partial > 1 && partial < 2_000, "{partial} records");
        let refused = write_snapshot_file(&target, &dirs[1].path().join("b.snap"), "b".into())
            .expect_err("no snapshot or backup of a half-installed state");
        assert!(refused.to_string().contains("installing"), "{refused}");

        let machine = LedgerStateMachine::open(target.clone(), &snapshots).expect("open");
        drop(machine);

        assert_eq!(contents(&target), contents(&source));
        assert!(installing(&target, ReadOptions::default())
            .expect("read marker")
            .is_none());
        let mut files: Vec<String> = std::fs::read_dir(&snapshots)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, ["current", "snapshot-1-100-0.snap"]);
    }

    #[test]
    fn a_damaged_snapshot_leaves_the_state_untouched() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let source = db_with(dirs[0].path(), 0, 2_000, 100);
        let target = db_with(dirs[1].path(), 5_000, 300, 40);
        let before = contents(&target);
        let snapshots = dirs[1].path().join("snapshots");
        let marker = snapshot_of(&source, &snapshots, "incoming-0.snap");
        let path = snapshots.join(&marker.file);
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();

        install_in_batches(&target, &snapshots, &marker, 16 << 10, None)
            .expect_err("a damaged snapshot is refused");

        assert_eq!(contents(&target), before);
        assert!(installing(&target, ReadOptions::default())
            .expect("read marker")
            .is_none());
    }

    #[test]
    fn a_restore_writes_its_own_applied_state_last() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let source = db_with(dirs[0].path(), 0, 50, 100);
        let target = open_db(dirs[1].path().join("db"), 8).expect("open db");
        let snapshots = dirs[1].path().join("snapshots");
        let mut marker = snapshot_of(&source, &snapshots, "restore.snap");
        let applied = AppliedState {
            last_applied: Some(LogId::new(CommittedLeaderId::new(9, 1), 100)),
            ..AppliedState::default()
        };
        marker.applied = Some(applied.clone());

        install_snapshot_file(&target, &snapshots, &marker).expect("install");

        let read = read_applied(&target, ReadOptions::default()).expect("applied");
        assert_eq!(read.last_applied, applied.last_applied);
        assert_eq!(contents(&target).len(), contents(&source).len());
    }
}
