//! Commands (what a client asks for) and their results (one code per event).
//!
//! A command is a batch of events of one kind. The whole batch is one Raft entry, applied
//! atomically by [`crate::apply`]; inside it, each event succeeds or fails on its own, except
//! events joined by the `linked` flag, which succeed or fail together.

use serde::{Deserialize, Serialize};

use crate::account::Account;
use crate::bet::{BetAction, NewBet, NewMarket, Settlement};
use crate::result::{
    AccountResult, BetActionResult, BetResult, MarketResult, SettlementResult, TransferResult,
};
use crate::transfer::Transfer;

/// Most events in one command (TigerBeetle's batch size for 1 MiB messages of 128-byte events).
pub const EVENTS_PER_BATCH_MAX: usize = 8189;
/// Most pending transfers one entry expires; the rest wait for later entries (a leader with a
/// backlog proposes empty entries to carry it: the expiry pulse). An entry's apply after a
/// jump of cluster time thus does bounded work.
pub const EXPIRIES_PER_ENTRY_MAX: usize = 1024;
/// Most selections named in one settlement (winners plus voids).
pub const SELECTIONS_PER_SETTLEMENT_MAX: usize = 256;
/// Most rows one query returns.
pub const QUERY_RESULTS_MAX: usize = 8189;

const _: () = assert!(QUERY_RESULTS_MAX <= EVENTS_PER_BATCH_MAX);

/// One write: a batch of events of one kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    CreateAccounts(Vec<Account>),
    CreateTransfers(Vec<Transfer>),
    CreateMarkets(Vec<NewMarket>),
    PlaceBets(Vec<NewBet>),
    /// Settlements and resettlements; each is atomic on its own.
    SettleMarkets(Vec<Settlement>),
    BetActions(Vec<BetAction>),
}

impl Command {
    /// Returns the number of events in the batch.
    pub fn len(&self) -> usize {
        match self {
            Command::CreateAccounts(v) => v.len(),
            Command::CreateTransfers(v) => v.len(),
            Command::CreateMarkets(v) => v.len(),
            Command::PlaceBets(v) => v.len(),
            Command::SettleMarkets(v) => v.len(),
            Command::BetActions(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the name of the operation, for logs and metrics.
    pub fn operation(&self) -> &'static str {
        match self {
            Command::CreateAccounts(_) => "create_accounts",
            Command::CreateTransfers(_) => "create_transfers",
            Command::CreateMarkets(_) => "create_markets",
            Command::PlaceBets(_) => "place_bets",
            Command::SettleMarkets(_) => "settle_markets",
            Command::BetActions(_) => "bet_actions",
        }
    }
}

/// The results of one command: one code per event, in event order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResults {
    CreateAccounts(Vec<AccountResult>),
    CreateTransfers(Vec<TransferResult>),
    CreateMarkets(Vec<MarketResult>),
    PlaceBets(Vec<BetResult>),
    SettleMarkets(Vec<SettlementResult>),
    BetActions(Vec<BetActionResult>),
    /// The command was rejected as a whole before any event ran (for example, too many events).
    Rejected(CommandRejection),
}

/// Why a whole command was refused without running any event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandRejection {
    /// More than [`EVENTS_PER_BATCH_MAX`] events.
    TooManyEvents,
}

/// The context the leader stamped on the entry. `apply` reads nothing else from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyCtx {
    /// The Raft log index of the entry, recorded for audit and stale-read reporting.
    pub log_index: u64,
    /// The leader's wall clock at proposal, in nanoseconds since the Unix epoch. Apply raises
    /// it to stay strictly above every timestamp already assigned, so cluster time never goes
    /// backwards even across leaders with skewed clocks.
    pub timestamp: u64,
}
