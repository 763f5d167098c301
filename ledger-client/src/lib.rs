//! ledger-client: the async client of Ledger, the shared gRPC types, and the `ledgerctl` CLI.

pub mod convert;
pub mod local_cluster;
pub mod proto;
