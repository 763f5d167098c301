//! The Raft type configuration: what a log entry carries and what applying it returns.
//!
//! One entry carries the commands of several client requests, coalesced by the group committer
//! (`group_commit.rs`), and the leader's wall-clock time at proposal. The state machine raises
//! that time to keep cluster time strictly increasing (see `ledger_core::ApplyCtx`).

use ledger_core::{Command, CommandResults};
use serde::{Deserialize, Serialize};

/// The application data of one log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRequest {
    /// Leader wall clock at proposal, nanoseconds since the Unix epoch.
    pub timestamp: u64,
    /// The coalesced commands, applied in order.
    pub commands: Vec<Command>,
    /// The request id of each command (the client's, or one the leader gave it), so that one
    /// request can be followed in the logs of every node through proposal and apply.
    pub request_ids: Vec<String>,
}

impl std::fmt::Display for LedgerRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LedgerRequest(commands={}, ts={})",
            self.commands.len(),
            self.timestamp
        )
    }
}

/// What applying one entry returned: the results of each of its commands, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerResponse {
    pub results: Vec<CommandResults>,
}

openraft::declare_raft_types!(
    /// The ledger's Raft types: u64 node ids, snapshots as files on disk.
    pub TypeConfig:
        D = LedgerRequest,
        R = LedgerResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type StorageError = openraft::StorageError<NodeId>;
