//! A stored Raft log entry as RocksDB returns it, damaged or not: any key and record bytes
//! through the log store's checks (`decode_entry`). Must never panic; what passes must be the
//! entry of its key's index, and must seal back to a record that decodes to the same entry.
#![no_main]

use ledger_server::raft::log_store::{decode_entry, seal, Corruption};
use ledger_server::raft::types::TypeConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // Bit 0: a malformed key of (mode >> 4) bytes instead of 8. Bit 1: give the record a
    // correct crc32, so that the payload decoder is reached. Bit 2: the scan expects an index,
    // the key's own or (bit 3) the one after it.
    let key_len = if mode & 1 == 0 {
        8
    } else {
        usize::from(mode >> 4)
    };
    if rest.len() < key_len {
        return;
    }
    let (key, body) = rest.split_at(key_len);
    let record = if mode & 2 != 0 {
        let mut sealed = crc32fast::hash(body).to_be_bytes().to_vec();
        sealed.extend_from_slice(body);
        sealed
    } else {
        body.to_vec()
    };
    let index = <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes);
    let expected = index
        .filter(|_| mode & 4 != 0)
        .map(|i| i.wrapping_add(u64::from((mode >> 3) & 1)));
    match decode_entry::<TypeConfig>(key, &record, 7, expected) {
        Ok(entry) => {
            let index = index.expect("an entry passes only under an 8-byte key");
            assert_eq!(entry.log_id.index, index, "the entry of its key's index");
            assert!(expected.is_none_or(|e| e == index), "a hole passed");
            let sealed = seal(&entry).expect("a decoded entry encodes");
            let again = decode_entry::<TypeConfig>(key, &sealed, 7, None).expect("re-decodes");
            assert_eq!(again, entry, "an entry survives sealing");
        }
        Err(e) => match e.corruption {
            Corruption::MalformedKey { len } => {
                assert_eq!(
                    (len, e.index),
                    (key.len(), 7),
                    "names the key and the position"
                )
            }
            Corruption::Missing { next_present } => {
                assert_eq!(Some(next_present), index, "names the index found");
                assert_eq!(Some(e.index), expected, "names the index expected");
            }
            _ => assert_eq!(Some(e.index), index, "names the key's index"),
        },
    }
});
