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
//! `admin` can do everything `write` can, `write` everything `read` can. [`METHODS`] gives
//! every method the role it needs. Raft's RPCs are not served on the client port at all: they
//! have a port of their own with its own authentication (`peer.rs`). Without `--auth-file`,
//! client calls are not checked, which `config.rs` allows only on loopback addresses or with
//! an explicit `--insecure`.
//!
//! A refused call is logged with the token's name (or that none was given), the method and
//! the peer address, never with the secret.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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

/// THE table of who may call what: every method of the three services (`proto/*.proto`), with
/// its service's short name and the caller it needs. A test reads the `.proto` files and fails
/// if a method is missing here. A method that is somehow not in the table needs `admin`
/// ([`required`]): new methods fail closed.
pub const METHODS: &[(&str, &str, &str, Caller)] = &[
    (LEDGER_SERVICE, "Ledger", "CreateAccounts", WRITE),
    (LEDGER_SERVICE, "Ledger", "CreateTransfers", WRITE),
    (LEDGER_SERVICE, "Ledger", "CreateMarkets", WRITE),
    (LEDGER_SERVICE, "Ledger", "PlaceBets", WRITE),
    (LEDGER_SERVICE, "Ledger", "SettleMarkets", WRITE),
    (LEDGER_SERVICE, "Ledger", "BetActions", WRITE),
    (LEDGER_SERVICE, "Ledger", "LookupAccounts", READ),
    (LEDGER_SERVICE, "Ledger", "LookupTransfers", READ),
    (LEDGER_SERVICE, "Ledger", "LookupMarkets", READ),
    (LEDGER_SERVICE, "Ledger", "LookupBets", READ),
    (LEDGER_SERVICE, "Ledger", "LookupSettlements", READ),
    (LEDGER_SERVICE, "Ledger", "ListAccounts", READ),
    (LEDGER_SERVICE, "Ledger", "GetAccountTransfers", READ),
    (LEDGER_SERVICE, "Ledger", "GetAccountBalances", READ),
    (LEDGER_SERVICE, "Ledger", "GetMarketBets", READ),
    (LEDGER_SERVICE, "Ledger", "GetPendingStatus", READ),
    (LEDGER_SERVICE, "Ledger", "GetTransferStatuses", READ),
    (ADMIN_SERVICE, "Admin", "Init", ADMIN),
    (ADMIN_SERVICE, "Admin", "AddLearner", ADMIN),
    (ADMIN_SERVICE, "Admin", "ChangeMembership", ADMIN),
    (ADMIN_SERVICE, "Admin", "Status", READ),
    (ADMIN_SERVICE, "Admin", "Verify", ADMIN),
    (ADMIN_SERVICE, "Admin", "Backup", ADMIN),
    (ADMIN_SERVICE, "Admin", "InjectPartition", ADMIN),
    (ADMIN_SERVICE, "Admin", "InjectClockOffset", ADMIN),
    (ADMIN_SERVICE, "Admin", "InjectSyncDelay", ADMIN),
    (RAFT_SERVICE, "Raft", "AppendEntries", Caller::Peer),
    (RAFT_SERVICE, "Raft", "Vote", Caller::Peer),
    (RAFT_SERVICE, "Raft", "InstallSnapshot", Caller::Peer),
    (RAFT_SERVICE, "Raft", "Identify", Caller::Peer),
];

const READ: Caller = Caller::Client(Role::Read);
const WRITE: Caller = Caller::Client(Role::Write);
const ADMIN: Caller = Caller::Client(Role::Admin);

/// The service and method of a path, if it is one of ours: metrics label only these, so that
/// made-up paths cannot grow the label set.
pub fn known_method(path: &str) -> Option<(&'static str, &'static str)> {
    METHODS.iter().find_map(|(prefix, service, method, _)| {
        (path.strip_prefix(prefix) == Some(*method)).then_some((*service, *method))
    })
}

/// Refusals logged per second at most; the rest are counted and reported in one line, so
/// that a flood of bad calls cannot flood the log.
pub(crate) const REFUSALS_LOGGED_PER_SECOND: u64 = 10;

static REFUSAL_SECOND: AtomicU64 = AtomicU64::new(0);
static REFUSALS_THIS_SECOND: AtomicU64 = AtomicU64::new(0);

/// Whether to log this refusal; logs how many were skipped when a new second starts.
pub(crate) fn should_log_refusal() -> bool {
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

/// Who may call the method at `path`, from [`METHODS`]. A path of one of our services that is
/// not in the table needs `admin` (fail closed); other paths are left to the router.
pub fn required(path: &str) -> Caller {
    if let Some(caller) = METHODS.iter().find_map(|(prefix, _, method, caller)| {
        (path.strip_prefix(prefix) == Some(*method)).then_some(*caller)
    }) {
        return caller;
    }
    if path.starts_with(RAFT_SERVICE) {
        return Caller::Peer;
    }
    if path.starts_with(LEDGER_SERVICE) || path.starts_with(ADMIN_SERVICE) {
        return ADMIN;
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
    /// When the token stops working, in seconds since the Unix epoch (absent: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_unix: Option<u64>,
}

/// What the auth file grants a token.
#[derive(Clone, Debug)]
struct Grant {
    name: String,
    role: Role,
    expires_unix: Option<u64>,
}

/// The auth file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AuthFile {
    pub tokens: Vec<TokenEntry>,
}

pub use ledger_wire::token_sha256;

/// Checks tokens against the auth file.
#[derive(Debug)]
pub struct Authenticator {
    /// SHA-256 hex of the token -> what it grants.
    tokens: HashMap<String, Grant>,
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
            let grant = Grant {
                name: entry.name.clone(),
                role: entry.role,
                expires_unix: entry.expires_unix,
            };
            if tokens.insert(hash, grant).is_some() {
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

    /// [`Self::check_at`] by the machine's clock.
    #[cfg(test)]
    fn check(&self, headers: &http::HeaderMap, role: Role) -> Result<&str, Refusal> {
        use crate::env::Env;
        self.check_at(headers, role, crate::env::SystemEnv.wall_clock_secs())
    }

    /// Checks the credentials of a call that needs `role` at `now_unix` seconds since the Unix
    /// epoch (the node's wall clock, `env.rs`, which judges expiry); on success returns the
    /// token name.
    pub fn check_at(
        &self,
        headers: &http::HeaderMap,
        role: Role,
        now_unix: u64,
    ) -> Result<&str, Refusal> {
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
        let Some(grant) = self.tokens.get(&token_sha256(token)) else {
            return Err(Refusal::Unauthenticated("unknown token"));
        };
        if grant.expires_unix.is_some_and(|at| now_unix >= at) {
            return Err(Refusal::Unauthenticated("expired token"));
        }
        if grant.role < role {
            return Err(Refusal::PermissionDenied {
                name: grant.name.clone(),
                granted: grant.role,
                needed: role,
            });
        }
        Ok(&grant.name)
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
    /// A Raft call on the client port: Raft is served on the peer port only.
    PeerCallOnClientPort,
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
            Refusal::PeerCallOnClientPort => Status::unimplemented(
                "LEDGER_WRONG_PORT: Raft's RPCs are served on the peer port (--peer-addr), not \
                 on the client port",
            ),
        }
    }
}

/// The policy that enforces [`required`] in front of the client port's services (as a tower
/// layer: `GateLayer<AuthPolicy>`, see `security/mod.rs`).
#[derive(Clone, Debug)]
pub struct AuthPolicy {
    /// `None`: client calls are not checked (loopback, or `--insecure`; see `config.rs`).
    pub tokens: Option<Arc<Authenticator>>,
    /// The wall clock token expiry is judged by (`env.rs`).
    pub env: Arc<dyn crate::env::Env>,
}

/// No tokens (client calls not checked), on the machine's clock.
impl Default for AuthPolicy {
    fn default() -> Self {
        Self {
            tokens: None,
            env: Arc::new(crate::env::SystemEnv),
        }
    }
}

impl AuthPolicy {
    fn check<B>(&self, request: &http::Request<B>) -> Result<(), Refusal> {
        match required(request.uri().path()) {
            Caller::Unknown => Ok(()),
            Caller::Peer => Err(Refusal::PeerCallOnClientPort),
            Caller::Client(role) => match &self.tokens {
                None => Ok(()),
                Some(tokens) => tokens
                    .check_at(request.headers(), role, self.env.wall_clock_secs())
                    .map(|_| ()),
            },
        }
    }
}

impl super::Gate for AuthPolicy {
    fn admit<B>(&self, request: &http::Request<B>) -> Result<(), Status> {
        self.check(request).map_err(|refusal| {
            let method = request.uri().path();
            if should_log_refusal() {
                let peer = super::remote_addr(request);
                match &refusal {
                    Refusal::PermissionDenied { name, .. } => {
                        tracing::warn!(%method, ?peer, token = %name, "call refused: role too low")
                    }
                    other => tracing::warn!(%method, ?peer, reason = ?other, "call refused"),
                }
            }
            refusal.into_status(method)
        })
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
                    expires_unix: None,
                },
                TokenEntry {
                    name: "ops".into(),
                    role: Role::Admin,
                    sha256: token_sha256("a-secret"),
                    expires_unix: None,
                },
                TokenEntry {
                    name: "contractor".into(),
                    role: Role::Write,
                    sha256: token_sha256("c-secret"),
                    expires_unix: Some(1_000),
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
            Caller::Client(Role::Admin),
            "a method missing from the table needs admin"
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

    /// The `rpc` names of each service in a `.proto` file.
    fn proto_methods(proto: &str) -> Vec<(String, String)> {
        let mut service = String::new();
        let mut methods = Vec::new();
        for line in proto.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.trim_end_matches('{').trim().to_string();
            } else if let Some(rest) = line.strip_prefix("rpc ") {
                let name = rest.split('(').next().unwrap_or_default().trim();
                methods.push((service.clone(), name.to_string()));
            }
        }
        methods
    }

    #[test]
    fn every_method_of_every_service_is_in_the_role_table() {
        let protos = [
            include_str!("../../../ledger-wire/proto/ledger.proto"),
            include_str!("../../../ledger-wire/proto/admin.proto"),
            include_str!("../../../ledger-wire/proto/raft.proto"),
        ];
        let declared: Vec<(String, String)> =
            protos.iter().flat_map(|p| proto_methods(p)).collect();
        assert!(
            declared.len() >= 20,
            "the .proto files were read: {declared:?}"
        );
        for (service, method) in &declared {
            assert!(
                METHODS
                    .iter()
                    .any(|(_, s, m, _)| s == service && m == method),
                "{service}.{method} is not in auth::METHODS: give it a role there"
            );
        }
        for (_, service, method, _) in METHODS {
            assert!(
                declared.iter().any(|(s, m)| s == service && m == method),
                "auth::METHODS lists {service}.{method}, which no .proto declares"
            );
        }
        assert!(
            proto_methods("service Admin {\n  rpc Brand(X) returns (Y);\n}")
                .iter()
                .all(|(s, m)| !METHODS.iter().any(|(_, ts, tm, _)| ts == s && tm == m)),
            "a method missing from the table would be caught"
        );
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
        let contractor = headers(Some("Bearer c-secret"));
        assert_eq!(
            auth.check_at(&contractor, Role::Write, 999),
            Ok("contractor")
        );
        assert_eq!(
            auth.check_at(&contractor, Role::Read, 1_000),
            Err(Refusal::Unauthenticated("expired token"))
        );
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
                expires_unix: None,
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
                    expires_unix: None,
                },
                TokenEntry {
                    name: "b".into(),
                    role: Role::Write,
                    sha256: token_sha256("t"),
                    expires_unix: None,
                },
            ],
        };
        assert!(Authenticator::from_file(twice).is_err());
    }
}
