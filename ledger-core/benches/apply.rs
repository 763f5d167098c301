//! Throughput of `apply` on the in-memory store: batches of simple transfers between
//! pre-created accounts, on one core. Run: `cargo bench -p ledger-core --bench apply`.
#![allow(clippy::disallowed_methods)] // A benchmark measures wall time; apply itself never does.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ledger_core::*;

const ACCOUNTS: u128 = 10_000;

/// A small deterministic generator, so every run moves the same money.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn setup() -> MemoryStore {
    let mut store = MemoryStore::new();
    let accounts: Vec<Account> = (1..=ACCOUNTS)
        .map(|id| Account {
            id,
            ledger: 1,
            code: 1,
            ..Account::default()
        })
        .collect();
    for (i, chunk) in accounts.chunks(EVENTS_PER_BATCH_MAX).enumerate() {
        let ctx = ApplyCtx {
            log_index: i as u64 + 1,
            timestamp: 1,
        };
        apply(&mut store, &Command::CreateAccounts(chunk.to_vec()), ctx);
    }
    store
}

fn bench_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply_create_transfers");
    for batch in [1usize, 100, EVENTS_PER_BATCH_MAX] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            let mut store = setup();
            let mut rng = Lcg(42);
            let mut next_id = 1u128;
            let mut index = 1_000u64;
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let transfers: Vec<Transfer> = (0..batch)
                        .map(|_| {
                            let debit = u128::from(rng.next()) % ACCOUNTS + 1;
                            let credit =
                                (debit + u128::from(rng.next()) % (ACCOUNTS - 1)) % ACCOUNTS + 1;
                            next_id += 1;
                            Transfer {
                                id: next_id,
                                debit_account_id: debit,
                                credit_account_id: credit,
                                amount: u128::from(rng.next() % 100 + 1),
                                ledger: 1,
                                code: 1,
                                ..Transfer::default()
                            }
                        })
                        .collect();
                    let command = Command::CreateTransfers(transfers);
                    index += 1;
                    let ctx = ApplyCtx {
                        log_index: index,
                        timestamp: index,
                    };
                    let start = Instant::now();
                    let results = apply(&mut store, &command, ctx);
                    total += start.elapsed();
                    std::hint::black_box(results);
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = bench_apply
}
criterion_main!(benches);
