//! The fsync thread of the node's write-ahead log.
//!
//! A change to the Raft log (appended entries, a vote, a truncation, a purge) is written to
//! RocksDB without `sync`, which makes it visible at once (replication tasks read appended
//! entries) but not yet durable. The fsync then runs here, on a thread of its own, and only
//! after it does openraft hear that the change is durable: through the append's
//! `LogFlushed` callback, or by the awaited call returning. No fsync ever runs on an async
//! worker, where a slow disk would hold every task queued behind it (gRPC answers, the
//! health endpoint, the state machine).
//!
//! One fsync covers every write made before it, so each pass of the thread takes all the
//! requests queued so far and fsyncs once for them (group commit of the log).
//!
//! openraft 0.9 still waits in its core for an append's callback (`raft_core.rs`,
//! `append_to_log`), so a leader sends no heartbeat while its own fsync runs; 0.10 drops that
//! wait (docs/consistency.md).

#[cfg(feature = "fault-injection")]
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Weak};

use rocksdb::DB;

/// Called once the writes made before the request are durable, or with why they may not be.
pub type Done = Box<dyn FnOnce(Result<(), String>) + Send>;

/// The handle to the fsync thread; the thread ends when the last handle is dropped.
#[derive(Debug)]
pub struct WalSync {
    /// The fsync thread's queue, or `None` when fsyncs run in place (`blocking::run_inline`,
    /// the simulator).
    requests: Option<mpsc::Sender<Done>>,
    syncer: Arc<Syncer>,
}

/// What one fsync needs, shared by the thread and the in-place path.
#[derive(Debug)]
struct Syncer {
    db: Weak<DB>,
    poisoned: Arc<AtomicBool>,
    /// Test-only: how long each fsync is held back (`Admin/InjectSyncDelay`).
    #[cfg(feature = "fault-injection")]
    delay_ms: AtomicU64,
    /// Test-only: the next fsync fails (`Admin/InjectSyncDelay` with `fail_next`).
    #[cfg(feature = "fault-injection")]
    fail_next: AtomicBool,
}

impl Syncer {
    fn sync_once(&self) -> Result<(), String> {
        #[cfg(feature = "fault-injection")]
        {
            let ms = self.delay_ms.load(Ordering::SeqCst);
            if ms > 0 {
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            if self.fail_next.swap(false, Ordering::SeqCst) {
                self.poisoned.store(true, Ordering::SeqCst);
                tracing::error!("injected fsync failure; log store poisoned");
                return Err("fsync of the write-ahead log failed: injected EIO".to_string());
            }
        }
        sync(&self.db, &self.poisoned)
    }
}

impl WalSync {
    /// Starts the thread for `db` (or, under `blocking::run_inline`, none: each fsync then
    /// runs in place). A failed fsync raises `poisoned`: after it, nobody knows
    /// what reached the disk, so the store refuses every later write (`log_store.rs`). The
    /// thread does not keep the database open: it is closed when its last owner drops it.
    pub fn start(db: &Arc<DB>, poisoned: Arc<AtomicBool>) -> std::io::Result<Self> {
        let syncer = Arc::new(Syncer {
            db: Arc::downgrade(db),
            poisoned,
            #[cfg(feature = "fault-injection")]
            delay_ms: AtomicU64::new(0),
            #[cfg(feature = "fault-injection")]
            fail_next: AtomicBool::new(false),
        });
        if crate::blocking::inline() {
            return Ok(Self {
                requests: None,
                syncer,
            });
        }
        let (requests, queue) = mpsc::channel::<Done>();
        let thread_syncer = syncer.clone();
        std::thread::Builder::new()
            .name("ledger-wal-sync".into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let mut waiting = vec![first];
                    waiting.extend(queue.try_iter());
                    let result = thread_syncer.sync_once();
                    for done in waiting {
                        done(result.clone());
                    }
                }
            })?;
        Ok(Self {
            requests: Some(requests),
            syncer,
        })
    }

    /// Calls `done` once every write made so far is durable.
    pub fn after_sync(&self, done: Done) {
        let Some(requests) = &self.requests else {
            done(self.syncer.sync_once());
            return;
        };
        if let Err(mpsc::SendError(done)) = requests.send(done) {
            done(Err("the log's fsync thread has stopped".into()));
        }
    }

    /// Returns once every write made so far is durable.
    pub async fn synced(&self) -> Result<(), String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.after_sync(Box::new(move |result| {
            let _ = tx.send(result);
        }));
        rx.await
            .unwrap_or_else(|_| Err("the log's fsync thread has stopped".into()))
    }

    /// Test-only: the next fsync fails, as an EIO would.
    #[cfg(feature = "fault-injection")]
    pub fn fail_next_sync(&self) {
        self.syncer.fail_next.store(true, Ordering::SeqCst);
    }

    /// Test-only: holds every later fsync back by `ms` (0: no more).
    #[cfg(feature = "fault-injection")]
    pub fn set_delay_ms(&self, ms: u64) {
        self.syncer.delay_ms.store(ms, Ordering::SeqCst);
    }
}

/// Fsyncs the write-ahead log, unless an earlier failure poisoned the store.
fn sync(db: &Weak<DB>, poisoned: &AtomicBool) -> Result<(), String> {
    let Some(db) = db.upgrade() else {
        return Err("the database is closed".into());
    };
    if poisoned.load(Ordering::SeqCst) {
        return Err("the log store is poisoned by an earlier failed write".into());
    }
    #[cfg(feature = "negative-control")]
    if crate::negative_control::skip_fsync() {
        return Ok(());
    }
    db.flush_wal(true).map_err(|e| {
        poisoned.store(true, Ordering::SeqCst);
        tracing::error!(
            error = %e,
            path = %db.path().display(),
            "fsync of the write-ahead log failed; log store poisoned, it refuses all further writes"
        );
        format!("fsync of the write-ahead log failed: {e}")
    })
}
