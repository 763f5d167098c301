//! The RocksDB state machine (`raft/state_machine.rs`) driven directly, entry by entry: what
//! it keeps in memory across applies (the account cache) must always agree with RocksDB.

use ledger_core::{Account, Command, Key, Store, Transfer, Value};
use ledger_server::raft::log_store::open_db;
use ledger_server::raft::state_machine::LedgerStateMachine;
use ledger_server::raft::types::{LedgerRequest, TypeConfig};
use ledger_server::storage::state_store::StateView;
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};

struct Machine {
    machine: LedgerStateMachine,
    index: u64,
    _dir: tempfile::TempDir,
}

impl Machine {
    fn open() -> Machine {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open_db(dir.path().join("db"), 8).expect("open db");
        let machine =
            LedgerStateMachine::open(db, &dir.path().join("snapshots")).expect("state machine");
        Machine {
            machine,
            index: 0,
            _dir: dir,
        }
    }

    async fn apply(&mut self, command: Command) {
        self.index += 1;
        let entry = Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), self.index),
            payload: EntryPayload::Normal(LedgerRequest {
                timestamp: self.index,
                commands: vec![command],
                request_ids: vec![String::new()],
            }),
        };
        self.machine.apply([entry]).await.expect("apply");
    }

    /// Creates accounts 1 and 2 and moves `amount` from 1 to 2 (transfer id `id`).
    async fn set_up(&mut self, id: u128, amount: u128) {
        let accounts = (1..=2)
            .map(|id| Account {
                id,
                ledger: 1,
                code: 1,
                ..Account::default()
            })
            .collect();
        self.apply(Command::CreateAccounts(accounts)).await;
        self.transfer(id, amount).await;
    }

    async fn transfer(&mut self, id: u128, amount: u128) {
        self.apply(Command::CreateTransfers(vec![Transfer {
            id,
            debit_account_id: 1,
            credit_account_id: 2,
            amount,
            ledger: 1,
            code: 1,
            ..Transfer::default()
        }]))
        .await;
    }

    /// Account `id` as stored in RocksDB.
    fn stored_account(&self, id: u128) -> Account {
        match StateView::new(self.machine.db()).get(&Key::Account(id)) {
            Some(Value::Account(account)) => account,
            other => panic!("account {id}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installed_snapshot_replaces_the_cached_accounts() {
    let mut source = Machine::open();
    source.set_up(10, 10).await;
    let mut target = Machine::open();
    // The target's applies leave account 2 at 99 in its cache.
    target.set_up(20, 99).await;
    assert_eq!(target.stored_account(2).credits_posted, 99);

    let snapshot = source
        .machine
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build snapshot");
    let mut from = snapshot.snapshot;
    let mut into = target
        .machine
        .begin_receiving_snapshot()
        .await
        .expect("begin receiving");
    tokio::io::copy(&mut from, &mut into)
        .await
        .expect("copy snapshot");
    target
        .machine
        .install_snapshot(&snapshot.meta, into)
        .await
        .expect("install snapshot");
    assert_eq!(target.stored_account(2).credits_posted, 10);

    // Both go on from the same state: an apply that used the target's old cached account
    // would credit 99 + 1.
    target.index = source.index;
    source.transfer(11, 1).await;
    target.transfer(11, 1).await;
    for id in [1, 2] {
        assert_eq!(source.stored_account(id), target.stored_account(id));
    }
    assert_eq!(target.stored_account(2).credits_posted, 11);
    assert_eq!(target.stored_account(1).debits_posted, 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_accounts_agree_with_rocksdb_across_applies() {
    let mut machine = Machine::open();
    machine.set_up(1, 5).await;
    // Each apply reads both accounts (from the cache after the first) and writes them back.
    for id in 2..=50u128 {
        machine.transfer(id, id).await;
    }
    let moved: u128 = 5 + (2..=50u128).sum::<u128>();
    assert_eq!(machine.stored_account(1).debits_posted, moved);
    assert_eq!(machine.stored_account(2).credits_posted, moved);
}

/// Snapshot builds that replace the current snapshot, while the current one is read again and
/// again, as openraft's state-machine worker does when a follower needs it.
const RACING_BUILDS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_the_current_snapshot_never_races_a_build_that_replaces_it() {
    let mut m = Machine::open();
    m.set_up(1, 5).await;
    let mut builder = m.machine.get_snapshot_builder().await;
    builder.build_snapshot().await.expect("first snapshot");
    let builds = tokio::spawn(async move {
        for _ in 0..RACING_BUILDS {
            builder.build_snapshot().await.expect("build");
        }
    });
    let mut reads = 0u64;
    while !builds.is_finished() {
        // Before the fix, the file named by the current snapshot could be deleted by a build
        // between reading its name and opening it; the error stopped openraft's state-machine
        // worker, and with it the Raft core.
        let snapshot = m
            .machine
            .get_current_snapshot()
            .await
            .expect("the current snapshot is always readable")
            .expect("there is a current snapshot");
        assert!(snapshot.meta.last_log_id.is_some());
        reads += 1;
    }
    builds.await.expect("builds");
    assert!(reads > 0, "reads ran beside the builds");
}
