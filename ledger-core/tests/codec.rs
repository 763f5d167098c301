//! The byte encodings of the audit table and the meta record: round trips, key order, and
//! damaged or outdated bytes refused with a reason.

use ledger_core::codec::{decode_key, decode_value, key_bytes, value_bytes, DecodeError};
use ledger_core::*;

fn record(seed: u8) -> AuditRecord {
    AuditRecord {
        link: [seed; 32],
        entry_hash: std::array::from_fn(|i| seed.wrapping_add(i as u8)),
        digest: u128::MAX - u128::from(seed),
        timestamp: 1_700_000_000_000_000_000 + u64::from(seed),
    }
}

#[test]
fn audit_keys_round_trip_in_index_order() {
    let indices = [
        0u64,
        1,
        2,
        255,
        256,
        65_535,
        65_536,
        1 << 40,
        u64::MAX - 1,
        u64::MAX,
    ];
    let mut previous: Option<Vec<u8>> = None;
    for index in indices {
        let key = Key::Audit(index);
        assert_eq!(key.table(), Table::Audit);
        let bytes = key_bytes(&key);
        assert_eq!(bytes, index.to_be_bytes());
        assert_eq!(decode_key(Table::Audit, &bytes), Ok(key));
        // Byte order is index order, so RocksDB scans the table in log order.
        if let Some(previous) = previous {
            assert!(previous < bytes, "index {index}");
        }
        previous = Some(bytes);
    }
}

#[test]
fn audit_values_round_trip() {
    for seed in [0u8, 1, 0x7f, 0xff] {
        let value = Value::Audit(record(seed));
        assert_eq!(value.table(), Table::Audit);
        let bytes = value_bytes(&value);
        // Version byte, two hashes, digest, timestamp.
        assert_eq!(bytes.len(), 1 + 32 + 32 + 16 + 8);
        assert_eq!(decode_value(Table::Audit, &bytes), Ok(value));
    }
}

#[test]
fn meta_values_round_trip_with_a_32_byte_chain() {
    let meta = Meta {
        last_timestamp: 42,
        last_log_index: 7,
        digest: 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
        chain: std::array::from_fn(|i| i as u8 * 3),
    };
    let bytes = value_bytes(&Value::Meta(meta));
    assert_eq!(bytes.len(), 1 + 8 + 8 + 16 + 32);
    assert_eq!(decode_value(Table::Meta, &bytes), Ok(Value::Meta(meta)));
    assert_eq!(
        decode_key(Table::Meta, &key_bytes(&Key::Meta)),
        Ok(Key::Meta)
    );
}

#[test]
fn damaged_audit_bytes_are_refused() {
    let error = |reason| DecodeError {
        table: Table::Audit,
        reason,
    };
    let bytes = value_bytes(&Value::Audit(record(9)));
    assert_eq!(
        decode_value(Table::Audit, &bytes[..bytes.len() - 1]),
        Err(error("truncated"))
    );
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        decode_value(Table::Audit, &longer),
        Err(error("trailing bytes"))
    );
    let mut versioned = bytes;
    versioned[0] = 9;
    assert_eq!(
        decode_value(Table::Audit, &versioned),
        Err(error("unknown value format version"))
    );
    assert_eq!(decode_key(Table::Audit, &[0; 7]), Err(error("truncated")));
    assert_eq!(
        decode_key(Table::Audit, &[0; 9]),
        Err(error("trailing bytes"))
    );
}

#[test]
fn a_meta_record_of_the_former_layout_is_refused_by_name() {
    // Version 1: timestamp, index, digest, then a 16-byte chain head.
    let mut old = vec![1u8];
    old.extend_from_slice(&42u64.to_le_bytes());
    old.extend_from_slice(&7u64.to_le_bytes());
    old.extend_from_slice(&3u128.to_le_bytes());
    old.extend_from_slice(&5u128.to_le_bytes());
    let error = decode_value(Table::Meta, &old).expect_err("the old layout must not decode");
    assert_eq!(error.table, Table::Meta);
    assert!(error.reason.contains("older release"), "{error}");
}

#[test]
fn the_audit_table_is_numbered_named_and_ordered() {
    assert_eq!(Table::ALL.len(), 13);
    assert_eq!(Table::Audit as u8, 13);
    assert_eq!(Table::from_u8(13), Some(Table::Audit));
    assert_eq!(Table::from_u8(14), None);
    assert_eq!(Table::Audit.name(), "audit");
    assert!(Table::Audit.ordered());
    for (position, table) in Table::ALL.iter().enumerate() {
        assert_eq!(*table as usize, position + 1);
    }
}

#[test]
fn the_meta_key_has_one_encoding() {
    // Found by the `stored_record` fuzz target: [1] used to decode as the meta key, whose
    // encoding is [0], so one record had two keys.
    assert_eq!(decode_key(Table::Meta, &[0]), Ok(Key::Meta));
    assert!(decode_key(Table::Meta, &[1]).is_err());
    assert_eq!(key_bytes(&Key::Meta), vec![0]);
}
