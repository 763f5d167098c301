//! Where a transfer is validated and applied: plain, pending (two-phase), post, void,
//! balancing and closing transfers, and the expiry of pending transfers by cluster time.
//!
//! Checks run in the order of the numbered [`TransferResult`] codes, so the first failing
//! check is the code reported. Nothing is written until every check has passed; then the two
//! accounts, the transfer, its pending status and the accounts' entries are written together.

use crate::account::{Account, AccountFlags};
use crate::bet::{bet_transfer_id, BetTransferKind};
use crate::command::EXPIRIES_PER_ENTRY_MAX;
use crate::result::TransferResult;
use crate::state_machine::Engine;
use crate::store::{EntryKind, Key, Store, Value};
use crate::transfer::{PendingStatus, Transfer, TransferFlags, NANOS_PER_SECOND};

type R = TransferResult;

impl<S: Store> Engine<'_, S> {
    pub(crate) fn create_transfers(&mut self, transfers: &[Transfer]) -> Vec<TransferResult> {
        self.run_linked(
            transfers,
            |t| t.flags.contains(TransferFlags::LINKED),
            Self::create_transfer,
        )
    }

    /// Validates and applies one transfer. Also used for the transfers that bets cause.
    pub(crate) fn create_transfer(&mut self, t: &Transfer) -> TransferResult {
        if let Err(code) = validate_fields(t) {
            return code;
        }
        if let Some(existing) = self.transfer(t.id) {
            #[cfg(feature = "negative-control")]
            if crate::negative_control::skipping_idempotency()
                && !is_post_or_void(t.flags)
                && compare_existing(t, &existing) == R::Exists
            {
                return self.create_new(t);
            }
            return compare_existing(t, &existing);
        }
        if self.failed(crate::store::ObjectKind::Transfer, t.id) {
            return R::IdAlreadyFailed;
        }
        if is_post_or_void(t.flags) {
            self.resolve_pending(t)
        } else {
            self.create_new(t)
        }
    }

    fn create_new(&mut self, t: &Transfer) -> TransferResult {
        let Some(mut dr) = self.account(t.debit_account_id) else {
            return R::DebitAccountNotFound;
        };
        let Some(mut cr) = self.account(t.credit_account_id) else {
            return R::CreditAccountNotFound;
        };
        if dr.ledger != cr.ledger {
            return R::AccountsMustHaveTheSameLedger;
        }
        if t.ledger != dr.ledger {
            return R::TransferMustHaveTheSameLedgerAsAccounts;
        }
        if dr.flags.contains(AccountFlags::CLOSED) {
            return R::DebitAccountAlreadyClosed;
        }
        if cr.flags.contains(AccountFlags::CLOSED) {
            return R::CreditAccountAlreadyClosed;
        }

        let mut amount = t.amount;
        if t.flags.contains(TransferFlags::BALANCING_DEBIT) {
            let debits = dr.debits_posted.saturating_add(dr.debits_pending);
            amount = amount.min(dr.credits_posted.saturating_sub(debits));
        }
        if t.flags.contains(TransferFlags::BALANCING_CREDIT) {
            let credits = cr.credits_posted.saturating_add(cr.credits_pending);
            amount = amount.min(cr.debits_posted.saturating_sub(credits));
        }

        let pending = t.flags.contains(TransferFlags::PENDING);
        if pending {
            if dr.debits_pending.checked_add(amount).is_none() {
                return R::OverflowsDebitsPending;
            }
            if cr.credits_pending.checked_add(amount).is_none() {
                return R::OverflowsCreditsPending;
            }
        } else {
            if dr.debits_posted.checked_add(amount).is_none() {
                return R::OverflowsDebitsPosted;
            }
            if cr.credits_posted.checked_add(amount).is_none() {
                return R::OverflowsCreditsPosted;
            }
        }
        let debits = dr.debits_pending.checked_add(dr.debits_posted);
        if debits.and_then(|d| d.checked_add(amount)).is_none() {
            return R::OverflowsDebits;
        }
        let credits = cr.credits_pending.checked_add(cr.credits_posted);
        if credits.and_then(|c| c.checked_add(amount)).is_none() {
            return R::OverflowsCredits;
        }
        let timestamp = self.now();
        let expires_at = if pending && t.timeout > 0 {
            let timeout_ns = u64::from(t.timeout) * NANOS_PER_SECOND;
            match timestamp.checked_add(timeout_ns) {
                Some(at) => Some(at),
                None => return R::OverflowsTimeout,
            }
        } else {
            None
        };
        if dr
            .flags
            .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && dr.debits_pending + dr.debits_posted + amount > dr.credits_posted
        {
            return R::ExceedsCredits;
        }
        if cr
            .flags
            .contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
            && cr.credits_pending + cr.credits_posted + amount > cr.debits_posted
        {
            return R::ExceedsDebits;
        }

        // Every check passed: write.
        let timestamp = self.next_timestamp();
        if pending {
            dr.debits_pending += amount;
            cr.credits_pending += amount;
        } else {
            dr.debits_posted += amount;
            cr.credits_posted += amount;
        }
        if t.flags.contains(TransferFlags::CLOSING_DEBIT) {
            dr.flags = dr.flags.union(AccountFlags::CLOSED);
        }
        if t.flags.contains(TransferFlags::CLOSING_CREDIT) {
            cr.flags = cr.flags.union(AccountFlags::CLOSED);
        }
        let transfer = Transfer {
            amount,
            flags: strip_linked(t.flags),
            timestamp,
            ..*t
        };
        self.put_transfer_and_accounts(&transfer, &dr, &cr, EntryKind::Transfer, timestamp);
        if pending {
            self.put(Key::Pending(t.id), Value::Pending(PendingStatus::Pending));
            if let Some(expires_at) = expires_at {
                self.put(
                    Key::Expiry {
                        expires_at,
                        transfer_id: t.id,
                    },
                    Value::Expiry,
                );
            }
        }
        R::Created
    }

    fn resolve_pending(&mut self, t: &Transfer) -> TransferResult {
        let post = t.flags.contains(TransferFlags::POST_PENDING_TRANSFER);
        let Some(p) = self.transfer(t.pending_id) else {
            return R::PendingTransferNotFound;
        };
        if !p.flags.contains(TransferFlags::PENDING) {
            return R::PendingTransferNotPending;
        }
        // A bet's stake is released or taken by settling, voiding or cashing out the bet, so
        // that the bet's status and its hold never disagree.
        if !self.in_bet_operation && is_bet_hold(&p) {
            return R::PendingTransferOwnedByBet;
        }
        if t.debit_account_id != 0 && t.debit_account_id != p.debit_account_id {
            return R::PendingTransferHasDifferentDebitAccountId;
        }
        if t.credit_account_id != 0 && t.credit_account_id != p.credit_account_id {
            return R::PendingTransferHasDifferentCreditAccountId;
        }
        if t.ledger != 0 && t.ledger != p.ledger {
            return R::PendingTransferHasDifferentLedger;
        }
        if t.code != 0 && t.code != p.code {
            return R::PendingTransferHasDifferentCode;
        }
        let amount = if post {
            if t.amount > p.amount {
                return R::ExceedsPendingTransferAmount;
            }
            if t.amount == 0 {
                p.amount
            } else {
                t.amount
            }
        } else {
            if t.amount != 0 && t.amount != p.amount {
                return R::PendingTransferHasDifferentAmount;
            }
            p.amount
        };
        match self.pending_status(p.id) {
            Some(PendingStatus::Pending) if self.is_due(&p) => return R::PendingTransferExpired,
            Some(PendingStatus::Pending) => {}
            Some(PendingStatus::Posted) => return R::PendingTransferAlreadyPosted,
            Some(PendingStatus::Voided) => return R::PendingTransferAlreadyVoided,
            Some(PendingStatus::Expired) => return R::PendingTransferExpired,
            None => panic!("pending transfer {} has no status", p.id),
        }
        let mut dr = self
            .account(p.debit_account_id)
            .expect("pending debit account");
        let mut cr = self
            .account(p.credit_account_id)
            .expect("pending credit account");
        if post {
            if dr.debits_posted.checked_add(amount).is_none() {
                return R::OverflowsDebitsPosted;
            }
            if cr.credits_posted.checked_add(amount).is_none() {
                return R::OverflowsCreditsPosted;
            }
        }

        // Every check passed: write. Posting or voiding never raises debits or credits in
        // total, so no balance-limiting flag can be violated by it.
        let timestamp = self.next_timestamp();
        dr.debits_pending -= p.amount;
        cr.credits_pending -= p.amount;
        if post {
            dr.debits_posted += amount;
            cr.credits_posted += amount;
        } else {
            reopen_if_closing(&p, &mut dr, &mut cr);
        }
        let transfer = Transfer {
            debit_account_id: p.debit_account_id,
            credit_account_id: p.credit_account_id,
            amount,
            ledger: p.ledger,
            code: p.code,
            flags: strip_linked(t.flags),
            timestamp,
            ..*t
        };
        self.put_transfer_and_accounts(&transfer, &dr, &cr, EntryKind::Transfer, timestamp);
        let status = if post {
            PendingStatus::Posted
        } else {
            PendingStatus::Voided
        };
        self.put(Key::Pending(p.id), Value::Pending(status));
        self.delete_expiry(&p);
        R::Created
    }

    /// Expires the pending transfers whose timeout has passed at the current cluster time, in
    /// (expiry time, id) order, releasing their pending amounts: at most
    /// [`EXPIRIES_PER_ENTRY_MAX`] per entry, so that one entry after a jump of cluster time
    /// (or a day of idle holds) does bounded work. The rest are carried to later entries; one
    /// still waiting keeps its amounts reserved but can be neither posted nor voided
    /// ([`Engine::is_due`]). Returns whether due expiries remain.
    pub(crate) fn expire_pending(&mut self) -> bool {
        let now = self.now();
        let due = self.store_scan_expiries(now, EXPIRIES_PER_ENTRY_MAX + 1);
        let more = due.len() > EXPIRIES_PER_ENTRY_MAX;
        for transfer_id in due.into_iter().take(EXPIRIES_PER_ENTRY_MAX) {
            let p = self
                .transfer(transfer_id)
                .expect("expiring transfer exists");
            self.expire(p);
        }
        more
    }

    /// Whether pending transfer `p`'s timeout has passed by cluster time (it may still wait
    /// for its turn in [`Engine::expire_pending`]).
    fn is_due(&self, p: &Transfer) -> bool {
        p.timeout > 0 && p.timestamp + u64::from(p.timeout) * NANOS_PER_SECOND <= self.now()
    }

    /// Releases pending transfer `p`'s amounts and marks it expired.
    fn expire(&mut self, p: Transfer) {
        assert_eq!(self.pending_status(p.id), Some(PendingStatus::Pending));
        let mut dr = self
            .account(p.debit_account_id)
            .expect("pending debit account");
        let mut cr = self
            .account(p.credit_account_id)
            .expect("pending credit account");
        dr.debits_pending -= p.amount;
        cr.credits_pending -= p.amount;
        reopen_if_closing(&p, &mut dr, &mut cr);
        let timestamp = self.next_timestamp();
        self.put_account(&dr);
        self.put_account(&cr);
        self.record_entry(&dr, p.id, EntryKind::Expiry, timestamp);
        self.record_entry(&cr, p.id, EntryKind::Expiry, timestamp);
        self.put(Key::Pending(p.id), Value::Pending(PendingStatus::Expired));
        self.delete_expiry(&p);
    }

    fn store_scan_expiries(&self, now: u64, limit: usize) -> Vec<u128> {
        let start = Key::Expiry {
            expires_at: 0,
            transfer_id: 0,
        };
        let end = match now.checked_add(1) {
            Some(after) => Key::Expiry {
                expires_at: after,
                transfer_id: 0,
            },
            None => Key::Expiry {
                expires_at: u64::MAX,
                transfer_id: u128::MAX,
            },
        };
        self.scan(&start, &end, false, limit)
            .into_iter()
            .map(|(key, _)| match key {
                Key::Expiry { transfer_id, .. } => transfer_id,
                other => panic!("expiry scan returned {other:?}"),
            })
            .collect()
    }

    fn delete_expiry(&mut self, p: &Transfer) {
        if p.timeout > 0 {
            let expires_at = p.timestamp + u64::from(p.timeout) * NANOS_PER_SECOND;
            self.delete(&Key::Expiry {
                expires_at,
                transfer_id: p.id,
            });
        }
    }

    fn put_transfer_and_accounts(
        &mut self,
        transfer: &Transfer,
        dr: &Account,
        cr: &Account,
        kind: EntryKind,
        timestamp: u64,
    ) {
        self.put_account(dr);
        self.put_account(cr);
        self.put(Key::Transfer(transfer.id), Value::Transfer(*transfer));
        self.record_entry(dr, transfer.id, kind, timestamp);
        self.record_entry(cr, transfer.id, kind, timestamp);
    }
}

/// Returns true when `p` is the stake hold of the bet named in its `user_data_128`.
fn is_bet_hold(p: &Transfer) -> bool {
    p.user_data_128 != 0 && bet_transfer_id(p.user_data_128, BetTransferKind::Hold, 0) == p.id
}

fn is_post_or_void(flags: TransferFlags) -> bool {
    flags.intersects(
        TransferFlags::POST_PENDING_TRANSFER.union(TransferFlags::VOID_PENDING_TRANSFER),
    )
}

fn strip_linked(flags: TransferFlags) -> TransferFlags {
    TransferFlags(flags.0 & !TransferFlags::LINKED.0)
}

fn reopen_if_closing(p: &Transfer, dr: &mut Account, cr: &mut Account) {
    if p.flags.contains(TransferFlags::CLOSING_DEBIT) {
        dr.flags = dr.flags.difference(AccountFlags::CLOSED);
    }
    if p.flags.contains(TransferFlags::CLOSING_CREDIT) {
        cr.flags = cr.flags.difference(AccountFlags::CLOSED);
    }
}

/// The checks that need nothing but the event itself.
fn validate_fields(t: &Transfer) -> Result<(), TransferResult> {
    let f = t.flags;
    if t.timestamp != 0 {
        return Err(R::TimestampMustBeZero);
    }
    if f.has_reserved_bits() {
        return Err(R::ReservedFlag);
    }
    if t.id == 0 {
        return Err(R::IdMustNotBeZero);
    }
    if t.id == u128::MAX {
        return Err(R::IdMustNotBeIntMax);
    }
    let phases = [
        TransferFlags::PENDING,
        TransferFlags::POST_PENDING_TRANSFER,
        TransferFlags::VOID_PENDING_TRANSFER,
    ]
    .iter()
    .filter(|flag| f.contains(**flag))
    .count();
    let balancing = TransferFlags::BALANCING_DEBIT.union(TransferFlags::BALANCING_CREDIT);
    let closing = TransferFlags::CLOSING_DEBIT.union(TransferFlags::CLOSING_CREDIT);
    if phases > 1 || (is_post_or_void(f) && f.intersects(balancing.union(closing))) {
        return Err(R::FlagsAreMutuallyExclusive);
    }
    if is_post_or_void(f) {
        if t.pending_id == 0 {
            return Err(R::PendingIdMustNotBeZero);
        }
        if t.pending_id == u128::MAX {
            return Err(R::PendingIdMustNotBeIntMax);
        }
        if t.pending_id == t.id {
            return Err(R::PendingIdMustBeDifferent);
        }
        if t.timeout != 0 {
            return Err(R::TimeoutReservedForPendingTransfer);
        }
        return Ok(());
    }
    if t.debit_account_id == 0 {
        return Err(R::DebitAccountIdMustNotBeZero);
    }
    if t.debit_account_id == u128::MAX {
        return Err(R::DebitAccountIdMustNotBeIntMax);
    }
    if t.credit_account_id == 0 {
        return Err(R::CreditAccountIdMustNotBeZero);
    }
    if t.credit_account_id == u128::MAX {
        return Err(R::CreditAccountIdMustNotBeIntMax);
    }
    if t.debit_account_id == t.credit_account_id {
        return Err(R::AccountsMustBeDifferent);
    }
    if t.pending_id != 0 {
        return Err(R::PendingIdMustBeZero);
    }
    let pending = f.contains(TransferFlags::PENDING);
    if t.timeout != 0 && !pending {
        return Err(R::TimeoutReservedForPendingTransfer);
    }
    if f.intersects(closing) && !pending {
        return Err(R::ClosingTransferMustBePending);
    }
    if t.amount == 0 && !f.intersects(closing) {
        return Err(R::AmountMustNotBeZero);
    }
    if t.ledger == 0 {
        return Err(R::LedgerMustNotBeZero);
    }
    if t.code == 0 {
        return Err(R::CodeMustNotBeZero);
    }
    Ok(())
}

/// The result for a transfer whose id exists already: `exists` only if it asks for the same.
fn compare_existing(t: &Transfer, e: &Transfer) -> TransferResult {
    if strip_linked(t.flags) != e.flags {
        return R::ExistsWithDifferentFlags;
    }
    if t.pending_id != e.pending_id {
        return R::ExistsWithDifferentPendingId;
    }
    if t.timeout != e.timeout {
        return R::ExistsWithDifferentTimeout;
    }
    let resolving = is_post_or_void(t.flags);
    // Post and void may leave accounts, ledger, code and amount zero ("as the pending one").
    let differs = |given: u128, stored: u128| !(resolving && given == 0) && given != stored;
    if differs(t.debit_account_id, e.debit_account_id) {
        return R::ExistsWithDifferentDebitAccountId;
    }
    if differs(t.credit_account_id, e.credit_account_id) {
        return R::ExistsWithDifferentCreditAccountId;
    }
    let balancing = t
        .flags
        .intersects(TransferFlags::BALANCING_DEBIT.union(TransferFlags::BALANCING_CREDIT));
    // A balancing transfer's amount is a cap: what was moved may be less.
    let amount_differs = if balancing {
        t.amount < e.amount
    } else {
        differs(t.amount, e.amount)
    };
    if amount_differs {
        return R::ExistsWithDifferentAmount;
    }
    if t.user_data_128 != e.user_data_128 {
        return R::ExistsWithDifferentUserData128;
    }
    if t.user_data_64 != e.user_data_64 {
        return R::ExistsWithDifferentUserData64;
    }
    if t.user_data_32 != e.user_data_32 {
        return R::ExistsWithDifferentUserData32;
    }
    if differs(u128::from(t.ledger), u128::from(e.ledger)) {
        return R::ExistsWithDifferentLedger;
    }
    if differs(u128::from(t.code), u128::from(e.code)) {
        return R::ExistsWithDifferentCode;
    }
    R::Exists
}
