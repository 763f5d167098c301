//! The audit chain: its links as specified, one audit record per applied entry, `verify_audit`
//! accepting what `apply` builds and catching each kind of tampering, `audit_link_at`, and the
//! hash of an entry's commands.

mod common;

use common::{acct, pending, xfer};
use ledger_core::digest::{chain_next, entry_hash, full_digest, AUDIT_DOMAIN, AUDIT_GENESIS};
use ledger_core::*;
use sha2::{Digest, Sha256};

/// Log indices of the entries `audited_store` applies: the gaps stand for Raft entries that
/// are not commands (blank, membership), which the core never sees, and 255/256 for keys whose
/// big-endian bytes order differently from their little-endian ones.
const INDICES: [u64; 6] = [1, 2, 5, 255, 256, 1_000];

/// The entries `audited_store` applies, one per index in [`INDICES`]; one holds two commands.
fn entries() -> Vec<Vec<Command>> {
    vec![
        vec![Command::CreateAccounts(vec![
            acct(1, AccountFlags::default()),
            acct(2, AccountFlags::HISTORY),
            acct(3, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
        ])],
        vec![Command::CreateTransfers(vec![xfer(10, 1, 2, 500)])],
        vec![
            Command::CreateTransfers(vec![xfer(11, 2, 3, 200)]),
            Command::CreateTransfers(vec![pending(12, 3, 1, 50, 1)]),
        ],
        // Fails: account 3 may not go below zero. Still an entry, still a link.
        vec![Command::CreateTransfers(vec![xfer(13, 3, 1, 1_000_000)])],
        vec![Command::CreateTransfers(vec![xfer(14, 1, 3, 7)])],
        // Seconds later: pending transfer 12 has expired.
        vec![Command::CreateTransfers(vec![xfer(15, 2, 1, 1)])],
    ]
}

fn ctx(position: usize) -> ApplyCtx {
    ApplyCtx {
        log_index: INDICES[position],
        timestamp: 1_000_000_000 + position as u64 * 1_000_000_000,
    }
}

/// A store after every entry of [`entries`] was applied at its index of [`INDICES`].
fn audited_store() -> MemoryStore {
    let mut store = MemoryStore::new();
    for (position, commands) in entries().iter().enumerate() {
        apply_entry(&mut store, commands, ctx(position));
    }
    store
}

fn audit_record(store: &MemoryStore, index: u64) -> AuditRecord {
    match store.get(&Key::Audit(index)) {
        Some(Value::Audit(record)) => record,
        other => panic!("audit record {index}: {other:?}"),
    }
}

/// Replaces the audit record at `index` with `change` applied to it.
fn tamper(store: &mut MemoryStore, index: u64, change: impl FnOnce(&mut AuditRecord)) {
    let mut record = audit_record(store, index);
    change(&mut record);
    store.put(Key::Audit(index), Value::Audit(record));
}

fn verify_error(store: &MemoryStore) -> String {
    match verify_audit(store) {
        Ok(report) => panic!("tampering went unnoticed: {report:?}"),
        Err(error) => error,
    }
}

#[test]
fn verify_audit_accepts_the_chain_apply_builds() {
    let store = audited_store();
    let meta = read_meta(&store);
    let report = verify_audit(&store).expect("an untouched chain verifies");
    assert_eq!(
        report,
        AuditReport {
            records: INDICES.len() as u64,
            first_index: 1,
            last_index: 1_000,
            head: meta.chain,
        }
    );
    assert_ne!(meta.chain, AUDIT_GENESIS);
    // One record per applied entry and nothing else in the table.
    let mut indices = Vec::new();
    store.for_each(Table::Audit, &mut |key, _| match key {
        Key::Audit(index) => indices.push(*index),
        other => panic!("audit table holds {other:?}"),
    });
    indices.sort_unstable();
    assert_eq!(indices, INDICES);
}

#[test]
fn each_audit_record_holds_its_entry_and_the_state_after_it() {
    let mut store = MemoryStore::new();
    let mut previous = AUDIT_GENESIS;
    for (position, commands) in entries().iter().enumerate() {
        let ctx = ctx(position);
        apply_entry(&mut store, commands, ctx);
        let meta = read_meta(&store);
        let record = audit_record(&store, ctx.log_index);
        assert_eq!(record.entry_hash, entry_hash(commands));
        assert_eq!(record.digest, meta.digest);
        assert_eq!(record.digest, full_digest(&store));
        assert_eq!(record.timestamp, meta.last_timestamp);
        assert_eq!(record.link, meta.chain);
        // The link as specified, computed here byte by byte rather than with `chain_next`.
        let mut hasher = Sha256::new();
        hasher.update(b"ledger-audit-v1");
        hasher.update(previous);
        hasher.update(ctx.log_index.to_le_bytes());
        hasher.update(meta.last_timestamp.to_le_bytes());
        hasher.update(meta.digest.to_le_bytes());
        hasher.update(entry_hash(commands));
        let expected: [u8; 32] = hasher.finalize().into();
        assert_eq!(record.link, expected, "link of entry {}", ctx.log_index);
        assert_eq!(
            chain_next(
                previous,
                ctx.log_index,
                record.timestamp,
                record.digest,
                record.entry_hash
            ),
            expected
        );
        previous = record.link;
    }
    assert_eq!(AUDIT_DOMAIN, b"ledger-audit-v1");
}

#[test]
fn an_empty_store_verifies_with_no_records() {
    let report = verify_audit(&MemoryStore::new()).expect("an empty store verifies");
    assert_eq!(
        report,
        AuditReport {
            records: 0,
            first_index: 0,
            last_index: 0,
            head: AUDIT_GENESIS,
        }
    );
}

#[test]
fn a_changed_record_digest_breaks_its_link() {
    let mut store = audited_store();
    tamper(&mut store, 5, |r| r.digest = r.digest.wrapping_add(1));
    let error = verify_error(&store);
    assert!(error.starts_with("audit record 5: stored link"), "{error}");
}

#[test]
fn a_changed_entry_hash_breaks_its_link() {
    let mut store = audited_store();
    tamper(&mut store, 255, |r| r.entry_hash[0] ^= 1);
    let error = verify_error(&store);
    assert!(
        error.starts_with("audit record 255: stored link"),
        "{error}"
    );
}

#[test]
fn a_changed_record_timestamp_breaks_its_link() {
    let mut store = audited_store();
    tamper(&mut store, 2, |r| r.timestamp += 1);
    let error = verify_error(&store);
    assert!(error.starts_with("audit record 2: stored link"), "{error}");
}

#[test]
fn a_rewritten_link_is_caught_at_its_record() {
    let mut store = audited_store();
    tamper(&mut store, 1, |r| r.link[31] ^= 0x80);
    let error = verify_error(&store);
    assert!(error.starts_with("audit record 1: stored link"), "{error}");
    assert!(error.contains("all-zero start"), "{error}");
}

#[test]
fn a_deleted_middle_record_breaks_the_next_link() {
    let mut store = audited_store();
    store.delete(&Key::Audit(5));
    let error = verify_error(&store);
    assert!(
        error.starts_with("audit record 255: stored link"),
        "{error}"
    );
    assert!(error.contains("(record 2)"), "{error}");
}

#[test]
fn a_deleted_last_record_disagrees_with_meta() {
    let mut store = audited_store();
    store.delete(&Key::Audit(1_000));
    let error = verify_error(&store);
    assert!(
        error.contains("last audit record is at log index 256")
            && error.contains("last log index is 1000"),
        "{error}"
    );
}

#[test]
fn a_deleted_audit_table_disagrees_with_meta() {
    let mut store = audited_store();
    for index in INDICES {
        store.delete(&Key::Audit(index));
    }
    let error = verify_error(&store);
    assert!(error.starts_with("audit table is empty"), "{error}");
}

#[test]
fn an_altered_meta_chain_is_caught() {
    let mut store = audited_store();
    let mut meta = read_meta(&store);
    meta.chain[0] ^= 1;
    store.put(Key::Meta, Value::Meta(meta));
    let error = verify_error(&store);
    assert!(
        error.starts_with("audit record 1000: link") && error.contains("chain head"),
        "{error}"
    );
}

#[test]
fn an_altered_meta_digest_is_caught() {
    let mut store = audited_store();
    let mut meta = read_meta(&store);
    meta.digest ^= 1;
    store.put(Key::Meta, Value::Meta(meta));
    let error = verify_error(&store);
    assert!(
        error.starts_with("audit record 1000: state digest"),
        "{error}"
    );
}

#[test]
fn an_altered_transfer_disagrees_with_the_digest() {
    let mut store = audited_store();
    let mut transfer = match store.get(&Key::Transfer(10)) {
        Some(Value::Transfer(t)) => t,
        other => panic!("transfer 10: {other:?}"),
    };
    transfer.amount += 1;
    store.put(Key::Transfer(10), Value::Transfer(transfer));
    let error = verify_error(&store);
    assert!(
        error.starts_with("state digest recomputed from the records"),
        "{error}"
    );
    // The whole-state checker sees it too, as a digest and a balance that no longer match.
    let violations = check_invariants(&store).expect_err("tampering must be caught");
    assert!(
        violations.iter().any(|v| v.contains("running digest")),
        "{violations:?}"
    );
}

#[test]
fn audit_link_at_returns_the_record_at_or_below_an_index() {
    let store = audited_store();
    let link = |index| audit_record(&store, index).link;
    assert_eq!(audit_link_at(&store, 0), None);
    assert_eq!(audit_link_at(&store, 1), Some((1, link(1))));
    assert_eq!(audit_link_at(&store, 2), Some((2, link(2))));
    // 3 and 4 were not applied here: the chain stood as entry 2 left it.
    assert_eq!(audit_link_at(&store, 4), Some((2, link(2))));
    assert_eq!(audit_link_at(&store, 5), Some((5, link(5))));
    assert_eq!(audit_link_at(&store, 255), Some((255, link(255))));
    assert_eq!(audit_link_at(&store, 256), Some((256, link(256))));
    assert_eq!(audit_link_at(&store, 999), Some((256, link(256))));
    assert_eq!(
        audit_link_at(&store, 1_000),
        Some((1_000, read_meta(&store).chain))
    );
    assert_eq!(
        audit_link_at(&store, u64::MAX),
        Some((1_000, read_meta(&store).chain))
    );
    assert_eq!(audit_link_at(&MemoryStore::new(), u64::MAX), None);
}

#[test]
fn audit_link_at_reads_the_greatest_index() {
    let mut store = MemoryStore::new();
    let commands = [Command::CreateAccounts(vec![acct(
        1,
        AccountFlags::default(),
    )])];
    apply_entry(
        &mut store,
        &commands,
        ApplyCtx {
            log_index: u64::MAX,
            timestamp: 1,
        },
    );
    let head = read_meta(&store).chain;
    assert_eq!(audit_link_at(&store, u64::MAX), Some((u64::MAX, head)));
    assert_eq!(audit_link_at(&store, u64::MAX - 1), None);
    let report = verify_audit(&store).expect("a record at the greatest index verifies");
    assert_eq!((report.records, report.last_index), (1, u64::MAX));
}

#[test]
fn entry_hash_is_equal_for_equal_commands_and_differs_otherwise() {
    let a = vec![Command::CreateTransfers(vec![xfer(1, 1, 2, 100)])];
    let same = vec![Command::CreateTransfers(vec![xfer(1, 1, 2, 100)])];
    assert_eq!(entry_hash(&a), entry_hash(&same));

    let other_amount = vec![Command::CreateTransfers(vec![xfer(1, 1, 2, 101)])];
    let other_kind = vec![Command::CreateAccounts(vec![acct(
        1,
        AccountFlags::default(),
    )])];
    let two = vec![
        Command::CreateTransfers(vec![xfer(1, 1, 2, 100)]),
        Command::CreateTransfers(vec![xfer(2, 1, 2, 100)]),
    ];
    let swapped = vec![two[1].clone(), two[0].clone()];
    let joined = vec![Command::CreateTransfers(vec![
        xfer(1, 1, 2, 100),
        xfer(2, 1, 2, 100),
    ])];
    let hashes = [
        entry_hash(&a),
        entry_hash(&other_amount),
        entry_hash(&other_kind),
        entry_hash(&two),
        entry_hash(&swapped),
        entry_hash(&joined),
        entry_hash(&[]),
    ];
    for (i, x) in hashes.iter().enumerate() {
        for y in &hashes[i + 1..] {
            assert_ne!(x, y);
        }
    }
}

#[test]
fn entry_hash_is_sha256_of_the_postcard_encoding() {
    // Large enough to cross the hasher's buffer many times, with fields of every width.
    let transfers: Vec<Transfer> = (1..=300u128)
        .map(|id| Transfer {
            user_data_128: u128::MAX / id,
            user_data_64: u64::MAX / id as u64,
            ..xfer(id, 1, 2, id * 1_000_000_007)
        })
        .collect();
    let commands = vec![
        Command::CreateTransfers(transfers),
        Command::CreateAccounts(vec![acct(9, AccountFlags::HISTORY)]),
    ];
    let encoded = postcard::to_stdvec(&commands).expect("commands encode");
    assert!(encoded.len() > 10_000);
    let expected: [u8; 32] = Sha256::digest(&encoded).into();
    assert_eq!(entry_hash(&commands), expected);
    // An entry without commands still encodes its (zero) length.
    let none: &[Command] = &[];
    assert_eq!(postcard::to_stdvec(none).expect("encodes"), [0]);
    let empty: [u8; 32] = Sha256::digest([0u8]).into();
    assert_eq!(entry_hash(none), empty);
}

#[test]
fn the_chain_covers_commands_that_leave_no_trace() {
    // Two transfers that both fail validation and leave the state as it was: the state digests
    // agree, the chains do not.
    let setup = [Command::CreateAccounts(vec![
        acct(1, AccountFlags::default()),
        acct(2, AccountFlags::default()),
    ])];
    let mut a = MemoryStore::new();
    let mut b = MemoryStore::new();
    let first = ApplyCtx {
        log_index: 1,
        timestamp: 1_000,
    };
    let second = ApplyCtx {
        log_index: 2,
        timestamp: 2_000,
    };
    apply_entry(&mut a, &setup, first);
    apply_entry(&mut b, &setup, first);
    let fail_a = Command::CreateTransfers(vec![xfer(5, 1, 1, 10)]);
    let fail_b = Command::CreateTransfers(vec![xfer(6, 2, 2, 20)]);
    let results_a = apply(&mut a, &fail_a, second);
    let results_b = apply(&mut b, &fail_b, second);
    assert_eq!(
        results_a,
        CommandResults::CreateTransfers(vec![TransferResult::AccountsMustBeDifferent])
    );
    assert_eq!(results_a, results_b);
    assert_eq!(read_meta(&a).digest, read_meta(&b).digest);
    assert_eq!(read_meta(&a).last_timestamp, read_meta(&b).last_timestamp);
    assert_ne!(read_meta(&a).chain, read_meta(&b).chain);
    verify_audit(&a).expect("chain a verifies");
    verify_audit(&b).expect("chain b verifies");
}

#[test]
fn replicas_applying_the_same_entries_agree_on_every_link() {
    let a = audited_store();
    let b = audited_store();
    for index in INDICES {
        assert_eq!(audit_record(&a, index), audit_record(&b, index));
    }
    assert_eq!(read_meta(&a), read_meta(&b));
}

#[test]
fn verify_audit_walks_a_table_longer_than_one_scan() {
    // Past two pages of the walk's range scans, with a gap at every other index.
    let mut store = MemoryStore::new();
    let entries = 2_100u64;
    for n in 1..=entries {
        let commands = [Command::CreateAccounts(vec![acct(
            u128::from(n),
            AccountFlags::default(),
        )])];
        apply_entry(
            &mut store,
            &commands,
            ApplyCtx {
                log_index: 2 * n,
                timestamp: n,
            },
        );
    }
    let report = verify_audit(&store).expect("a long chain verifies");
    assert_eq!(
        (report.records, report.first_index, report.last_index),
        (entries, 2, 2 * entries)
    );
    assert_eq!(report.head, read_meta(&store).chain);
    // A record deep in the second page is still checked.
    tamper(&mut store, 3_000, |r| r.digest ^= 1);
    let error = verify_error(&store);
    assert!(
        error.starts_with("audit record 3000: stored link"),
        "{error}"
    );
}
