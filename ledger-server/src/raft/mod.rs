//! Raft: the entry format (`types.rs`), the durable log (`log_store.rs`), the state machine
//! adapter (`state_machine.rs`), how it installs a snapshot (`snapshot_install.rs`), the
//! network to the other nodes (`network.rs`, over gRPC or, in the simulator and in-process
//! tests, `in_process.rs`), which copy of each node's data the cluster
//! counts on (`identity.rs`), the thread that fsyncs the log (`wal_sync.rs`), a check of
//! RocksDB's log files before they are opened (`wal_tail.rs`), and openraft's
//! runtime with a generator the simulator can seed (`runtime.rs`).

pub mod identity;
pub mod in_process;
pub mod log_store;
pub mod network;
pub mod runtime;
pub mod snapshot_install;
pub mod state_machine;
pub mod types;
pub mod wal_sync;
pub mod wal_tail;

/// Events in a run of entries from which applying it counts as long blocking work.
pub(crate) const BLOCKING_EVENTS_MIN: usize = 1_024;
/// Bytes in an append from which writing it counts as long blocking work.
pub(crate) const BLOCKING_BYTES_MIN: usize = 256 << 10;

/// Runs storage work that blocks its thread (a synced RocksDB write, applying entries) from
/// async code. When the work is `long` and the runtime is multi-threaded, the worker first
/// hands its queued tasks to another thread (`block_in_place`): with one worker per core, an
/// apply of a full batch and a synced append of one at once held every worker, and the Raft
/// core, heartbeats and AppendEntries answers waited behind them until the followers called
/// an election (batches of 8,189 transfers, docs/benchmarks.md). Short work runs in place:
/// handing off costs more than it saves when thousands of small entries a second arrive.
pub(crate) fn blocking<R>(long: bool, work: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if long && handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}
