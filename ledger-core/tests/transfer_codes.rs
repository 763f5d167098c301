//! Every transfer result code, each produced by the smallest event that should produce it,
//! and the behaviour of two-phase, balancing, closing and linked transfers.

mod common;

use std::collections::BTreeSet;

use common::*;
use ledger_core::*;

type R = TransferResult;

/// Accounts: 1 unlimited, 2 debits limited, 3 credits limited, 4 on ledger 2, 5 and 6 spare.
fn ledger() -> Ledger {
    let mut l = Ledger::new();
    let mut other_ledger = acct(4, AccountFlags::default());
    other_ledger.ledger = 2;
    l.accounts(vec![
        acct(1, AccountFlags::default()),
        acct(2, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
        acct(3, AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS),
        other_ledger,
        acct(5, AccountFlags::HISTORY),
        acct(6, AccountFlags::default()),
    ]);
    l
}

struct Seen(BTreeSet<R>);

impl Seen {
    /// Submits `t` and expects `code`; a rejection must leave the state as it was, except for
    /// the record of a transiently failed id.
    fn check(&mut self, l: &mut Ledger, t: Transfer, code: R) {
        let before = l.digest();
        let got = l.transfer(t);
        assert_eq!(got, code, "for {t:?}");
        if !matches!(got, R::Created) && !got.transient() {
            assert_eq!(l.digest(), before, "rejected {t:?} changed the state");
        }
        self.0.insert(got);
    }
}

#[test]
fn every_transfer_result_code_is_produced() {
    let mut seen = Seen(BTreeSet::new());
    let mut l = ledger();
    let t = xfer(100, 1, 6, 10);
    seen.check(
        &mut l,
        Transfer { timestamp: 1, ..t },
        R::TimestampMustBeZero,
    );
    seen.check(
        &mut l,
        Transfer {
            flags: TransferFlags(1 << 12),
            ..t
        },
        R::ReservedFlag,
    );
    seen.check(&mut l, Transfer { id: 0, ..t }, R::IdMustNotBeZero);
    seen.check(
        &mut l,
        Transfer { id: u128::MAX, ..t },
        R::IdMustNotBeIntMax,
    );
    let both = TransferFlags::PENDING.union(TransferFlags::VOID_PENDING_TRANSFER);
    seen.check(
        &mut l,
        Transfer { flags: both, ..t },
        R::FlagsAreMutuallyExclusive,
    );
    seen.check(
        &mut l,
        Transfer {
            debit_account_id: 0,
            ..t
        },
        R::DebitAccountIdMustNotBeZero,
    );
    seen.check(
        &mut l,
        Transfer {
            debit_account_id: u128::MAX,
            ..t
        },
        R::DebitAccountIdMustNotBeIntMax,
    );
    seen.check(
        &mut l,
        Transfer {
            credit_account_id: 0,
            ..t
        },
        R::CreditAccountIdMustNotBeZero,
    );
    seen.check(
        &mut l,
        Transfer {
            credit_account_id: u128::MAX,
            ..t
        },
        R::CreditAccountIdMustNotBeIntMax,
    );
    seen.check(
        &mut l,
        Transfer {
            credit_account_id: 1,
            ..t
        },
        R::AccountsMustBeDifferent,
    );
    seen.check(
        &mut l,
        Transfer { pending_id: 5, ..t },
        R::PendingIdMustBeZero,
    );
    seen.check(&mut l, post(100, 0, 0), R::PendingIdMustNotBeZero);
    seen.check(&mut l, post(100, u128::MAX, 0), R::PendingIdMustNotBeIntMax);
    seen.check(&mut l, post(100, 100, 0), R::PendingIdMustBeDifferent);
    seen.check(
        &mut l,
        Transfer { timeout: 5, ..t },
        R::TimeoutReservedForPendingTransfer,
    );
    seen.check(
        &mut l,
        Transfer {
            flags: TransferFlags::CLOSING_DEBIT,
            ..t
        },
        R::ClosingTransferMustBePending,
    );
    seen.check(&mut l, Transfer { amount: 0, ..t }, R::AmountMustNotBeZero);
    seen.check(&mut l, Transfer { ledger: 0, ..t }, R::LedgerMustNotBeZero);
    seen.check(&mut l, Transfer { code: 0, ..t }, R::CodeMustNotBeZero);

    // Unknown accounts are transient failures: the id stays failed even once they exist.
    seen.check(&mut l, xfer(101, 77, 6, 10), R::DebitAccountNotFound);
    seen.check(&mut l, xfer(102, 1, 77, 10), R::CreditAccountNotFound);
    seen.check(&mut l, xfer(101, 1, 6, 10), R::IdAlreadyFailed);
    seen.check(
        &mut l,
        xfer(103, 1, 4, 10),
        R::AccountsMustHaveTheSameLedger,
    );
    seen.check(
        &mut l,
        Transfer {
            ledger: 2,
            ..xfer(103, 1, 6, 10)
        },
        R::TransferMustHaveTheSameLedgerAsAccounts,
    );
    seen.check(&mut l, xfer(104, 2, 6, 10), R::ExceedsCredits);
    seen.check(&mut l, xfer(105, 1, 3, 10), R::ExceedsDebits);

    // Created, then every way of resubmitting the same id differently.
    seen.check(&mut l, t, R::Created);
    seen.check(&mut l, t, R::Exists);
    seen.check(&mut l, linked(t), R::LinkedEventChainOpen);
    seen.check(
        &mut l,
        Transfer {
            flags: TransferFlags::PENDING,
            ..t
        },
        R::ExistsWithDifferentFlags,
    );
    seen.check(
        &mut l,
        Transfer {
            debit_account_id: 5,
            ..t
        },
        R::ExistsWithDifferentDebitAccountId,
    );
    seen.check(
        &mut l,
        Transfer {
            credit_account_id: 5,
            ..t
        },
        R::ExistsWithDifferentCreditAccountId,
    );
    seen.check(
        &mut l,
        Transfer { amount: 11, ..t },
        R::ExistsWithDifferentAmount,
    );
    seen.check(
        &mut l,
        Transfer {
            user_data_128: 1,
            ..t
        },
        R::ExistsWithDifferentUserData128,
    );
    seen.check(
        &mut l,
        Transfer {
            user_data_64: 1,
            ..t
        },
        R::ExistsWithDifferentUserData64,
    );
    seen.check(
        &mut l,
        Transfer {
            user_data_32: 1,
            ..t
        },
        R::ExistsWithDifferentUserData32,
    );
    seen.check(
        &mut l,
        Transfer { code: 9, ..t },
        R::ExistsWithDifferentCode,
    );

    // Two-phase transfers.
    seen.check(&mut l, pending(200, 1, 6, 50, 0), R::Created);
    seen.check(
        &mut l,
        Transfer {
            timeout: 9,
            ..pending(200, 1, 6, 50, 0)
        },
        R::ExistsWithDifferentTimeout,
    );
    seen.check(
        &mut l,
        Transfer {
            ledger: 7,
            ..pending(200, 1, 6, 50, 0)
        },
        R::ExistsWithDifferentLedger,
    );
    seen.check(&mut l, post(201, 999, 0), R::PendingTransferNotFound);
    seen.check(&mut l, post(202, 100, 0), R::PendingTransferNotPending);
    seen.check(
        &mut l,
        Transfer {
            debit_account_id: 5,
            ..post(203, 200, 0)
        },
        R::PendingTransferHasDifferentDebitAccountId,
    );
    seen.check(
        &mut l,
        Transfer {
            credit_account_id: 5,
            ..post(203, 200, 0)
        },
        R::PendingTransferHasDifferentCreditAccountId,
    );
    seen.check(
        &mut l,
        Transfer {
            ledger: 2,
            ..post(203, 200, 0)
        },
        R::PendingTransferHasDifferentLedger,
    );
    seen.check(
        &mut l,
        Transfer {
            code: 2,
            ..post(203, 200, 0)
        },
        R::PendingTransferHasDifferentCode,
    );
    seen.check(&mut l, post(203, 200, 51), R::ExceedsPendingTransferAmount);
    seen.check(
        &mut l,
        Transfer {
            amount: 3,
            ..void(203, 200)
        },
        R::PendingTransferHasDifferentAmount,
    );
    seen.check(&mut l, post(203, 200, 20), R::Created);
    seen.check(&mut l, post(203, 200, 21), R::ExistsWithDifferentAmount);
    seen.check(&mut l, post(203, 999, 20), R::ExistsWithDifferentPendingId);
    seen.check(&mut l, post(204, 200, 0), R::PendingTransferAlreadyPosted);
    seen.check(&mut l, pending(210, 1, 6, 50, 0), R::Created);
    seen.check(&mut l, void(211, 210), R::Created);
    seen.check(&mut l, void(212, 210), R::PendingTransferAlreadyVoided);
    seen.check(&mut l, pending(220, 1, 6, 50, 1), R::Created);
    l.advance_seconds(2);
    // An empty command moves cluster time on: the expiry happens there, not in the check.
    assert!(l.transfers(vec![]).is_empty());
    seen.check(&mut l, post(221, 220, 0), R::PendingTransferExpired);
    let huge = u64::MAX - 1_000_000;
    l.now = huge;
    seen.check(
        &mut l,
        pending(230, 1, 6, 50, u32::MAX),
        R::OverflowsTimeout,
    );

    // Closed accounts.
    let closing = Transfer {
        flags: TransferFlags::PENDING.union(TransferFlags::CLOSING_CREDIT),
        amount: 0,
        ..xfer(300, 1, 5, 0)
    };
    seen.check(&mut l, closing, R::Created);
    seen.check(&mut l, xfer(301, 1, 5, 1), R::CreditAccountAlreadyClosed);
    seen.check(&mut l, xfer(302, 5, 1, 1), R::DebitAccountAlreadyClosed);

    // Overflows, on fresh accounts so the sums are easy to follow.
    let mut o = ledger();
    let max = u128::MAX;
    seen.check(&mut o, pending(1, 1, 6, max, 0), R::Created);
    seen.check(&mut o, pending(2, 1, 5, 1, 0), R::OverflowsDebitsPending);
    seen.check(&mut o, pending(3, 5, 6, 1, 0), R::OverflowsCreditsPending);
    seen.check(&mut o, xfer(4, 1, 5, 1), R::OverflowsDebits);
    seen.check(&mut o, xfer(5, 5, 6, 1), R::OverflowsCredits);
    let mut p = ledger();
    seen.check(&mut p, xfer(1, 1, 6, max), R::Created);
    seen.check(&mut p, xfer(2, 1, 5, 1), R::OverflowsDebitsPosted);
    seen.check(&mut p, xfer(3, 5, 6, 1), R::OverflowsCreditsPosted);

    // A bet's stake hold belongs to the bet: only settling, voiding or cashing out moves it.
    let house_market = NewMarket {
        id: 1,
        house_account_id: 6,
        liability_limit: 1_000_000,
        user_data_128: 0,
    };
    assert_eq!(l.market(house_market), MarketResult::Created);
    let stake = NewBet {
        id: 1,
        player_account_id: 1,
        market_id: 1,
        selection_id: 1,
        stake: 10,
        odds: 20_000,
        code: 1,
        user_data_128: 0,
    };
    assert_eq!(l.bet(stake), BetResult::Created);
    let hold = ledger_core::bet::bet_transfer_id(1, ledger_core::bet::BetTransferKind::Hold, 0);
    seen.check(&mut l, void(400, hold), R::PendingTransferOwnedByBet);

    // A chain whose second member fails leaves nothing of the first.
    let mut c = ledger();
    let got = c.transfers(vec![linked(xfer(1, 1, 6, 5)), xfer(2, 2, 6, 5)]);
    assert_eq!(got, vec![R::LinkedEventFailed, R::ExceedsCredits]);
    seen.0.extend(got);
    assert_eq!(c.account(1).debits_posted, 0);

    let missing: Vec<_> = R::ALL.iter().filter(|c| !seen.0.contains(c)).collect();
    assert!(missing.is_empty(), "codes never produced: {missing:?}");
}

#[test]
fn two_phase_transfer_moves_pending_then_posted() {
    let mut l = ledger();
    l.fund(1, 1, 2, 100);
    assert_eq!(l.transfer(pending(10, 2, 6, 80, 0)), R::Created);
    assert_eq!(l.account(2).debits_pending, 80);
    // The hold counts against the limit.
    assert_eq!(l.transfer(xfer(11, 2, 6, 30)), R::ExceedsCredits);
    assert_eq!(l.transfer(post(12, 10, 50)), R::Created);
    let a = l.account(2);
    assert_eq!((a.debits_pending, a.debits_posted), (0, 50));
    assert_eq!(l.account(6).credits_posted, 50);
    assert_eq!(
        query::pending_status(&l.store, 10),
        Some(PendingStatus::Posted)
    );
    let stored = query::lookup_transfers(&l.store, &[12])[0];
    assert_eq!(
        (stored.amount, stored.debit_account_id, stored.ledger),
        (50, 2, 1)
    );
}

#[test]
fn pending_transfer_expires_by_cluster_time_and_releases_the_hold() {
    let mut l = ledger();
    l.fund(1, 1, 2, 100);
    assert_eq!(l.transfer(pending(10, 2, 6, 100, 3)), R::Created);
    l.advance_seconds(2);
    assert_eq!(l.transfer(xfer(11, 2, 6, 1)), R::ExceedsCredits);
    l.advance_seconds(2);
    // Any command advances the state machine's clock; the expiry happens before it runs.
    assert_eq!(l.transfer(xfer(12, 2, 6, 1)), R::Created);
    assert_eq!(
        query::pending_status(&l.store, 10),
        Some(PendingStatus::Expired)
    );
    assert_eq!(l.account(2).debits_pending, 0);
    assert_eq!(l.transfer(void(13, 10)), R::PendingTransferExpired);
}

#[test]
fn balancing_transfer_moves_at_most_the_available_balance() {
    let mut l = ledger();
    l.fund(1, 1, 2, 70);
    let t = Transfer {
        flags: TransferFlags::BALANCING_DEBIT,
        ..xfer(2, 2, 6, 100)
    };
    assert_eq!(l.transfer(t), R::Created);
    assert_eq!(query::lookup_transfers(&l.store, &[2])[0].amount, 70);
    assert_eq!(l.account(2).debits_posted, 70);
    // Resubmitting with the same cap is `exists`, even though less was moved.
    assert_eq!(l.transfer(t), R::Exists);
}

#[test]
fn voiding_a_closing_transfer_reopens_the_account() {
    let mut l = ledger();
    let close = Transfer {
        flags: TransferFlags::PENDING.union(TransferFlags::CLOSING_DEBIT),
        ..xfer(1, 6, 1, 0)
    };
    assert_eq!(l.transfer(close), R::Created);
    assert!(l.account(6).flags.contains(AccountFlags::CLOSED));
    assert_eq!(l.transfer(xfer(2, 6, 1, 5)), R::DebitAccountAlreadyClosed);
    assert_eq!(l.transfer(void(3, 1)), R::Created);
    assert!(!l.account(6).flags.contains(AccountFlags::CLOSED));
    assert_eq!(l.transfer(xfer(4, 6, 1, 5)), R::Created);
}

#[test]
fn rejected_whole_command_changes_nothing() {
    let mut l = ledger();
    let before = l.digest();
    let too_many = vec![xfer(1, 1, 6, 1); EVENTS_PER_BATCH_MAX + 1];
    assert_eq!(
        l.run(Command::CreateTransfers(too_many)),
        CommandResults::Rejected(CommandRejection::TooManyEvents)
    );
    assert_eq!(l.digest(), before);
}

#[test]
fn account_history_and_balances_as_of_a_timestamp() {
    let mut l = ledger();
    for (i, amount) in [10u128, 20, 30].into_iter().enumerate() {
        assert_eq!(
            l.transfer(Transfer {
                code: i as u16 + 1,
                ..xfer(i as u128 + 1, 1, 5, amount)
            }),
            R::Created
        );
    }
    let all = query::get_account_transfers(
        &l.store,
        &AccountFilter {
            account_id: 5,
            ..Default::default()
        },
    );
    assert_eq!(all.iter().map(|t| t.id).collect::<Vec<_>>(), vec![1, 2, 3]);
    let newest = query::get_account_transfers(
        &l.store,
        &AccountFilter {
            account_id: 5,
            reverse: true,
            limit: 2,
            ..Default::default()
        },
    );
    assert_eq!(newest.iter().map(|t| t.id).collect::<Vec<_>>(), vec![3, 2]);
    let coded = query::get_account_transfers(
        &l.store,
        &AccountFilter {
            account_id: 5,
            code: 2,
            ..Default::default()
        },
    );
    assert_eq!(coded.iter().map(|t| t.id).collect::<Vec<_>>(), vec![2]);
    let debits_only = query::get_account_transfers(
        &l.store,
        &AccountFilter {
            account_id: 5,
            debits: true,
            ..Default::default()
        },
    );
    assert!(debits_only.is_empty());
    let t2 = all[1].timestamp;
    let window = query::get_account_transfers(
        &l.store,
        &AccountFilter {
            account_id: 5,
            timestamp_min: t2,
            timestamp_max: t2,
            ..Default::default()
        },
    );
    assert_eq!(window.iter().map(|t| t.id).collect::<Vec<_>>(), vec![2]);
    let at = query::balances_at(&l.store, 5, t2).expect("history account");
    assert_eq!(at.credits_posted, 30);
    assert_eq!(
        query::balances_at(&l.store, 5, t2 - 1)
            .unwrap()
            .credits_posted,
        10
    );
    // Without the history flag there is no balance history.
    assert_eq!(query::balances_at(&l.store, 6, t2), None);
    let rows = query::get_account_balances(
        &l.store,
        &AccountFilter {
            account_id: 5,
            ..Default::default()
        },
    );
    assert_eq!(
        rows.iter()
            .map(|r| r.balances.credits_posted)
            .collect::<Vec<_>>(),
        vec![10, 30, 60]
    );
}

#[test]
fn cluster_time_never_goes_backwards() {
    let mut l = ledger();
    l.now = 1_800_000_000_000_000_000;
    assert_eq!(l.transfer(xfer(1, 1, 6, 1)), R::Created);
    let first = query::lookup_transfers(&l.store, &[1])[0].timestamp;
    // A new leader whose clock is an hour behind.
    l.now -= 3_600_000_000_000;
    assert_eq!(l.transfer(xfer(2, 1, 6, 1)), R::Created);
    let second = query::lookup_transfers(&l.store, &[2])[0].timestamp;
    assert!(second > first);
}

/// After a jump of cluster time, one entry expires at most `EXPIRIES_PER_ENTRY_MAX` holds; the
/// rest wait for later entries, and a due hold that waits can be neither posted nor voided.
#[test]
fn expiries_are_bounded_per_entry_and_a_waiting_due_hold_cannot_be_posted() {
    let mut l = ledger();
    let holds = EXPIRIES_PER_ENTRY_MAX as u128 * 2 + 10;
    l.fund(1, 1, 2, holds);
    let pendings: Vec<Transfer> = (0..holds).map(|i| pending(1_000 + i, 2, 6, 1, 1)).collect();
    for chunk in pendings.chunks(EVENTS_PER_BATCH_MAX) {
        assert!(l.transfers(chunk.to_vec()).iter().all(|r| *r == R::Created));
    }
    assert_eq!(l.account(2).debits_pending, holds);
    l.advance_seconds(2);
    let expired = |l: &Ledger| {
        (0..holds)
            .filter(|i| query::pending_status(&l.store, 1_000 + i) == Some(PendingStatus::Expired))
            .count()
    };
    // One entry (with a command unrelated to the holds) expires the first batch only.
    assert_eq!(l.transfer(xfer(900_001, 1, 6, 1)), R::Created);
    assert_eq!(expired(&l), EXPIRIES_PER_ENTRY_MAX);
    // The last hold is due but waits for its turn: it can be neither posted nor voided.
    let last = 1_000 + holds - 1;
    assert_eq!(
        l.transfer(post(900_002, last, 1)),
        R::PendingTransferExpired
    );
    assert_eq!(l.transfer(void(900_003, last)), R::PendingTransferExpired);
    // Later entries carry the rest; the books balance throughout.
    l.run(Command::CreateTransfers(Vec::new()));
    l.run(Command::CreateTransfers(Vec::new()));
    assert_eq!(expired(&l) as u128, holds);
    assert_eq!(l.account(2).debits_pending, 0);
}
