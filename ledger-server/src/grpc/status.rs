//! The one mapping from the node's errors to gRPC statuses.
//!
//! Every status message starts with a stable code word (`LEDGER_NOT_LEADER`, ...) that clients
//! may match on; `LEDGER_NOT_LEADER` also carries a [`LeaderHint`] in the status details.
//!
//! | error | gRPC code | word | was the write applied? |
//! |---|---|---|---|
//! | not the leader | FAILED_PRECONDITION | LEDGER_NOT_LEADER | no |
//! | no quorum, shutting down | UNAVAILABLE | LEDGER_UNAVAILABLE | no |
//! | proposed, not confirmed in time | DEADLINE_EXCEEDED | LEDGER_OUTCOME_UNKNOWN | unknown |
//! | bad request, or not valid protobuf (rewritten from tonic's INTERNAL in `security/limits.rs`) | INVALID_ARGUMENT | LEDGER_INVALID_ARGUMENT | no |
//! | over a limit, shedding load | RESOURCE_EXHAUSTED | LEDGER_RESOURCE_EXHAUSTED | no |
//! | damaged node | UNAVAILABLE | LEDGER_UNHEALTHY | no |
//! | cluster not initialized | FAILED_PRECONDITION | LEDGER_NOT_INITIALIZED | no |
//! | bug | INTERNAL | LEDGER_INTERNAL | unknown |

use ledger_client::proto::ledger::LeaderHint;
use prost::Message;
use tonic::{Code, Status};

use crate::error::NodeError;

pub fn to_status(error: NodeError) -> Status {
    let message = error.to_string();
    match error {
        NodeError::NotLeader {
            leader_id,
            leader_address,
        } => {
            let hint = LeaderHint {
                leader_id: leader_id.unwrap_or(0),
                leader_address: leader_address.unwrap_or_default(),
            };
            Status::with_details(
                Code::FailedPrecondition,
                format!("LEDGER_NOT_LEADER: {message}"),
                hint.encode_to_vec().into(),
            )
        }
        NodeError::Unavailable(_) => Status::unavailable(format!("LEDGER_UNAVAILABLE: {message}")),
        NodeError::OutcomeUnknown(_) => {
            Status::deadline_exceeded(format!("LEDGER_OUTCOME_UNKNOWN: {message}"))
        }
        NodeError::InvalidArgument { .. } => {
            Status::invalid_argument(format!("LEDGER_INVALID_ARGUMENT: {message}"))
        }
        NodeError::ResourceExhausted(_) => {
            Status::resource_exhausted(format!("LEDGER_RESOURCE_EXHAUSTED: {message}"))
        }
        NodeError::Unhealthy(_) => Status::unavailable(format!("LEDGER_UNHEALTHY: {message}")),
        NodeError::NotInitialized(_) => {
            Status::failed_precondition(format!("LEDGER_NOT_INITIALIZED: {message}"))
        }
        NodeError::Internal(_) => Status::internal(format!("LEDGER_INTERNAL: {message}")),
    }
}
