//! The storage seam: what the state machine reads and writes, as typed keys and values.
//!
//! `apply` sees the state only through [`Store`], a small key-value interface over typed
//! [`Key`]s and [`Value`]s. The in-memory [`crate::MemoryStore`] serves tests and simulation;
//! the server implements the same trait on RocksDB, one column family per [`Table`], with the
//! byte encodings of `codec.rs` (big-endian keys, so ordered scans follow the key order).
//! Both must pass `ledger_core::conformance`.
//!
//! Two tables are the state machine's own bookkeeping rather than ledger state, and stay out of
//! the state digest: [`Table::Meta`] (one [`Meta`] record: time, applied index, digest, head of
//! the audit chain) and [`Table::Audit`] (one [`AuditRecord`] per applied entry, by log index).

use serde::{Deserialize, Serialize};

use crate::account::{Account, Balances};
use crate::bet::{Bet, Market, Settlement};
use crate::transfer::{PendingStatus, Transfer};

/// A family of records; one RocksDB column family each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Accounts = 1,
    Transfers = 2,
    Pending = 3,
    Expiries = 4,
    Failures = 5,
    AccountEntries = 6,
    Markets = 7,
    Bets = 8,
    MarketBets = 9,
    Liabilities = 10,
    Settlements = 11,
    /// Bookkeeping of the state machine itself ([`Meta`]); not part of the digest.
    Meta = 12,
    /// One [`AuditRecord`] per applied log entry, by log index; not part of the digest.
    Audit = 13,
}

impl Table {
    /// Every table, in the order of their numbers.
    pub const ALL: [Table; 13] = [
        Table::Accounts,
        Table::Transfers,
        Table::Pending,
        Table::Expiries,
        Table::Failures,
        Table::AccountEntries,
        Table::Markets,
        Table::Bets,
        Table::MarketBets,
        Table::Liabilities,
        Table::Settlements,
        Table::Meta,
        Table::Audit,
    ];

    /// Returns the column family name of the table.
    pub const fn name(self) -> &'static str {
        match self {
            Table::Accounts => "accounts",
            Table::Transfers => "transfers",
            Table::Pending => "pending",
            Table::Expiries => "expiries",
            Table::Failures => "failures",
            Table::AccountEntries => "account_entries",
            Table::Markets => "markets",
            Table::Bets => "bets",
            Table::MarketBets => "market_bets",
            Table::Liabilities => "liabilities",
            Table::Settlements => "settlements",
            Table::Meta => "state_meta",
            Table::Audit => "audit",
        }
    }

    /// Returns true for tables read by range scans (ordered keys needed).
    pub const fn ordered(self) -> bool {
        matches!(
            self,
            Table::Accounts
                | Table::Expiries
                | Table::AccountEntries
                | Table::MarketBets
                | Table::Audit
        )
    }

    /// Returns the table numbered `n`, if there is one.
    pub fn from_u8(n: u8) -> Option<Table> {
        Table::ALL.iter().copied().find(|t| *t as u8 == n)
    }
}

/// The kind of object an id names, for the record of ids that failed transiently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ObjectKind {
    Transfer = 1,
    Market = 2,
    Bet = 3,
    Settlement = 4,
}

/// The key of a record. The derived order equals the order of the encoded keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Account(u128),
    Transfer(u128),
    /// The resolution state of a pending transfer, by the pending transfer's id.
    Pending(u128),
    /// A pending transfer with a timeout, ordered by the time it expires.
    Expiry {
        expires_at: u64,
        transfer_id: u128,
    },
    /// An id that failed with a transient result code.
    Failure {
        kind: ObjectKind,
        id: u128,
    },
    /// One change of an account's balances, in cluster time order.
    AccountEntry {
        account_id: u128,
        timestamp: u64,
    },
    Market(u128),
    Bet(u128),
    /// The bets of a market, in placement order.
    MarketBet {
        market_id: u128,
        timestamp: u64,
    },
    /// The house's exposure on one selection of a market.
    Liability {
        market_id: u128,
        selection_id: u64,
    },
    Settlement(u128),
    Meta,
    /// The audit record of the log entry at this index.
    Audit(u64),
}

impl Key {
    pub const fn table(&self) -> Table {
        match self {
            Key::Account(_) => Table::Accounts,
            Key::Transfer(_) => Table::Transfers,
            Key::Pending(_) => Table::Pending,
            Key::Expiry { .. } => Table::Expiries,
            Key::Failure { .. } => Table::Failures,
            Key::AccountEntry { .. } => Table::AccountEntries,
            Key::Market(_) => Table::Markets,
            Key::Bet(_) => Table::Bets,
            Key::MarketBet { .. } => Table::MarketBets,
            Key::Liability { .. } => Table::Liabilities,
            Key::Settlement(_) => Table::Settlements,
            Key::Meta => Table::Meta,
            Key::Audit(_) => Table::Audit,
        }
    }
}

/// Why an account entry was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryKind {
    /// A transfer touched the account.
    Transfer = 1,
    /// A pending transfer of the account expired and released its amount.
    Expiry = 2,
}

/// One change of an account: which transfer, and (for `history` accounts) the balances after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AccountEntry {
    pub transfer_id: u128,
    pub kind: EntryKind,
    pub balances: Option<Balances>,
}

/// Bookkeeping of the state machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Meta {
    /// The last cluster timestamp assigned; the next one is strictly greater.
    pub last_timestamp: u64,
    /// The log index of the last applied command.
    pub last_log_index: u64,
    /// Order-independent hash of every record outside [`Table::Meta`] and [`Table::Audit`]
    /// (see `digest.rs`).
    pub digest: u128,
    /// Head of the audit chain: the link of the last applied entry, all zeros before the first.
    /// Each link is SHA-256 over the previous link, the entry's log index and last timestamp,
    /// the state digest after it and the hash of its commands (see `digest::chain_next`); the
    /// link of every entry is kept in [`Table::Audit`].
    pub chain: [u8; 32],
}

/// What the audit table keeps of one applied log entry: enough to recompute its link from the
/// previous one, so the whole chain can be checked link by link (see `audit.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The entry's link of the audit chain (what [`Meta::chain`] held after the entry).
    pub link: [u8; 32],
    /// SHA-256 of the entry's commands (see `digest::entry_hash`).
    pub entry_hash: [u8; 32],
    /// The state digest after the entry.
    pub digest: u128,
    /// The last cluster timestamp assigned when the entry was applied.
    pub timestamp: u64,
}

/// The value of a record; the variant always matches the key's table.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    Account(Account),
    Transfer(Transfer),
    Pending(PendingStatus),
    Expiry,
    Failure(u32),
    AccountEntry(AccountEntry),
    Market(Market),
    Bet(Bet),
    MarketBet(u128),
    Liability(u128),
    Settlement(Settlement),
    Meta(Meta),
    Audit(AuditRecord),
}

impl Value {
    pub const fn table(&self) -> Table {
        match self {
            Value::Account(_) => Table::Accounts,
            Value::Transfer(_) => Table::Transfers,
            Value::Pending(_) => Table::Pending,
            Value::Expiry => Table::Expiries,
            Value::Failure(_) => Table::Failures,
            Value::AccountEntry(_) => Table::AccountEntries,
            Value::Market(_) => Table::Markets,
            Value::Bet(_) => Table::Bets,
            Value::MarketBet(_) => Table::MarketBets,
            Value::Liability(_) => Table::Liabilities,
            Value::Settlement(_) => Table::Settlements,
            Value::Meta(_) => Table::Meta,
            Value::Audit(_) => Table::Audit,
        }
    }
}

/// The state as the state machine sees it.
///
/// Reads must observe every earlier `put`/`delete` made through the same value (read your
/// writes). Implementations that fail to read (I/O, corruption) must not invent data: they
/// record the error, answer as best they can, and refuse to commit afterwards, which is the
/// job of the caller that owns the transaction (see the server's state machine adapter).
pub trait Store {
    fn get(&self, key: &Key) -> Option<Value>;
    fn put(&mut self, key: Key, value: Value);
    fn delete(&mut self, key: &Key);
    /// Returns records with `start <= key < end`, ascending (or descending when `reverse`), at
    /// most `limit`. Both bounds are in the same ordered table.
    fn scan(&self, start: &Key, end: &Key, reverse: bool, limit: usize) -> Vec<(Key, Value)>;
    /// Calls `f` for every record of `table`, in any order.
    fn for_each(&self, table: Table, f: &mut dyn FnMut(&Key, &Value));
}
