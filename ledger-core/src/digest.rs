//! The state digest, an order-independent hash that two replicas can compare, and the audit
//! chain, a SHA-256 hash chain over every applied entry.
//!
//! The digest is the wrapping sum of a 128-bit hash of every record (table, key bytes, value
//! bytes) outside the meta and audit tables. A sum can be kept up to date per write (subtract
//! the old record's hash, add the new one), so `apply` maintains it in O(1) per change and any
//! node can also recompute it from scratch with [`full_digest`] to check the running value.
//! Replicas at the same applied index have the same digest exactly when they hold the same
//! records (up to hash collisions, which xxh3-128 makes negligible for accidental divergence).
//!
//! The audit chain links each applied entry to everything before it: [`chain_next`] hashes the
//! previous link with the entry's log index and last timestamp, the state digest after it and
//! the [`entry_hash`] of its commands. The head is [`crate::Meta::chain`]; every link is also
//! kept in the audit table, where `audit.rs` checks the chain link by link. Unlike the digest,
//! the chain is cryptographic: changing a past entry's commands or outcome without changing
//! every later link takes a SHA-256 collision.

use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::xxh3_128_with_seed;

use crate::codec::{encode_key, encode_value};
use crate::command::Command;
use crate::store::{Key, Store, Table, Value};

const DIGEST_SEED: u64 = 0x6c65_6467_6572_6467; // "ledgerdg"

/// Domain tag at the start of every audit link, so a link is never mistaken for another
/// SHA-256 of the same bytes; the version changes if the link's contents ever do.
pub const AUDIT_DOMAIN: &[u8] = b"ledger-audit-v1";

/// The link before the first entry: the audit chain of an empty state.
pub const AUDIT_GENESIS: [u8; 32] = [0; 32];

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

/// Returns true for the tables the state digest covers: all but the state machine's own
/// bookkeeping (meta and audit), which describe the state rather than belong to it.
pub const fn in_digest(table: Table) -> bool {
    !matches!(table, Table::Meta | Table::Audit)
}

/// Recomputes the digest of every record in the store.
pub fn full_digest(store: &(impl Store + ?Sized)) -> u128 {
    let mut hasher = RecordHasher::default();
    let mut digest = 0u128;
    for table in Table::ALL {
        if !in_digest(table) {
            continue;
        }
        store.for_each(table, &mut |key, value| {
            digest = digest.wrapping_add(hasher.hash(key, value));
        });
    }
    digest
}

/// Returns SHA-256 of the commands of one log entry, in their postcard encoding (the same
/// serde encoding that carries them in the Raft log): equal commands give equal hashes, and
/// any change to an event changes the hash.
///
/// The encoding streams into the hash as it is produced, so it is never held in memory.
pub fn entry_hash(commands: &[Command]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    // Commands are plain structs, vectors and integers, which always serialize, and writing
    // into a hash never fails: an error here is a bug.
    postcard::to_io(commands, &mut hasher).expect("commands encode into a hash");
    hasher.finalize().into()
}

/// Returns the link of the audit chain for the entry at `log_index`: SHA-256 over
/// [`AUDIT_DOMAIN`], the previous link, the log index and the entry's last timestamp (u64
/// little-endian), the state digest after the entry (u128 little-endian) and the entry's
/// [`entry_hash`]. The first entry's previous link is [`AUDIT_GENESIS`].
pub fn chain_next(
    previous: [u8; 32],
    log_index: u64,
    timestamp: u64,
    digest: u128,
    entry_hash: [u8; 32],
) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(AUDIT_DOMAIN);
    hasher.update(previous);
    hasher.update(log_index.to_le_bytes());
    hasher.update(timestamp.to_le_bytes());
    hasher.update(digest.to_le_bytes());
    hasher.update(entry_hash);
    hasher.finalize().into()
}
