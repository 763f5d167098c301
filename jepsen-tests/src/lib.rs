//! jepsen-tests: Ledger's partition harness, in the method of Jepsen (`ledger-jepsen run`).
//!
//! - `net.rs`: a TCP proxy per directed node-to-node link (partitions, slow and lossy links).
//! - `cluster.rs`: real `ledger-server` processes wired through those proxies, admin calls.
//! - `nemesis.rs`: faults on a seeded schedule (kill, pause, partition, slow, membership).
//! - `workload.rs`: logical clients (bank, idempotency, bets) through `ledger-client`.
//! - `history.rs`: the operations of a run (invoke / ok / fail / info) as JSON lines.
//! - `checkers/`: pure functions over a history, one per file, each naming the property it
//!   checks; unit tests feed them hand-made histories with the anomaly they look for.
//! - `run.rs`: one run from start to verdict; `report.rs`: `report.html` with the plot.

pub mod checkers;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod report;
pub mod run;
pub mod workload;
