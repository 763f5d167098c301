//! A betting service on Ledger: players deposit, bet on a market from many tasks at once
//! (the client coalesces the calls), the market is settled, and balances are checked.
//!
//! Start a cluster (`./scripts/dev`, or `ledgerctl local up --nodes 3 --dir /tmp/ledger`), then:
//!
//! ```text
//! LEDGER_ENDPOINTS=http://127.0.0.1:7000 cargo run -p ledger-client --example betting
//! ```
//!
//! Every id is derived from a random run number, so the example can run again and again
//! against the same cluster. Each write is safe to retry: the client resubmits the same ids
//! after a timeout or a failover, and the ledger applies each at most once.

use std::time::{SystemTime, UNIX_EPOCH};

use ledger_client::{Error, LedgerClient, WriteResult};
use ledger_core::{
    Account, AccountFlags, BetStatus, MarketResult, NewBet, NewMarket, Settlement, SettlementFlags,
    SettlementResult, Transfer, ODDS_SCALE,
};

const LEDGER: u32 = 1;
const CODE_DEPOSIT: u16 = 1;
const CODE_BET: u16 = 2;
const PLAYERS: u128 = 20;
const DEPOSIT: u128 = 10_000;
const STAKE: u128 = 1_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoints =
        std::env::var("LEDGER_ENDPOINTS").unwrap_or_else(|_| "http://127.0.0.1:7000".into());
    let client = LedgerClient::connect(endpoints.split(',').map(str::to_string)).await?;

    // Ids of this run: the run number in the high 64 bits, the object in the low ones.
    let run = u128::from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64) << 64;
    let cash = run | 1; // deposits come from here (may go negative: money entering the system)
    let house = run | 2;
    let player = move |i: u128| run | (100 + i);
    let market = run | 3;

    // 1. Accounts: players may not go below zero.
    let mut accounts = vec![
        Account {
            id: cash,
            ledger: LEDGER,
            code: 1,
            ..Account::default()
        },
        Account {
            id: house,
            ledger: LEDGER,
            code: 2,
            ..Account::default()
        },
    ];
    for i in 0..PLAYERS {
        accounts.push(Account {
            id: player(i),
            ledger: LEDGER,
            code: 3,
            flags: AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
            ..Account::default()
        });
    }
    let results = client.create_accounts(accounts).await?;
    assert!(results.iter().all(|r| r.is_success()), "{results:?}");

    // 2. Deposits, and a float for the house so it can pay winners.
    let mut deposits: Vec<Transfer> = (0..PLAYERS)
        .map(|i| Transfer {
            id: run | (1_000 + i),
            debit_account_id: cash,
            credit_account_id: player(i),
            amount: DEPOSIT,
            ledger: LEDGER,
            code: CODE_DEPOSIT,
            ..Transfer::default()
        })
        .collect();
    deposits.push(Transfer {
        id: run | 999,
        debit_account_id: cash,
        credit_account_id: house,
        amount: 1_000_000,
        ledger: LEDGER,
        code: CODE_DEPOSIT,
        ..Transfer::default()
    });
    let results = client.create_transfers(deposits).await?;
    assert!(results.iter().all(|r| r.is_success()), "{results:?}");

    // 3. A market with two selections: 1 = home win, 2 = away win.
    let new_market = NewMarket {
        id: market,
        house_account_id: house,
        liability_limit: 1_000_000,
        user_data_128: 0,
    };
    assert_eq!(
        client.create_markets(vec![new_market]).await?,
        vec![MarketResult::Created]
    );

    // 4. Every player bets from its own task; the client coalesces the concurrent calls into
    //    a few requests.
    let mut tasks = Vec::new();
    for i in 0..PLAYERS {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let bet = NewBet {
                id: run | (2_000 + i),
                player_account_id: player(i),
                market_id: market,
                selection_id: if i % 2 == 0 { 1 } else { 2 },
                stake: STAKE,
                odds: 2 * ODDS_SCALE + ODDS_SCALE / 2, // 2.5
                code: CODE_BET,
                user_data_128: 0,
            };
            client.place_bets(vec![bet]).await
        }));
    }
    for task in tasks {
        match task.await? {
            // `exists`: a retry found the bet placed by its own earlier attempt.
            Ok(results) => assert!(results.iter().all(|r| r.is_success()), "{results:?}"),
            // The client retried through the deadline (30 s) without learning the outcome: a
            // real service would queue the bet id and retry it later; `exists` then means
            // placed.
            Err(Error::OutcomeUnknown { last_error, .. }) => {
                return Err(format!("bet outcome unknown, retry later: {last_error}").into())
            }
            Err(e) => return Err(e.into()),
        }
    }
    let stats = client.batch_stats();
    println!(
        "placed {PLAYERS} bets: {} calls in {} requests so far",
        stats.calls.load(std::sync::atomic::Ordering::Relaxed),
        stats.requests.load(std::sync::atomic::Ordering::Relaxed)
    );

    // 5. Home wins: selection 1 is paid 2.5x, selection 2 loses its stake.
    let settlement = Settlement {
        id: run | 3_000,
        market_id: market,
        winning_selection_ids: vec![1],
        void_selection_ids: vec![],
        flags: SettlementFlags(0),
        timestamp: 0,
    };
    assert_eq!(
        client.settle_markets(vec![settlement]).await?,
        vec![SettlementResult::Created]
    );

    // 6. Check: winners hold deposit + 1.5 x stake, losers deposit - stake, and the money of
    //    this run sums to zero (double entry: nothing created or destroyed).
    let bets = client
        .lookup_bets(&(0..PLAYERS).map(|i| run | (2_000 + i)).collect::<Vec<_>>())
        .await?;
    let won = bets.iter().filter(|b| b.status == BetStatus::Won).count();
    let lost = bets.iter().filter(|b| b.status == BetStatus::Lost).count();
    let mut ids = vec![cash, house];
    ids.extend((0..PLAYERS).map(player));
    let accounts = client.lookup_accounts(&ids).await?;
    let net = |a: &Account| a.credits_posted as i128 - a.debits_posted as i128;
    for a in accounts.iter().filter(|a| a.code == 3) {
        let expected = if (a.id & 0xffff) % 2 == 0 {
            DEPOSIT + STAKE * 3 / 2
        } else {
            DEPOSIT - STAKE
        };
        assert_eq!(net(a), expected as i128, "player {}", a.id & 0xffff);
        assert_eq!(a.debits_pending, 0, "no stake left on hold");
    }
    let total: i128 = accounts.iter().map(net).sum();
    assert_eq!(total, 0, "money was created or destroyed");
    let house_net = net(accounts.iter().find(|a| a.id == house).expect("house"));
    println!("settled: {won} bets won, {lost} lost; house net {house_net}; total across accounts {total}");
    Ok(())
}
