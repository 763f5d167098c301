//! The conformance suite every [`Store`] implementation must pass: the in-memory store runs it
//! in this crate's tests, the RocksDB store in the server's. Each function panics with a
//! message on the first difference.

use crate::account::{Account, AccountFlags};
use crate::audit::verify_audit;
use crate::command::{ApplyCtx, Command, CommandResults};
use crate::digest::full_digest;
use crate::memory_store::MemoryStore;
use crate::state_machine::{apply, read_meta};
use crate::store::{AccountEntry, EntryKind, Key, Store, Table, Value};
use crate::transfer::{Transfer, TransferFlags};

/// Runs every check, each on a fresh store from `make`.
pub fn run_all<S: Store>(mut make: impl FnMut() -> S) {
    point_reads_see_writes(&mut make());
    scans_are_ordered_and_bounded(&mut make());
    for_each_visits_one_table(&mut make());
    apply_matches_memory_store(&mut make());
}

fn entry(account_id: u128, timestamp: u64) -> (Key, Value) {
    (
        Key::AccountEntry {
            account_id,
            timestamp,
        },
        Value::AccountEntry(AccountEntry {
            transfer_id: u128::from(timestamp),
            kind: EntryKind::Transfer,
            balances: None,
        }),
    )
}

/// Put, overwrite, delete: every read sees the latest write.
pub fn point_reads_see_writes(store: &mut impl Store) {
    let account = Account {
        id: 7,
        ledger: 1,
        code: 1,
        ..Account::default()
    };
    assert_eq!(store.get(&Key::Account(7)), None);
    store.put(Key::Account(7), Value::Account(account));
    assert_eq!(store.get(&Key::Account(7)), Some(Value::Account(account)));
    let changed = Account {
        credits_posted: 5,
        ..account
    };
    store.put(Key::Account(7), Value::Account(changed));
    assert_eq!(store.get(&Key::Account(7)), Some(Value::Account(changed)));
    store.delete(&Key::Account(7));
    assert_eq!(store.get(&Key::Account(7)), None);
    // The same number in another table is another record.
    store.put(
        Key::Liability {
            market_id: 7,
            selection_id: 1,
        },
        Value::Liability(3),
    );
    assert_eq!(store.get(&Key::Account(7)), None);
    assert_eq!(
        store.get(&Key::Liability {
            market_id: 7,
            selection_id: 1
        }),
        Some(Value::Liability(3))
    );
}

/// Range scans return keys in order, honour both bounds, the limit and `reverse`.
pub fn scans_are_ordered_and_bounded(store: &mut impl Store) {
    // Neighbouring accounts and a timestamp needing more than one byte check the big-endian
    // order of the encoded keys.
    for (account, ts) in [
        (1u128, 5u64),
        (2, 1),
        (2, 300),
        (2, 2),
        (3, 0),
        (2, u64::MAX - 1),
    ] {
        let (k, v) = entry(account, ts);
        store.put(k, v);
    }
    let start = Key::AccountEntry {
        account_id: 2,
        timestamp: 0,
    };
    let end = Key::AccountEntry {
        account_id: 3,
        timestamp: 0,
    };
    let stamps = |rows: Vec<(Key, Value)>| -> Vec<u64> {
        rows.into_iter()
            .map(|(k, _)| match k {
                Key::AccountEntry { timestamp, .. } => timestamp,
                other => panic!("scan returned {other:?}"),
            })
            .collect()
    };
    assert_eq!(
        stamps(store.scan(&start, &end, false, 100)),
        vec![1, 2, 300, u64::MAX - 1]
    );
    assert_eq!(
        stamps(store.scan(&start, &end, true, 100)),
        vec![u64::MAX - 1, 300, 2, 1]
    );
    assert_eq!(stamps(store.scan(&start, &end, false, 2)), vec![1, 2]);
    assert_eq!(
        stamps(store.scan(&start, &end, true, 1)),
        vec![u64::MAX - 1]
    );
    let mid = Key::AccountEntry {
        account_id: 2,
        timestamp: 300,
    };
    assert_eq!(stamps(store.scan(&start, &mid, false, 100)), vec![1, 2]);
    assert_eq!(
        stamps(store.scan(&mid, &end, false, 100)),
        vec![300, u64::MAX - 1]
    );
    assert_eq!(
        stamps(store.scan(&mid, &mid, false, 100)),
        Vec::<u64>::new()
    );
    store.delete(&Key::AccountEntry {
        account_id: 2,
        timestamp: 2,
    });
    assert_eq!(
        stamps(store.scan(&start, &end, false, 100)),
        vec![1, 300, u64::MAX - 1]
    );
}

/// `for_each` visits exactly the records of the table asked for.
pub fn for_each_visits_one_table(store: &mut impl Store) {
    for id in 1..=3u128 {
        store.put(
            Key::Account(id),
            Value::Account(Account {
                id,
                ledger: 1,
                code: 1,
                ..Account::default()
            }),
        );
    }
    let (k, v) = entry(1, 1);
    store.put(k, v);
    let mut seen = Vec::new();
    store.for_each(Table::Accounts, &mut |key, _| seen.push(*key));
    seen.sort();
    assert_eq!(
        seen,
        vec![Key::Account(1), Key::Account(2), Key::Account(3)]
    );
}

/// Returns every audit record of the store, in index order (by a range scan, as
/// `verify_audit` reads them).
fn audit_records(store: &impl Store) -> Vec<(Key, Value)> {
    store.scan(&Key::Audit(0), &Key::Audit(u64::MAX), false, usize::MAX)
}

/// The same commands give the same results, state digest and audit chain as on the in-memory
/// store, and the same audit records, which a range scan returns in log index order.
pub fn apply_matches_memory_store(store: &mut impl Store) {
    let mut reference = MemoryStore::new();
    let history = AccountFlags::HISTORY;
    let limited = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
    let account = |id: u128, flags: AccountFlags| Account {
        id,
        ledger: 1,
        code: 1,
        flags,
        ..Account::default()
    };
    let transfer =
        |id: u128, dr: u128, cr: u128, amount: u128, flags, pending_id, timeout| Transfer {
            id,
            debit_account_id: dr,
            credit_account_id: cr,
            amount,
            pending_id,
            timeout,
            ledger: 1,
            code: 1,
            flags,
            ..Transfer::default()
        };
    let commands = [
        Command::CreateAccounts(vec![
            account(1, history),
            account(2, limited),
            account(3, history),
        ]),
        Command::CreateTransfers(vec![
            transfer(10, 1, 2, 1_000, TransferFlags::default(), 0, 0),
            transfer(11, 2, 3, 400, TransferFlags::PENDING, 0, 1),
            transfer(12, 2, 3, 700, TransferFlags::default(), 0, 0),
            transfer(13, 2, 3, 100, TransferFlags::PENDING, 0, 0),
            transfer(14, 0, 0, 60, TransferFlags::POST_PENDING_TRANSFER, 13, 0),
        ]),
        // Two seconds later: transfer 11 has expired.
        Command::CreateTransfers(vec![
            transfer(15, 0, 0, 0, TransferFlags::POST_PENDING_TRANSFER, 11, 0),
            transfer(16, 2, 1, 900, TransferFlags::default(), 0, 0),
        ]),
    ];
    // Gaps stand for Raft entries that carry no command; 255 and 256 order differently as
    // little-endian bytes.
    let log_indices = [1u64, 255, 256];
    let mut timestamp = 1_000_000_000u64;
    for (index, command) in commands.iter().enumerate() {
        let ctx = ApplyCtx {
            log_index: log_indices[index],
            timestamp,
        };
        let expected: CommandResults = apply(&mut reference, command, ctx);
        let actual = apply(store, command, ctx);
        assert_eq!(actual, expected, "results of command {index}");
        assert_eq!(
            read_meta(store),
            read_meta(&reference),
            "meta after command {index}"
        );
        timestamp += 2_000_000_000;
    }
    assert_eq!(full_digest(store), full_digest(&reference));
    assert_eq!(full_digest(store), read_meta(store).digest);
    let records = audit_records(store);
    let keys: Vec<Key> = records.iter().map(|(key, _)| *key).collect();
    assert_eq!(
        keys,
        log_indices.map(Key::Audit),
        "audit keys in index order"
    );
    assert_eq!(records, audit_records(&reference), "audit records");
    let report = verify_audit(store).unwrap_or_else(|e| panic!("audit chain: {e}"));
    assert_eq!(report.head, read_meta(store).chain);
    assert_eq!(report.records, log_indices.len() as u64);
}
