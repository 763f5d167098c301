//! The node's operating errors: one enum for everything a request can meet on its way through
//! the node. Business rejections are not here: they are result codes (ledger-core).
//! `grpc/status.rs` turns a [`NodeError`] into a `tonic::Status` in exactly one function.

use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};

use crate::raft::types::{LedgerNode, NodeId};

#[derive(Clone, Debug, thiserror::Error)]
pub enum NodeError {
    /// This node cannot serve the request; the leader (if known) can. Nothing was proposed.
    #[error("not the leader; leader is {}", leader_address.as_deref().unwrap_or("unknown"))]
    NotLeader {
        leader_id: Option<NodeId>,
        leader_address: Option<String>,
    },
    /// No quorum is reachable. Nothing was proposed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The request was proposed but not confirmed in time: it may or may not be applied.
    /// Retrying with the same ids is safe.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    #[error("invalid argument: {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// A named limit was exceeded, or the node is shedding load.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// The node detected damage or a failed write and stopped serving.
    #[error("node unhealthy: {0}")]
    Unhealthy(String),
    #[error("not initialized: {0}")]
    NotInitialized(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl NodeError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        NodeError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn forward(f: ForwardToLeader<NodeId, LedgerNode>) -> Self {
        NodeError::NotLeader {
            leader_id: f.leader_id,
            leader_address: f.leader_node.map(|n| n.addr),
        }
    }

    /// A failed proposal. `proposed` says whether the entry may have reached the log.
    pub fn from_write(e: RaftError<NodeId, ClientWriteError<NodeId, LedgerNode>>) -> Self {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Self::forward(f),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                NodeError::InvalidArgument {
                    field: "membership".into(),
                    reason: e.to_string(),
                }
            }
            // The node stopped while the entry was in flight: it may still commit elsewhere.
            RaftError::Fatal(f) => NodeError::OutcomeUnknown(format!("raft stopped: {f}")),
        }
    }

    pub fn from_read(e: RaftError<NodeId, CheckIsLeaderError<NodeId, LedgerNode>>) -> Self {
        match e {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => Self::forward(f),
            RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
                NodeError::Unavailable(format!("no quorum: {q}"))
            }
            RaftError::Fatal(f) => NodeError::Unavailable(format!("raft stopped: {f}")),
        }
    }
}
