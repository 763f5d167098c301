//! ledger-core: the double-entry ledger and bets state machine.
//!
//! Where things happen, by file:
//! - `account.rs`, `transfer.rs`, `bet.rs`: the data model.
//! - `command.rs`: commands (batches of events), results, the apply context, batch limits.
//! - `result.rs`: the numbered result codes, ordered by precedence.
//! - `state_machine.rs`: [`apply`], the engine (undo log, digest, cluster time), linked chains.
//! - `create_account.rs`, `create_transfer.rs`, `bets.rs`: where each event is validated and
//!   applied.
//! - `query.rs`: reads. `invariants.rs`: the whole-state checker.
//! - `store.rs`: the storage seam; `memory_store.rs` its in-memory implementation;
//!   `codec.rs` the byte encodings RocksDB stores.
//! - `digest.rs`: the state digest (an order-independent sum over the ledger's records) and the
//!   audit chain (SHA-256 links, each over the previous link, an entry's commands and the state
//!   digest after it). `audit.rs`: [`verify_audit`], which checks the chain link by link
//!   against the audit table (one record per applied entry) and the state.
//! - `conformance.rs`: the test suite every [`Store`] implementation must pass.
//!
//! This crate does no I/O and reads no clock: the same log gives the same state everywhere.

pub mod account;
pub mod audit;
pub mod bet;
mod bets;
pub mod codec;
pub mod command;
pub mod conformance;
mod create_account;
mod create_transfer;
pub mod digest;
pub mod invariants;
pub mod memory_store;
#[cfg(feature = "negative-control")]
pub mod negative_control;
pub mod query;
pub mod result;
pub mod state_machine;
pub mod store;
pub mod transfer;

pub use account::{Account, AccountFlags, Balances};
pub use audit::{audit_link_at, verify_audit, AuditReport};
pub use bet::{
    Bet, BetAction, BetActionKind, BetStatus, Market, MarketStatus, NewBet, NewMarket, Settlement,
    SettlementFlags, ODDS_SCALE,
};
pub use command::{
    ApplyCtx, Command, CommandRejection, CommandResults, EVENTS_PER_BATCH_MAX,
    EXPIRIES_PER_ENTRY_MAX, QUERY_RESULTS_MAX, SELECTIONS_PER_SETTLEMENT_MAX,
};
pub use invariants::{check_invariants, InvariantReport};
pub use memory_store::MemoryStore;
pub use query::AccountFilter;
pub use result::{
    AccountResult, BetActionResult, BetResult, MarketResult, SettlementResult, TransferResult,
};
pub use state_machine::{apply, apply_entry, apply_entry_reporting, read_meta};
pub use store::{AuditRecord, Key, Meta, Store, Table, Value};
pub use transfer::{PendingStatus, Transfer, TransferFlags};
