//! `ledgerctl backup --out FILE`: a consistent online backup of the leader's state.
//!
//! The file is streamed to `FILE.part`, checked (magic, whole-file crc32, header), and only
//! then renamed to `FILE`, so a `FILE` that exists is complete. Restore it with
//! `ledger-server restore --from FILE ...` (docs/operations.md).

use std::io::Write;
use std::path::Path;

use ledger_client::proto::admin::BackupRequest;
use serde_json::json;

const MAGIC: &[u8; 8] = b"LEDGERBK";

/// Checks a backup's framing and whole-file checksum; returns its JSON header.
pub fn check(bytes: &[u8]) -> Result<serde_json::Value, String> {
    if bytes.len() < 20 || &bytes[..8] != MAGIC {
        return Err("not a Ledger backup".into());
    }
    let (body, stored) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(stored.try_into().expect("4 bytes"));
    if crc32fast::hash(body) != stored {
        return Err("checksum mismatch: the backup is damaged".into());
    }
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
    let header = bytes
        .get(16..16 + header_len)
        .ok_or("header runs past the end")?;
    serde_json::from_slice(header).map_err(|e| format!("unreadable header: {e}"))
}

pub async fn run(endpoints: &[String], out: &Path, json_out: bool) -> Result<(), String> {
    let leader = crate::bench::find_leader(endpoints).await?;
    let mut admin = crate::connect::admin(&leader).await?;
    let mut stream = admin
        .backup(BackupRequest {})
        .await
        .map_err(|s| format!("{leader}: {}", s.message()))?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| format!("backup interrupted: {}", s.message()))?
    {
        bytes.extend_from_slice(&chunk.data);
    }
    let header = check(&bytes)?;
    let part = out.with_extension("part");
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&part)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&part, out)
    };
    write().map_err(|e| format!("{}: {e}", out.display()))?;
    let summary = json!({
        "file": out,
        "bytes": bytes.len(),
        "applied_index": header["applied_index"],
        "state_digest": header["state_digest"],
        "cluster": header["cluster"],
        "node_id": header["node_id"],
    });
    if json_out {
        println!("{summary}");
    } else {
        println!(
            "backup of node {} at applied index {} (digest {}): {} bytes in {}",
            header["node_id"],
            header["applied_index"],
            header["state_digest"].as_str().unwrap_or("?"),
            bytes.len(),
            out.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_and_checksum_are_checked() {
        let header = br#"{"applied_index":7}"#;
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&1u32.to_le_bytes());
        file.extend_from_slice(&(header.len() as u32).to_le_bytes());
        file.extend_from_slice(header);
        file.extend_from_slice(b"snapshot bytes");
        let sum = crc32fast::hash(&file);
        file.extend_from_slice(&sum.to_le_bytes());
        assert_eq!(check(&file).unwrap()["applied_index"], 7);
        let mut damaged = file.clone();
        damaged[30] ^= 1;
        assert!(check(&damaged).unwrap_err().contains("damaged"));
        assert!(check(b"LEDGERBK").is_err());
    }
}
