//! The state digest: an order-independent hash that two replicas can compare.
//!
//! The digest is the wrapping sum of a 128-bit hash of every record (table, key bytes, value
//! bytes) outside the meta table. A sum can be kept up to date per write (subtract the old
//! record's hash, add the new one), so `apply` maintains it in O(1) per change and any node can
//! also recompute it from scratch with [`full_digest`] to check the running value. Replicas at
//! the same applied index have the same digest exactly when they hold the same records (up to
//! hash collisions, which xxh3-128 makes negligible for accidental divergence).

use xxhash_rust::xxh3::xxh3_128_with_seed;

use crate::codec::{encode_key, encode_value};
use crate::store::{Key, Store, Table, Value};

const DIGEST_SEED: u64 = 0x6c65_6467_6572_6467; // "ledgerdg"

/// Hashes records into the digest, reusing one buffer.
#[derive(Default)]
pub struct RecordHasher {
    buffer: Vec<u8>,
}

impl RecordHasher {
    /// Returns the hash of one record.
    pub fn hash(&mut self, key: &Key, value: &Value) -> u128 {
        self.buffer.clear();
        self.buffer.push(key.table() as u8);
        encode_key(key, &mut self.buffer);
        encode_value(value, &mut self.buffer);
        xxh3_128_with_seed(&self.buffer, DIGEST_SEED)
    }
}

/// Recomputes the digest of every record in the store.
pub fn full_digest(store: &impl Store) -> u128 {
    let mut hasher = RecordHasher::default();
    let mut digest = 0u128;
    for table in Table::ALL {
        if table == Table::Meta {
            continue;
        }
        store.for_each(table, &mut |key, value| {
            digest = digest.wrapping_add(hasher.hash(key, value));
        });
    }
    digest
}

/// Returns the next link of the audit chain: each applied entry's link covers the previous
/// link, the entry's log index and timestamp, and the state digest after it.
pub fn chain_next(previous: u128, log_index: u64, timestamp: u64, digest: u128) -> u128 {
    let mut bytes = [0u8; 56];
    bytes[0..16].copy_from_slice(&previous.to_le_bytes());
    bytes[16..24].copy_from_slice(&log_index.to_le_bytes());
    bytes[24..32].copy_from_slice(&timestamp.to_le_bytes());
    bytes[32..48].copy_from_slice(&digest.to_le_bytes());
    bytes[48..56].copy_from_slice(b"ledgerch");
    xxh3_128_with_seed(&bytes, DIGEST_SEED)
}
