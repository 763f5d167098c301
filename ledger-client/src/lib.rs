//! ledger-client: the async client of Ledger and the `ledgerctl` CLI.
//!
//! - [`LedgerClient`] (`client/`): leader routing, safe retries, automatic batching, typed
//!   results. Start there.
//! - [`proto`], [`convert`], [`error_details`]: the wire types, from `ledger-wire` (shared with
//!   the server), re-exported.
//! - [`local_cluster`]: starts real `ledger-server` processes on loopback (`ledgerctl local`,
//!   tests).

pub mod client;
pub mod local_cluster;

pub use ledger_wire::{convert, error_details, proto};

pub use client::{
    AuthChannel, BatchStats, ClientConfig, Credentials, Error, LedgerClient, WriteResult,
};
