//! Who may speak Raft to this node: the checks of the peer port (`--peer-addr`) that run
//! before a Raft message is read.
//!
//! Raft's RPCs are served on a port of their own, never on the client port, so that a network
//! policy can admit only the other nodes to it. On that port every call must prove it comes
//! from a node of this cluster:
//!
//! - **with TLS**, by its certificate: the handshake requires one that chains to the cluster
//!   CA (mutual TLS), and the Raft service then requires that it names the node the message
//!   claims to come from, and that this node is a member (`grpc/raft_service.rs`);
//! - **without TLS** (loopback, or `--insecure`), by the cluster's peer secret
//!   (`--peer-secret-file`), sent in the [`PEER_SECRET_HEADER`] of every call and compared in
//!   constant time. The secret proves that the caller knows it; it does not hide it from
//!   someone who can read the traffic, which is what TLS is for. With TLS, a configured secret
//!   is checked as well.
//!
//! A node with neither accepts no Raft call at all: a single node needs none, and a forged
//! `Vote` or `AppendEntries` must never reach the Raft core unauthenticated.
//!
//! Refusals are answered `UNAUTHENTICATED`, counted in `ledger_peer_refusals_total{reason}`,
//! and logged at most [`super::auth::REFUSALS_LOGGED_PER_SECOND`] times a second.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tonic::codegen::http;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::Status;

use crate::metrics::SecurityCounters;

/// The header that carries the peer secret.
pub const PEER_SECRET_HEADER: &str = "x-ledger-peer-secret";
/// A shorter secret is refused at start: it could be guessed.
pub const PEER_SECRET_CHARS_MIN: usize = 32;
/// A longer secret file is refused at start (it is not a secret, it is a mistake).
pub const PEER_SECRET_CHARS_MAX: usize = 1024;

/// The cluster's shared peer secret. Never printed.
#[derive(Clone)]
pub struct PeerSecret {
    value: String,
    /// SHA-256 of the value: what presented secrets are compared against, in constant time.
    digest: [u8; 32],
}

impl std::fmt::Debug for PeerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerSecret(..)")
    }
}

impl PeerSecret {
    /// Reads a secret file (surrounding white space is ignored); fails with a message naming
    /// the file and what is wrong with it.
    pub fn load(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("--peer-secret-file {}: {e}", path.display()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("--peer-secret-file {}: not UTF-8 text", path.display()))?;
        Self::new(text.trim()).map_err(|e| format!("--peer-secret-file {}: {e}", path.display()))
    }

    /// Checks a secret's length and characters (it travels in an HTTP/2 header).
    pub fn new(value: &str) -> Result<Self, String> {
        let chars = value.chars().count();
        if chars < PEER_SECRET_CHARS_MIN {
            return Err(format!(
                "the secret has {chars} characters; at least {PEER_SECRET_CHARS_MIN} are needed \
                 (`ledgerctl peer-secret --out FILE` writes a random one)"
            ));
        }
        if chars > PEER_SECRET_CHARS_MAX {
            return Err(format!(
                "the secret has {chars} characters; at most {PEER_SECRET_CHARS_MAX} are allowed"
            ));
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the secret must be printable ASCII without spaces".into());
        }
        Ok(Self {
            value: value.to_string(),
            digest: Sha256::digest(value.as_bytes()).into(),
        })
    }

    /// The header value a node sends with each of its Raft calls.
    pub fn header_value(&self) -> MetadataValue<Ascii> {
        self.value
            .parse()
            .expect("checked in new: printable ASCII is a valid header value")
    }

    /// Whether `presented` is this secret. Compares digests in constant time, so that the
    /// time of a refusal does not tell how much of a guess was right.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented).into();
        presented
            .iter()
            .zip(self.digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// How the peer port authenticates its callers (as a tower layer: `GateLayer<PeerAuthPolicy>`,
/// see `security/mod.rs`).
#[derive(Clone, Debug)]
pub struct PeerAuthPolicy {
    /// The port speaks TLS and a verified client certificate is required.
    pub require_certificate: bool,
    /// The secret every call must carry, if configured.
    pub secret: Option<Arc<PeerSecret>>,
    pub counters: SecurityCounters,
}

/// Why a peer call was refused before it reached the Raft service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerRefusal {
    /// No peer authentication is configured: this node accepts no Raft call.
    NotConfigured,
    NoCertificate,
    NoSecret,
    WrongSecret,
}

impl PeerRefusal {
    fn message(self) -> &'static str {
        match self {
            PeerRefusal::NotConfigured => {
                "LEDGER_UNAUTHENTICATED: this node accepts no Raft calls: it has neither TLS nor \
                 a peer secret (--tls-cert/--tls-key/--tls-ca or --peer-secret-file)"
            }
            PeerRefusal::NoCertificate => {
                "LEDGER_UNAUTHENTICATED: Raft calls need a node certificate from the cluster CA"
            }
            PeerRefusal::NoSecret => {
                "LEDGER_UNAUTHENTICATED: Raft calls need the cluster's peer secret"
            }
            PeerRefusal::WrongSecret => "LEDGER_UNAUTHENTICATED: wrong peer secret",
        }
    }
}

impl PeerAuthPolicy {
    /// Checks a call's credentials; see the module header.
    pub fn check<B>(&self, request: &http::Request<B>) -> Result<(), PeerRefusal> {
        if !self.require_certificate && self.secret.is_none() {
            return Err(PeerRefusal::NotConfigured);
        }
        if self.require_certificate && !super::has_verified_peer_certificate(request) {
            return Err(PeerRefusal::NoCertificate);
        }
        if let Some(secret) = &self.secret {
            let Some(presented) = request.headers().get(PEER_SECRET_HEADER) else {
                return Err(PeerRefusal::NoSecret);
            };
            if !secret.matches(presented.as_bytes()) {
                return Err(PeerRefusal::WrongSecret);
            }
        }
        Ok(())
    }
}

impl super::Gate for PeerAuthPolicy {
    fn admit<B>(&self, request: &http::Request<B>) -> Result<(), Status> {
        self.check(request).map_err(|refusal| {
            self.counters.refuse_peer("unauthenticated");
            if super::auth::should_log_refusal() {
                let peer = super::remote_addr(request);
                let method = request.uri().path();
                tracing::warn!(%method, ?peer, reason = ?refusal, "peer call refused");
            }
            Status::unauthenticated(refusal.message())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn request(secret: Option<&str>) -> http::Request<()> {
        let mut request = http::Request::new(());
        if let Some(s) = secret {
            request
                .headers_mut()
                .insert(PEER_SECRET_HEADER, s.parse().expect("header"));
        }
        request
    }

    fn layer(secret: Option<&str>, require_certificate: bool) -> PeerAuthPolicy {
        PeerAuthPolicy {
            require_certificate,
            secret: secret.map(|s| Arc::new(PeerSecret::new(s).expect("valid secret"))),
            counters: SecurityCounters::default(),
        }
    }

    #[test]
    fn the_secret_must_be_long_printable_and_is_never_printed() {
        assert!(PeerSecret::new("short").is_err());
        assert!(PeerSecret::new(&"x".repeat(PEER_SECRET_CHARS_MAX + 1)).is_err());
        assert!(PeerSecret::new(&format!("{SECRET} with spaces")).is_err());
        let secret = PeerSecret::new(SECRET).expect("valid");
        assert!(!format!("{secret:?}").contains("0123"));
        assert!(secret.matches(SECRET.as_bytes()));
        assert!(!secret.matches(b"0123456789abcdef0123456789abcdeX"));
        assert!(!secret.matches(b""));
    }

    #[test]
    fn calls_without_the_right_secret_are_refused() {
        let policy = layer(Some(SECRET), false);
        assert_eq!(policy.check(&request(Some(SECRET))), Ok(()));
        assert_eq!(
            policy.check(&request(None)),
            Err(PeerRefusal::NoSecret),
            "no secret"
        );
        assert_eq!(
            policy.check(&request(Some("0123456789abcdef0123456789abcdeX"))),
            Err(PeerRefusal::WrongSecret)
        );
    }

    #[test]
    fn a_node_without_peer_authentication_accepts_no_raft_call() {
        let policy = layer(None, false);
        assert_eq!(
            policy.check(&request(Some(SECRET))),
            Err(PeerRefusal::NotConfigured)
        );
    }

    #[test]
    fn with_tls_a_certificate_is_required_and_a_configured_secret_too() {
        // No TLS connection info: no verified certificate.
        let policy = layer(Some(SECRET), true);
        assert_eq!(
            policy.check(&request(Some(SECRET))),
            Err(PeerRefusal::NoCertificate)
        );
        let policy = layer(None, true);
        assert_eq!(
            policy.check(&request(None)),
            Err(PeerRefusal::NoCertificate)
        );
    }
}
