//! The state machine on arbitrary event batches: a few accounts, markets and bets with ids in a
//! small range (so that events meet), any flags, amounts, pending ids, timeouts and odds. After
//! every entry the ledger invariants must hold (`check_invariants`: money neither created nor
//! destroyed, balances within their limits, indexes consistent), and applying the same entries
//! to a second store must give the same results and state digest.
#![no_main]

use ledger_core::bet::{BetAction, BetActionKind, NewBet, NewMarket, Settlement, SettlementFlags};
use ledger_core::command::{ApplyCtx, Command};
use ledger_core::{
    apply_entry, check_invariants, read_meta, Account, AccountFlags, MemoryStore, Transfer,
    TransferFlags,
};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

const IDS: u128 = 8;

fn id(u: &mut Unstructured) -> Result<u128> {
    Ok(u128::from(u.int_in_range(0..=IDS as u8)?))
}

fn amount(u: &mut Unstructured) -> Result<u128> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => 0,
        1 => u128::from(u.int_in_range(1..=1_000u16)?),
        2 => u128::from(u.arbitrary::<u64>()?),
        _ => u.arbitrary::<u128>()?,
    })
}

fn account(u: &mut Unstructured) -> Result<Account> {
    Ok(Account {
        id: id(u)?,
        ledger: u.int_in_range(0..=2)?,
        code: u.int_in_range(0..=2)?,
        flags: AccountFlags(u.arbitrary()?),
        ..Account::default()
    })
}

fn transfer(u: &mut Unstructured) -> Result<Transfer> {
    Ok(Transfer {
        id: id(u)? + 100 * u128::from(u.int_in_range(0..=3u8)?),
        debit_account_id: id(u)?,
        credit_account_id: id(u)?,
        amount: amount(u)?,
        pending_id: if u.arbitrary()? { id(u)? + 100 } else { 0 },
        timeout: u.int_in_range(0..=3)?,
        ledger: u.int_in_range(0..=2)?,
        code: u.int_in_range(0..=2)?,
        flags: TransferFlags(u.arbitrary()?),
        ..Transfer::default()
    })
}

fn command(u: &mut Unstructured) -> Result<Command> {
    let len = u.int_in_range(1..=6)?;
    Ok(match u.int_in_range(0..=5u8)? {
        0 => Command::CreateAccounts((0..len).map(|_| account(u)).collect::<Result<_>>()?),
        1 => Command::CreateMarkets(
            (0..len)
                .map(|_| {
                    Ok(NewMarket {
                        id: id(u)?,
                        house_account_id: id(u)?,
                        liability_limit: amount(u)?,
                        user_data_128: 0,
                    })
                })
                .collect::<Result<_>>()?,
        ),
        2 => Command::PlaceBets(
            (0..len)
                .map(|_| {
                    Ok(NewBet {
                        id: id(u)? + 1_000,
                        player_account_id: id(u)?,
                        market_id: id(u)?,
                        selection_id: u.int_in_range(0..=3)?,
                        stake: amount(u)?,
                        odds: u.arbitrary()?,
                        code: u.int_in_range(0..=2)?,
                        user_data_128: 0,
                    })
                })
                .collect::<Result<_>>()?,
        ),
        3 => Command::SettleMarkets(
            (0..len)
                .map(|_| {
                    let winners = u.int_in_range(0..=3u8)?;
                    let voids = u.int_in_range(0..=2u8)?;
                    Ok(Settlement {
                        id: id(u)? + 2_000,
                        market_id: id(u)?,
                        winning_selection_ids: (0..winners)
                            .map(|_| u.int_in_range(0..=3))
                            .collect::<Result<_>>()?,
                        void_selection_ids: (0..voids)
                            .map(|_| u.int_in_range(0..=3))
                            .collect::<Result<_>>()?,
                        flags: SettlementFlags(u.arbitrary()?),
                        timestamp: 0,
                    })
                })
                .collect::<Result<_>>()?,
        ),
        4 => Command::BetActions(
            (0..len)
                .map(|_| {
                    Ok(BetAction {
                        bet_id: id(u)? + 1_000,
                        kind: if u.arbitrary()? {
                            BetActionKind::Void
                        } else {
                            BetActionKind::CashOut
                        },
                        amount: amount(u)?,
                    })
                })
                .collect::<Result<_>>()?,
        ),
        _ => Command::CreateTransfers((0..len).map(|_| transfer(u)).collect::<Result<_>>()?),
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut store = MemoryStore::default();
    let mut replica = MemoryStore::default();
    let mut timestamp = 1_000_000_000u64;
    for index in 1..=16u64 {
        let Ok(commands) = (0..u.int_in_range(1..=3u8).unwrap_or(1))
            .map(|_| command(&mut u))
            .collect::<Result<Vec<_>>>()
        else {
            break;
        };
        // Time moves forward by up to 4 s per entry, so that pending timeouts expire.
        timestamp += u64::from(u.int_in_range(0..=4u8).unwrap_or(0)) * 1_000_000_000;
        let ctx = ApplyCtx {
            log_index: index,
            timestamp,
        };
        let results = apply_entry(&mut store, &commands, ctx);
        let again = apply_entry(&mut replica, &commands, ctx);
        assert_eq!(results, again, "replicas disagree on results");
        if let Err(violations) = check_invariants(&store) {
            panic!("invariants broken after {commands:?}: {violations:?}");
        }
        assert_eq!(
            read_meta(&store),
            read_meta(&replica),
            "replicas disagree on state"
        );
    }
});
