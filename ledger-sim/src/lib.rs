//! ledger-sim: a whole Ledger cluster in one process, on one thread and virtual time,
//! deterministic from a seed.
//!
//! The nodes are the server's own code (`ledger_server::startup::start_in_process`): RocksDB
//! storage, the log store, openraft, the group committer and the request handlers. What the
//! simulator replaces is their world: the network between them (`world::Links`, through
//! `ledger_server::raft::in_process`), their wall clocks (`world::SimClock`, the server's
//! `Env`), time itself (tokio's paused clock) and openraft's randomness (seeded,
//! `ledger_server::raft::runtime`). Blocking work runs in place (`ledger_server::blocking`),
//! so nothing runs on another thread and a run is a function of its seed.
//!
//! - `plan.rs`: what a seed makes of a run (swarm testing: which faults, how strong).
//! - `world.rs`: clocks and network faults.
//! - `cluster.rs`: the nodes; crash and restart.
//! - `workload.rs`: clients and their history.
//! - `check.rs`: the checks at the end.
//! - `run.rs`: one run, start to verdict.
//! - `trace.rs`: what happened, and its hash (two runs of a seed must agree).

pub mod check;
pub mod cluster;
pub mod plan;
pub mod run;
pub mod trace;
pub mod workload;
pub mod world;

pub use plan::Plan;
pub use run::{run, run_plan, Report, REPLAYABLE};
