//! Online backup and restore, through the snapshot path.
//!
//! A backup is one file:
//!
//! ```text
//! "LEDGERBK" | version: u32 LE | header length: u32 LE | header (JSON) | snapshot file | crc32: u32 LE
//! ```
//!
//! The header names the cluster and node it came from, the applied log index and term, the
//! state digest and the snapshot's metadata; the snapshot file is the one Raft ships to a
//! lagging follower (crc32 per chunk, counted trailer); the last four bytes are a crc32 of
//! everything before them. It is taken from one consistent RocksDB snapshot while the node
//! keeps serving.
//!
//! A restore verifies the whole file, then seeds an empty data directory: the state from the
//! snapshot, a membership of just the new node, the Raft log starting after the backup's
//! applied index. Started, the node elects itself leader of a new one-node cluster with the
//! backed-up state; more nodes join it as learners (they receive the state by snapshot).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use openraft::storage::RaftLogStorage;
use openraft::{Membership, StoredMembership, Vote};
use rocksdb::DB;
use serde::{Deserialize, Serialize};

use crate::raft::log_store::{open_db, LogStore};
use crate::raft::snapshot_install::{install_snapshot_file, InstallMarker};
use crate::raft::state_machine::{write_snapshot_file, AppliedState};
use crate::raft::types::{LedgerNode, TypeConfig};
use crate::storage::snapshot_file::SnapshotMeta;

pub const BACKUP_MAGIC: &[u8; 8] = b"LEDGERBK";
/// 2: members record a client and a peer address (data directory format 2). 3: and their
/// incarnation (format 3).
pub const BACKUP_VERSION: u32 = 3;
/// The backup's snapshot file while it is restored, in the new node's snapshot directory.
const RESTORE_FILE: &str = "restore.snap";
/// Largest header accepted (it is a few hundred bytes).
const HEADER_BYTES_MAX: u32 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: not a Ledger backup, or damaged")]
    Damaged(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error("{0}")]
    Refused(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What a backup holds, as written in its header.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackupHeader {
    pub cluster: String,
    pub node_id: u64,
    pub applied_index: u64,
    pub applied_term: u64,
    /// The state digest at `applied_index`, hex (as `ledgerctl verify` shows it).
    pub state_digest: String,
    pub audit_chain: String,
    pub snapshot_bytes: u64,
    pub meta: SnapshotMeta,
}

fn hex(v: u128) -> String {
    format!("{v:032x}")
}

fn hex_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a backup of the node's current state to `out` (through a temporary snapshot file in
/// `work_dir`, named after `nanos`, the wall clock at the request).
pub fn write_backup(
    db: &DB,
    cluster: &str,
    node_id: u64,
    work_dir: &Path,
    out: &Path,
    nanos: u64,
) -> Result<BackupHeader, BackupError> {
    std::fs::create_dir_all(work_dir).map_err(io(work_dir))?;
    let snapshot = work_dir.join(format!("backup-{nanos}.snap"));
    let written = write_snapshot_file(db, &snapshot, format!("backup-{nanos}"))
        .map_err(|e| BackupError::Storage(e.to_string()));
    let result = written.and_then(|(meta, ledger)| {
        let snapshot_bytes = std::fs::metadata(&snapshot).map_err(io(&snapshot))?.len();
        let header = BackupHeader {
            cluster: cluster.to_string(),
            node_id,
            applied_index: meta.last_log_id.map(|l| l.index).unwrap_or(0),
            applied_term: meta.last_log_id.map(|l| l.leader_id.term).unwrap_or(0),
            state_digest: hex(ledger.digest),
            audit_chain: hex_bytes(&ledger.chain),
            snapshot_bytes,
            meta,
        };
        assemble(&header, &snapshot, out)?;
        Ok(header)
    });
    let _ = std::fs::remove_file(&snapshot);
    result
}

fn assemble(header: &BackupHeader, snapshot: &Path, out: &Path) -> Result<(), BackupError> {
    let header_bytes =
        serde_json::to_vec(header).map_err(|e| BackupError::Storage(e.to_string()))?;
    let file = File::create(out).map_err(io(out))?;
    let mut writer = BufWriter::new(file);
    let mut crc = crc32fast::Hasher::new();
    let mut put = |writer: &mut BufWriter<File>, bytes: &[u8]| -> Result<(), BackupError> {
        crc.update(bytes);
        writer.write_all(bytes).map_err(io(out))
    };
    put(&mut writer, BACKUP_MAGIC)?;
    put(&mut writer, &BACKUP_VERSION.to_le_bytes())?;
    put(&mut writer, &(header_bytes.len() as u32).to_le_bytes())?;
    put(&mut writer, &header_bytes)?;
    let mut source = BufReader::new(File::open(snapshot).map_err(io(snapshot))?);
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = source.read(&mut buffer).map_err(io(snapshot))?;
        if n == 0 {
            break;
        }
        put(&mut writer, &buffer[..n])?;
    }
    let sum = crc.finalize();
    writer.write_all(&sum.to_le_bytes()).map_err(io(out))?;
    let file = writer.into_inner().map_err(|e| io(out)(e.into_error()))?;
    file.sync_all().map_err(io(out))
}

/// Verifies a backup file end to end (magic, version, whole-file crc32) and returns its header
/// and where its snapshot starts.
pub fn verify_backup(path: &Path) -> Result<(BackupHeader, u64), BackupError> {
    let damaged = || BackupError::Damaged(path.display().to_string());
    let mut file = File::open(path).map_err(io(path))?;
    let len = file.metadata().map_err(io(path))?.len();
    if len < 20 {
        return Err(damaged());
    }
    let mut crc = crc32fast::Hasher::new();
    let mut reader = BufReader::new(&mut file);
    let mut remaining = len - 4;
    let mut buffer = vec![0u8; 1 << 16];
    while remaining > 0 {
        let want = remaining.min(buffer.len() as u64) as usize;
        reader.read_exact(&mut buffer[..want]).map_err(io(path))?;
        crc.update(&buffer[..want]);
        remaining -= want as u64;
    }
    let mut stored = [0u8; 4];
    reader.read_exact(&mut stored).map_err(io(path))?;
    if crc.finalize() != u32::from_le_bytes(stored) {
        return Err(damaged());
    }
    drop(reader);
    file.seek(SeekFrom::Start(0)).map_err(io(path))?;
    let mut fixed = [0u8; 16];
    file.read_exact(&mut fixed).map_err(io(path))?;
    if &fixed[..8] != BACKUP_MAGIC {
        return Err(damaged());
    }
    let version = u32::from_le_bytes(fixed[8..12].try_into().expect("4 bytes"));
    if version != BACKUP_VERSION {
        return Err(BackupError::Refused(format!(
            "{}: backup version {version}; this build reads version {BACKUP_VERSION}",
            path.display()
        )));
    }
    let header_len = u32::from_le_bytes(fixed[12..16].try_into().expect("4 bytes"));
    if header_len > HEADER_BYTES_MAX || 16 + u64::from(header_len) + 4 > len {
        return Err(damaged());
    }
    let mut header_bytes = vec![0u8; header_len as usize];
    file.read_exact(&mut header_bytes).map_err(io(path))?;
    let header: BackupHeader = serde_json::from_slice(&header_bytes).map_err(|_| damaged())?;
    let start = 16 + u64::from(header_len);
    if start + header.snapshot_bytes + 4 != len {
        return Err(damaged());
    }
    Ok((header, start))
}

/// Seeds the empty data directory `data_dir` from a backup, as node `node_id` of a new
/// one-node cluster reachable at `advertise_addr` (clients) and `advertise_peer_addr` (peers).
/// Returns the backup's header.
pub async fn restore(
    from: &Path,
    data_dir: &Path,
    node_id: u64,
    advertise_addr: &str,
    advertise_peer_addr: &str,
    block_cache_mb: usize,
) -> Result<BackupHeader, BackupError> {
    let db_dir = data_dir.join("db");
    if db_dir.exists() {
        return Err(BackupError::Refused(format!(
            "{} already holds a database; restore only into an empty data directory",
            data_dir.display()
        )));
    }
    let (header, start) = verify_backup(from)?;
    let snapshot_dir = data_dir.join("snapshots");
    std::fs::create_dir_all(&snapshot_dir).map_err(io(&snapshot_dir))?;
    let snapshot: PathBuf = snapshot_dir.join(RESTORE_FILE);
    {
        let mut source = File::open(from).map_err(io(from))?;
        source.seek(SeekFrom::Start(start)).map_err(io(from))?;
        let mut target = File::create(&snapshot).map_err(io(&snapshot))?;
        std::io::copy(&mut source.take(header.snapshot_bytes), &mut target)
            .map_err(io(&snapshot))?;
        target.sync_all().map_err(io(&snapshot))?;
    }
    let db = open_db(&db_dir, block_cache_mb).map_err(|e| BackupError::Storage(e.to_string()))?;
    let last = header.meta.last_log_id;
    // The restored node is a new incarnation: a member of no cluster until it founds its own.
    let mut log: LogStore<TypeConfig> =
        LogStore::new(db.clone()).map_err(|e| BackupError::Storage(e.to_string()))?;
    // An offline command: the machine's randomness.
    let incarnation = log
        .incarnation(&crate::env::SystemEnv)
        .map_err(|e| BackupError::Storage(e.to_string()))?;
    let nodes: BTreeMap<u64, LedgerNode> = [(
        node_id,
        LedgerNode::new(advertise_addr, advertise_peer_addr, incarnation),
    )]
    .into();
    let membership = Membership::new(vec![BTreeSet::from([node_id])], nodes);
    // The snapshot's chunks and trailer are verified before anything is written; the new
    // membership is written in the install's last batch.
    let marker = InstallMarker {
        file: RESTORE_FILE.to_string(),
        meta: header.meta.clone(),
        applied: Some(AppliedState {
            last_applied: last,
            membership: StoredMembership::new(last, membership),
        }),
    };
    install_snapshot_file(&db, &snapshot_dir, &marker)
        .map_err(|e| BackupError::Storage(e.to_string()))?;
    let _ = std::fs::remove_file(&snapshot);
    // The log starts after the backup; the vote carries its term, so the new cluster's terms
    // continue upwards from the entries the state came from.
    if let Some(last) = last {
        log.save_vote(&Vote::new(last.leader_id.term, node_id))
            .await
            .map_err(|e| BackupError::Storage(e.to_string()))?;
        log.purge(last)
            .await
            .map_err(|e| BackupError::Storage(e.to_string()))?;
    }
    db.flush_wal(true)
        .map_err(|e| BackupError::Storage(e.to_string()))?;
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_or_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lbk");
        std::fs::write(&path, b"not a backup at all, not even close").unwrap();
        assert!(matches!(verify_backup(&path), Err(BackupError::Damaged(_))));
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(verify_backup(&path), Err(BackupError::Damaged(_))));
    }
}
