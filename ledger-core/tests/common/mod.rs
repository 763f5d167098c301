//! Helpers shared by the integration tests of ledger-core.
#![allow(dead_code)]

use ledger_core::*;

/// A ledger on the in-memory store with its own log index and cluster clock.
pub struct Ledger {
    pub store: MemoryStore,
    pub index: u64,
    pub now: u64,
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new()
    }
}

impl Ledger {
    pub fn new() -> Self {
        Self {
            store: MemoryStore::new(),
            index: 0,
            now: 1_000_000_000,
        }
    }

    pub fn run(&mut self, command: Command) -> CommandResults {
        self.index += 1;
        self.now += 1_000;
        let results = apply(
            &mut self.store,
            &command,
            ApplyCtx {
                log_index: self.index,
                timestamp: self.now,
            },
        );
        if let Err(violations) = check_invariants(&self.store) {
            panic!("invariants broken after {command:?}: {violations:#?}");
        }
        results
    }

    /// Moves cluster time forward.
    pub fn advance_seconds(&mut self, seconds: u64) {
        self.now += seconds * 1_000_000_000;
    }

    pub fn accounts(&mut self, accounts: Vec<Account>) -> Vec<AccountResult> {
        match self.run(Command::CreateAccounts(accounts)) {
            CommandResults::CreateAccounts(r) => r,
            other => panic!("{other:?}"),
        }
    }

    pub fn transfers(&mut self, transfers: Vec<Transfer>) -> Vec<TransferResult> {
        match self.run(Command::CreateTransfers(transfers)) {
            CommandResults::CreateTransfers(r) => r,
            other => panic!("{other:?}"),
        }
    }

    pub fn transfer(&mut self, transfer: Transfer) -> TransferResult {
        self.transfers(vec![transfer])[0]
    }

    pub fn market(&mut self, market: NewMarket) -> MarketResult {
        match self.run(Command::CreateMarkets(vec![market])) {
            CommandResults::CreateMarkets(r) => r[0],
            other => panic!("{other:?}"),
        }
    }

    pub fn bet(&mut self, bet: NewBet) -> BetResult {
        match self.run(Command::PlaceBets(vec![bet])) {
            CommandResults::PlaceBets(r) => r[0],
            other => panic!("{other:?}"),
        }
    }

    pub fn settle(&mut self, settlement: Settlement) -> SettlementResult {
        match self.run(Command::SettleMarkets(vec![settlement])) {
            CommandResults::SettleMarkets(r) => r[0],
            other => panic!("{other:?}"),
        }
    }

    pub fn action(&mut self, action: BetAction) -> BetActionResult {
        match self.run(Command::BetActions(vec![action])) {
            CommandResults::BetActions(r) => r[0],
            other => panic!("{other:?}"),
        }
    }

    pub fn account(&self, id: u128) -> Account {
        query::lookup_accounts(&self.store, &[id])
            .pop()
            .expect("account exists")
    }

    pub fn get_bet(&self, id: u128) -> Bet {
        query::lookup_bets(&self.store, &[id])
            .pop()
            .expect("bet exists")
    }

    pub fn digest(&self) -> u128 {
        read_meta(&self.store).digest
    }

    /// Credits `amount` to `account` from `source` (which must allow it).
    pub fn fund(&mut self, id: u128, source: u128, account: u128, amount: u128) {
        assert_eq!(
            self.transfer(xfer(id, source, account, amount)),
            TransferResult::Created
        );
    }
}

pub fn acct(id: u128, flags: AccountFlags) -> Account {
    Account {
        id,
        ledger: 1,
        code: 1,
        flags,
        ..Account::default()
    }
}

pub fn xfer(id: u128, debit: u128, credit: u128, amount: u128) -> Transfer {
    Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        ledger: 1,
        code: 1,
        ..Transfer::default()
    }
}

pub fn pending(id: u128, debit: u128, credit: u128, amount: u128, timeout: u32) -> Transfer {
    Transfer {
        flags: TransferFlags::PENDING,
        timeout,
        ..xfer(id, debit, credit, amount)
    }
}

pub fn post(id: u128, pending_id: u128, amount: u128) -> Transfer {
    Transfer {
        id,
        pending_id,
        amount,
        flags: TransferFlags::POST_PENDING_TRANSFER,
        ..Transfer::default()
    }
}

pub fn void(id: u128, pending_id: u128) -> Transfer {
    Transfer {
        id,
        pending_id,
        flags: TransferFlags::VOID_PENDING_TRANSFER,
        ..Transfer::default()
    }
}

pub fn linked(mut t: Transfer) -> Transfer {
    t.flags = t.flags.union(TransferFlags::LINKED);
    t
}

pub const PLAYER_LIMITED: AccountFlags = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;

/// A betting ledger: bank 1 (unlimited), house 2 and players 3 and 4 (no overdraft), each
/// funded with 1_000_000, and market 100 owned by the house with a liability limit of 500_000.
pub fn betting_ledger() -> Ledger {
    let mut l = Ledger::new();
    let r = l.accounts(vec![
        acct(1, AccountFlags::default()),
        acct(2, PLAYER_LIMITED),
        acct(3, PLAYER_LIMITED),
        acct(4, PLAYER_LIMITED),
    ]);
    assert!(r.iter().all(|r| *r == AccountResult::Created));
    l.fund(901, 1, 2, 1_000_000);
    l.fund(903, 1, 3, 1_000_000);
    l.fund(904, 1, 4, 1_000_000);
    assert_eq!(l.market(market(100)), MarketResult::Created);
    l
}

pub fn market(id: u128) -> NewMarket {
    NewMarket {
        id,
        house_account_id: 2,
        liability_limit: 500_000,
        user_data_128: 0,
    }
}

/// A bet of `stake` at decimal odds `odds / 10000` by player `player` on `selection`.
pub fn bet(id: u128, player: u128, selection: u64, stake: u128, odds: u64) -> NewBet {
    NewBet {
        id,
        player_account_id: player,
        market_id: 100,
        selection_id: selection,
        stake,
        odds,
        code: 7,
        user_data_128: 0,
    }
}

pub fn settlement(id: u128, winners: &[u64], voids: &[u64]) -> Settlement {
    Settlement {
        id,
        market_id: 100,
        winning_selection_ids: winners.to_vec(),
        void_selection_ids: voids.to_vec(),
        flags: SettlementFlags::default(),
        timestamp: 0,
    }
}
