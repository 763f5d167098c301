//! Error details every language can read: the standard `google.rpc.Status` with an
//! `google.rpc.ErrorInfo`, carried in the `grpc-status-details-bin` trailer of every error.
//!
//! - `ErrorInfo.reason` is the stable code word that also starts the message
//!   (`LEDGER_NOT_LEADER`, `LEDGER_OUTCOME_UNKNOWN`, ...), `ErrorInfo.domain` is [`DOMAIN`].
//! - `ErrorInfo.metadata["applied"]` says whether the request may have been applied: `"no"`
//!   (definitely not: safe to report as a failure) or `"unknown"` (retry with the same ids, or
//!   look the ids up, to learn the outcome).
//! - A refusal by a node that is not the leader also has `metadata["leader_id"]` and
//!   `metadata["leader_address"]` (empty while an election is under way), and a typed
//!   `ledger.v1.LeaderHint` detail.
//!
//! The server adds these details to every error status of the client port that starts with a
//! code word (ledger-server `grpc/status.rs`); gRPC libraries read them with their standard
//! helpers (`grpc_status.rpc_status.from_call` in Python, `status.FromError(err).Details()` in
//! Go). The messages are declared here with prost, field for field as in googleapis'
//! `google/rpc/status.proto` and `error_details.proto`, so that neither side needs those files.

use std::collections::HashMap;

use prost::Message;

use crate::proto::ledger::LeaderHint;

/// `ErrorInfo.domain` of every Ledger error.
pub const DOMAIN: &str = "ledger.v1";
/// The type URL of an `ErrorInfo` in `google.protobuf.Any`.
pub const ERROR_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ErrorInfo";
/// The type URL of a [`LeaderHint`] in `google.protobuf.Any`.
pub const LEADER_HINT_TYPE: &str = "type.googleapis.com/ledger.v1.LeaderHint";

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// `google.rpc.ErrorInfo`.
#[derive(Clone, PartialEq, Message)]
pub struct ErrorInfo {
    #[prost(string, tag = "1")]
    pub reason: String,
    #[prost(string, tag = "2")]
    pub domain: String,
    #[prost(map = "string, string", tag = "3")]
    pub metadata: HashMap<String, String>,
}

/// Whether a request that ended with an error may have been applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Definitely not applied.
    No,
    /// May have been applied.
    Unknown,
}

impl Applied {
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::No => "no",
            Applied::Unknown => "unknown",
        }
    }

    /// What a code word says of the request: only an unknown outcome and a bug leave it open
    /// (ledger-server `grpc/status.rs` has the table); every refusal is definite.
    pub fn of_reason(reason: &str) -> Self {
        match reason {
            "LEDGER_OUTCOME_UNKNOWN" | "LEDGER_INTERNAL" => Applied::Unknown,
            r if r.starts_with("LEDGER_") => Applied::No,
            _ => Applied::Unknown,
        }
    }
}

/// The code word a status message starts with (`LEDGER_NOT_LEADER: ...`), if any.
pub fn reason_of_message(message: &str) -> Option<&str> {
    let word = message.split(':').next()?;
    let valid = word.len() > "LEDGER_".len()
        && word.starts_with("LEDGER_")
        && word.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
    valid.then_some(word)
}

/// The encoded `google.rpc.Status` of an error with code word `reason`; `leader` adds the
/// leader's id and address (a not-leader refusal).
pub fn encode(
    code: tonic::Code,
    message: &str,
    reason: &str,
    leader: Option<&LeaderHint>,
) -> Vec<u8> {
    let mut metadata = HashMap::from([(
        "applied".to_string(),
        Applied::of_reason(reason).as_str().to_string(),
    )]);
    let mut details = Vec::new();
    if let Some(hint) = leader {
        metadata.insert("leader_id".into(), hint.leader_id.to_string());
        metadata.insert("leader_address".into(), hint.leader_address.clone());
    }
    details.push(Any {
        type_url: ERROR_INFO_TYPE.into(),
        value: ErrorInfo {
            reason: reason.into(),
            domain: DOMAIN.into(),
            metadata,
        }
        .encode_to_vec(),
    });
    if let Some(hint) = leader {
        details.push(Any {
            type_url: LEADER_HINT_TYPE.into(),
            value: hint.encode_to_vec(),
        });
    }
    RpcStatus {
        code: code as i32,
        message: message.into(),
        details,
    }
    .encode_to_vec()
}

/// What a status's details say: its `ErrorInfo` and `LeaderHint`, when present and readable.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decoded {
    pub info: Option<ErrorInfo>,
    pub leader: Option<LeaderHint>,
}

/// Reads the details of a status (empty when it has none, or none of these).
pub fn decode(details: &[u8]) -> Decoded {
    let mut decoded = Decoded::default();
    let Ok(status) = RpcStatus::decode(details) else {
        return decoded;
    };
    for any in status.details {
        match any.type_url.as_str() {
            ERROR_INFO_TYPE => decoded.info = ErrorInfo::decode(any.value.as_slice()).ok(),
            LEADER_HINT_TYPE => decoded.leader = LeaderHint::decode(any.value.as_slice()).ok(),
            _ => {}
        }
    }
    decoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_round_trip_with_the_leader_and_the_applied_flag() {
        let hint = LeaderHint {
            leader_id: 2,
            leader_address: "127.0.0.1:7010".into(),
        };
        let bytes = encode(
            tonic::Code::FailedPrecondition,
            "LEDGER_NOT_LEADER: node 1 follows",
            "LEDGER_NOT_LEADER",
            Some(&hint),
        );
        let decoded = decode(&bytes);
        let info = decoded.info.expect("error info");
        assert_eq!(info.reason, "LEDGER_NOT_LEADER");
        assert_eq!(info.domain, DOMAIN);
        assert_eq!(info.metadata["applied"], "no");
        assert_eq!(info.metadata["leader_address"], "127.0.0.1:7010");
        assert_eq!(decoded.leader, Some(hint));
    }

    #[test]
    fn only_an_unknown_outcome_and_a_bug_leave_the_request_open() {
        assert_eq!(
            Applied::of_reason("LEDGER_OUTCOME_UNKNOWN"),
            Applied::Unknown
        );
        assert_eq!(Applied::of_reason("LEDGER_INTERNAL"), Applied::Unknown);
        assert_eq!(Applied::of_reason("LEDGER_UNAVAILABLE"), Applied::No);
        assert_eq!(Applied::of_reason("something else"), Applied::Unknown);
        assert_eq!(
            reason_of_message("LEDGER_NOT_LEADER: x"),
            Some("LEDGER_NOT_LEADER")
        );
        assert_eq!(reason_of_message("transport error"), None);
        assert_eq!(reason_of_message("LEDGER_: x"), None);
    }

    #[test]
    fn details_that_are_not_a_status_decode_to_nothing() {
        assert_eq!(decode(b"\xff\xff not protobuf"), Decoded::default());
    }
}
