//! The workload shared by the apply benchmarks (ledger-core's in memory, ledger-server's on
//! RocksDB): accounts 1..=ACCOUNTS and random simple transfers between them, from a small
//! deterministic generator so every run moves the same money.

use ledger_core::{Account, Transfer};

pub const ACCOUNTS: u128 = 10_000;

pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Accounts 1..=ACCOUNTS, without flags.
pub fn accounts() -> Vec<Account> {
    (1..=ACCOUNTS)
        .map(|id| Account {
            id,
            ledger: 1,
            code: 1,
            ..Account::default()
        })
        .collect()
}

/// A transfer `id` of 1..=100 between two distinct random accounts.
pub fn random_transfer(rng: &mut Lcg, id: u128) -> Transfer {
    let debit = u128::from(rng.next()) % ACCOUNTS + 1;
    let credit = (debit + u128::from(rng.next()) % (ACCOUNTS - 1)) % ACCOUNTS + 1;
    Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount: u128::from(rng.next() % 100 + 1),
        ledger: 1,
        code: 1,
        ..Transfer::default()
    }
}
