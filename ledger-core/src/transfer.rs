//! Transfers: the only way value moves between accounts.
//!
//! A transfer is immutable once created. A two-phase transfer is a `pending` transfer that
//! reserves amounts, later resolved by a `post_pending_transfer` (possibly partial) or a
//! `void_pending_transfer`, or expired by cluster time when its `timeout` passes. The state of
//! that resolution lives apart from the transfer, in a [`PendingStatus`].

use serde::{Deserialize, Serialize};

/// Flags of a transfer, a bit set. Unknown bits are rejected with `reserved_flag`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TransferFlags(pub u16);

impl TransferFlags {
    /// The next event in the batch belongs to the same all-or-nothing chain.
    pub const LINKED: Self = Self(1 << 0);
    /// Reserve the amount: it moves to the pending balances until posted, voided or expired.
    pub const PENDING: Self = Self(1 << 1);
    /// Post (part of) the pending transfer named by `pending_id`.
    pub const POST_PENDING_TRANSFER: Self = Self(1 << 2);
    /// Release the pending transfer named by `pending_id`.
    pub const VOID_PENDING_TRANSFER: Self = Self(1 << 3);
    /// Transfer at most `amount`, less if the debit account's flags would be violated.
    pub const BALANCING_DEBIT: Self = Self(1 << 4);
    /// Transfer at most `amount`, less if the credit account's flags would be violated.
    pub const BALANCING_CREDIT: Self = Self(1 << 5);
    /// Close the debit account; voiding this pending transfer reopens it.
    pub const CLOSING_DEBIT: Self = Self(1 << 6);
    /// Close the credit account; voiding this pending transfer reopens it.
    pub const CLOSING_CREDIT: Self = Self(1 << 7);

    pub const ALL: Self = Self(0xff);

    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub const fn has_reserved_bits(self) -> bool {
        self.0 & !Self::ALL.0 != 0
    }
}

/// A transfer as stored and as submitted. `timestamp` must be zero on creation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Transfer {
    pub id: u128,
    pub debit_account_id: u128,
    pub credit_account_id: u128,
    /// Minor units. For post/void, zero means "the pending amount".
    pub amount: u128,
    /// For post/void: the pending transfer being resolved.
    pub pending_id: u128,
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub user_data_32: u32,
    /// Seconds after which a pending transfer expires by cluster time; 0 means never.
    pub timeout: u32,
    pub ledger: u32,
    pub code: u16,
    pub flags: TransferFlags,
    pub timestamp: u64,
}

/// What became of a pending transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PendingStatus {
    Pending,
    Posted,
    Voided,
    Expired,
}

impl PendingStatus {
    pub fn as_u8(self) -> u8 {
        match self {
            PendingStatus::Pending => 1,
            PendingStatus::Posted => 2,
            PendingStatus::Voided => 3,
            PendingStatus::Expired => 4,
        }
    }
}

/// Nanoseconds in one second of `timeout`.
pub const NANOS_PER_SECOND: u64 = 1_000_000_000;
