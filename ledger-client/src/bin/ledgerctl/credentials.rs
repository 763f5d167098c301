//! `ledgerctl certs` and `ledgerctl token`: development TLS material and access tokens.
//!
//! `certs` makes a CA and one certificate per node, each naming its node (`node-<id>.ledger`)
//! and valid for `localhost`, `127.0.0.1` and the given hosts, usable both as a server and as a client certificate (nodes connect to
//! each other with it). It is meant for development and tests; in production, use the
//! organisation's CA (docs/security.md shows the openssl commands).
//!
//! `token` makes a random token, prints it once, and adds its SHA-256 with a name and a role
//! to the server's auth file (the file never holds the token itself).

use std::io::Write;
use std::path::Path;

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;

/// Writes `contents` to `path`, readable by the owner only when `secret`.
fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Makes `ca.pem`, `ca-key.pem`, and `node-N.pem`/`node-N-key.pem` for N in 1..=nodes.
pub fn certs(out: &Path, nodes: u64, hosts: &[String], json_out: bool) -> Result<(), String> {
    if nodes == 0 {
        return Err("--nodes must be 1 or more".into());
    }
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let err = |e: rcgen::Error| format!("certificate: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Ledger development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    write_file(&out.join("ca.pem"), &ca_cert.pem(), false)?;
    write_file(&out.join("ca-key.pem"), &ca_key.serialize_pem(), true)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    names.extend(hosts.iter().cloned());
    let mut written = vec![out.join("ca.pem")];
    for node in 1..=nodes {
        let key = KeyPair::generate().map_err(err)?;
        // The node's identity (checked on every Raft RPC it sends) and its addresses.
        let mut node_names = vec![format!("node-{node}.ledger")];
        node_names.extend(names.iter().cloned());
        let mut params = CertificateParams::new(node_names).map_err(err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("ledger node {node}"));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &issuer).map_err(err)?;
        let cert_path = out.join(format!("node-{node}.pem"));
        write_file(&cert_path, &cert.pem(), false)?;
        write_file(
            &out.join(format!("node-{node}-key.pem")),
            &key.serialize_pem(),
            true,
        )?;
        written.push(cert_path);
    }
    if json_out {
        println!(
            "{}",
            json!({"dir": out, "ca": out.join("ca.pem"), "nodes": nodes, "names": names})
        );
    } else {
        println!(
            "wrote a development CA and {nodes} node certificates (valid for {}) in {}",
            names.join(", "),
            out.display()
        );
        println!(
            "node N: ledger-server --tls-cert {0}/node-N.pem --tls-key {0}/node-N-key.pem --tls-ca {0}/ca.pem",
            out.display()
        );
        println!(
            "clients: export LEDGER_TLS_CA={}",
            out.join("ca.pem").display()
        );
    }
    Ok(())
}

const ROLES: [&str; 3] = ["read", "write", "admin"];

/// A new random token: `ldg_` and 64 hex digits (256 bits from the OS).
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("ldg_{hex}")
}

/// Makes a token for `name` with `role`, valid for `valid_days` (or for ever), adds it to
/// `auth_file` (created if missing) and prints the token.
pub fn token(
    name: &str,
    role: &str,
    auth_file: &Path,
    valid_days: Option<u64>,
    json_out: bool,
) -> Result<(), String> {
    if valid_days == Some(0) {
        return Err("--valid-days must be 1 or more".into());
    }
    if !ROLES.contains(&role) {
        return Err(format!("--role must be one of {}", ROLES.join(", ")));
    }
    if name.is_empty() {
        return Err("--name must not be empty".into());
    }
    let mut file: serde_json::Value = match std::fs::read(auth_file) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", auth_file.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({"tokens": []}),
        Err(e) => return Err(format!("{}: {e}", auth_file.display())),
    };
    let tokens = file
        .get_mut("tokens")
        .and_then(|t| t.as_array_mut())
        .ok_or_else(|| format!("{}: no \"tokens\" list", auth_file.display()))?;
    if tokens.iter().any(|t| t["name"] == name) {
        return Err(format!(
            "{}: a token named '{name}' exists",
            auth_file.display()
        ));
    }
    let token = new_token();
    let mut entry =
        json!({"name": name, "role": role, "sha256": ledger_client::client::token_sha256(&token)});
    if let Some(days) = valid_days {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        entry["expires_unix"] = json!(now.saturating_add(days.saturating_mul(86_400)));
    }
    tokens.push(entry);
    let text = serde_json::to_string_pretty(&file).map_err(|e| e.to_string())?;
    // A new owner-only file renamed over the old one: readers never see half a file, and the
    // mode is 0600 whatever the old file's was.
    let part = auth_file.with_extension("part");
    let _ = std::fs::remove_file(&part);
    write_file(&part, &(text + "\n"), true)?;
    std::fs::rename(&part, auth_file).map_err(|e| format!("{}: {e}", auth_file.display()))?;
    if json_out {
        println!("{}", json!({"name": name, "role": role, "token": token}));
    } else {
        println!("{token}");
        eprintln!(
            "added '{name}' ({role}) to {}; the token is shown only now. Restart the nodes \
             (one at a time) to load it.",
            auth_file.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_well_formed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 64);
        assert!(a.starts_with("ldg_"));
    }
}
