//! Throughput of the state machine's `apply` on RocksDB (`raft/state_machine.rs`): entries of
//! simple transfers between pre-created accounts, read through a `StateView` and written in
//! one `WriteBatch` per call, as a node applies committed entries. Compare with ledger-core's
//! in-memory `apply` bench for what storage costs. Run:
//! `cargo bench -p ledger-server --bench apply_rocksdb`.
#![allow(clippy::disallowed_methods)] // A benchmark measures wall time; apply itself never does.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ledger_core::{Command, EVENTS_PER_BATCH_MAX};
use ledger_server::raft::log_store::open_db;
use ledger_server::raft::state_machine::LedgerStateMachine;
use ledger_server::raft::types::{LedgerRequest, TypeConfig};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

const BLOCK_CACHE_MB: usize = 256;

#[path = "../../ledger-core/benches/support/mod.rs"]
mod support;
use support::{random_transfer, Lcg};

/// Feeds entries to one state machine, numbering them as a log would.
struct Node {
    machine: LedgerStateMachine,
    index: u64,
    next_id: u128,
    rng: Lcg,
    _dir: tempfile::TempDir,
}

impl Node {
    async fn open() -> Node {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open_db(dir.path().join("db"), BLOCK_CACHE_MB).expect("open db");
        let machine =
            LedgerStateMachine::open(db, &dir.path().join("snapshots")).expect("state machine");
        let mut node = Node {
            machine,
            index: 0,
            next_id: 1,
            rng: Lcg(42),
            _dir: dir,
        };
        let accounts = support::accounts();
        for chunk in accounts.chunks(EVENTS_PER_BATCH_MAX) {
            node.apply(vec![Command::CreateAccounts(chunk.to_vec())])
                .await;
        }
        node
    }

    fn transfers(&mut self, count: usize) -> Command {
        let transfers = (0..count)
            .map(|_| {
                self.next_id += 1;
                random_transfer(&mut self.rng, self.next_id)
            })
            .collect();
        Command::CreateTransfers(transfers)
    }

    /// Applies one entry holding `commands`.
    async fn apply(&mut self, commands: Vec<Command>) {
        self.index += 1;
        let entry = Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), self.index),
            payload: EntryPayload::Normal(LedgerRequest {
                timestamp: self.index,
                request_ids: vec![String::new(); commands.len()],
                commands,
            }),
        };
        let responses = self.machine.apply([entry]).await.expect("apply");
        assert_eq!(responses.len(), 1);
    }
}

/// Entries of `requests` single-transfer requests (as the group committer makes of batch-1
/// clients), and of one full batch.
fn bench_apply(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("apply_rocksdb");
    group.sample_size(20);
    for (requests, per_request) in [(8usize, 1usize), (1, 100), (1, EVENTS_PER_BATCH_MAX)] {
        let events = requests * per_request;
        group.throughput(Throughput::Elements(events as u64));
        let name = format!("{requests}x{per_request}");
        group.bench_with_input(BenchmarkId::from_parameter(name), &(), |b, _| {
            let mut node = runtime.block_on(Node::open());
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let commands = (0..requests).map(|_| node.transfers(per_request)).collect();
                    let start = Instant::now();
                    runtime.block_on(node.apply(commands));
                    total += start.elapsed();
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_apply);
criterion_main!(benches);
