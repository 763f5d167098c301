//! Where blocking work runs: off the async workers in a running node, in place under the
//! simulator.
//!
//! A node does blocking work (fsyncs of the log, snapshot files, reads of the whole state for
//! a query, a `Verify` or a backup) on threads of its own: the log's fsync thread
//! (`raft/wal_sync.rs`) and tokio's blocking pool, through [`spawn`], so that a slow disk
//! holds no async worker. The simulator runs every node of a cluster on one thread with
//! virtual time, where the moment another thread finishes would change the schedule from run
//! to run: it calls [`run_inline`] first, and from then on this work runs in place, on the
//! task that asked for it, so that a run is a function of its seed alone.

use std::sync::atomic::{AtomicBool, Ordering};

static INLINE: AtomicBool = AtomicBool::new(false);

/// From now on, blocking work in this process runs in place (`true`: the simulator) or on
/// threads of its own (`false`, the default).
pub fn run_inline(inline: bool) {
    INLINE.store(inline, Ordering::SeqCst);
}

/// Whether blocking work runs in place.
pub fn inline() -> bool {
    INLINE.load(Ordering::Relaxed)
}

/// Blocking work that did not finish: it panicked, or the runtime is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("blocking task failed: {0}")]
pub struct BlockingError(String);

/// Runs `work` on tokio's blocking pool, or in place under [`run_inline`].
pub async fn spawn<R, F>(work: F) -> Result<R, BlockingError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    if inline() {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BlockingError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn work_runs_on_the_pool_or_in_place() {
        let caller = std::thread::current().id();
        let on_pool = spawn(|| std::thread::current().id()).await.unwrap();
        assert_ne!(on_pool, caller, "the blocking pool's thread");
        run_inline(true);
        let in_place = spawn(|| std::thread::current().id()).await.unwrap();
        run_inline(false);
        assert_eq!(in_place, caller, "the calling thread");
    }
}
