//! A snapshot file as a follower receives or a node reads it back, damaged or not: any bytes
//! through the snapshot reader (`read_snapshot_bytes`), which checks every chunk's crc32 and
//! the trailer before it hands out a record. Must never panic; what passes must be written
//! again by the snapshot writer into a file that reads back the same.
#![no_main]

use ledger_core::Table;
use ledger_server::storage::snapshot_file::{
    read_snapshot, read_snapshot_bytes, SnapshotWriter, MAGIC,
};
use libfuzzer_sys::fuzz_target;

type Record = (Table, Vec<u8>, Vec<u8>);

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // Bit 0: frame the input as chunks with correct lengths and crc32s, so that the chunk
    // decoders are reached; otherwise the bytes are the whole file.
    let file = if mode & 1 != 0 {
        frame(rest)
    } else {
        rest.to_vec()
    };
    let mut records: Vec<Record> = Vec::new();
    let Ok((meta, count)) =
        read_snapshot_bytes(&file, |t, k, v| records.push((t, k.to_vec(), v.to_vec())))
    else {
        return;
    };
    assert_eq!(
        count,
        records.len() as u64,
        "the count is of the records visited"
    );
    let dir = std::path::Path::new("/dev/shm");
    let dir = if dir.is_dir() {
        dir.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("ledger-fuzz-snapshot-{}", std::process::id()));
    let mut writer = SnapshotWriter::create(&path, &meta).expect("create");
    for (table, key, value) in &records {
        writer.add(*table, key, value).expect("add");
    }
    assert_eq!(writer.finish().expect("finish"), count);
    let mut again: Vec<Record> = Vec::new();
    let (meta_again, _) = read_snapshot(&path, |t, k, v| again.push((t, k.to_vec(), v.to_vec())))
        .expect("a written snapshot reads back");
    let _ = std::fs::remove_file(&path);
    assert_eq!(meta_again, meta);
    assert_eq!(again, records);
});

/// The magic, then each piece of `input` (a u16 length and that many bytes) as a chunk with
/// its true length and crc32.
fn frame(mut input: &[u8]) -> Vec<u8> {
    let mut file = MAGIC.to_vec();
    while input.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([input[0], input[1]])).min(input.len() - 2);
        let payload = &input[2..2 + len];
        file.extend_from_slice(&(len as u32).to_le_bytes());
        file.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        file.extend_from_slice(payload);
        input = &input[2 + len..];
    }
    file
}
