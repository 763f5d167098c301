//! Markets, bets, bet actions and settlements: every result code, and the money each
//! outcome moves.

mod common;

use std::collections::BTreeSet;

use common::*;
use ledger_core::bet::{bet_transfer_id, BetTransferKind};
use ledger_core::*;

fn close_account(l: &mut Ledger, transfer_id: u128, account: u128) {
    let close = Transfer {
        flags: TransferFlags::PENDING.union(TransferFlags::CLOSING_DEBIT),
        ..xfer(transfer_id, account, 1, 0)
    };
    assert_eq!(l.transfer(close), TransferResult::Created);
}

fn balance(l: &Ledger, id: u128) -> i128 {
    let a = l.account(id);
    a.credits_posted as i128 - a.debits_posted as i128
}

#[test]
fn every_market_result_code_is_produced() {
    use MarketResult as R;
    let mut l = betting_ledger();
    l.accounts(vec![acct(5, AccountFlags::default())]);
    close_account(&mut l, 950, 5);
    let m = market(200);
    let mut seen = BTreeSet::new();
    for (market, expected) in [
        (NewMarket { id: 0, ..m }, R::IdMustNotBeZero),
        (NewMarket { id: u128::MAX, ..m }, R::IdMustNotBeIntMax),
        (
            NewMarket {
                house_account_id: 0,
                ..m
            },
            R::HouseAccountIdMustNotBeZero,
        ),
        (
            NewMarket {
                house_account_id: u128::MAX,
                ..m
            },
            R::HouseAccountIdMustNotBeIntMax,
        ),
        (
            NewMarket {
                liability_limit: 0,
                ..m
            },
            R::LiabilityLimitMustNotBeZero,
        ),
        (
            NewMarket {
                house_account_id: 77,
                ..m
            },
            R::HouseAccountNotFound,
        ),
        (m, R::IdAlreadyFailed),
        (
            NewMarket {
                id: 201,
                house_account_id: 5,
                ..m
            },
            R::HouseAccountAlreadyClosed,
        ),
        (market(100), R::Exists),
        (
            NewMarket {
                house_account_id: 3,
                ..market(100)
            },
            R::ExistsWithDifferentHouseAccountId,
        ),
        (
            NewMarket {
                liability_limit: 1,
                ..market(100)
            },
            R::ExistsWithDifferentLiabilityLimit,
        ),
        (
            NewMarket {
                user_data_128: 1,
                ..market(100)
            },
            R::ExistsWithDifferentUserData128,
        ),
        (market(202), R::Created),
    ] {
        assert_eq!(l.market(market), expected, "for {market:?}");
        seen.insert(expected);
    }
    let missing: Vec<_> = R::ALL.iter().filter(|c| !seen.contains(c)).collect();
    assert!(missing.is_empty(), "codes never produced: {missing:?}");
}

#[test]
fn every_bet_result_code_is_produced() {
    use BetResult as R;
    let mut l = betting_ledger();
    let mut other_ledger = acct(6, AccountFlags::default());
    other_ledger.ledger = 2;
    l.accounts(vec![
        acct(5, AccountFlags::default()),
        other_ledger,
        acct(7, AccountFlags::default()),
        acct(8, AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS),
        acct(9, AccountFlags::default()),
    ]);
    assert_eq!(
        l.transfer(pending(960, 7, 1, u128::MAX - 5, 0)),
        TransferResult::Created
    );
    assert_eq!(
        l.market(NewMarket {
            id: 101,
            house_account_id: 9,
            ..market(0)
        }),
        MarketResult::Created
    );
    assert_eq!(
        l.market(NewMarket {
            id: 103,
            house_account_id: 8,
            ..market(0)
        }),
        MarketResult::Created
    );
    close_account(&mut l, 951, 5);
    close_account(&mut l, 952, 9);
    // Market 104 is settled.
    assert_eq!(l.market(market(104)), MarketResult::Created);
    assert_eq!(
        l.settle(Settlement {
            market_id: 104,
            ..settlement(1, &[], &[])
        }),
        SettlementResult::Created
    );
    // Bet 30's hold id is taken by an ordinary transfer.
    assert_eq!(
        l.transfer(xfer(bet_transfer_id(30, BetTransferKind::Hold, 0), 1, 3, 1)),
        TransferResult::Created
    );

    let b = bet(10, 3, 1, 1_000, 25_000);
    let mut seen = BTreeSet::new();
    for (bet, expected) in [
        (NewBet { id: 0, ..b }, R::IdMustNotBeZero),
        (NewBet { id: u128::MAX, ..b }, R::IdMustNotBeIntMax),
        (
            NewBet {
                player_account_id: 0,
                ..b
            },
            R::PlayerAccountIdMustNotBeZero,
        ),
        (
            NewBet {
                player_account_id: u128::MAX,
                ..b
            },
            R::PlayerAccountIdMustNotBeIntMax,
        ),
        (NewBet { market_id: 0, ..b }, R::MarketIdMustNotBeZero),
        (
            NewBet {
                market_id: u128::MAX,
                ..b
            },
            R::MarketIdMustNotBeIntMax,
        ),
        (NewBet { stake: 0, ..b }, R::StakeMustNotBeZero),
        (
            NewBet {
                odds: ODDS_SCALE,
                ..b
            },
            R::OddsMustExceedOne,
        ),
        (NewBet { code: 0, ..b }, R::CodeMustNotBeZero),
        (
            NewBet {
                id: 11,
                market_id: 999,
                ..b
            },
            R::MarketNotFound,
        ),
        (NewBet { id: 11, ..b }, R::IdAlreadyFailed),
        (
            NewBet {
                id: 12,
                market_id: 104,
                ..b
            },
            R::MarketNotOpen,
        ),
        (
            NewBet {
                id: 13,
                player_account_id: 77,
                ..b
            },
            R::PlayerAccountNotFound,
        ),
        (
            NewBet {
                id: 14,
                player_account_id: 2,
                ..b
            },
            R::PlayerAccountIsHouseAccount,
        ),
        (
            NewBet {
                id: 15,
                player_account_id: 6,
                ..b
            },
            R::AccountsMustHaveTheSameLedger,
        ),
        (
            NewBet {
                id: 16,
                player_account_id: 5,
                ..b
            },
            R::PlayerAccountAlreadyClosed,
        ),
        (
            NewBet {
                id: 17,
                market_id: 101,
                ..b
            },
            R::HouseAccountAlreadyClosed,
        ),
        (
            NewBet {
                id: 18,
                stake: u128::MAX / 2,
                odds: 30_000,
                ..b
            },
            R::OverflowsPayout,
        ),
        (
            NewBet {
                id: 19,
                stake: 400_000,
                odds: 30_000,
                ..b
            },
            R::ExceedsLiabilityLimit,
        ),
        (NewBet { id: 30, ..b }, R::TransferIdConflict),
        (
            NewBet {
                id: 20,
                player_account_id: 7,
                ..b
            },
            R::OverflowsBalance,
        ),
        (
            NewBet {
                id: 21,
                stake: 2_000_000,
                odds: 10_001,
                ..b
            },
            R::ExceedsCredits,
        ),
        (
            NewBet {
                id: 22,
                market_id: 103,
                ..b
            },
            R::ExceedsDebits,
        ),
        (b, R::Created),
        (b, R::Exists),
        (
            NewBet {
                player_account_id: 4,
                ..b
            },
            R::ExistsWithDifferentPlayerAccountId,
        ),
        (
            NewBet {
                market_id: 101,
                ..b
            },
            R::ExistsWithDifferentMarketId,
        ),
        (
            NewBet {
                selection_id: 2,
                ..b
            },
            R::ExistsWithDifferentSelectionId,
        ),
        (NewBet { stake: 1, ..b }, R::ExistsWithDifferentStake),
        (NewBet { odds: 30_000, ..b }, R::ExistsWithDifferentOdds),
        (NewBet { code: 8, ..b }, R::ExistsWithDifferentCode),
        (
            NewBet {
                user_data_128: 1,
                ..b
            },
            R::ExistsWithDifferentUserData128,
        ),
    ] {
        let before = l.digest();
        assert_eq!(l.bet(bet), expected, "for {bet:?}");
        if expected != R::Created && !expected.transient() {
            assert_eq!(l.digest(), before, "rejected {bet:?} changed the state");
        }
        seen.insert(expected);
    }
    seen.insert(overflowing_liability_is_refused());
    let missing: Vec<_> = R::ALL.iter().filter(|c| !seen.contains(c)).collect();
    assert!(missing.is_empty(), "codes never produced: {missing:?}");
}

/// A payout is at most `u128::MAX / ODDS_SCALE`, so the liability of one selection overflows
/// only after tens of thousands of enormous bets.
fn overflowing_liability_is_refused() -> BetResult {
    let mut l = Ledger::new();
    l.accounts(vec![
        acct(1, AccountFlags::default()),
        acct(2, AccountFlags::default()),
        acct(3, AccountFlags::default()),
        acct(4, AccountFlags::default()),
    ]);
    let unlimited = NewMarket {
        liability_limit: u128::MAX,
        ..market(100)
    };
    assert_eq!(l.market(unlimited), MarketResult::Created);
    let stake = u128::MAX / 20_000 - 1;
    let mut id = 0u128;
    let mut last = Vec::new();
    while !last.contains(&BetResult::OverflowsLiability) {
        let batch: Vec<NewBet> = (0..EVENTS_PER_BATCH_MAX)
            .map(|i| {
                id += 1;
                bet(id, 3 + (i % 2) as u128, 1, stake, 20_000)
            })
            .collect();
        last = match l.run(Command::PlaceBets(batch)) {
            CommandResults::PlaceBets(r) => r,
            other => panic!("{other:?}"),
        };
        assert!(id < 40_000, "liability never overflowed");
    }
    BetResult::OverflowsLiability
}

#[test]
fn every_bet_action_result_code_is_produced() {
    use BetActionResult as R;
    let mut l = betting_ledger();
    l.accounts(vec![
        acct(9, AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS),
        acct(12, AccountFlags::default()),
    ]);
    l.fund(990, 9, 1, 1_000);
    for (id, player) in [(1, 3), (2, 3), (3, 3), (4, 3), (5, 9), (6, 12)] {
        assert_eq!(l.bet(bet(id, player, 1, 1_000, 20_000)), BetResult::Created);
    }
    assert_eq!(
        l.transfer(xfer(
            bet_transfer_id(2, BetTransferKind::CashOut, 0),
            1,
            3,
            1
        )),
        TransferResult::Created
    );
    close_account(&mut l, 991, 12);
    let void = |bet_id| BetAction {
        bet_id,
        kind: BetActionKind::Void,
        amount: 0,
    };
    let cash = |bet_id, amount| BetAction {
        bet_id,
        kind: BetActionKind::CashOut,
        amount,
    };
    let mut seen = BTreeSet::new();
    for (action, expected) in [
        (void(0), R::BetIdMustNotBeZero),
        (
            BetAction {
                amount: 5,
                ..void(1)
            },
            R::AmountMustBeZero,
        ),
        (cash(1, 0), R::AmountMustNotBeZero),
        (void(99), R::BetNotFound),
        (cash(2, 1_500), R::TransferIdConflict),
        (cash(3, u128::MAX - 10), R::OverflowsBalance),
        (cash(3, 5_000_000), R::ExceedsCredits),
        (cash(5, 5_000), R::ExceedsDebits),
        (cash(6, 1_500), R::AccountAlreadyClosed),
        (void(1), R::Applied),
        (void(1), R::Exists),
        (cash(1, 1_500), R::BetNotOpen),
        (cash(4, 1_500), R::Applied),
        (cash(4, 1_500), R::Exists),
        (cash(4, 1_600), R::BetNotOpen),
    ] {
        let before = l.digest();
        assert_eq!(l.action(action), expected, "for {action:?}");
        if !matches!(expected, R::Applied) {
            assert_eq!(l.digest(), before, "rejected {action:?} changed the state");
        }
        seen.insert(expected);
    }
    let missing: Vec<_> = R::ALL.iter().filter(|c| !seen.contains(c)).collect();
    assert!(missing.is_empty(), "codes never produced: {missing:?}");
}

#[test]
fn every_settlement_result_code_is_produced() {
    use SettlementResult as R;
    let mut l = betting_ledger();
    l.accounts(vec![acct(9, AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)]);
    l.fund(990, 9, 1, 1_000);
    for id in [102u128, 103, 104, 105] {
        assert_eq!(l.market(market(id)), MarketResult::Created);
    }
    let generous = NewMarket {
        liability_limit: 10_000_000,
        ..market(101)
    };
    assert_eq!(l.market(generous), MarketResult::Created);
    let on = |market_id, b: NewBet| NewBet { market_id, ..b };
    // Market 101: a winner the house cannot pay. 102: a payout id already taken.
    // 103: a winner whose account refuses credits. 104: a payout that overflows.
    assert_eq!(
        l.bet(on(101, bet(1, 3, 1, 400_000, 30_000))),
        BetResult::Created
    );
    assert_eq!(
        l.bet(on(101, bet(2, 4, 1, 400_000, 30_000))),
        BetResult::Created
    );
    assert_eq!(l.transfer(xfer(9_901, 1, 2, 1)), TransferResult::Created);
    assert_eq!(l.bet(on(102, bet(3, 3, 1, 10, 20_000))), BetResult::Created);
    assert_eq!(
        l.transfer(xfer(
            bet_transfer_id(3, BetTransferKind::Payout, 0),
            1,
            3,
            1
        )),
        TransferResult::Created
    );
    assert_eq!(
        l.bet(on(103, bet(4, 9, 1, 100, 200_000))),
        BetResult::Created
    );
    let accounts = [7, 8, 10].map(|id| acct(id, AccountFlags::default()));
    l.accounts(accounts.to_vec());
    assert_eq!(
        l.transfer(xfer(9_902, 10, 7, u128::MAX - 10)),
        TransferResult::Created
    );
    let big_house = NewMarket {
        house_account_id: 8,
        ..market(104)
    };
    assert_eq!(
        l.market(NewMarket {
            id: 106,
            ..big_house
        }),
        MarketResult::Created
    );
    assert_eq!(l.bet(on(106, bet(5, 7, 1, 50, 20_000))), BetResult::Created);

    // Market 107: the winner's account is closed before settlement.
    l.accounts(vec![acct(11, AccountFlags::default())]);
    l.fund(9_903, 1, 11, 1_000);
    assert_eq!(l.market(market(107)), MarketResult::Created);
    assert_eq!(
        l.bet(on(107, bet(6, 11, 1, 100, 20_000))),
        BetResult::Created
    );
    close_account(&mut l, 9_904, 11);
    let s = |id, market_id| Settlement {
        market_id,
        ..settlement(id, &[1], &[])
    };
    let resettle = |id, market_id| Settlement {
        flags: SettlementFlags::RESETTLE,
        ..s(id, market_id)
    };
    let mut seen = BTreeSet::new();
    let too_many: Vec<u64> = (0..=SELECTIONS_PER_SETTLEMENT_MAX as u64).collect();
    for (settlement, expected) in [
        (
            Settlement {
                timestamp: 1,
                ..s(10, 100)
            },
            R::TimestampMustBeZero,
        ),
        (
            Settlement {
                flags: SettlementFlags(1 << 8),
                ..s(10, 100)
            },
            R::ReservedFlag,
        ),
        (s(0, 100), R::IdMustNotBeZero),
        (s(u128::MAX, 100), R::IdMustNotBeIntMax),
        (s(10, 0), R::MarketIdMustNotBeZero),
        (s(10, u128::MAX), R::MarketIdMustNotBeIntMax),
        (s(18, 107), R::AccountAlreadyClosed),
        (
            Settlement {
                winning_selection_ids: too_many,
                ..s(10, 100)
            },
            R::TooManySelections,
        ),
        (
            Settlement {
                void_selection_ids: vec![1],
                ..s(10, 100)
            },
            R::SelectionIdsMustBeUnique,
        ),
        (s(11, 999), R::MarketNotFound),
        (s(11, 100), R::IdAlreadyFailed),
        (resettle(12, 100), R::MarketNotSettled),
        (s(13, 101), R::ExceedsCredits),
        (s(14, 102), R::TransferIdConflict),
        (s(15, 103), R::ExceedsDebits),
        (s(16, 106), R::OverflowsBalance),
        (s(10, 100), R::Created),
        (s(10, 100), R::Exists),
        (s(10, 105), R::ExistsWithDifferentMarketId),
        (
            Settlement {
                winning_selection_ids: vec![2],
                ..s(10, 100)
            },
            R::ExistsWithDifferentResult,
        ),
        (s(17, 100), R::MarketAlreadySettled),
    ] {
        let before = l.digest();
        assert_eq!(l.settle(settlement.clone()), expected, "for {settlement:?}");
        if expected != R::Created && !expected.transient() {
            assert_eq!(
                l.digest(),
                before,
                "rejected {settlement:?} changed the state"
            );
        }
        seen.insert(expected);
    }
    let missing: Vec<_> = R::ALL.iter().filter(|c| !seen.contains(c)).collect();
    assert!(missing.is_empty(), "codes never produced: {missing:?}");
}

#[test]
fn settlement_pays_winners_keeps_losers_stakes_and_releases_voids() {
    let mut l = betting_ledger();
    assert_eq!(l.bet(bet(1, 3, 1, 1_000, 25_000)), BetResult::Created);
    assert_eq!(l.bet(bet(2, 4, 2, 2_000, 30_000)), BetResult::Created);
    assert_eq!(l.bet(bet(3, 3, 3, 500, 40_000)), BetResult::Created);
    // Stakes are held, not moved.
    assert_eq!(l.account(3).debits_pending, 1_500);
    assert_eq!(balance(&l, 3), 1_000_000);
    let house_before = balance(&l, 2);

    assert_eq!(
        l.settle(settlement(50, &[1], &[3])),
        SettlementResult::Created
    );
    assert_eq!(balance(&l, 3), 1_000_000 + 1_500); // won 2_500 for 1_000; 500 released
    assert_eq!(balance(&l, 4), 1_000_000 - 2_000);
    assert_eq!(balance(&l, 2), house_before + 2_000 - 1_500);
    assert_eq!(l.account(3).debits_pending, 0);
    assert_eq!(l.get_bet(1).status, BetStatus::Won);
    assert_eq!(l.get_bet(2).status, BetStatus::Lost);
    assert_eq!(l.get_bet(3).status, BetStatus::Void);
    let bets = query::get_market_bets(&l.store, 100, 0, 0);
    assert_eq!(bets.iter().map(|b| b.id).collect::<Vec<_>>(), vec![1, 2, 3]);

    // Settling again, by the same id, changes nothing.
    let digest = l.digest();
    assert_eq!(
        l.settle(settlement(50, &[1], &[3])),
        SettlementResult::Exists
    );
    assert_eq!(l.digest(), digest);

    // A corrected result: selection 2 won, and the void selection lost.
    let correction = Settlement {
        flags: SettlementFlags::RESETTLE,
        ..settlement(51, &[2], &[])
    };
    assert_eq!(l.settle(correction.clone()), SettlementResult::Created);
    assert_eq!(balance(&l, 3), 1_000_000 - 1_500);
    assert_eq!(balance(&l, 4), 1_000_000 + 4_000);
    assert_eq!(balance(&l, 2), house_before + 1_500 - 4_000);
    assert_eq!(l.get_bet(1).status, BetStatus::Lost);
    assert_eq!(l.get_bet(2).status, BetStatus::Won);
    assert_eq!(l.get_bet(3).status, BetStatus::Lost);
    // History is not rewritten: the first payout is still there, next to its compensation.
    let payout = bet_transfer_id(1, BetTransferKind::Payout, 0);
    assert_eq!(
        query::lookup_transfers(&l.store, &[payout])[0].amount,
        2_500
    );
    assert_eq!(l.settle(correction), SettlementResult::Exists);
}

#[test]
fn void_and_cash_out_release_liability() {
    let mut l = betting_ledger();
    // Exposure 400_000 of the 500_000 limit on selection 1.
    assert_eq!(l.bet(bet(1, 3, 1, 200_000, 30_000)), BetResult::Created);
    assert_eq!(
        l.bet(bet(2, 4, 1, 100_000, 30_000)),
        BetResult::ExceedsLiabilityLimit
    );
    // Another selection has its own liability.
    assert_eq!(l.bet(bet(3, 4, 2, 100_000, 30_000)), BetResult::Created);
    let void = BetAction {
        bet_id: 1,
        kind: BetActionKind::Void,
        amount: 0,
    };
    assert_eq!(l.action(void), BetActionResult::Applied);
    assert_eq!(balance(&l, 3), 1_000_000);
    assert_eq!(l.account(3).debits_pending, 0);
    assert_eq!(l.bet(bet(4, 4, 1, 100_000, 30_000)), BetResult::Created);
    let cash = BetAction {
        bet_id: 3,
        kind: BetActionKind::CashOut,
        amount: 150_000,
    };
    assert_eq!(l.action(cash), BetActionResult::Applied);
    assert_eq!(balance(&l, 4), 1_000_000 + 50_000);
    assert_eq!(l.get_bet(3).status, BetStatus::CashedOut);
    // Settling leaves cashed-out and voided bets alone.
    assert_eq!(
        l.settle(settlement(9, &[2], &[])),
        SettlementResult::Created
    );
    assert_eq!(balance(&l, 4), 1_000_000 + 50_000 - 100_000);
}
