//! The snapshot file: the whole state as checksummed chunks, streamed to followers by openraft.
//!
//! Layout: an 8-byte magic, then chunks `[u32 length][u32 crc32][payload]`, little-endian. The
//! first payload byte says what the chunk is: the header (the Raft snapshot meta), a run of
//! records (`[u8 table][u32 key length][key][u32 value length][value]`, the raw RocksDB bytes
//! of the state column families), or the trailer (record and chunk counts). A reader verifies
//! every crc and the trailer before it hands out a single record, so a damaged or truncated
//! snapshot is refused as a whole and never installed.

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

/// Receives each record of a snapshot: its table, key and value bytes.
type RecordVisitor<'a> = dyn FnMut(Table, &[u8], &[u8]) + 'a;

pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;

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
            let chunk = std::mem::replace(&mut self.chunk, vec![CHUNK_RECORDS]);
            self.write_chunk(&chunk)?;
        }
        Ok(())
    }

    /// Writes the last records and the trailer, and makes the file durable.
    pub fn finish(mut self) -> Result<u64, SnapshotFileError> {
        if self.chunk.len() > 1 {
            let chunk = std::mem::take(&mut self.chunk);
            self.write_chunk(&chunk)?;
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
    mut visit: impl FnMut(Table, &[u8], &[u8]),
) -> Result<(SnapshotMeta, u64), SnapshotFileError> {
    // First pass: every checksum and the trailer. Second pass: the records.
    let (meta, records) = scan(BufReader::new(File::open(path)?), &mut |_, _, _| {})?;
    scan(BufReader::new(File::open(path)?), &mut visit)?;
    Ok((meta, records))
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
        assert!(bytes.len() > 2 * SNAPSHOT_CHUNK_BYTES);

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
        for file in damaged {
            let mut visited = 0;
            let result = read_snapshot_bytes(&file, |_, _, _| visited += 1);
            assert!(matches!(result, Err(SnapshotFileError::Corrupt(_))));
            assert_eq!(visited, 0);
        }
    }
}
