//! Markets, bets and settlements: betting as first-class ledger objects.
//!
//! A bet never moves value by itself; every change of money it causes is an ordinary transfer
//! with an id derived from the bet (see [`bet_transfer_id`]), so balances stay the fold of
//! transfers and the history of a bet can be read in the history of its accounts:
//!
//! - placing holds the stake: a pending transfer player -> house;
//! - a won bet posts the hold and pays `potential_payout` house -> player;
//! - a lost bet posts the hold;
//! - a void bet (single or by settlement) voids the hold;
//! - a cash-out posts the hold and pays the agreed amount house -> player;
//! - a resettlement pays the difference between the old and the new outcome in one
//!   compensating transfer, so history is never rewritten.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

/// Odds are fixed-point decimal odds in 1/10000ths: 2.5 is 25_000.
pub const ODDS_SCALE: u64 = 10_000;

/// A market submitted for creation. Its ledger is the house account's ledger.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NewMarket {
    pub id: u128,
    pub house_account_id: u128,
    /// Upper bound of the house's worst-case net loss on any one selection of this market.
    pub liability_limit: u128,
    pub user_data_128: u128,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MarketStatus {
    Open,
    Settled,
}

/// A market as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Market {
    pub id: u128,
    pub house_account_id: u128,
    pub ledger: u32,
    pub liability_limit: u128,
    pub user_data_128: u128,
    pub status: MarketStatus,
    /// The settlement currently in force (the latest resettlement, if any); 0 while open.
    pub settlement_id: u128,
    pub timestamp: u64,
}

/// A bet submitted for placement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NewBet {
    pub id: u128,
    pub player_account_id: u128,
    pub market_id: u128,
    pub selection_id: u64,
    /// Minor units held from the player until the bet is settled.
    pub stake: u128,
    /// Decimal odds in 1/[`ODDS_SCALE`]ths; must be greater than 1.0.
    pub odds: u64,
    /// The `code` given to every transfer this bet causes.
    pub code: u16,
    pub user_data_128: u128,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BetStatus {
    Open,
    Won,
    Lost,
    Void,
    CashedOut,
}

impl BetStatus {
    pub fn as_u8(self) -> u8 {
        match self {
            BetStatus::Open => 1,
            BetStatus::Won => 2,
            BetStatus::Lost => 3,
            BetStatus::Void => 4,
            BetStatus::CashedOut => 5,
        }
    }
}

/// A bet as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Bet {
    pub id: u128,
    pub player_account_id: u128,
    pub house_account_id: u128,
    pub market_id: u128,
    pub selection_id: u64,
    pub stake: u128,
    pub odds: u64,
    /// `stake * odds / ODDS_SCALE`, rounded down: what a win pays back, stake included.
    pub potential_payout: u128,
    pub ledger: u32,
    pub code: u16,
    pub user_data_128: u128,
    pub status: BetStatus,
    /// The settlement that last decided this bet; 0 if none.
    pub settlement_id: u128,
    /// The amount paid on cash-out; 0 otherwise.
    pub cash_out_amount: u128,
    /// Cluster time of placement.
    pub timestamp: u64,
    /// Cluster time of the last status change; 0 while open.
    pub settled_timestamp: u64,
}

impl Bet {
    /// What the player has received from the house, net of the stake, under a final status.
    /// Positive means the house paid the player. Defined for settled statuses only.
    pub fn net_to_player(&self, status: BetStatus) -> i128 {
        let stake = self.stake as i128;
        match status {
            BetStatus::Won => self.potential_payout as i128 - stake,
            BetStatus::Lost => -stake,
            BetStatus::Void | BetStatus::Open => 0,
            BetStatus::CashedOut => self.cash_out_amount as i128 - stake,
        }
    }
}

/// Flags of a settlement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SettlementFlags(pub u16);

impl SettlementFlags {
    /// Correct an earlier settlement of the market with compensating transfers.
    pub const RESETTLE: Self = Self(1 << 0);
    /// Void every bet of the market, whatever the selection lists say.
    pub const VOID_MARKET: Self = Self(1 << 1);

    pub const ALL: Self = Self(0b11);

    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn has_reserved_bits(self) -> bool {
        self.0 & !Self::ALL.0 != 0
    }
}

/// The result of a market, applied to all its open bets at once (or, with `RESETTLE`, to all
/// bets decided by the previous settlement). Selections in neither list lose.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Settlement {
    pub id: u128,
    pub market_id: u128,
    pub winning_selection_ids: Vec<u64>,
    pub void_selection_ids: Vec<u64>,
    pub flags: SettlementFlags,
    /// Assigned by the cluster; must be zero when submitted.
    pub timestamp: u64,
}

impl Settlement {
    /// Returns the status a bet on `selection_id` gets under this settlement.
    pub fn outcome(&self, selection_id: u64) -> BetStatus {
        if self.flags.contains(SettlementFlags::VOID_MARKET)
            || self.void_selection_ids.contains(&selection_id)
        {
            BetStatus::Void
        } else if self.winning_selection_ids.contains(&selection_id) {
            BetStatus::Won
        } else {
            BetStatus::Lost
        }
    }

    /// Returns true when `other` asks for the same result of the same market.
    pub fn same_result(&self, other: &Settlement) -> bool {
        let sorted = |v: &[u64]| {
            let mut v = v.to_vec();
            v.sort_unstable();
            v
        };
        self.flags == other.flags
            && sorted(&self.winning_selection_ids) == sorted(&other.winning_selection_ids)
            && sorted(&self.void_selection_ids) == sorted(&other.void_selection_ids)
    }
}

/// What can be done to a single open bet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BetActionKind {
    /// Release the stake; nobody wins.
    Void,
    /// Post the stake and pay `amount` to the player now.
    CashOut,
}

/// An action on one bet, idempotent per bet: repeating it returns `exists`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BetAction {
    pub bet_id: u128,
    pub kind: BetActionKind,
    /// For `CashOut`: what the house pays the player, stake included. Zero for `Void`.
    pub amount: u128,
}

/// The role of a transfer caused by a bet; part of the derived transfer id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BetTransferKind {
    Hold = 1,
    PostHold = 2,
    VoidHold = 3,
    Payout = 4,
    CashOut = 5,
    Compensation = 6,
}

/// Returns the id of the transfer a bet causes. Ids are derived by hashing so that every
/// replica computes the same ones; `scope` is the settlement id for compensations, 0 otherwise.
/// An id that collides with an existing transfer makes the bet operation fail with
/// `transfer_id_conflict` instead of touching the other transfer.
pub fn bet_transfer_id(bet_id: u128, kind: BetTransferKind, scope: u128) -> u128 {
    let mut hasher = Xxh3::with_seed(0x6c65_6467_6572_6265); // "ledgerbe"
    hasher.update(b"ledger.bet.transfer");
    hasher.update(&bet_id.to_le_bytes());
    hasher.update(&[kind as u8]);
    hasher.update(&scope.to_le_bytes());
    let id = hasher.digest128();
    // 0 and u128::MAX are reserved ids; map them to a valid one, deterministically.
    if id == 0 || id == u128::MAX {
        1
    } else {
        id
    }
}
