//! Deliberately broken modes of the server, compiled only with the `negative-control` feature
//! (never in a release build). The partition harness runs a cluster in one of them and must
//! report the anomaly it causes, which shows that its checkers can fail (docs/testing.md):
//!
//! - `--unsafe-stale-reads`: a linearizable read is served from the node's own state without
//!   confirming leadership, by any node; a lagging or cut-off node answers with old balances.
//! - `--unsafe-early-ack`: a write is answered `created` as soon as it is handed to Raft,
//!   before a quorum has it; a crash of the leader then loses acknowledged writes.
//! - `--unsafe-skip-fsync`: the log's fsync thread reports changes durable without syncing
//!   (with `--simulate-power-loss`, a crash then loses them).
//!
//! (`--unsafe-skip-idempotency` lives in ledger-core: `ledger_core::negative_control`.)

use std::sync::atomic::{AtomicBool, Ordering};

static STALE_READS: AtomicBool = AtomicBool::new(false);
static EARLY_ACK: AtomicBool = AtomicBool::new(false);
static SKIP_FSYNC: AtomicBool = AtomicBool::new(false);

/// Switches the broken modes named on for this process.
pub fn enable(stale_reads: bool, early_ack: bool, skip_fsync: bool) {
    STALE_READS.store(stale_reads, Ordering::SeqCst);
    EARLY_ACK.store(early_ack, Ordering::SeqCst);
    SKIP_FSYNC.store(skip_fsync, Ordering::SeqCst);
}

pub(crate) fn stale_reads() -> bool {
    STALE_READS.load(Ordering::Relaxed)
}

pub(crate) fn early_ack() -> bool {
    EARLY_ACK.load(Ordering::Relaxed)
}

pub(crate) fn skip_fsync() -> bool {
    SKIP_FSYNC.load(Ordering::Relaxed)
}
