//! ledger-server: a Ledger node.
//!
//! Where a client's transfer goes, by file:
//! - `grpc/ledger_service.rs`: decoded and checked (`INVALID_ARGUMENT` names the field);
//! - `group_commit.rs`: coalesced with concurrent requests into one Raft entry, stamped with
//!   cluster time (`clock.rs`: the leader's clock, bounded by a quorum of clocks);
//! - `raft/log_store.rs`: made durable in the Raft log (fsynced by `raft/wal_sync.rs`);
//! - `raft/network.rs`, `grpc/raft_service.rs`: replicated to the followers;
//! - `raft/state_machine.rs`: applied by ledger-core on every node, and written to RocksDB
//!   (`storage/state_store.rs`) in one batch with the applied index.
//!
//! Reads (`Lookup*`, `Status`, `Verify`, backups, `/metrics`) go through the storage seam of
//! `storage/engine.rs`, never to RocksDB directly.
//!
//! Before any of that, `security/` checks the caller: TLS, token and role, limits.
//!
//! `startup.rs` wires these together into the `Node` of `node.rs`, which every handler holds;
//! `error.rs` and `grpc/status.rs` hold the one mapping from errors to gRPC statuses;
//! `metrics.rs` and `http.rs` are what operators watch.

pub mod backup;
pub mod blocking;
pub mod clock;
pub mod config;
pub mod env;
pub mod error;
pub mod group_commit;
pub mod grpc;
pub mod health;
pub mod http;
pub mod metrics;
#[cfg(feature = "negative-control")]
pub mod negative_control;
pub mod node;
pub mod raft;
pub mod security;
pub mod startup;
pub mod storage;
