//! Property tests: random command sequences against the invariants, determinism, idempotent
//! replay, and a reference model of plain transfers.

mod common;

use std::collections::BTreeMap;

use ledger_core::*;
use proptest::prelude::*;

const ACCOUNTS: u128 = 6;

fn account_strategy() -> impl Strategy<Value = Account> {
    (
        1..=ACCOUNTS + 1,
        0..4u16,
        prop_oneof![4 => Just(1u32), 1 => Just(2u32)],
        any::<bool>(),
    )
        .prop_map(|(id, f, ledger, linked)| {
            let mut flags = match f {
                0 => AccountFlags::default(),
                1 => AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
                2 => AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
                _ => AccountFlags::HISTORY,
            };
            if linked {
                flags = flags.union(AccountFlags::LINKED);
            }
            Account {
                id,
                ledger,
                code: 1,
                flags,
                ..Account::default()
            }
        })
}

fn transfer_strategy(with_timeouts: bool) -> impl Strategy<Value = Transfer> {
    let timeout = if with_timeouts { 0..3u32 } else { 0..1u32 };
    (
        1..40u128,
        1..=ACCOUNTS + 1,
        1..=ACCOUNTS + 1,
        0..300u128,
        1..40u128,
        0..9u8,
        any::<bool>(),
        timeout,
    )
        .prop_map(|(id, dr, cr, amount, pending_id, kind, linked, timeout)| {
            let mut flags = match kind {
                0..=2 => TransferFlags::default(),
                3 => TransferFlags::PENDING,
                4 => TransferFlags::POST_PENDING_TRANSFER,
                5 => TransferFlags::VOID_PENDING_TRANSFER,
                6 => TransferFlags::BALANCING_DEBIT,
                7 => TransferFlags::BALANCING_CREDIT,
                _ => TransferFlags::PENDING.union(TransferFlags::CLOSING_CREDIT),
            };
            let resolving = kind == 4 || kind == 5;
            if linked {
                flags = flags.union(TransferFlags::LINKED);
            }
            Transfer {
                id,
                debit_account_id: if resolving { 0 } else { dr },
                credit_account_id: if resolving { 0 } else { cr },
                amount,
                pending_id: if resolving { pending_id } else { 0 },
                timeout: if flags.contains(TransferFlags::PENDING) {
                    timeout
                } else {
                    0
                },
                ledger: if resolving { 0 } else { 1 },
                code: if resolving { 0 } else { 1 },
                flags,
                ..Transfer::default()
            }
        })
}

fn bet_strategy() -> impl Strategy<Value = NewBet> {
    (
        1..20u128,
        1..=ACCOUNTS,
        1..3u128,
        1..4u64,
        1..400u128,
        10_001..60_000u64,
    )
        .prop_map(
            |(id, player, market_id, selection_id, stake, odds)| NewBet {
                id,
                player_account_id: player,
                market_id,
                selection_id,
                stake,
                odds,
                code: 3,
                user_data_128: 0,
            },
        )
}

fn command_strategy(with_timeouts: bool) -> impl Strategy<Value = Command> {
    prop_oneof![
        2 => prop::collection::vec(account_strategy(), 1..5).prop_map(Command::CreateAccounts),
        6 => prop::collection::vec(transfer_strategy(with_timeouts), 1..8).prop_map(Command::CreateTransfers),
        1 => (1..3u128, 1..=ACCOUNTS, 1..2_000u128).prop_map(|(id, house, limit)| {
            Command::CreateMarkets(vec![NewMarket { id, house_account_id: house, liability_limit: limit, user_data_128: 0 }])
        }),
        2 => prop::collection::vec(bet_strategy(), 1..5).prop_map(Command::PlaceBets),
        1 => (1..6u128, 1..3u128, 0..4u64, 0..4u64, any::<bool>()).prop_map(|(id, market_id, win, void, resettle)| {
            Command::SettleMarkets(vec![Settlement {
                id,
                market_id,
                winning_selection_ids: vec![win],
                void_selection_ids: if void == win { vec![] } else { vec![void] },
                flags: if resettle { SettlementFlags::RESETTLE } else { SettlementFlags::default() },
                timestamp: 0,
            }])
        }),
        1 => (1..20u128, any::<bool>(), 0..500u128).prop_map(|(bet_id, cash, amount)| {
            Command::BetActions(vec![BetAction {
                bet_id,
                kind: if cash { BetActionKind::CashOut } else { BetActionKind::Void },
                amount: if cash { amount } else { 0 },
            }])
        }),
    ]
}

/// Funds every account from a bank account so that limited accounts can move money.
fn funded_store() -> (MemoryStore, u64) {
    let mut store = MemoryStore::new();
    let bank = Account {
        id: 100,
        ledger: 1,
        code: 1,
        ..Account::default()
    };
    apply(
        &mut store,
        &Command::CreateAccounts(vec![bank]),
        ApplyCtx {
            log_index: 1,
            timestamp: 1_000,
        },
    );
    (store, 1)
}

/// Runs commands with cluster time moving on by 0.7 s each; returns results, digest and store.
fn run(commands: &[Command]) -> (Vec<CommandResults>, u128, MemoryStore) {
    let (mut store, mut index) = funded_store();
    let mut results = Vec::new();
    for (i, command) in commands.iter().enumerate() {
        index += 1;
        let ctx = ApplyCtx {
            log_index: index,
            timestamp: 1_000 + i as u64 * 700_000_000,
        };
        results.push(apply(&mut store, command, ctx));
    }
    let digest = read_meta(&store).digest;
    (results, digest, store)
}

/// True when a linked chain of the command failed as a whole: its events were rolled back, so a
/// replay evaluates them afresh against a state the command itself changed (and may, for
/// example, remember a transient failure the first application did not reach).
fn a_chain_failed(results: &CommandResults) -> bool {
    match results {
        CommandResults::CreateAccounts(r) => r.contains(&AccountResult::LinkedEventFailed),
        CommandResults::CreateTransfers(r) => r.contains(&TransferResult::LinkedEventFailed),
        _ => false,
    }
}

fn all_succeeded(results: &CommandResults) -> Vec<bool> {
    match results {
        CommandResults::CreateAccounts(r) => r
            .iter()
            .map(|c| matches!(c, AccountResult::Created | AccountResult::Exists))
            .collect(),
        CommandResults::CreateTransfers(r) => r
            .iter()
            .map(|c| matches!(c, TransferResult::Created | TransferResult::Exists))
            .collect(),
        CommandResults::CreateMarkets(r) => r
            .iter()
            .map(|c| matches!(c, MarketResult::Created | MarketResult::Exists))
            .collect(),
        CommandResults::PlaceBets(r) => r
            .iter()
            .map(|c| matches!(c, BetResult::Created | BetResult::Exists))
            .collect(),
        CommandResults::SettleMarkets(r) => r
            .iter()
            .map(|c| matches!(c, SettlementResult::Created | SettlementResult::Exists))
            .collect(),
        CommandResults::BetActions(r) => r
            .iter()
            .map(|c| matches!(c, BetActionResult::Applied | BetActionResult::Exists))
            .collect(),
        CommandResults::Rejected(_) => vec![],
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Conservation per ledger, flags, balances as the fold of transfers, bet holds and
    /// liabilities, and the running digest: after every single command. At the end, the audit
    /// chain verifies with one record per entry.
    #[test]
    fn invariants_hold_after_every_command(commands in prop::collection::vec(command_strategy(true), 1..40)) {
        let (mut store, mut index) = funded_store();
        for (i, command) in commands.iter().enumerate() {
            index += 1;
            let ctx = ApplyCtx { log_index: index, timestamp: 1_000 + i as u64 * 700_000_000 };
            apply(&mut store, command, ctx);
            if let Err(violations) = check_invariants(&store) {
                prop_assert!(false, "after {:?}: {:?}", command, violations);
            }
        }
        match verify_audit(&store) {
            Ok(report) => {
                prop_assert_eq!(report.records, index);
                prop_assert_eq!(report.head, read_meta(&store).chain);
            }
            Err(e) => prop_assert!(false, "audit chain: {}", e),
        }
    }

    /// The same commands give the same results, the same digest and the same audit chain.
    #[test]
    fn apply_is_deterministic(commands in prop::collection::vec(command_strategy(true), 1..30)) {
        let (results_a, digest_a, store_a) = run(&commands);
        let (results_b, digest_b, store_b) = run(&commands);
        prop_assert_eq!(results_a, results_b);
        prop_assert_eq!(digest_a, digest_b);
        prop_assert_eq!(read_meta(&store_a).chain, read_meta(&store_b).chain);
    }

    /// Submitting a command a second time changes nothing (unless one of its linked chains
    /// failed: see `a_chain_failed`), and every event that held the first time holds again
    /// (as `exists`).
    #[test]
    fn replaying_a_command_changes_nothing(commands in prop::collection::vec(command_strategy(false), 1..30)) {
        let (mut store, mut index) = funded_store();
        for (i, command) in commands.iter().enumerate() {
            let ctx = ApplyCtx { log_index: index + 1, timestamp: 1_000 + i as u64 * 700_000_000 };
            let first = apply(&mut store, command, ctx);
            let digest = read_meta(&store).digest;
            let replay = apply(&mut store, command, ApplyCtx { log_index: index + 2, ..ctx });
            index += 2;
            if !a_chain_failed(&first) {
                prop_assert_eq!(read_meta(&store).digest, digest, "replay of {:?} changed the state", command);
            }
            for (a, b) in all_succeeded(&first).iter().zip(all_succeeded(&replay)) {
                prop_assert!(!*a || b, "{:?}: first {:?}, replay {:?}", command, first, replay);
            }
        }
    }

    /// Plain transfers against a reference model that knows only balances and ids.
    #[test]
    fn plain_transfers_match_a_reference_model(
        limited in prop::collection::vec(any::<bool>(), ACCOUNTS as usize),
        transfers in prop::collection::vec((1..30u128, 1..=ACCOUNTS + 1, 1..=ACCOUNTS + 1, 1..500u128), 1..60),
    ) {
        let mut store = MemoryStore::new();
        let mut accounts: Vec<Account> = (1..=ACCOUNTS)
            .map(|id| Account { id, ledger: 1, code: 1, ..Account::default() })
            .collect();
        for (a, l) in accounts.iter_mut().zip(&limited) {
            if *l { a.flags = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS; }
        }
        apply(&mut store, &Command::CreateAccounts(accounts), ApplyCtx { log_index: 1, timestamp: 1 });

        // The model: (debits, credits) per account, outcome per id.
        let mut balances: BTreeMap<u128, (u128, u128)> = (1..=ACCOUNTS).map(|id| (id, (0, 0))).collect();
        let mut outcomes: BTreeMap<u128, (u128, u128, u128, bool)> = BTreeMap::new();
        for (i, (id, dr, cr, amount)) in transfers.into_iter().enumerate() {
            let expected = if dr == cr {
                TransferResult::AccountsMustBeDifferent
            } else if let Some((d, c, a, created)) = outcomes.get(&id) {
                if !created { TransferResult::IdAlreadyFailed }
                else if (*d, *c, *a) == (dr, cr, amount) { TransferResult::Exists }
                else if *d != dr { TransferResult::ExistsWithDifferentDebitAccountId }
                else if *c != cr { TransferResult::ExistsWithDifferentCreditAccountId }
                else { TransferResult::ExistsWithDifferentAmount }
            } else if !balances.contains_key(&dr) {
                TransferResult::DebitAccountNotFound
            } else if !balances.contains_key(&cr) {
                TransferResult::CreditAccountNotFound
            } else if limited[dr as usize - 1] && balances[&dr].0 + amount > balances[&dr].1 {
                TransferResult::ExceedsCredits
            } else {
                TransferResult::Created
            };
            match expected {
                TransferResult::Created => {
                    balances.get_mut(&dr).unwrap().0 += amount;
                    balances.get_mut(&cr).unwrap().1 += amount;
                    outcomes.insert(id, (dr, cr, amount, true));
                }
                code if code.transient() => { outcomes.insert(id, (dr, cr, amount, false)); }
                _ => {}
            }
            let transfer = Transfer { id, debit_account_id: dr, credit_account_id: cr, amount, ledger: 1, code: 1, ..Transfer::default() };
            let got = apply(&mut store, &Command::CreateTransfers(vec![transfer]), ApplyCtx { log_index: i as u64 + 2, timestamp: 1 });
            prop_assert_eq!(got, CommandResults::CreateTransfers(vec![expected]));
        }
        for a in query::lookup_accounts(&store, &(1..=ACCOUNTS).collect::<Vec<_>>()) {
            prop_assert_eq!((a.debits_posted, a.credits_posted), balances[&a.id]);
        }
    }
}

#[test]
fn memory_store_passes_the_conformance_suite() {
    ledger_core::conformance::run_all(MemoryStore::new);
}

#[test]
fn digest_tells_different_states_apart() {
    let (_, digest_a, _) = run(&[Command::CreateAccounts(vec![Account {
        id: 1,
        ledger: 1,
        code: 1,
        ..Account::default()
    }])]);
    let (_, digest_b, _) = run(&[Command::CreateAccounts(vec![Account {
        id: 2,
        ledger: 1,
        code: 1,
        ..Account::default()
    }])]);
    assert_ne!(digest_a, digest_b);
}

#[test]
fn invariant_checker_catches_a_balance_changed_behind_its_back() {
    let mut l = common::Ledger::new();
    l.accounts(vec![
        common::acct(1, AccountFlags::default()),
        common::acct(2, AccountFlags::default()),
    ]);
    l.fund(1, 1, 2, 50);
    // Money created from nothing: a credit with no transfer behind it.
    let mut a = l.account(2);
    a.credits_posted += 1;
    l.store.put(Key::Account(2), Value::Account(a));
    let violations = check_invariants(&l.store).expect_err("tampering must be caught");
    assert!(
        violations
            .iter()
            .any(|v| v.contains("fold of its transfers")),
        "{violations:?}"
    );
    assert!(
        violations.iter().any(|v| v.contains("debits_posted")),
        "{violations:?}"
    );
    assert!(
        violations.iter().any(|v| v.contains("running digest")),
        "{violations:?}"
    );
}
