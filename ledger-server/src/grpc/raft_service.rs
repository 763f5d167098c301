//! The receiving side of Raft's RPCs: where an entry from the leader enters this node.
//!
//! It is served on the peer port only (`grpc::peer_router`), behind the peer checks of
//! `security/peer.rs`: a verified node certificate (TLS) or the cluster's peer secret, and the
//! peer limits. Each request is then checked in this order, and refused at the first failure
//! (each refusal counted in `ledger_peer_refusals_total` and logged, rate-limited):
//! 0. with TLS, the caller's certificate must name the node the request claims to come from
//!    (DNS name `node-<id>.ledger`; else `PERMISSION_DENIED`, `LEDGER_PEER_MISMATCH`), so that
//!    one node's key cannot speak for another;
//! 1. the sender's cluster name must be this node's (`PERMISSION_DENIED`, `LEDGER_WRONG_CLUSTER`),
//!    so that a node of another cluster, or one left over from a previous deployment on the same
//!    addresses, can neither vote here nor append to this log; the sender must be a member;
//! 2. the request must be meant for this node's incarnation (`FAILED_PRECONDITION`,
//!    `LEDGER_WRONG_INCARNATION`), and come from the incarnation this node's membership
//!    records for the sender (`PERMISSION_DENIED`, `LEDGER_UNKNOWN_INCARNATION`): a node that
//!    lost its data is not the member its peers know, and neither votes, takes entries, nor
//!    is heard until it is replaced (`raft/identity.rs`);
//! 3. the payload's crc32 must match (`DATA_LOSS`, `LEDGER_CORRUPT_MESSAGE`): damaged bytes are
//!    never decoded;
//! 4. the payload must decode as the RPC's openraft request (`INVALID_ARGUMENT`,
//!    `LEDGER_INVALID_ARGUMENT`, naming the message that failed).
//!
//! The request then goes to the local openraft core, and its `Result` (openraft's own errors
//! included) goes back sealed with a crc32, the mirror of `raft/network.rs`.

use ledger_wire::proto::raft::raft_server::Raft as RaftRpc;
use ledger_wire::proto::raft::{IdentifyReply, IdentifyRequest, RaftReply, RaftRequest};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest};
use openraft::{Raft, RaftTypeConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::metrics::SecurityCounters;
use crate::raft::identity::{check_incarnations, IncarnationRefusal};
use crate::raft::network::{seal, unseal, PayloadError, PeerAddress};
use crate::security::auth::should_log_refusal;

/// The gRPC service of Raft's RPCs for one node of cluster `cluster_name`.
pub struct RaftService<C: RaftTypeConfig> {
    raft: Raft<C>,
    cluster_name: String,
    /// This node's incarnation (0: none, in tests of the network layer).
    incarnation: u64,
    /// Told when a call is meant for another incarnation of this node.
    health: Option<std::sync::Arc<crate::health::Health>>,
    /// Read into every reply, for the sender's sample of this node's clock (`clock.rs`).
    clock: std::sync::Arc<crate::clock::Clock>,
    counters: SecurityCounters,
    #[cfg(feature = "fault-injection")]
    blocked: BlockedPeers,
}

/// Peers whose Raft RPCs this node refuses: an injected network partition, set through the
/// admin API only when the node runs with `--fault-injection`. Test-only: it exists only in
/// builds with the `fault-injection` feature.
#[cfg(feature = "fault-injection")]
pub type BlockedPeers = std::sync::Arc<std::sync::RwLock<std::collections::BTreeSet<u64>>>;

/// Logs a refused Raft call, at most a few times a second, and counts it.
fn refuse(
    counters: &SecurityCounters,
    reason: &'static str,
    rpc: &'static str,
    from: u64,
    status: Status,
) -> Status {
    counters.refuse_peer(reason);
    if should_log_refusal() {
        tracing::warn!(
            rpc,
            from,
            reason,
            message = status.message(),
            "refused a Raft call"
        );
    }
    status
}

impl<C> RaftService<C>
where
    C: RaftTypeConfig<NodeId = u64>,
    C::Node: PeerAddress,
{
    /// Returns the service that hands the RPCs of cluster `cluster_name` to `raft`.
    pub fn new(raft: Raft<C>, cluster_name: impl Into<String>) -> Self {
        Self {
            raft,
            cluster_name: cluster_name.into(),
            incarnation: 0,
            health: None,
            clock: Default::default(),
            counters: SecurityCounters::default(),
            #[cfg(feature = "fault-injection")]
            blocked: BlockedPeers::default(),
        }
    }

    /// Serves as this incarnation (`raft/identity.rs`), and reports calls meant for another
    /// one to `health`.
    pub fn with_incarnation(
        mut self,
        incarnation: u64,
        health: std::sync::Arc<crate::health::Health>,
    ) -> Self {
        self.incarnation = incarnation;
        self.health = Some(health);
        self
    }

    /// Answers with this clock's reading.
    pub fn with_clock(mut self, clock: std::sync::Arc<crate::clock::Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Counts refusals in these counters (the node's metrics).
    pub fn with_counters(mut self, counters: SecurityCounters) -> Self {
        self.counters = counters;
        self
    }

    /// Refuses RPCs from the peers in `blocked` (see [`BlockedPeers`]).
    #[cfg(feature = "fault-injection")]
    pub fn with_blocked_peers(mut self, blocked: BlockedPeers) -> Self {
        self.blocked = blocked;
        self
    }

    /// Checks and decodes a request; see the module header for the order of the checks.
    fn open<T: DeserializeOwned>(
        &self,
        rpc: &'static str,
        request: Request<RaftRequest>,
    ) -> Result<T, Status> {
        let certificates = request.peer_certs();
        let request = request.into_inner();
        if let Some(certificates) = certificates {
            let names_sender = certificates.first().is_some_and(|c| {
                crate::security::tls::certificate_names_node(c.as_ref(), request.from_node_id)
            });
            if !names_sender {
                return Err(refuse(
                    &self.counters,
                    "peer_mismatch",
                    rpc,
                    request.from_node_id,
                    Status::permission_denied(format!(
                        "LEDGER_PEER_MISMATCH: {rpc} claims to come from node {}, but its \
                         certificate does not name it ({})",
                        request.from_node_id,
                        crate::security::tls::node_identity_name(request.from_node_id)
                    )),
                ));
            }
        }
        if request.cluster_name != self.cluster_name {
            return Err(refuse(
                &self.counters,
                "wrong_cluster",
                rpc,
                request.from_node_id,
                Status::permission_denied(format!(
                    "LEDGER_WRONG_CLUSTER: {rpc} from node {} of cluster '{}'; this node belongs \
                     to cluster '{}'",
                    request.from_node_id, request.cluster_name, self.cluster_name
                )),
            ));
        }
        // Only members may speak Raft to a member. A node with no membership yet (new or
        // wiped, waiting to be added) accepts the leader that adds it.
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let mut members = membership.membership().nodes().peekable();
        let has_members = members.peek().is_some();
        let sender = members
            .find(|(id, _)| **id == request.from_node_id)
            .map(|(_, node)| node.incarnation());
        if has_members && sender.is_none() {
            return Err(refuse(
                &self.counters,
                "not_a_member",
                rpc,
                request.from_node_id,
                Status::permission_denied(format!(
                    "LEDGER_NOT_A_MEMBER: {rpc} from node {}, which is not a member of this \
                     cluster",
                    request.from_node_id
                )),
            ));
        }
        if let Err(refusal) = check_incarnations(
            self.incarnation,
            sender,
            request.from_incarnation,
            request.to_incarnation,
        ) {
            if let (IncarnationRefusal::NotMe { .. }, Some(health)) = (&refusal, &self.health) {
                health.note_not_the_member(format!(
                    "node {} refuses Raft calls meant for the member it was: {refusal}",
                    self.raft.metrics().borrow().id
                ));
            }
            let status = match refusal {
                IncarnationRefusal::NotMe { .. } => Status::failed_precondition(format!(
                    "LEDGER_WRONG_INCARNATION: {rpc} from node {}: {refusal}",
                    request.from_node_id
                )),
                IncarnationRefusal::UnknownSender { .. } => Status::permission_denied(format!(
                    "LEDGER_UNKNOWN_INCARNATION: {rpc} from node {}: {refusal}",
                    request.from_node_id
                )),
            };
            return Err(refuse(
                &self.counters,
                refusal.reason(),
                rpc,
                request.from_node_id,
                status,
            ));
        }
        if let Some(health) = &self.health {
            health.note_the_member();
        }
        #[cfg(feature = "fault-injection")]
        if self
            .blocked
            .read()
            .expect("blocked peers lock")
            .contains(&request.from_node_id)
        {
            return Err(Status::unavailable(format!(
                "LEDGER_PARTITIONED: {rpc} from node {} dropped by an injected partition",
                request.from_node_id
            )));
        }
        unseal(&request.payload, request.crc32).map_err(|e| match e {
            PayloadError::Crc32Mismatch { .. } => {
                tracing::error!(rpc, from = request.from_node_id, error = %e, "damaged Raft RPC");
                Status::data_loss(format!(
                    "LEDGER_CORRUPT_MESSAGE: {rpc} from node {}: {e}",
                    request.from_node_id
                ))
            }
            PayloadError::Decode { .. } => Status::invalid_argument(format!(
                "LEDGER_INVALID_ARGUMENT: {rpc} from node {}: {e}",
                request.from_node_id
            )),
        })
    }
}

/// Seals the core's `Result` into a reply, with this node's clock reading.
fn reply<T: Serialize>(
    rpc: &'static str,
    result: &T,
    clock: &crate::clock::Clock,
) -> Result<Response<RaftReply>, Status> {
    let (payload, crc32) = seal(result).map_err(|e| {
        Status::internal(format!("LEDGER_INTERNAL: {rpc} reply does not encode: {e}"))
    })?;
    Ok(Response::new(RaftReply {
        payload,
        crc32,
        wall_clock_ns: clock.now_ns(),
    }))
}

#[tonic::async_trait]
impl<C> RaftRpc for RaftService<C>
where
    C: RaftTypeConfig<NodeId = u64>,
    C::Node: PeerAddress,
{
    async fn identify(
        &self,
        request: Request<IdentifyRequest>,
    ) -> Result<Response<IdentifyReply>, Status> {
        let request = request.into_inner();
        if request.cluster_name != self.cluster_name {
            return Err(refuse(
                &self.counters,
                "wrong_cluster",
                "Identify",
                request.from_node_id,
                Status::permission_denied(format!(
                    "LEDGER_WRONG_CLUSTER: Identify from node {} of cluster '{}'; this node \
                     belongs to cluster '{}'",
                    request.from_node_id, request.cluster_name, self.cluster_name
                )),
            ));
        }
        let metrics = self.raft.metrics().borrow().clone();
        let initialized = metrics.membership_config.membership().nodes().count() > 0;
        Ok(Response::new(IdentifyReply {
            cluster_name: self.cluster_name.clone(),
            node_id: metrics.id,
            incarnation: self.incarnation,
            initialized,
        }))
    }

    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        const RPC: &str = "AppendEntries";
        let rpc = self.open(RPC, request)?;
        reply(RPC, &self.raft.append_entries(rpc).await, &self.clock)
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        const RPC: &str = "Vote";
        let rpc = self.open(RPC, request)?;
        reply(RPC, &self.raft.vote(rpc).await, &self.clock)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        const RPC: &str = "InstallSnapshot";
        let rpc: InstallSnapshotRequest<C> = self.open(RPC, request)?;
        // openraft 0.9 hands snapshot chunks to the transport without telling the Raft core,
        // and the leader sends nothing else to this node while it streams them. Streaming a
        // snapshot of 10 million accounts (about 500 MB) outlasted the election timeout: this
        // node stood for election 130 times in 7 minutes, each time unseating the leader, which
        // then began the snapshot again from its first byte; it was never installed. A chunk comes from the leader of its vote, so
        // it counts as that leader's heartbeat: an AppendEntries with no entries, no previous
        // log id and no commit index, which only checks and refreshes the vote, as any
        // heartbeat does, and touches neither the log nor the commit index.
        let heartbeat = AppendEntriesRequest {
            vote: rpc.vote,
            prev_log_id: None,
            entries: Vec::new(),
            leader_commit: None,
        };
        if let Err(e) = self.raft.append_entries(heartbeat).await {
            tracing::warn!(error = %e, "snapshot chunk's heartbeat refused");
        }
        reply(RPC, &self.raft.install_snapshot(rpc).await, &self.clock)
    }
}
