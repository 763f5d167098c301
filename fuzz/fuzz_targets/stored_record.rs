//! A stored state record, as RocksDB returns it and as snapshot chunks carry it: any bytes,
//! decoded as the key and the value of a table. Must never panic; what decodes must encode back
//! to the same bytes (one encoding per record, or replicas could disagree on the digest).
#![no_main]

use ledger_core::codec::{decode_key, decode_value, key_bytes, value_bytes};
use ledger_core::Table;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let Some(table) = Table::from_u8(data[0] % (Table::ALL.len() as u8 + 1)) else {
        return;
    };
    let split = usize::from(data[1]).min(data.len() - 2);
    let (key, value) = data[2..].split_at(split);
    if let Ok(decoded) = decode_key(table, key) {
        assert_eq!(key_bytes(&decoded), key, "a key has one encoding");
    }
    if let Ok(decoded) = decode_value(table, value) {
        assert_eq!(value_bytes(&decoded), value, "a value has one encoding");
    }
});
