//! ledger-core's `Store` on RocksDB passes the same conformance suite as the in-memory store,
//! and what it commits reads back identically.

use ledger_core::conformance;
use ledger_core::digest::full_digest;
use ledger_core::{apply, check_invariants, read_meta, Account, ApplyCtx, Command, Transfer};
use ledger_server::raft::log_store::open_db;
use ledger_server::storage::state_store::StateView;

fn with_fresh_view(check: impl FnOnce(&mut StateView)) {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path().join("db"), 8).unwrap();
    let mut view = StateView::new(&db);
    check(&mut view);
    assert!(view.error().is_none(), "{:?}", view.error());
}

#[test]
fn rocksdb_state_store_passes_the_conformance_suite() {
    with_fresh_view(|v| conformance::point_reads_see_writes(v));
    with_fresh_view(|v| conformance::scans_are_ordered_and_bounded(v));
    with_fresh_view(|v| conformance::for_each_visits_one_table(v));
    with_fresh_view(|v| conformance::apply_matches_memory_store(v));
}

#[test]
fn committed_writes_read_back_the_same_through_rocksdb() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path().join("db"), 8).unwrap();
    // Range scans must merge committed records with the overlay, so commit half first.
    let mut view = StateView::new(&db);
    conformance::scans_are_ordered_and_bounded(&mut view);
    db.write(view.into_write_batch().unwrap()).unwrap();
    let mut view = StateView::new(&db);
    conformance::scans_are_ordered_and_bounded(&mut view);

    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path().join("db"), 8).unwrap();
    let account = |id| Account {
        id,
        ledger: 1,
        code: 1,
        ..Account::default()
    };
    let transfer = |id, dr, cr| Transfer {
        id,
        debit_account_id: dr,
        credit_account_id: cr,
        amount: 10,
        ledger: 1,
        code: 1,
        ..Transfer::default()
    };
    let commands = [
        Command::CreateAccounts(vec![account(1), account(2), account(3)]),
        Command::CreateTransfers(
            (1..=50)
                .map(|i| transfer(i, 1 + i % 3, 1 + (i + 1) % 3))
                .collect(),
        ),
    ];
    for (i, command) in commands.iter().enumerate() {
        let mut view = StateView::new(&db);
        apply(
            &mut view,
            command,
            ApplyCtx {
                log_index: i as u64 + 1,
                timestamp: 1_000 + i as u64,
            },
        );
        db.write(view.into_write_batch().unwrap()).unwrap();
    }
    let view = StateView::new(&db);
    let report = check_invariants(&view).expect("invariants hold on what RocksDB holds");
    assert_eq!(report.transfers, 50);
    assert_eq!(full_digest(&view), read_meta(&view).digest);
}
