//! Accounts: the rows that hold balances.
//!
//! An account is created once and is immutable afterwards except for its four balances and its
//! `closed` flag. Balances only change through transfers (see `create_transfer.rs`), so every
//! balance is the fold of the transfers that touched the account.

use serde::{Deserialize, Serialize};

/// Flags of an account, a bit set. Unknown bits are rejected with `reserved_flag`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AccountFlags(pub u16);

impl AccountFlags {
    /// The next event in the batch belongs to the same all-or-nothing chain.
    pub const LINKED: Self = Self(1 << 0);
    /// `debits_pending + debits_posted` may never exceed `credits_posted`.
    pub const DEBITS_MUST_NOT_EXCEED_CREDITS: Self = Self(1 << 1);
    /// `credits_pending + credits_posted` may never exceed `debits_posted`.
    pub const CREDITS_MUST_NOT_EXCEED_DEBITS: Self = Self(1 << 2);
    /// Every balance change is recorded, so balances can be read as of a past timestamp.
    pub const HISTORY: Self = Self(1 << 3);
    /// No new transfer may touch the account; pending holds can still be posted or voided.
    pub const CLOSED: Self = Self(1 << 4);

    /// Every bit that has a meaning.
    pub const ALL: Self = Self(0b1_1111);

    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub const fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    pub const fn has_reserved_bits(self) -> bool {
        self.0 & !Self::ALL.0 != 0
    }
}

/// The four balances of an account, in minor units of its ledger.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Balances {
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
}

/// An account as stored and as submitted. On creation, balances and `timestamp` must be zero;
/// the cluster assigns the timestamp.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Account {
    pub id: u128,
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub user_data_32: u32,
    /// The currency or asset; transfers only move value between accounts of the same ledger.
    pub ledger: u32,
    /// The kind of account (player wallet, house, bonus, ...), chosen by the application.
    pub code: u16,
    pub flags: AccountFlags,
    /// Cluster time of creation, in nanoseconds; unique across all objects.
    pub timestamp: u64,
}

impl Account {
    pub fn balances(&self) -> Balances {
        Balances {
            debits_pending: self.debits_pending,
            debits_posted: self.debits_posted,
            credits_pending: self.credits_pending,
            credits_posted: self.credits_posted,
        }
    }

    /// Returns true when the balances respect the account's balance-limiting flags.
    pub fn within_limits(&self) -> bool {
        let debits_ok = !self
            .flags
            .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            || self
                .debits_pending
                .checked_add(self.debits_posted)
                .is_some_and(|debits| debits <= self.credits_posted);
        let credits_ok = !self
            .flags
            .contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
            || self
                .credits_pending
                .checked_add(self.credits_posted)
                .is_some_and(|credits| credits <= self.debits_posted);
        debits_ok && credits_ok
    }
}
