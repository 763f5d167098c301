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
        Code::Unavailable if connection_refused(status) => {
            Failure::Refused(format!("connection refused: {message}"))
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

/// True when the connection was never made, so the request was never sent.
fn connection_refused(status: &Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        source = error.source();
    }
    false
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
