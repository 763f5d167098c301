//! Throughput of `apply` on the in-memory store: batches of simple transfers between
//! pre-created accounts, on one core. Run: `cargo bench -p ledger-core --bench apply`.
#![allow(clippy::disallowed_methods)] // A benchmark measures wall time; apply itself never does.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ledger_core::*;

mod support;
use support::{random_transfer, Lcg};

fn setup() -> MemoryStore {
    let mut store = MemoryStore::new();
    let accounts = support::accounts();
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
                            next_id += 1;
                            random_transfer(&mut rng, next_id)
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
