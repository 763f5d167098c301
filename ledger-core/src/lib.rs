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
//!   `codec.rs` the byte encodings RocksDB stores; `digest.rs` the state digest and audit chain.
//! - `conformance.rs`: the test suite every [`Store`] implementation must pass.
//!
//! This crate does no I/O and reads no clock: the same log gives the same state everywhere.

pub mod account;
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
pub use bet::{
    Bet, BetAction, BetActionKind, BetStatus, Market, MarketStatus, NewBet, NewMarket, Settlement,
    SettlementFlags, ODDS_SCALE,
};
pub use command::{
    ApplyCtx, Command, CommandRejection, CommandResults, EVENTS_PER_BATCH_MAX, QUERY_RESULTS_MAX,
    SELECTIONS_PER_SETTLEMENT_MAX,
};
pub use invariants::{check_invariants, InvariantReport};
pub use memory_store::MemoryStore;
pub use query::AccountFilter;
pub use result::{
    AccountResult, BetActionResult, BetResult, MarketResult, SettlementResult, TransferResult,
};
pub use state_machine::{apply, apply_entry, read_meta};
pub use store::{Key, Meta, Store, Table, Value};
pub use transfer::{PendingStatus, Transfer, TransferFlags};
