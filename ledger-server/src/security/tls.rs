//! TLS settings of a node: its certificate and key, and the cluster CA.
//!
//! One CA, used for this cluster only, signs every node's certificate, which names its node
//! with the DNS name `node-<id>.ledger` (an identity, never resolved). The node serves TLS with its certificate, accepts a client certificate
//! only if it chains to the CA (optional for clients, required for Raft's RPCs, see `auth.rs`,
//! where it must also name the node the RPC claims to come from, see `grpc/raft_service.rs`),
//! and presents the same certificate when it connects to its peers, whose certificates it
//! checks against the same CA.

use std::path::{Path, PathBuf};

use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Node `id`'s certificate carries the DNS name `node-<id>.` and this domain.
pub const NODE_IDENTITY_DOMAIN: &str = "ledger";
/// A TLS handshake that takes longer is dropped (a client that connects and sends nothing must
/// not hold a connection forever).
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// The identity name of node `id` in its certificate.
pub fn node_identity_name(id: u64) -> String {
    format!("node-{id}.{NODE_IDENTITY_DOMAIN}")
}

/// Whether a certificate (DER) names node `id` (its DNS names include `node-<id>.ledger`).
pub fn certificate_names_node(der: &[u8], id: u64) -> bool {
    let der = rustls_pki_types::CertificateDer::from(der);
    let Ok(certificate) = webpki::EndEntityCert::try_from(&der) else {
        return false;
    };
    let name = node_identity_name(id);
    let Ok(server_name) = rustls_pki_types::ServerName::try_from(name.as_str()) else {
        return false;
    };
    certificate
        .verify_is_valid_for_subject_name(&server_name)
        .is_ok()
}

/// The PEM files of a node's TLS settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Loaded TLS material (PEM bytes), ready to build server and peer-client configurations.
#[derive(Clone)]
pub struct TlsSettings {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
}

impl std::fmt::Debug for TlsSettings {
    // Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings").finish_non_exhaustive()
    }
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if !bytes.windows(10).any(|w| w == b"-----BEGIN") {
        return Err(format!("{what} {}: not a PEM file", path.display()));
    }
    Ok(bytes)
}

impl TlsSettings {
    /// Reads the three files; fails with a message naming the file that is missing or not PEM.
    pub fn load(files: &TlsFiles) -> Result<Self, String> {
        Ok(Self {
            cert: read_pem(&files.cert, "--tls-cert")?,
            key: read_pem(&files.key, "--tls-key")?,
            ca: read_pem(&files.ca, "--tls-ca")?,
        })
    }

    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert, &self.key)
    }

    /// The server side: this node's certificate; client certificates checked against the CA
    /// when presented.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(Certificate::from_pem(&self.ca))
            .client_auth_optional(true)
            .timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS))
    }

    /// The server side of the peer port: as [`Self::server_config`], but a client
    /// certificate from the cluster CA is required in the handshake (mutual TLS).
    pub fn peer_server_config(&self) -> ServerTlsConfig {
        self.server_config().client_auth_optional(false)
    }

    /// The peer side: trusts only the cluster CA and presents this node's certificate.
    pub fn peer_client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(self.identity())
    }
}
