//! Whether this node may serve: set unhealthy by storage damage or a failed write, and never
//! set healthy again within the process (a damaged node is replaced, not patched).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct Health {
    reason: Mutex<Option<String>>,
    /// Raised by the log store when a stored entry fails its checksum.
    log_corrupted: Arc<AtomicBool>,
    /// Raised by the log store when a synced write failed (fsync poisoning).
    log_poisoned: Arc<AtomicBool>,
}

impl Health {
    pub fn new(log_corrupted: Arc<AtomicBool>, log_poisoned: Arc<AtomicBool>) -> Self {
        Self {
            reason: Mutex::new(None),
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

    /// Returns why the node is unhealthy, if it is.
    pub fn problem(&self) -> Option<String> {
        if let Some(reason) = self.reason.lock().expect("health lock").clone() {
            return Some(reason);
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
