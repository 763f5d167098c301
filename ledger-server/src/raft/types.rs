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

/// A member of the cluster as the membership records it: where clients reach it, and where
/// its peers reach its Raft service. The two are separate ports, so that a network policy can
/// close the peer port to everything but the other nodes (docs/security.md).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerNode {
    /// `host:port` of the node's client port (Ledger and Admin services): the address in
    /// leader hints and `ledgerctl cluster status`.
    pub addr: String,
    /// `host:port` of the node's peer port (Raft's RPCs only).
    pub peer_addr: String,
    /// The incarnation of the node's data directory when it became a member (see
    /// `raft/identity.rs`): a node that lost its data comes back with another one, and is
    /// neither heard nor counted until an operator replaces it. Never 0 in a membership.
    pub incarnation: u64,
}

impl LedgerNode {
    pub fn new(addr: impl Into<String>, peer_addr: impl Into<String>, incarnation: u64) -> Self {
        Self {
            addr: addr.into(),
            peer_addr: peer_addr.into(),
            incarnation,
        }
    }
}

impl std::fmt::Display for LedgerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (peer {}, incarnation {:016x})",
            self.addr, self.peer_addr, self.incarnation
        )
    }
}

openraft::declare_raft_types!(
    /// The ledger's Raft types: u64 node ids, members with a client and a peer address,
    /// snapshots as files on disk.
    pub TypeConfig:
        D = LedgerRequest,
        R = LedgerResponse,
        NodeId = u64,
        Node = LedgerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = crate::storage::snapshot_handle::SnapshotHandle,
        AsyncRuntime = crate::raft::runtime::LedgerRuntime,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, LedgerNode>;
pub type Membership = openraft::Membership<NodeId, LedgerNode>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, LedgerNode>;
