//! A check of RocksDB's write-ahead log files before RocksDB opens them, for one torn tail
//! that RocksDB 10.4 cannot get past.
//!
//! RocksDB's log reader (`db/log_reader.cc`, `ReadPhysicalRecord`) answers a record header
//! whose type byte reads as a *recyclable* record type, met after the first record of a log
//! that is not recycled, with `kBadRecord`, without consuming the header; `ReadRecord` then
//! asks for the next record again, and gets the same answer, for ever. Ledger never recycles
//! log files, so such a header is never written; but a write torn as the power went can leave
//! stale bytes at the tail of the log, and one byte in 40 of them reads as such a type. The
//! node then never finished starting: no error, no exit, nothing for a service manager to
//! restart (found by the simulator, `ledger-sim`, whose first torn-write model appended
//! random bytes; docs/simulator.md).
//!
//! So each log file is walked first as the reader walks it (32 KiB blocks, 7-byte headers,
//! masked crc32c of type and payload). At a header that would loop the reader:
//!
//! - if no intact record starts anywhere after it, it is a torn tail: the file is truncated
//!   there, which is what RocksDB does with a torn tail it can read
//!   (`TolerateCorruptedTailRecords`, `log_store.rs`), and a warning says so;
//! - otherwise the damage is in the middle of the log, where RocksDB refuses to open, and so
//!   does this check, with the file and offset.
//!
//! Every other header is left to RocksDB, which handles it.

use std::path::{Path, PathBuf};

/// RocksDB's log block and record header sizes (`db/log_format.h`).
const BLOCK_BYTES: u64 = 32 * 1024;
const HEADER_BYTES: u64 = 7;
/// Record types a reader of a log that is not recycled loops on (`db/log_format.h`:
/// kRecyclableFullType .. kRecyclableLastType, kRecyclableUserDefinedTimestampSizeType,
/// kRecyclePredecessorWALInfoType).
const LOOPING_TYPES: [u8; 6] = [5, 6, 7, 8, 11, 131];
/// The types of an intact data record (full, first, middle, last).
const DATA_TYPES: std::ops::RangeInclusive<u8> = 1..=4;

/// What the check did to one log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    /// Where the torn tail began: the file's new length.
    pub offset: u64,
    /// Bytes dropped.
    pub dropped: u64,
}

/// Checks every `*.log` file in `db_dir` (nothing to do if the folder does not exist yet):
/// truncates a torn tail RocksDB would loop on, refuses a log damaged in its middle.
pub fn repair_looping_tails(db_dir: &Path) -> Result<Vec<TornTail>, String> {
    let entries = match std::fs::read_dir(db_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", db_dir.display())),
    };
    let mut repaired = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("{}: {e}", db_dir.display()))?
            .path();
        if path.extension().is_none_or(|x| x != "log") {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let Some(offset) = looping_header(&bytes) else {
            continue;
        };
        if let Some(intact) = intact_record_after(&bytes, offset) {
            return Err(format!(
                "write-ahead log {} is damaged at offset {offset}, before an intact record at \
                 offset {intact}: this node must be replaced (docs/operations.md)",
                path.display()
            ));
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        file.set_len(offset)
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("{}: truncating a torn tail: {e}", path.display()))?;
        repaired.push(TornTail {
            file: path,
            offset,
            dropped: bytes.len() as u64 - offset,
        });
    }
    Ok(repaired)
}

/// The offset of the first header the reader would loop on, walking records as it does.
fn looping_header(bytes: &[u8]) -> Option<u64> {
    let len = bytes.len() as u64;
    let mut pos = 0u64;
    let mut first = true;
    loop {
        let left_in_block = BLOCK_BYTES - pos % BLOCK_BYTES;
        if left_in_block < HEADER_BYTES {
            pos += left_in_block; // the block's zero trailer
            continue;
        }
        if pos + HEADER_BYTES > len {
            return None;
        }
        let (length, kind) = header(bytes, pos);
        if !first && LOOPING_TYPES.contains(&kind) {
            return Some(pos);
        }
        let end = pos + HEADER_BYTES + length;
        if end > len.min(pos + left_in_block) {
            return None; // cut short: the reader stops here (or reports it)
        }
        if kind == 0 && length == 0 {
            pos += left_in_block; // preallocated zeros: the reader skips the block
            continue;
        }
        if !crc_matches(bytes, pos, length) {
            return None; // the reader stops here, and reports it
        }
        pos = end;
        first = false;
    }
}

/// The offset of an intact data record (its checksum right, within its block and the file)
/// starting after `from`, if any.
fn intact_record_after(bytes: &[u8], from: u64) -> Option<u64> {
    let len = bytes.len() as u64;
    (from + 1..len.saturating_sub(HEADER_BYTES - 1)).find(|&pos| {
        let (length, kind) = header(bytes, pos);
        let block_end = pos - pos % BLOCK_BYTES + BLOCK_BYTES;
        DATA_TYPES.contains(&kind)
            && length > 0
            && pos + HEADER_BYTES + length <= len.min(block_end)
            && crc_matches(bytes, pos, length)
    })
}

/// A header's payload length and type.
fn header(bytes: &[u8], pos: u64) -> (u64, u8) {
    let at = pos as usize;
    let length = u16::from_le_bytes([bytes[at + 4], bytes[at + 5]]);
    (u64::from(length), bytes[at + 6])
}

/// Whether the record at `pos` carries the masked crc32c of its type and payload.
fn crc_matches(bytes: &[u8], pos: u64, length: u64) -> bool {
    let at = pos as usize;
    let stored = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let covered = &bytes[at + 6..at + 7 + length as usize];
    unmask(stored) == crc32c(covered)
}

/// RocksDB stores crc32c values masked (`util/crc32c.h`).
const MASK_DELTA: u32 = 0xa282_ead8;

fn unmask(masked: u32) -> u32 {
    masked.wrapping_sub(MASK_DELTA).rotate_left(15)
}

#[cfg(test)]
fn mask(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// CRC-32C (Castagnoli), bit by bit: only a torn log is ever scanned with it.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0x82F6_3B78 & (!(crc & 1)).wrapping_add(1));
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as RocksDB writes it.
    fn record(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut covered = vec![kind];
        covered.extend_from_slice(payload);
        let mut bytes = mask(crc32c(&covered)).to_le_bytes().to_vec();
        bytes.extend_from_slice(&(payload.len() as u16).to_le_bytes());
        bytes.extend_from_slice(&covered);
        bytes
    }

    #[test]
    fn crc32c_is_castagnolis() {
        // The check value of CRC-32C.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(unmask(mask(0x1234_5678)), 0x1234_5678);
    }

    /// The 25 bytes that stopped a node's start in `ledger-sim run --seed 3` (a torn tail of
    /// random bytes): type byte 6, a recyclable first fragment.
    const SEED_3_TAIL: [u8; 25] = [
        0xaa, 0x85, 0xc3, 0xcb, 0xb2, 0x54, 0x06, 0xa2, 0x47, 0x7a, 0xb7, 0x12, 0x32, 0x12, 0x81,
        0x2e, 0x7b, 0x99, 0xf3, 0x83, 0x44, 0xba, 0xf3, 0x4c, 0x77,
    ];

    #[test]
    fn a_looping_header_after_intact_records_is_found_and_nothing_else_is() {
        let mut log = record(1, b"first batch");
        log.extend(record(1, b"second batch"));
        assert_eq!(looping_header(&log), None, "an intact log");
        let intact = log.len() as u64;
        log.extend_from_slice(&SEED_3_TAIL);
        assert_eq!(looping_header(&log), Some(intact));
        assert_eq!(intact_record_after(&log, intact), None, "a torn tail");
        let mut cut = log[..intact as usize].to_vec();
        cut.extend_from_slice(&record(1, b"third batch")[..9]);
        assert_eq!(
            looping_header(&cut),
            None,
            "a record cut short is RocksDB's to drop"
        );
        // As the very first record, RocksDB reads it as a recycled log's and does not loop.
        assert_eq!(looping_header(&SEED_3_TAIL), None);
        log.extend(record(1, b"a record after the damage"));
        assert_eq!(intact_record_after(&log, intact), Some(intact + 25));
    }
}
