//! Every account result code, each produced by the smallest event that should produce it.

mod common;

use std::collections::BTreeSet;

use common::*;
use ledger_core::*;

#[test]
fn every_account_result_code_is_produced() {
    use AccountResult as R;
    let mut seen = BTreeSet::new();
    let mut l = Ledger::new();
    let base = acct(1, AccountFlags::default());
    let mut check = |l: &mut Ledger, accounts: Vec<Account>, expected: Vec<R>| {
        let before = l.digest();
        let got = l.accounts(accounts.clone());
        assert_eq!(got, expected, "for {accounts:?}");
        if !got.contains(&R::Created) {
            assert_eq!(l.digest(), before, "a rejected batch changed the state");
        }
        seen.extend(got);
    };
    check(
        &mut l,
        vec![Account {
            timestamp: 1,
            ..base
        }],
        vec![R::TimestampMustBeZero],
    );
    check(
        &mut l,
        vec![Account {
            flags: AccountFlags(1 << 9),
            ..base
        }],
        vec![R::ReservedFlag],
    );
    check(
        &mut l,
        vec![Account { id: 0, ..base }],
        vec![R::IdMustNotBeZero],
    );
    check(
        &mut l,
        vec![Account {
            id: u128::MAX,
            ..base
        }],
        vec![R::IdMustNotBeIntMax],
    );
    let both = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
        .union(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS);
    check(
        &mut l,
        vec![Account {
            flags: both,
            ..base
        }],
        vec![R::FlagsAreMutuallyExclusive],
    );
    check(
        &mut l,
        vec![Account {
            debits_pending: 1,
            ..base
        }],
        vec![R::DebitsPendingMustBeZero],
    );
    check(
        &mut l,
        vec![Account {
            debits_posted: 1,
            ..base
        }],
        vec![R::DebitsPostedMustBeZero],
    );
    check(
        &mut l,
        vec![Account {
            credits_pending: 1,
            ..base
        }],
        vec![R::CreditsPendingMustBeZero],
    );
    check(
        &mut l,
        vec![Account {
            credits_posted: 1,
            ..base
        }],
        vec![R::CreditsPostedMustBeZero],
    );
    check(
        &mut l,
        vec![Account { ledger: 0, ..base }],
        vec![R::LedgerMustNotBeZero],
    );
    check(
        &mut l,
        vec![Account { code: 0, ..base }],
        vec![R::CodeMustNotBeZero],
    );
    check(&mut l, vec![base], vec![R::Created]);
    check(&mut l, vec![base], vec![R::Exists]);
    check(
        &mut l,
        vec![Account {
            flags: AccountFlags::HISTORY,
            ..base
        }],
        vec![R::ExistsWithDifferentFlags],
    );
    check(
        &mut l,
        vec![Account {
            user_data_128: 1,
            ..base
        }],
        vec![R::ExistsWithDifferentUserData128],
    );
    check(
        &mut l,
        vec![Account {
            user_data_64: 1,
            ..base
        }],
        vec![R::ExistsWithDifferentUserData64],
    );
    check(
        &mut l,
        vec![Account {
            user_data_32: 1,
            ..base
        }],
        vec![R::ExistsWithDifferentUserData32],
    );
    check(
        &mut l,
        vec![Account { ledger: 2, ..base }],
        vec![R::ExistsWithDifferentLedger],
    );
    check(
        &mut l,
        vec![Account { code: 2, ..base }],
        vec![R::ExistsWithDifferentCode],
    );
    // A chain with a bad member creates nothing; an unterminated chain creates nothing.
    let linked = |id| acct(id, AccountFlags::LINKED);
    check(
        &mut l,
        vec![
            linked(2),
            Account {
                code: 0,
                ..acct(3, AccountFlags::default())
            },
        ],
        vec![R::LinkedEventFailed, R::CodeMustNotBeZero],
    );
    assert!(query::lookup_accounts(&l.store, &[2]).is_empty());
    check(
        &mut l,
        vec![linked(2), linked(3)],
        vec![R::LinkedEventFailed, R::LinkedEventChainOpen],
    );
    assert!(query::lookup_accounts(&l.store, &[2, 3]).is_empty());
    check(
        &mut l,
        vec![linked(2), acct(3, AccountFlags::default())],
        vec![R::Created, R::Created],
    );

    let missing: Vec<_> = R::ALL.iter().filter(|c| !seen.contains(c)).collect();
    assert!(missing.is_empty(), "codes never produced: {missing:?}");
}

#[test]
fn result_codes_are_numbered_in_precedence_order() {
    fn check<T: Copy + Ord + std::fmt::Debug>(all: &[T], code: impl Fn(T) -> u32) {
        for (i, c) in all.iter().enumerate() {
            assert_eq!(code(*c), i as u32, "{c:?} is out of order");
        }
    }
    check(AccountResult::ALL, AccountResult::code);
    check(TransferResult::ALL, TransferResult::code);
    check(MarketResult::ALL, MarketResult::code);
    check(BetResult::ALL, BetResult::code);
    check(BetActionResult::ALL, BetActionResult::code);
    check(SettlementResult::ALL, SettlementResult::code);
    for code in TransferResult::ALL {
        assert_eq!(TransferResult::from_code(code.code()), Some(*code));
    }
    assert_eq!(TransferResult::from_code(9999), None);
    assert_eq!(TransferResult::ExceedsCredits.name(), "exceeds_credits");
    assert!(TransferResult::ExceedsCredits.transient());
    assert!(!TransferResult::Exists.transient());
}

#[test]
fn accounts_are_listed_in_id_order_by_pages() {
    let mut l = Ledger::new();
    let ids = [7u128, 3, 11, 5, 9];
    let created = l.accounts(
        ids.iter()
            .map(|id| acct(*id, AccountFlags::default()))
            .collect(),
    );
    assert!(created.iter().all(|r| *r == AccountResult::Created));
    let page = |after: u128, limit: u32| -> Vec<u128> {
        query::list_accounts(&l.store, after, limit)
            .iter()
            .map(|a| a.id)
            .collect()
    };
    assert_eq!(page(0, 0), vec![3, 5, 7, 9, 11]);
    assert_eq!(page(0, 2), vec![3, 5]);
    assert_eq!(page(5, 2), vec![7, 9]);
    assert_eq!(page(11, 0), Vec::<u128>::new());
    assert_eq!(page(u128::MAX, 0), Vec::<u128>::new());
}
