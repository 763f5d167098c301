//! The snapshot file: the whole state as checksummed chunks, streamed to followers by openraft.
//!
//! Layout: an 8-byte magic, then chunks `[u32 length][u32 crc32][payload]`, little-endian. The
//! first payload byte says what the chunk is: the header (the Raft snapshot meta), a run of
//! records (`[u8 table][u32 key length][key][u32 value length][value]`, the raw RocksDB bytes
//! of the state column families), the same run compressed (`[u32 length of the run][LZ4
//! block]`; written whenever it is smaller), or the trailer (record and chunk counts). The crc
//! covers the payload as stored, so damage is caught before anything is decompressed. A reader
//! verifies every crc and the trailer before it hands out a single record, so a damaged or
//! truncated snapshot is refused as a whole and never installed.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use ledger_core::Table;
use serde::{Deserialize, Serialize};

use crate::raft::types::NodeId;

/// The first 8 bytes of every snapshot file.
pub const MAGIC: &[u8; 8] = b"LDGSNAP1";
/// Target size of one records chunk.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// Largest chunk a reader accepts; anything bigger is damage, not data.
const SNAPSHOT_CHUNK_BYTES_MAX: usize = 64 << 20;

const _: () = assert!(SNAPSHOT_CHUNK_BYTES < SNAPSHOT_CHUNK_BYTES_MAX);

const CHUNK_HEADER: u8 = 1;
const CHUNK_RECORDS: u8 = 2;
const CHUNK_TRAILER: u8 = 3;
const CHUNK_RECORDS_LZ4: u8 = 4;

/// Receives each record of a snapshot: its table, key and value bytes.
type RecordVisitor<'a> = dyn FnMut(Table, &[u8], &[u8]) + 'a;

pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, crate::raft::types::LedgerNode>;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("snapshot file I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("snapshot file is damaged: {0}")]
    Corrupt(String),
}

#[derive(Serialize, Deserialize)]
struct Trailer {
    records: u64,
    chunks: u64,
}

/// Writes a snapshot file chunk by chunk.
pub struct SnapshotWriter {
    out: BufWriter<File>,
    chunk: Vec<u8>,
    /// The compressed form of `chunk`, reused from chunk to chunk.
    packed: Vec<u8>,
    records: u64,
    chunks: u64,
}

impl SnapshotWriter {
    pub fn create(path: &Path, meta: &SnapshotMeta) -> Result<Self, SnapshotFileError> {
        let mut out = BufWriter::new(File::create(path)?);
        out.write_all(MAGIC)?;
        let mut writer = Self {
            out,
            chunk: Vec::with_capacity(SNAPSHOT_CHUNK_BYTES + 4096),
            packed: Vec::new(),
            records: 0,
            chunks: 0,
        };
        let mut header = vec![CHUNK_HEADER];
        header.extend(
            postcard::to_stdvec(meta).map_err(|e| SnapshotFileError::Corrupt(e.to_string()))?,
        );
        writer.write_chunk(&header)?;
        writer.chunk.push(CHUNK_RECORDS);
        Ok(writer)
    }

    pub fn add(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), SnapshotFileError> {
        self.chunk.push(table as u8);
        self.chunk
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.chunk.extend_from_slice(key);
        self.chunk
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.chunk.extend_from_slice(value);
        self.records += 1;
        if self.chunk.len() >= SNAPSHOT_CHUNK_BYTES {
            self.write_records()?;
            self.chunk.push(CHUNK_RECORDS);
        }
        Ok(())
    }

    /// Writes the records gathered so far, compressed if that makes them smaller (records are
    /// mostly small integers and zeros: a snapshot of 10 thousand accounts after 10 million
    /// transfers was 3.0 GB raw), and empties the chunk.
    fn write_records(&mut self) -> Result<(), SnapshotFileError> {
        let run = &self.chunk[1..];
        let mut packed = std::mem::take(&mut self.packed);
        packed.clear();
        packed.push(CHUNK_RECORDS_LZ4);
        packed.extend_from_slice(&(run.len() as u32).to_le_bytes());
        packed.resize(5 + lz4_flex::block::get_maximum_output_size(run.len()), 0);
        let written = lz4_flex::block::compress_into(run, &mut packed[5..])
            .map_err(|e| SnapshotFileError::Corrupt(format!("compressing a chunk: {e}")))?;
        packed.truncate(5 + written);
        let result = if packed.len() < self.chunk.len() {
            self.write_chunk(&packed)
        } else {
            let chunk = std::mem::take(&mut self.chunk);
            let result = self.write_chunk(&chunk);
            self.chunk = chunk;
            result
        };
        self.packed = packed;
        self.chunk.clear();
        result
    }

    /// Writes the last records and the trailer, and makes the file durable.
    pub fn finish(mut self) -> Result<u64, SnapshotFileError> {
        if self.chunk.len() > 1 {
            self.write_records()?;
        }
        let mut trailer = vec![CHUNK_TRAILER];
        let counts = Trailer {
            records: self.records,
            chunks: self.chunks,
        };
        trailer.extend(
            postcard::to_stdvec(&counts).map_err(|e| SnapshotFileError::Corrupt(e.to_string()))?,
        );
        self.write_chunk(&trailer)?;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(self.records)
    }

    fn write_chunk(&mut self, payload: &[u8]) -> Result<(), SnapshotFileError> {
        self.out.write_all(&(payload.len() as u32).to_le_bytes())?;
        self.out
            .write_all(&crc32fast::hash(payload).to_le_bytes())?;
        self.out.write_all(payload)?;
        self.chunks += 1;
        Ok(())
    }
}

/// Reads and verifies a whole snapshot file, calling `visit` for every record only after the
/// file has been verified end to end. Returns the meta and the number of records.
pub fn read_snapshot(
    path: &Path,
    visit: impl FnMut(Table, &[u8], &[u8]),
) -> Result<(SnapshotMeta, u64), SnapshotFileError> {
    // First pass: every checksum and the trailer. Second pass: the records.
    let verified = verify_snapshot(path)?;
    visit_snapshot(path, visit)?;
    Ok(verified)
}

/// Verifies every checksum and the trailer of a snapshot file without handing out a record.
/// Returns the meta and the number of records.
pub fn verify_snapshot(path: &Path) -> Result<(SnapshotMeta, u64), SnapshotFileError> {
    scan(BufReader::new(File::open(path)?), &mut |_, _, _| {})
}

/// Calls `visit` for every record of a snapshot file, in file order, checking each chunk as it
/// goes. Use it after [`verify_snapshot`]: on its own, a damaged chunk is found only after the
/// records before it were visited.
pub fn visit_snapshot(
    path: &Path,
    mut visit: impl FnMut(Table, &[u8], &[u8]),
) -> Result<(SnapshotMeta, u64), SnapshotFileError> {
    scan(BufReader::new(File::open(path)?), &mut visit)
}

/// [`read_snapshot`] over a snapshot held in memory.
pub fn read_snapshot_bytes(
    bytes: &[u8],
    mut visit: impl FnMut(Table, &[u8], &[u8]),
) -> Result<(SnapshotMeta, u64), SnapshotFileError> {
    let (meta, records) = scan(bytes, &mut |_, _, _| {})?;
    scan(bytes, &mut visit)?;
    Ok((meta, records))
}

fn scan(
    mut input: impl Read,
    visit: &mut RecordVisitor,
) -> Result<(SnapshotMeta, u64), SnapshotFileError> {
    let corrupt = |reason: &str| SnapshotFileError::Corrupt(reason.to_string());
    let mut magic = [0u8; 8];
    input
        .read_exact(&mut magic)
        .map_err(|_| corrupt("no magic"))?;
    if &magic != MAGIC {
        return Err(corrupt("bad magic"));
    }
    let mut meta = None;
    let mut records = 0u64;
    let mut chunks = 0u64;
    loop {
        let mut head = [0u8; 8];
        input
            .read_exact(&mut head)
            .map_err(|_| corrupt("truncated before the trailer"))?;
        let len = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
        if len == 0 || len > SNAPSHOT_CHUNK_BYTES_MAX {
            return Err(corrupt("chunk length out of range"));
        }
        // Read what is there rather than allocate what the length claims: a damaged length
        // must not cost 64 MiB.
        let mut payload = Vec::with_capacity(len.min(2 * SNAPSHOT_CHUNK_BYTES));
        (&mut input).take(len as u64).read_to_end(&mut payload)?;
        if payload.len() != len {
            return Err(corrupt("truncated chunk"));
        }
        if crc32fast::hash(&payload) != crc {
            return Err(SnapshotFileError::Corrupt(format!(
                "crc mismatch in chunk {chunks}"
            )));
        }
        let body = &payload[1..];
        match payload[0] {
            CHUNK_HEADER if meta.is_none() => {
                meta = Some(
                    postcard::from_bytes::<SnapshotMeta>(body)
                        .map_err(|_| corrupt("bad header"))?,
                );
            }
            CHUNK_RECORDS if meta.is_some() => {
                records += decode_records(body, visit)?;
            }
            CHUNK_RECORDS_LZ4 if meta.is_some() => {
                records += decode_records(&decompress(body)?, visit)?;
            }
            CHUNK_TRAILER => {
                let trailer: Trailer =
                    postcard::from_bytes(body).map_err(|_| corrupt("bad trailer"))?;
                if trailer.records != records || trailer.chunks != chunks {
                    return Err(corrupt("trailer counts differ from the chunks read"));
                }
                let meta = meta.ok_or_else(|| corrupt("no header"))?;
                return Ok((meta, records));
            }
            _ => return Err(corrupt("unexpected chunk kind")),
        }
        chunks += 1;
    }
}

/// The records of a compressed chunk: `[u32 length][LZ4 block]`, which must decompress to
/// exactly that length, at most [`SNAPSHOT_CHUNK_BYTES_MAX`].
fn decompress(body: &[u8]) -> Result<Vec<u8>, SnapshotFileError> {
    let corrupt = |reason: &str| SnapshotFileError::Corrupt(reason.to_string());
    let (len, block) = body
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("compressed chunk too short"))?;
    let len = u32::from_le_bytes(*len) as usize;
    if len > SNAPSHOT_CHUNK_BYTES_MAX {
        return Err(corrupt("compressed chunk length out of range"));
    }
    let mut run = vec![0u8; len];
    match lz4_flex::block::decompress_into(block, &mut run) {
        Ok(n) if n == len => Ok(run),
        Ok(_) => Err(corrupt("compressed chunk shorter than stated")),
        Err(_) => Err(corrupt("compressed chunk does not decompress")),
    }
}

fn decode_records(mut body: &[u8], visit: &mut RecordVisitor) -> Result<u64, SnapshotFileError> {
    let corrupt = || SnapshotFileError::Corrupt("bad record".into());
    let mut count = 0;
    while !body.is_empty() {
        let table = Table::from_u8(body[0]).ok_or_else(corrupt)?;
        body = &body[1..];
        let key = take_field(&mut body)?;
        let value = take_field(&mut body)?;
        visit(table, key, value);
        count += 1;
    }
    Ok(count)
}

/// Splits a `[u32 length][bytes]` field off the front of `body`.
fn take_field<'a>(body: &mut &'a [u8]) -> Result<&'a [u8], SnapshotFileError> {
    let corrupt = || SnapshotFileError::Corrupt("bad record field".into());
    let rest: &'a [u8] = body;
    let len_bytes: [u8; 4] = rest
        .get(..4)
        .ok_or_else(corrupt)?
        .try_into()
        .expect("4 bytes");
    let len = u32::from_le_bytes(len_bytes) as usize;
    let field = rest.get(4..4 + len).ok_or_else(corrupt)?;
    *body = &rest[4 + len..];
    Ok(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(read: impl FnOnce(&mut dyn FnMut(Table, &[u8], &[u8]))) -> Vec<(Table, Vec<u8>)> {
        let mut seen = Vec::new();
        read(&mut |table, key, value| seen.push((table, [key, value].concat())));
        seen
    }

    #[test]
    fn a_file_reads_back_and_damage_anywhere_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snapshot");
        let meta = SnapshotMeta::default();
        let mut writer = SnapshotWriter::create(&path, &meta).expect("create");
        // Enough records for several chunks.
        let value = vec![9u8; 4096];
        for i in 0u32..600 {
            writer
                .add(Table::Accounts, &i.to_be_bytes(), &value)
                .expect("add");
        }
        assert_eq!(writer.finish().expect("finish"), 600);
        let bytes = std::fs::read(&path).expect("read");
        // 2.4 MB of records, compressed (they are all nines) into three chunks.
        assert!(bytes.len() < 100_000, "{} bytes", bytes.len());

        let from_file = records(|visit| {
            let (read_meta, count) = read_snapshot(&path, visit).expect("file");
            assert_eq!((read_meta, count), (meta.clone(), 600));
        });
        let from_bytes = records(|visit| {
            read_snapshot_bytes(&bytes, visit).expect("bytes");
        });
        assert_eq!(from_file.len(), 600);
        assert_eq!(from_file, from_bytes);

        // A flipped byte anywhere, a cut anywhere, or a first chunk claiming the largest
        // length: refused, and no record is handed out.
        let mut damaged = Vec::new();
        for at in [0, 9, 20, bytes.len() / 2, bytes.len() - 3] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x40;
            damaged.push(flipped);
        }
        damaged.push(bytes[..bytes.len() - 1].to_vec());
        damaged.push(bytes[..bytes.len() / 3].to_vec());
        let mut long = bytes.clone();
        long[8..12].copy_from_slice(&(SNAPSHOT_CHUNK_BYTES_MAX as u32).to_le_bytes());
        damaged.push(long);
        damaged.extend(damaged_records_chunks(&bytes));
        for file in damaged {
            let mut visited = 0;
            let result = read_snapshot_bytes(&file, |_, _, _| visited += 1);
            assert!(matches!(result, Err(SnapshotFileError::Corrupt(_))));
            assert_eq!(visited, 0);
        }
    }

    /// The chunks of a file: (offset, kind, payload).
    fn chunks(bytes: &[u8]) -> Vec<(usize, u8, Vec<u8>)> {
        let mut at = MAGIC.len();
        let mut out = Vec::new();
        while at < bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4")) as usize;
            let payload = bytes[at + 8..at + 8 + len].to_vec();
            out.push((at, payload[0], payload));
            at += 8 + len;
        }
        out
    }

    /// Copies of `bytes` with the first compressed chunk's payload damaged and its crc made
    /// right again: the damage only the decompressor can see.
    fn damaged_records_chunks(bytes: &[u8]) -> Vec<Vec<u8>> {
        let (at, _, payload) = chunks(bytes)
            .into_iter()
            .find(|(_, kind, _)| *kind == CHUNK_RECORDS_LZ4)
            .expect("a compressed chunk");
        let rewrite = |payload: Vec<u8>| {
            let mut file = bytes[..at].to_vec();
            file.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            file.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            file.extend_from_slice(&payload);
            let old_len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4")) as usize;
            file.extend_from_slice(&bytes[at + 8 + old_len..]);
            file
        };
        let stated = |payload: &[u8], len: u32| {
            let mut p = payload.to_vec();
            p[1..5].copy_from_slice(&len.to_le_bytes());
            p
        };
        let raw_len = u32::from_le_bytes(payload[1..5].try_into().expect("4"));
        let mut cut = payload.clone();
        cut.truncate(payload.len() / 2);
        let mut garbled = payload.clone();
        for byte in &mut garbled[5..] {
            *byte = 0xff;
        }
        vec![
            rewrite(cut),
            rewrite(garbled),
            rewrite(stated(&payload, raw_len - 1)),
            rewrite(stated(&payload, raw_len + 1)),
            rewrite(stated(&payload, SNAPSHOT_CHUNK_BYTES_MAX as u32 + 1)),
            rewrite(payload[..3].to_vec()),
        ]
    }

    #[test]
    fn records_that_do_not_compress_are_stored_raw_and_both_kinds_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snapshot");
        let meta = SnapshotMeta::default();
        let mut writer = SnapshotWriter::create(&path, &meta).expect("create");
        // Noise (xorshift) first, then zeros: at least one chunk of each kind.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut noise = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        };
        let mut written = Vec::new();
        for i in 0u32..800 {
            let value: Vec<u8> = if i < 400 {
                (0..512).flat_map(|_| noise()).collect()
            } else {
                vec![0; 4096]
            };
            writer
                .add(Table::Transfers, &i.to_be_bytes(), &value)
                .expect("add");
            written.push((Table::Transfers, [&i.to_be_bytes()[..], &value].concat()));
        }
        assert_eq!(writer.finish().expect("finish"), 800);
        let bytes = std::fs::read(&path).expect("read");
        let kinds: Vec<u8> = chunks(&bytes).iter().map(|c| c.1).collect();
        assert!(kinds.contains(&CHUNK_RECORDS), "{kinds:?}");
        assert!(kinds.contains(&CHUNK_RECORDS_LZ4), "{kinds:?}");
        let read = records(|visit| {
            read_snapshot(&path, visit).expect("file");
        });
        assert_eq!(read, written);
    }
}
