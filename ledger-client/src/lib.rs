//! ledger-client: the async client of Ledger, the shared gRPC types, and the `ledgerctl` CLI.
//!
//! - [`LedgerClient`] (`client/`): leader routing, safe retries, automatic batching, typed
//!   results. Start there.
//! - [`proto`]: the generated gRPC types and services (`proto/*.proto`).
//! - [`convert`]: ledger-core types to and from the wire types.
//! - [`error_details`]: the standard `google.rpc.Status` details every error carries.
//! - [`local_cluster`]: starts real `ledger-server` processes on loopback (`ledgerctl local`,
//!   tests).

pub mod client;
pub mod convert;
pub mod error_details;
pub mod local_cluster;
pub mod proto;

pub use client::{
    AuthChannel, BatchStats, ClientConfig, Credentials, Error, LedgerClient, WriteResult,
};
