//! The ledger's invariants, checked over a whole state: what `apply` promises, verified
//! independently of the code that keeps it.
//!
//! - Per ledger, debits equal credits, pending and posted separately (double entry).
//! - Every account respects its balance-limiting flags.
//! - Every balance equals the fold of the transfers that touched the account.
//! - Every open bet's stake is held by a pending transfer, and each selection's liability is the
//!   sum of the exposures of its open bets.
//! - The running digest in [`crate::Meta`] equals the digest recomputed from every record.
//!
//! Used by the property tests and by the server's `Verify` admin call (`ledgerctl verify`).
//! The audit chain is checked separately, by [`crate::verify_audit`] (`audit.rs`).

use std::collections::BTreeMap;

use crate::account::{Account, Balances};
use crate::bet::{bet_transfer_id, BetStatus, BetTransferKind};
use crate::digest::full_digest;
use crate::state_machine::read_meta;
use crate::store::{Key, Store, Table, Value};
use crate::transfer::{PendingStatus, Transfer, TransferFlags};

/// What a successful check saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InvariantReport {
    pub accounts: u64,
    pub transfers: u64,
    pub bets: u64,
    /// Per ledger: the sums of the four balances over all its accounts, modulo 2^128.
    pub ledgers: BTreeMap<u32, Balances>,
    pub digest: u128,
}

/// Checks every invariant; returns what it saw, or every violation found.
pub fn check_invariants(store: &(impl Store + ?Sized)) -> Result<InvariantReport, Vec<String>> {
    let mut violations = Vec::new();
    let mut report = InvariantReport::default();

    let mut accounts: BTreeMap<u128, Account> = BTreeMap::new();
    store.for_each(Table::Accounts, &mut |_, value| {
        if let Value::Account(a) = value {
            accounts.insert(a.id, *a);
        }
    });
    let mut folded: BTreeMap<u128, Balances> = BTreeMap::new();
    let mut transfers: Vec<Transfer> = Vec::new();
    store.for_each(Table::Transfers, &mut |_, value| {
        if let Value::Transfer(t) = value {
            transfers.push(*t);
        }
    });
    for t in &transfers {
        report.transfers += 1;
        let flags = t.flags;
        let (pending, posted) = if flags.contains(TransferFlags::PENDING) {
            match store.get(&Key::Pending(t.id)) {
                Some(Value::Pending(PendingStatus::Pending)) => (t.amount, 0),
                Some(Value::Pending(_)) => (0, 0),
                _ => {
                    violations.push(format!("pending transfer {} has no status", t.id));
                    (0, 0)
                }
            }
        } else if flags.contains(TransferFlags::VOID_PENDING_TRANSFER) {
            (0, 0)
        } else {
            (0, t.amount)
        };
        // Wrapping: a damaged state must be reported, not crash the checker.
        let dr = folded.entry(t.debit_account_id).or_default();
        dr.debits_pending = dr.debits_pending.wrapping_add(pending);
        dr.debits_posted = dr.debits_posted.wrapping_add(posted);
        let cr = folded.entry(t.credit_account_id).or_default();
        cr.credits_pending = cr.credits_pending.wrapping_add(pending);
        cr.credits_posted = cr.credits_posted.wrapping_add(posted);
    }

    for (id, a) in &accounts {
        report.accounts += 1;
        if !a.within_limits() {
            violations.push(format!("account {id} violates its flags: {a:?}"));
        }
        let expected = folded.remove(id).unwrap_or_default();
        if a.balances() != expected {
            violations.push(format!(
                "account {id} balances {:?} differ from the fold of its transfers {:?}",
                a.balances(),
                expected
            ));
        }
        // Totals over many accounts may pass u128::MAX; equality modulo 2^128 still catches
        // any amount created or destroyed below that size.
        let sums = report.ledgers.entry(a.ledger).or_default();
        sums.debits_pending = sums.debits_pending.wrapping_add(a.debits_pending);
        sums.debits_posted = sums.debits_posted.wrapping_add(a.debits_posted);
        sums.credits_pending = sums.credits_pending.wrapping_add(a.credits_pending);
        sums.credits_posted = sums.credits_posted.wrapping_add(a.credits_posted);
    }
    for id in folded.keys() {
        violations.push(format!(
            "transfers touch account {id}, which does not exist"
        ));
    }
    for (ledger, sums) in &report.ledgers {
        if sums.debits_pending != sums.credits_pending {
            violations.push(format!(
                "ledger {ledger}: debits_pending {} != credits_pending {}",
                sums.debits_pending, sums.credits_pending
            ));
        }
        if sums.debits_posted != sums.credits_posted {
            violations.push(format!(
                "ledger {ledger}: debits_posted {} != credits_posted {}",
                sums.debits_posted, sums.credits_posted
            ));
        }
    }

    let mut liabilities: BTreeMap<(u128, u64), u128> = BTreeMap::new();
    let mut bets = Vec::new();
    store.for_each(Table::Bets, &mut |_, value| {
        if let Value::Bet(b) = value {
            bets.push(*b);
        }
    });
    for bet in &bets {
        report.bets += 1;
        let hold = bet_transfer_id(bet.id, BetTransferKind::Hold, 0);
        let hold_status = match store.get(&Key::Pending(hold)) {
            Some(Value::Pending(status)) => Some(status),
            _ => None,
        };
        // A bet decided by a settlement may have been resettled since, so its hold is posted
        // or voided as the first settlement left it.
        let allowed: &[PendingStatus] = match bet.status {
            BetStatus::Open => &[PendingStatus::Pending],
            _ if bet.settlement_id != 0 => &[PendingStatus::Posted, PendingStatus::Voided],
            BetStatus::Void => &[PendingStatus::Voided],
            _ => &[PendingStatus::Posted],
        };
        if !hold_status.is_some_and(|s| allowed.contains(&s)) {
            violations.push(format!(
                "bet {} is {:?} but its hold is {:?}",
                bet.id, bet.status, hold_status
            ));
        }
        if bet.status == BetStatus::Open {
            *liabilities
                .entry((bet.market_id, bet.selection_id))
                .or_default() += bet.potential_payout - bet.stake;
        }
    }
    let mut stored_liabilities = BTreeMap::new();
    store.for_each(Table::Liabilities, &mut |key, value| {
        if let (
            Key::Liability {
                market_id,
                selection_id,
            },
            Value::Liability(amount),
        ) = (key, value)
        {
            stored_liabilities.insert((*market_id, *selection_id), *amount);
        }
    });
    liabilities.retain(|_, amount| *amount != 0);
    if liabilities != stored_liabilities {
        violations.push(format!(
            "liabilities {stored_liabilities:?} differ from open bets' exposure {liabilities:?}"
        ));
    }

    report.digest = full_digest(store);
    let meta = read_meta(store);
    if meta.digest != report.digest {
        violations.push(format!(
            "running digest {:032x} differs from the recomputed {:032x}",
            meta.digest, report.digest
        ));
    }

    if violations.is_empty() {
        Ok(report)
    } else {
        Err(violations)
    }
}
