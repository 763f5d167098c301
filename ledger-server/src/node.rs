//! A node as its request handlers see it: Raft, the group committer, storage, health and
//! metrics, and the checks every handler makes (who leads, whether a write can be taken).
//! Start-up, which builds it, is `startup.rs`.

use std::sync::Arc;

use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::group_commit::GroupCommitter;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::raft::network::NetworkFactory;
use crate::raft::types::Raft;

/// Everything a request handler needs.
pub struct Node {
    pub config: NodeConfig,
    /// The address clients reach this node's client port at.
    pub advertise_addr: String,
    /// The address the other nodes reach this node's peer port at.
    pub advertise_peer_addr: String,
    pub raft: Raft,
    /// This node's incarnation (`raft/identity.rs`).
    pub incarnation: u64,
    /// Where wall-clock time and randomness come from (`env.rs`).
    pub env: Arc<dyn crate::env::Env>,
    /// This node's wall clock and its peers' offsets (`clock.rs`).
    pub clock: Arc<crate::clock::Clock>,
    /// Calls to the peers outside Raft (`Identify`), on Raft's channels.
    pub peers: NetworkFactory<crate::raft::types::TypeConfig>,
    /// What the handlers read the state through (`storage/engine.rs`).
    pub engine: Arc<dyn crate::storage::engine::StateEngine>,
    pub committer: GroupCommitter,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    /// Peers whose Raft RPCs are refused (fault injection; empty unless a test sets it).
    #[cfg(feature = "fault-injection")]
    pub blocked_peers: crate::grpc::raft_service::BlockedPeers,
    /// The log's fsync thread, which `InjectSyncDelay` slows (fault injection).
    #[cfg(feature = "fault-injection")]
    pub wal_sync: Arc<crate::raft::wal_sync::WalSync>,
}

impl Node {
    /// Returns the leader as this node knows it: id and gRPC address.
    pub fn leader(&self) -> (Option<u64>, Option<String>) {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader;
        let address = leader.and_then(|id| {
            metrics
                .membership_config
                .membership()
                .get_node(&id)
                .map(|n| n.addr.clone())
        });
        (leader, address)
    }

    /// Why this node, if it leads, must not be taken for a serving leader: it has not heard
    /// from a quorum within `Timings::quorum_stale_ms` (twice the longest election timeout),
    /// or not at all since it was elected (openraft
    /// reports no time then). openraft 0.9 keeps an isolated leader a leader until it meets a
    /// higher term, so this is what tells it apart. `None` on a leader that has, and on every
    /// node that does not lead. Readiness, the admin `Status` and `ledger_raft_is_leader` all
    /// read it.
    pub fn leader_without_quorum(
        &self,
        metrics: &crate::raft::types::RaftMetrics,
    ) -> Option<String> {
        if metrics.current_leader != Some(self.config.node_id) {
            return None;
        }
        match metrics.millis_since_quorum_ack {
            Some(ms) if ms <= self.config.timings.quorum_stale_ms() => None,
            Some(ms) => Some(format!(
                "the leader has not heard from a quorum for {ms} ms"
            )),
            None => Some("the leader has not heard from a quorum since it was elected".into()),
        }
    }

    /// Refuses at once a write this node cannot commit: damaged node, not the leader, or a
    /// leader that has not heard from a quorum recently. Nothing is proposed in these cases.
    pub fn check_writable(&self) -> Result<(), NodeError> {
        if let Some(problem) = self.health.problem() {
            return Err(NodeError::Unhealthy(problem));
        }
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.current_leader != Some(self.config.node_id) {
            let (leader_id, leader_address) = self.leader();
            return Err(NodeError::NotLeader {
                leader_id,
                leader_address,
            });
        }
        if let Some(ms) = metrics.millis_since_quorum_ack {
            if ms > self.config.timings.quorum_stale_ms() {
                return Err(NodeError::Unavailable(format!(
                    "the leader has not heard from a quorum for {ms} ms"
                )));
            }
        }
        Ok(())
    }
}
