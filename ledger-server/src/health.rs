//! Whether this node may serve: set unhealthy by storage damage or a failed write, and never
//! set healthy again within the process (a damaged node is replaced, not patched).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How long a refused call for another incarnation keeps the node reported unhealthy.
const NOT_THE_MEMBER_REPORTED_MS: u64 = 5_000;

#[derive(Debug, Default)]
pub struct Health {
    reason: Mutex<Option<String>>,
    /// The last refusal of a Raft call meant for another incarnation of this node, and when:
    /// its peers count on data this node does not have (`raft/identity.rs`). Reported while
    /// the refusals go on, gone once an operator has replaced the node.
    not_the_member: Mutex<Option<(Instant, String)>>,
    /// Raised by the log store when a stored entry fails its checksum.
    log_corrupted: Arc<AtomicBool>,
    /// Raised by the log store when a synced write failed (fsync poisoning).
    log_poisoned: Arc<AtomicBool>,
}

impl Health {
    pub fn new(log_corrupted: Arc<AtomicBool>, log_poisoned: Arc<AtomicBool>) -> Self {
        Self {
            reason: Mutex::new(None),
            not_the_member: Mutex::new(None),
            log_corrupted,
            log_poisoned,
        }
    }

    /// Marks the node unhealthy; the first reason is kept.
    pub fn mark_unhealthy(&self, reason: impl Into<String>) {
        let mut current = self.reason.lock().expect("health lock");
        if current.is_none() {
            let reason = reason.into();
            tracing::error!(%reason, "node marked unhealthy");
            *current = Some(reason);
        }
    }

    /// Records that a peer's Raft call was meant for another incarnation of this node.
    pub fn note_not_the_member(&self, why: impl Into<String>) {
        *self.not_the_member.lock().expect("health lock") = Some((Instant::now(), why.into()));
    }

    /// Records that a peer's Raft call was meant for this incarnation (the node is, or is
    /// again, the member its peers know).
    pub fn note_the_member(&self) {
        let mut noted = self.not_the_member.lock().expect("health lock");
        if noted.is_some() {
            *noted = None;
        }
    }

    /// Returns why the node is unhealthy, if it is.
    pub fn problem(&self) -> Option<String> {
        if let Some(reason) = self.reason.lock().expect("health lock").clone() {
            return Some(reason);
        }
        if let Some((at, why)) = self.not_the_member.lock().expect("health lock").clone() {
            if at.elapsed() < Duration::from_millis(NOT_THE_MEMBER_REPORTED_MS) {
                return Some(why);
            }
        }
        if self.log_poisoned.load(Ordering::Relaxed) {
            return Some(
                "a synced write to the raft log failed; restart or replace the node".into(),
            );
        }
        self.log_corrupted
            .load(Ordering::Relaxed)
            .then(|| "a stored raft log entry failed its checksum".to_string())
    }
}
