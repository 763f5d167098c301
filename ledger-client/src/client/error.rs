//! What a call can end with, and how a gRPC status is read: applied, not applied, or unknown.
//!
//! The distinction that matters for money is between a request the cluster *definitely did
//! not apply* (safe to report as a failure) and one it *may have applied* (a timeout, a reset
//! connection, a leader that crashed after proposing). The client retries both with the same
//! event ids, which is safe because every write is idempotent; when the deadline passes and any
//! attempt may have been applied, the error is [`Error::OutcomeUnknown`], never a failure.

use std::time::Duration;

use prost::Message;
use tonic::{Code, Status};

use crate::error_details::{self, Applied};
use crate::proto::ledger::LeaderHint;

/// The error of a client call. Business rejections (an overdraft, an unknown account) are not
/// errors: they are result codes, one per event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The deadline passed and at least one attempt may have been applied. Retry later with the
    /// same ids to learn the outcome: `exists` then means it was applied.
    #[error("outcome unknown after {attempts} attempts in {elapsed:?}: {last_error}")]
    OutcomeUnknown {
        attempts: u32,
        elapsed: Duration,
        last_error: String,
    },
    /// The deadline passed and no attempt was applied: every node refused the request before
    /// proposing it (no leader, no quorum, overloaded, unreachable).
    #[error("not applied: no node accepted the request in {elapsed:?} ({attempts} attempts): {last_error}")]
    Unavailable {
        attempts: u32,
        elapsed: Duration,
        last_error: String,
    },
    /// The request is malformed or over a limit; retrying it cannot succeed. Nothing applied.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A missing or wrong credential. Nothing applied.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// A valid credential without the role the call needs. Nothing applied.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The client's configuration is unusable (no endpoints, a malformed URL).
    #[error("configuration: {0}")]
    Config(String),
    /// The server answered something this client cannot read (a version mismatch).
    #[error("protocol: {0}")]
    Protocol(String),
}

impl Error {
    /// True when the request may or may not have been applied.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Error::OutcomeUnknown { .. })
    }
}

/// How one failed attempt is handled.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Not applied; this node is not the leader. The hint names the leader when known.
    NotLeader { leader_address: Option<String> },
    /// Not applied; worth retrying after a pause, on another node if this one is down.
    Refused(String),
    /// Maybe applied; retry with the same ids.
    Ambiguous(String),
    /// Retrying cannot help.
    Fatal(Error),
}

/// Reads a failed attempt's status by its typed details (`crate::error_details`: the
/// `ErrorInfo` reason and its `applied` flag), falling back to the message's code word for a
/// server that sends none. Errors the server marks "not applied" are definite; anything else
/// that is not a client error could have been applied.
pub(crate) fn classify(status: &Status) -> Failure {
    let message = status.message();
    let details = error_details::decode(status.details());
    let reason = details
        .info
        .as_ref()
        .map(|info| info.reason.as_str())
        .or_else(|| error_details::reason_of_message(message));
    let applied = details
        .info
        .as_ref()
        .and_then(|info| info.metadata.get("applied"))
        .map(|a| {
            if a == "no" {
                Applied::No
            } else {
                Applied::Unknown
            }
        })
        .or_else(|| reason.map(Applied::of_reason));
    if reason == Some("LEDGER_NOT_LEADER") {
        // A server without typed details sent the hint alone, as the details.
        let hint = details.leader.or_else(|| {
            details
                .info
                .is_none()
                .then(|| LeaderHint::decode(status.details()).ok())
                .flatten()
        });
        return Failure::NotLeader {
            leader_address: hint
                .map(|h| h.leader_address)
                .filter(|address| !address.is_empty()),
        };
    }
    match status.code() {
        Code::FailedPrecondition if reason == Some("LEDGER_NOT_INITIALIZED") => {
            Failure::Refused(message.to_string())
        }
        // An oversized request is refused for what it is: sending it again cannot succeed.
        Code::ResourceExhausted if message.contains("request too large") => {
            Failure::Fatal(Error::InvalidArgument(message.to_string()))
        }
        Code::ResourceExhausted => Failure::Refused(message.to_string()),
        Code::Unavailable if applied == Some(Applied::No) => Failure::Refused(message.to_string()),
        // The server answered plain HTTP without gRPC: not a Ledger gRPC port (nothing there
        // can have applied anything).
        Code::Unimplemented | Code::Unknown | Code::Internal
            if message.contains("mapped from HTTP status code") =>
        {
            Failure::Fatal(Error::Config(format!(
                "not sent to a Ledger node: {message}; this looks like a node's HTTP port \
                 (health and metrics); give its gRPC port (--grpc-addr, 7000 by default)"
            )))
        }
        _ if not_sent(status).is_some() => {
            let (why, hint) = not_sent(status).expect("just checked");
            let message = format!("not sent: {why}{hint}");
            // A certificate the CA does not vouch for stays so: retrying cannot help.
            if why.contains("invalid peer certificate") {
                Failure::Fatal(Error::Config(message))
            } else {
                Failure::Refused(message)
            }
        }
        Code::InvalidArgument | Code::OutOfRange => {
            Failure::Fatal(Error::InvalidArgument(message.to_string()))
        }
        Code::Unauthenticated => Failure::Fatal(Error::Unauthenticated(message.to_string())),
        Code::PermissionDenied => Failure::Fatal(Error::PermissionDenied(message.to_string())),
        Code::Unimplemented => Failure::Fatal(Error::Protocol(message.to_string())),
        _ => Failure::Ambiguous(format!("{:?}: {message}", status.code())),
    }
}

/// Why a request was never sent, and a hint for the operator, when its connection could not
/// be made: refused, a name that does not resolve, no answer to the connection, a failed TLS
/// handshake, or a server that does not speak the connection's protocol (a TLS server called
/// over plaintext). `None` when the connection was made (the request may have been sent).
fn not_sent(status: &Status) -> Option<(String, &'static str)> {
    let mut chain = Vec::new();
    let mut refused = false;
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        let text = error.to_string();
        // Nested errors often repeat their source's message.
        if !chain
            .last()
            .is_some_and(|last: &String| last.contains(&text))
        {
            chain.push(text);
        }
        source = error.source();
    }
    let text = chain.join(": ");
    let handshake = |t: &str| {
        t.contains("invalid peer certificate")
            || t.contains("InvalidCertificate")
            || t.contains("received fatal alert")
    };
    let text = if handshake(status.message()) && !handshake(&text) {
        format!("{}: {text}", status.message())
    } else {
        text
    };
    let connecting = refused
        || text.contains("client error (Connect)")
        || text.contains("tcp connect error")
        || text.contains("dns error")
        || handshake(&text);
    if !connecting {
        return None;
    }
    let hint = if refused || text.contains("Connection refused") {
        " (nothing listens there: is the node running, and is this its gRPC port?)"
    } else if text.contains("dns error") || text.contains("failed to lookup address") {
        " (the host name does not resolve)"
    } else if text.contains("UnknownIssuer")
        || text.contains("BadSignature")
        || text.contains("invalid peer certificate")
    {
        " (the server's certificate is not signed by the CA given: check LEDGER_TLS_CA)"
    } else if text.contains("InvalidContentType")
        || text.contains("corrupt message")
        || text.contains("received corrupt")
    {
        " (the server does not speak TLS: use http:// and no CA)"
    } else if text.contains("timed out") || text.contains("deadline") {
        " (no answer to the connection: a firewall, a wrong address, or a stopped node)"
    } else {
        ""
    };
    Some((text, hint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_hint_is_read_from_the_details() {
        let hint = LeaderHint {
            leader_id: 2,
            leader_address: "127.0.0.1:7002".into(),
        };
        let status = Status::with_details(
            Code::FailedPrecondition,
            "LEDGER_NOT_LEADER: node 1 is a follower",
            hint.encode_to_vec().into(),
        );
        match classify(&status) {
            Failure::NotLeader { leader_address } => {
                assert_eq!(leader_address.as_deref(), Some("127.0.0.1:7002"))
            }
            other => panic!("expected NotLeader, got {other:?}"),
        }
        let no_leader = Status::with_details(
            Code::FailedPrecondition,
            "LEDGER_NOT_LEADER: election under way",
            LeaderHint::default().encode_to_vec().into(),
        );
        assert!(matches!(
            classify(&no_leader),
            Failure::NotLeader {
                leader_address: None
            }
        ));
    }

    #[test]
    fn documented_refusals_are_definite_and_the_rest_ambiguous() {
        let refused = [
            Status::unavailable("LEDGER_UNAVAILABLE: no quorum"),
            Status::unavailable("LEDGER_UNHEALTHY: damaged log"),
            Status::resource_exhausted("LEDGER_RESOURCE_EXHAUSTED: queue full"),
            Status::failed_precondition("LEDGER_NOT_INITIALIZED: no cluster"),
        ];
        for status in refused {
            assert!(
                matches!(classify(&status), Failure::Refused(_)),
                "{status:?}"
            );
        }
        let ambiguous = [
            Status::deadline_exceeded("LEDGER_OUTCOME_UNKNOWN: proposed"),
            Status::internal("LEDGER_INTERNAL: bug"),
            Status::unavailable("transport error"),
            Status::unknown("h2 protocol error: connection reset"),
            Status::cancelled("request cancelled"),
        ];
        for status in ambiguous {
            assert!(
                matches!(classify(&status), Failure::Ambiguous(_)),
                "{status:?}"
            );
        }
        assert!(matches!(
            classify(&Status::invalid_argument(
                "LEDGER_INVALID_ARGUMENT: transfers[0].id"
            )),
            Failure::Fatal(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            classify(&Status::permission_denied("role write needed")),
            Failure::Fatal(Error::PermissionDenied(_))
        ));
    }

    #[test]
    fn the_typed_details_decide_not_the_message() {
        let typed = |code: Code, reason: &str, leader: Option<&LeaderHint>| {
            let details = error_details::encode(code, "rewritten by a proxy", reason, leader);
            Status::with_details(code, "rewritten by a proxy", details.into())
        };
        assert!(matches!(
            classify(&typed(Code::Unavailable, "LEDGER_UNAVAILABLE", None)),
            Failure::Refused(_)
        ));
        assert!(matches!(
            classify(&typed(Code::Unavailable, "LEDGER_OUTCOME_UNKNOWN", None)),
            Failure::Ambiguous(_)
        ));
        let hint = LeaderHint {
            leader_id: 3,
            leader_address: "127.0.0.1:7020".into(),
        };
        match classify(&typed(
            Code::FailedPrecondition,
            "LEDGER_NOT_LEADER",
            Some(&hint),
        )) {
            Failure::NotLeader { leader_address } => {
                assert_eq!(leader_address.as_deref(), Some("127.0.0.1:7020"))
            }
            other => panic!("expected NotLeader, got {other:?}"),
        }
    }
}
