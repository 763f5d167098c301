//! Reads: lookups by id, an account's transfers and balance history, bets by market.
//!
//! Queries are pure functions over a [`Store`]; the server runs them on a consistent view after
//! the read index has been applied (linearizable) or on the local state (stale).

use serde::{Deserialize, Serialize};

use crate::account::{Account, AccountFlags, Balances};
use crate::bet::{Bet, Market, Settlement};
use crate::command::QUERY_RESULTS_MAX;
use crate::result::TransferResult;
use crate::store::{EntryKind, Key, ObjectKind, Store, Value};
use crate::transfer::{PendingStatus, Transfer};

/// Which of an account's changes to return. Zero in a bound or `code` means "any".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountFilter {
    pub account_id: u128,
    /// Inclusive lower bound on the cluster timestamp; 0 for none.
    pub timestamp_min: u64,
    /// Inclusive upper bound on the cluster timestamp; 0 for none.
    pub timestamp_max: u64,
    /// Only transfers with this code; 0 for all.
    pub code: u16,
    /// Most rows to return; 0 or anything above [`QUERY_RESULTS_MAX`] means the maximum.
    pub limit: u32,
    /// Newest first.
    pub reverse: bool,
    /// Include transfers where the account is debited. When neither this nor `credits` is
    /// set, both are included.
    pub debits: bool,
    /// Include transfers where the account is credited.
    pub credits: bool,
}

impl AccountFilter {
    fn limit(&self) -> usize {
        match self.limit as usize {
            0 => QUERY_RESULTS_MAX,
            n => n.min(QUERY_RESULTS_MAX),
        }
    }

    fn range(&self) -> (Key, Key) {
        let start = Key::AccountEntry {
            account_id: self.account_id,
            timestamp: self.timestamp_min,
        };
        let end = match self.timestamp_max {
            0 | u64::MAX => match self.account_id.checked_add(1) {
                Some(next) => Key::AccountEntry {
                    account_id: next,
                    timestamp: 0,
                },
                None => Key::AccountEntry {
                    account_id: u128::MAX,
                    timestamp: u64::MAX,
                },
            },
            max => Key::AccountEntry {
                account_id: self.account_id,
                timestamp: max + 1,
            },
        };
        (start, end)
    }
}

/// Balances of a `history` account right after a change at `timestamp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountBalance {
    pub timestamp: u64,
    pub transfer_id: u128,
    pub balances: Balances,
}

/// Returns the accounts that exist among `ids`, in the order asked.
pub fn lookup_accounts(store: &(impl Store + ?Sized), ids: &[u128]) -> Vec<Account> {
    lookup(store, ids, Key::Account, |v| match v {
        Value::Account(a) => Some(a),
        _ => None,
    })
}

pub fn lookup_transfers(store: &(impl Store + ?Sized), ids: &[u128]) -> Vec<Transfer> {
    lookup(store, ids, Key::Transfer, |v| match v {
        Value::Transfer(t) => Some(t),
        _ => None,
    })
}

pub fn lookup_markets(store: &(impl Store + ?Sized), ids: &[u128]) -> Vec<Market> {
    lookup(store, ids, Key::Market, |v| match v {
        Value::Market(m) => Some(m),
        _ => None,
    })
}

pub fn lookup_bets(store: &(impl Store + ?Sized), ids: &[u128]) -> Vec<Bet> {
    lookup(store, ids, Key::Bet, |v| match v {
        Value::Bet(b) => Some(b),
        _ => None,
    })
}

pub fn lookup_settlements(store: &(impl Store + ?Sized), ids: &[u128]) -> Vec<Settlement> {
    lookup(store, ids, Key::Settlement, |v| match v {
        Value::Settlement(s) => Some(s),
        _ => None,
    })
}

/// Returns accounts in id order, starting after `after_id`, at most `limit` (0: the maximum):
/// the pages of `ledgerctl account list`.
pub fn list_accounts(store: &(impl Store + ?Sized), after_id: u128, limit: u32) -> Vec<Account> {
    let limit = match limit as usize {
        0 => QUERY_RESULTS_MAX,
        n => n.min(QUERY_RESULTS_MAX),
    };
    let Some(first) = after_id.checked_add(1) else {
        return Vec::new();
    };
    store
        .scan(&Key::Account(first), &Key::Account(u128::MAX), false, limit)
        .into_iter()
        .filter_map(|(_, value)| match value {
            Value::Account(a) => Some(a),
            _ => None,
        })
        .collect()
}

/// Returns what became of a pending transfer, if `id` names one.
pub fn pending_status(store: &(impl Store + ?Sized), id: u128) -> Option<PendingStatus> {
    match store.get(&Key::Pending(id)) {
        Some(Value::Pending(status)) => Some(status),
        _ => None,
    }
}

/// What became of a transfer id: whether a transfer holds it, what became of it if it is
/// pending, and the transient result it failed with if it did (the id is then spent: every
/// later event with it gets `id_already_failed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferStatus {
    pub id: u128,
    pub exists: bool,
    pub pending: Option<PendingStatus>,
    pub failed: Option<TransferResult>,
}

/// The status of each transfer id, in order (at most [`QUERY_RESULTS_MAX`]): how a service
/// that lost its answers learns, in one call, which of its ids were applied, which failed for
/// good, and which were never seen (safe to submit again).
pub fn transfer_statuses(store: &(impl Store + ?Sized), ids: &[u128]) -> Vec<TransferStatus> {
    ids.iter()
        .take(QUERY_RESULTS_MAX)
        .map(|&id| TransferStatus {
            id,
            exists: matches!(store.get(&Key::Transfer(id)), Some(Value::Transfer(_))),
            pending: pending_status(store, id),
            failed: match store.get(&Key::Failure {
                kind: ObjectKind::Transfer,
                id,
            }) {
                Some(Value::Failure(code)) => TransferResult::from_code(code),
                _ => None,
            },
        })
        .collect()
}

fn lookup<T>(
    store: &(impl Store + ?Sized),
    ids: &[u128],
    key: fn(u128) -> Key,
    unwrap: fn(Value) -> Option<T>,
) -> Vec<T> {
    ids.iter()
        .take(QUERY_RESULTS_MAX)
        .filter_map(|id| store.get(&key(*id)).and_then(unwrap))
        .collect()
}

/// Returns the transfers that touched the account, filtered, in cluster time order.
pub fn get_account_transfers(
    store: &(impl Store + ?Sized),
    filter: &AccountFilter,
) -> Vec<Transfer> {
    let both = !filter.debits && !filter.credits;
    let wanted = |t: &Transfer| {
        (filter.code == 0 || t.code == filter.code)
            && (both
                || (filter.debits && t.debit_account_id == filter.account_id)
                || (filter.credits && t.credit_account_id == filter.account_id))
    };
    let (start, end) = filter.range();
    let limit = filter.limit();
    let mut out = Vec::new();
    // Entries are scanned in pages because filtered-out rows do not count towards the limit.
    let mut cursor = (start, end);
    loop {
        let page = store.scan(&cursor.0, &cursor.1, filter.reverse, limit);
        let exhausted = page.len() < limit;
        for (_, value) in &page {
            let Value::AccountEntry(entry) = value else {
                continue;
            };
            if entry.kind != EntryKind::Transfer {
                continue;
            }
            if let Some(Value::Transfer(t)) = store.get(&Key::Transfer(entry.transfer_id)) {
                if wanted(&t) {
                    out.push(t);
                    if out.len() == limit {
                        return out;
                    }
                }
            }
        }
        match page.last() {
            Some((Key::AccountEntry { timestamp, .. }, _)) if !exhausted => {
                cursor = if filter.reverse {
                    (
                        cursor.0,
                        Key::AccountEntry {
                            account_id: filter.account_id,
                            timestamp: *timestamp,
                        },
                    )
                } else {
                    (
                        Key::AccountEntry {
                            account_id: filter.account_id,
                            timestamp: timestamp + 1,
                        },
                        cursor.1,
                    )
                };
            }
            _ => return out,
        }
    }
}

/// Returns the balance history of a `history` account (empty for other accounts): one row per
/// change (transfers and expiries), filtered by time, limit and order only; `code`, `debits`
/// and `credits` do not apply to balance rows.
pub fn get_account_balances(
    store: &(impl Store + ?Sized),
    filter: &AccountFilter,
) -> Vec<AccountBalance> {
    match store.get(&Key::Account(filter.account_id)) {
        Some(Value::Account(a)) if a.flags.contains(AccountFlags::HISTORY) => {}
        _ => return Vec::new(),
    }
    let (start, end) = filter.range();
    store
        .scan(&start, &end, filter.reverse, filter.limit())
        .into_iter()
        .filter_map(|(key, value)| match (key, value) {
            (Key::AccountEntry { timestamp, .. }, Value::AccountEntry(entry)) => {
                entry.balances.map(|balances| AccountBalance {
                    timestamp,
                    transfer_id: entry.transfer_id,
                    balances,
                })
            }
            _ => None,
        })
        .collect()
}

/// Returns the balances of a `history` account as of `timestamp` (after every change at or
/// before it), or `None` if the account has no history or did not exist yet.
pub fn balances_at(
    store: &(impl Store + ?Sized),
    account_id: u128,
    timestamp: u64,
) -> Option<Balances> {
    let filter = AccountFilter {
        account_id,
        timestamp_max: timestamp,
        limit: 1,
        reverse: true,
        ..AccountFilter::default()
    };
    match store.get(&Key::Account(account_id)) {
        Some(Value::Account(a)) if a.flags.contains(AccountFlags::HISTORY) => {
            if a.timestamp > timestamp {
                return None;
            }
        }
        _ => return None,
    }
    Some(
        get_account_balances(store, &filter)
            .first()
            .map(|row| row.balances)
            .unwrap_or_default(),
    )
}

/// Returns the bets of a market in placement order, starting after `timestamp_after`.
pub fn get_market_bets(
    store: &(impl Store + ?Sized),
    market_id: u128,
    timestamp_after: u64,
    limit: u32,
) -> Vec<Bet> {
    let limit = match limit as usize {
        0 => QUERY_RESULTS_MAX,
        n => n.min(QUERY_RESULTS_MAX),
    };
    let Some(first) = timestamp_after.checked_add(1) else {
        return Vec::new();
    };
    let start = Key::MarketBet {
        market_id,
        timestamp: first,
    };
    let end = Key::MarketBet {
        market_id,
        timestamp: u64::MAX,
    };
    store
        .scan(&start, &end, false, limit)
        .into_iter()
        .filter_map(|(_, value)| match value {
            Value::MarketBet(id) => match store.get(&Key::Bet(id)) {
                Some(Value::Bet(b)) => Some(b),
                _ => None,
            },
            _ => None,
        })
        .collect()
}
