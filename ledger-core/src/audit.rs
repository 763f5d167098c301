//! Verification of the audit chain kept in the audit table.
//!
//! Every applied entry leaves an [`AuditRecord`] under its log index (see
//! `state_machine.rs`): its link of the chain and the inputs of that link except the previous
//! one. [`verify_audit`] walks the table in index order, recomputes each link from the one
//! before (`digest::chain_next`, from the all-zero link), and checks that the last record
//! agrees with [`Meta`] and that the state digest recomputed from the records agrees with both.
//! A changed record breaks its own link, a removed record breaks the next one, and a changed
//! ledger record breaks the digest. Indices may skip: Raft entries that carry no commands
//! (blank or membership entries) are never applied here. [`audit_link_at`] returns the link as
//! of any index, so replicas at different applied indices can still compare chains.

use std::fmt::Write;

use crate::digest::{chain_next, full_digest, AUDIT_GENESIS};
use crate::state_machine::read_meta;
use crate::store::{AuditRecord, Key, Meta, Store, Value};

/// Most audit records one scan reads while the table is walked, which bounds the memory a
/// verification holds at once.
const AUDIT_SCAN_RECORDS_MAX: usize = 1024;

/// What a successful verification saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// The number of audit records, one per applied entry.
    pub records: u64,
    /// The log index of the first record (0 when there is none).
    pub first_index: u64,
    /// The log index of the last record (0 when there is none).
    pub last_index: u64,
    /// The last link, equal to [`Meta::chain`] (all zeros when there is no record).
    pub head: [u8; 32],
}

/// Checks the audit chain link by link and against [`Meta`] and the state; returns what it
/// saw, or the first mismatch, naming the log index and what differs.
pub fn verify_audit(store: &(impl Store + ?Sized)) -> Result<AuditReport, String> {
    let meta = read_meta(store);
    let mut walk = ChainWalk {
        report: AuditReport {
            head: AUDIT_GENESIS,
            ..AuditReport::default()
        },
        last_timestamp: 0,
        last_digest: 0,
    };
    let end = Key::Audit(u64::MAX);
    let mut start = Key::Audit(0);
    loop {
        let page = store.scan(&start, &end, false, AUDIT_SCAN_RECORDS_MAX);
        for (key, value) in &page {
            walk.visit(key, value)?;
        }
        match page.last() {
            Some((Key::Audit(index), _)) if page.len() == AUDIT_SCAN_RECORDS_MAX => {
                // The scan's end bound is exclusive, so `index` is below u64::MAX; saturating
                // all the same, so a store that broke that bound ends the walk, not the node.
                start = Key::Audit(index.saturating_add(1));
            }
            _ => break,
        }
    }
    // The exclusive end bound leaves out the greatest possible index.
    if let Some(value) = store.get(&end) {
        walk.visit(&end, &value)?;
    }
    let report = walk.report;

    if report.records == 0 {
        if meta != Meta::default() {
            return Err(format!(
                "audit table is empty, but meta records log index {} and chain head {}",
                meta.last_log_index,
                hex(&meta.chain)
            ));
        }
    } else {
        let index = report.last_index;
        if index != meta.last_log_index {
            return Err(format!(
                "last audit record is at log index {index}, but meta's last log index is {}",
                meta.last_log_index
            ));
        }
        if report.head != meta.chain {
            return Err(format!(
                "audit record {index}: link {} differs from meta's chain head {}",
                hex(&report.head),
                hex(&meta.chain)
            ));
        }
        if walk.last_digest != meta.digest {
            return Err(format!(
                "audit record {index}: state digest {:032x} differs from meta's {:032x}",
                walk.last_digest, meta.digest
            ));
        }
        if walk.last_timestamp != meta.last_timestamp {
            return Err(format!(
                "audit record {index}: timestamp {} differs from meta's last timestamp {}",
                walk.last_timestamp, meta.last_timestamp
            ));
        }
    }

    let recomputed = full_digest(store);
    if recomputed != meta.digest {
        return Err(format!(
            "state digest recomputed from the records {recomputed:032x} differs from meta's \
             {:032x} (at log index {})",
            meta.digest, meta.last_log_index
        ));
    }
    Ok(report)
}

/// Returns the log index and link of the audit record at the greatest index not above
/// `index`: the head of the audit chain as it stood once that entry was applied. None when no
/// entry at or below `index` was applied.
pub fn audit_link_at(store: &(impl Store + ?Sized), index: u64) -> Option<(u64, [u8; 32])> {
    // The scan's end bound is exclusive, so the greatest possible index is read on its own.
    let at_max = if index == u64::MAX {
        store
            .get(&Key::Audit(u64::MAX))
            .map(|v| (Key::Audit(u64::MAX), v))
    } else {
        None
    };
    let found = at_max.or_else(|| {
        store
            .scan(
                &Key::Audit(0),
                &Key::Audit(index.saturating_add(1)),
                true,
                1,
            )
            .pop()
    });
    match found {
        None => None,
        Some((Key::Audit(at), Value::Audit(record))) => Some((at, record.link)),
        Some(other) => panic!("audit table holds {other:?}"),
    }
}

/// The state of a walk along the audit table: the report so far and the last record's fields.
struct ChainWalk {
    report: AuditReport,
    last_timestamp: u64,
    last_digest: u128,
}

impl ChainWalk {
    /// Checks one record against the previous one and moves on to it.
    fn visit(&mut self, key: &Key, value: &Value) -> Result<(), String> {
        let (index, record): (u64, &AuditRecord) = match (key, value) {
            (Key::Audit(index), Value::Audit(record)) => (*index, record),
            _ => return Err(format!("audit table holds {key:?} = {value:?}")),
        };
        let report = &mut self.report;
        if report.records > 0 {
            if index <= report.last_index {
                return Err(format!(
                    "audit record {index} comes after record {}: indices must increase",
                    report.last_index
                ));
            }
            if record.timestamp < self.last_timestamp {
                return Err(format!(
                    "audit record {index}: timestamp {} is before the previous record's {}",
                    record.timestamp, self.last_timestamp
                ));
            }
        }
        let expected = chain_next(
            report.head,
            index,
            record.timestamp,
            record.digest,
            record.entry_hash,
        );
        if record.link != expected {
            return Err(format!(
                "audit record {index}: stored link {} differs from {}, recomputed from the \
                 previous link{} and the record's timestamp, digest and entry hash",
                hex(&record.link),
                hex(&expected),
                if report.records == 0 {
                    String::from(" (the all-zero start)")
                } else {
                    format!(" (record {})", report.last_index)
                }
            ));
        }
        if report.records == 0 {
            report.first_index = index;
        }
        report.records += 1;
        report.last_index = index;
        report.head = record.link;
        self.last_timestamp = record.timestamp;
        self.last_digest = record.digest;
        Ok(())
    }
}

/// Returns the bytes as lowercase hex.
fn hex(bytes: &[u8; 32]) -> String {
    let mut out = String::with_capacity(64);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}
