//! Authentication and roles: who may call which method.
//!
//! With `--auth-file FILE`, every client call must carry `authorization: Bearer <token>`. The
//! file holds, per token, a name, a role and the SHA-256 of the token (never the token
//! itself), so that reading the file does not give access:
//!
//! ```json
//! {"tokens": [{"name": "payments-api", "role": "write", "sha256": "9f86d0..."}]}
//! ```
//!
//! `ledgerctl token --name NAME --role ROLE` makes a token and its entry. Roles are ordered:
//! `admin` can do everything `write` can, `write` everything `read` can. Raft's RPCs are not
//! for clients: with TLS they require a node certificate from the cluster CA, whatever the
//! token. Without `--auth-file`, client calls are not checked (development).
//!
//! A refused call is logged with the token's name (or that none was given), the method and
//! the peer address, never with the secret.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::{Deserialize, Serialize};
use tonic::codegen::http;
use tonic::Status;

/// What a method needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Lookups, queries, cluster status.
    Read,
    /// Read, and every command that changes the ledger.
    Write,
    /// Write, and membership, backup, verify, fault injection.
    Admin,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        })
    }
}

/// Who may call a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A client whose token has at least this role.
    Client(Role),
    /// Another node of the cluster (Raft's RPCs).
    Peer,
    /// Not one of ours: left to the router (`UNIMPLEMENTED`).
    Unknown,
}

/// The gRPC services, by path prefix.
const LEDGER_SERVICE: &str = "/ledger.v1.Ledger/";
const ADMIN_SERVICE: &str = "/ledger.admin.Admin/";
const RAFT_SERVICE: &str = "/ledger.raft.Raft/";

/// Every method of the three services (`proto/*.proto`), with its service's short name.
const METHODS: &[(&str, &str, &str)] = &[
    (LEDGER_SERVICE, "Ledger", "CreateAccounts"),
    (LEDGER_SERVICE, "Ledger", "CreateTransfers"),
    (LEDGER_SERVICE, "Ledger", "CreateMarkets"),
    (LEDGER_SERVICE, "Ledger", "PlaceBets"),
    (LEDGER_SERVICE, "Ledger", "SettleMarkets"),
    (LEDGER_SERVICE, "Ledger", "BetActions"),
    (LEDGER_SERVICE, "Ledger", "LookupAccounts"),
    (LEDGER_SERVICE, "Ledger", "LookupTransfers"),
    (LEDGER_SERVICE, "Ledger", "LookupMarkets"),
    (LEDGER_SERVICE, "Ledger", "LookupBets"),
    (LEDGER_SERVICE, "Ledger", "LookupSettlements"),
    (LEDGER_SERVICE, "Ledger", "ListAccounts"),
    (LEDGER_SERVICE, "Ledger", "GetAccountTransfers"),
    (LEDGER_SERVICE, "Ledger", "GetAccountBalances"),
    (LEDGER_SERVICE, "Ledger", "GetMarketBets"),
    (LEDGER_SERVICE, "Ledger", "GetPendingStatus"),
    (ADMIN_SERVICE, "Admin", "Init"),
    (ADMIN_SERVICE, "Admin", "AddLearner"),
    (ADMIN_SERVICE, "Admin", "ChangeMembership"),
    (ADMIN_SERVICE, "Admin", "Status"),
    (ADMIN_SERVICE, "Admin", "Verify"),
    (ADMIN_SERVICE, "Admin", "Backup"),
    (ADMIN_SERVICE, "Admin", "InjectPartition"),
    (RAFT_SERVICE, "Raft", "AppendEntries"),
    (RAFT_SERVICE, "Raft", "Vote"),
    (RAFT_SERVICE, "Raft", "InstallSnapshot"),
];

/// The service and method of a path, if it is one of ours: metrics label only these, so that
/// made-up paths cannot grow the label set.
pub fn known_method(path: &str) -> Option<(&'static str, &'static str)> {
    METHODS.iter().find_map(|(prefix, service, method)| {
        (path.strip_prefix(prefix) == Some(*method)).then_some((*service, *method))
    })
}

/// Refusals logged per second at most; the rest are counted and reported in one line, so
/// that a flood of bad calls cannot flood the log.
const REFUSALS_LOGGED_PER_SECOND: u64 = 10;

static REFUSAL_SECOND: AtomicU64 = AtomicU64::new(0);
static REFUSALS_THIS_SECOND: AtomicU64 = AtomicU64::new(0);

/// Whether to log this refusal; logs how many were skipped when a new second starts.
fn should_log_refusal() -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let previous = REFUSAL_SECOND.swap(now, Ordering::Relaxed);
    if previous != now {
        let seen = REFUSALS_THIS_SECOND.swap(0, Ordering::Relaxed);
        if seen > REFUSALS_LOGGED_PER_SECOND {
            tracing::warn!(
                skipped = seen - REFUSALS_LOGGED_PER_SECOND,
                "calls refused and not logged in the last second"
            );
        }
    }
    REFUSALS_THIS_SECOND.fetch_add(1, Ordering::Relaxed) < REFUSALS_LOGGED_PER_SECOND
}

/// The one table of who may call what. A method added to a service without an entry here
/// needs `admin` (admin service) or `write` (ledger service): new methods fail closed.
pub fn required(path: &str) -> Caller {
    if path.starts_with(RAFT_SERVICE) {
        return Caller::Peer;
    }
    if let Some(method) = path.strip_prefix(LEDGER_SERVICE) {
        return Caller::Client(match method {
            "LookupAccounts"
            | "LookupTransfers"
            | "LookupMarkets"
            | "LookupBets"
            | "LookupSettlements"
            | "ListAccounts"
            | "GetAccountTransfers"
            | "GetAccountBalances"
            | "GetMarketBets"
            | "GetPendingStatus" => Role::Read,
            _ => Role::Write,
        });
    }
    if let Some(method) = path.strip_prefix(ADMIN_SERVICE) {
        return Caller::Client(match method {
            "Status" => Role::Read,
            _ => Role::Admin,
        });
    }
    Caller::Unknown
}

/// One entry of the auth file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenEntry {
    pub name: String,
    pub role: Role,
    /// Lowercase hex SHA-256 of the token.
    pub sha256: String,
}

/// The auth file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AuthFile {
    pub tokens: Vec<TokenEntry>,
}

pub use ledger_client::client::token_sha256;

/// Checks tokens against the auth file.
#[derive(Debug)]
pub struct Authenticator {
    /// SHA-256 hex of the token -> (name, role).
    tokens: HashMap<String, (String, Role)>,
}

impl Authenticator {
    /// Reads an auth file; every problem is reported with the file and the entry.
    pub fn load(path: &Path) -> Result<Self, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("--auth-file {}: {e}", path.display()))?;
        let file: AuthFile = serde_json::from_slice(&bytes)
            .map_err(|e| format!("--auth-file {}: {e}", path.display()))?;
        Self::from_file(file).map_err(|e| format!("--auth-file {}: {e}", path.display()))
    }

    pub fn from_file(file: AuthFile) -> Result<Self, String> {
        let mut tokens = HashMap::new();
        for entry in file.tokens {
            let hash = entry.sha256.to_ascii_lowercase();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "token '{}': sha256 must be 64 hex digits",
                    entry.name
                ));
            }
            if tokens
                .insert(hash, (entry.name.clone(), entry.role))
                .is_some()
            {
                return Err(format!(
                    "token '{}': the same token appears twice",
                    entry.name
                ));
            }
        }
        if tokens.is_empty() {
            return Err("no tokens: nobody could call the node".into());
        }
        Ok(Self { tokens })
    }

    /// Checks the credentials of a call that needs `role`; on success returns the token name.
    pub fn check(&self, headers: &http::HeaderMap, role: Role) -> Result<&str, Refusal> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(Refusal::Unauthenticated(
                "no credentials: send 'authorization: Bearer <token>'",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(Refusal::Unauthenticated(
                "malformed authorization header: expected 'Bearer <token>'",
            ))?;
        let Some((name, granted)) = self.tokens.get(&token_sha256(token)) else {
            return Err(Refusal::Unauthenticated("unknown token"));
        };
        if *granted < role {
            return Err(Refusal::PermissionDenied {
                name: name.clone(),
                granted: *granted,
                needed: role,
            });
        }
        Ok(name)
    }
}

/// Why a call was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Unauthenticated(&'static str),
    PermissionDenied {
        name: String,
        granted: Role,
        needed: Role,
    },
    NotAPeer,
}

impl Refusal {
    fn into_status(self, method: &str) -> Status {
        match self {
            Refusal::Unauthenticated(why) => {
                Status::unauthenticated(format!("LEDGER_UNAUTHENTICATED: {why}"))
            }
            Refusal::PermissionDenied {
                name,
                granted,
                needed,
            } => Status::permission_denied(format!(
                "LEDGER_PERMISSION_DENIED: token '{name}' has role {granted}; {method} needs {needed}"
            )),
            Refusal::NotAPeer => Status::unauthenticated(
                "LEDGER_UNAUTHENTICATED: Raft RPCs need a node certificate from the cluster CA",
            ),
        }
    }
}

/// The tower layer that enforces [`required`] in front of every service.
#[derive(Clone, Debug, Default)]
pub struct AuthLayer {
    /// `None`: client calls are not checked.
    pub tokens: Option<Arc<Authenticator>>,
    /// Raft's RPCs need a verified node certificate (the node serves TLS).
    pub peers_need_certificate: bool,
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            policy: self.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    policy: AuthLayer,
}

impl AuthLayer {
    fn check<B>(&self, request: &http::Request<B>) -> Result<(), Refusal> {
        match required(request.uri().path()) {
            Caller::Unknown => Ok(()),
            Caller::Peer => {
                if self.peers_need_certificate && !super::has_verified_peer_certificate(request) {
                    Err(Refusal::NotAPeer)
                } else {
                    Ok(())
                }
            }
            Caller::Client(role) => match &self.tokens {
                None => Ok(()),
                Some(tokens) => tokens.check(request.headers(), role).map(|_| ()),
            },
        }
    }
}

impl<S, B, R> tower_service::Service<http::Request<B>> for AuthService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self.policy.check(&request) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(refusal) => {
                let method = request.uri().path().to_string();
                if should_log_refusal() {
                    let peer = super::remote_addr(&request);
                    match &refusal {
                        Refusal::PermissionDenied { name, .. } => {
                            tracing::warn!(%method, ?peer, token = %name, "call refused: role too low")
                        }
                        other => tracing::warn!(%method, ?peer, reason = ?other, "call refused"),
                    }
                }
                let response = refusal.into_status(&method).into_http();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator() -> Authenticator {
        Authenticator::from_file(AuthFile {
            tokens: vec![
                TokenEntry {
                    name: "reader".into(),
                    role: Role::Read,
                    sha256: token_sha256("r-secret"),
                },
                TokenEntry {
                    name: "ops".into(),
                    role: Role::Admin,
                    sha256: token_sha256("a-secret"),
                },
            ],
        })
        .expect("valid file")
    }

    fn headers(value: Option<&str>) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        if let Some(v) = value {
            headers.insert(http::header::AUTHORIZATION, v.parse().expect("header"));
        }
        headers
    }

    #[test]
    fn methods_map_to_the_role_they_need() {
        assert_eq!(
            required("/ledger.v1.Ledger/CreateTransfers"),
            Caller::Client(Role::Write)
        );
        assert_eq!(
            required("/ledger.v1.Ledger/LookupAccounts"),
            Caller::Client(Role::Read)
        );
        assert_eq!(
            required("/ledger.v1.Ledger/SomethingNew"),
            Caller::Client(Role::Write)
        );
        assert_eq!(
            required("/ledger.admin.Admin/Status"),
            Caller::Client(Role::Read)
        );
        assert_eq!(
            required("/ledger.admin.Admin/Backup"),
            Caller::Client(Role::Admin)
        );
        assert_eq!(required("/ledger.raft.Raft/Vote"), Caller::Peer);
        assert_eq!(required("/grpc.health.v1.Health/Check"), Caller::Unknown);
        assert_eq!(
            known_method("/ledger.v1.Ledger/CreateTransfers"),
            Some(("Ledger", "CreateTransfers"))
        );
        assert_eq!(
            known_method("/ledger.raft.Raft/Vote"),
            Some(("Raft", "Vote"))
        );
        assert_eq!(known_method("/ledger.v1.Ledger/MadeUp"), None);
        assert_eq!(known_method("/ledger.v1.Ledger/CreateTransfersX"), None);
    }

    #[test]
    fn tokens_are_checked_by_role() {
        let auth = authenticator();
        assert_eq!(
            auth.check(&headers(Some("Bearer r-secret")), Role::Read),
            Ok("reader")
        );
        assert_eq!(
            auth.check(&headers(Some("Bearer r-secret")), Role::Write),
            Err(Refusal::PermissionDenied {
                name: "reader".into(),
                granted: Role::Read,
                needed: Role::Write
            })
        );
        assert_eq!(
            auth.check(&headers(Some("Bearer a-secret")), Role::Admin),
            Ok("ops")
        );
        assert!(matches!(
            auth.check(&headers(None), Role::Read),
            Err(Refusal::Unauthenticated(_))
        ));
        assert!(matches!(
            auth.check(&headers(Some("Bearer wrong")), Role::Read),
            Err(Refusal::Unauthenticated("unknown token"))
        ));
        assert!(matches!(
            auth.check(&headers(Some("Basic r-secret")), Role::Read),
            Err(Refusal::Unauthenticated(_))
        ));
    }

    #[test]
    fn refusal_messages_never_hold_the_secret() {
        let auth = authenticator();
        for value in ["Bearer r-secret", "Bearer wrong-secret"] {
            let refusal = auth
                .check(&headers(Some(value)), Role::Admin)
                .expect_err("refused");
            let status = refusal.into_status("/ledger.admin.Admin/Backup");
            assert!(!status.message().contains("secret"), "{}", status.message());
        }
    }

    #[test]
    fn bad_auth_files_are_refused() {
        let bad_hash = AuthFile {
            tokens: vec![TokenEntry {
                name: "x".into(),
                role: Role::Read,
                sha256: "abc".into(),
            }],
        };
        assert!(Authenticator::from_file(bad_hash).is_err());
        assert!(Authenticator::from_file(AuthFile::default()).is_err());
        let twice = AuthFile {
            tokens: vec![
                TokenEntry {
                    name: "a".into(),
                    role: Role::Read,
                    sha256: token_sha256("t"),
                },
                TokenEntry {
                    name: "b".into(),
                    role: Role::Write,
                    sha256: token_sha256("t"),
                },
            ],
        };
        assert!(Authenticator::from_file(twice).is_err());
    }
}
