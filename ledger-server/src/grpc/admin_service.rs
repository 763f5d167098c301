//! The admin API: bootstrap, membership changes, status and invariant verification.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ledger_core::{audit_link_at, check_invariants, read_meta, verify_audit};
use ledger_wire::proto::admin as pb;
use ledger_wire::proto::admin::admin_server::Admin;
use tonic::{Request, Response, Status};

use crate::error::NodeError;
use crate::grpc::status::to_status;
use crate::node::Node;
use crate::raft::identity::{self, GatherError, IDENTIFY_TIMEOUT_MS};
use crate::raft::types::{LedgerNode, StoredMembership};
use crate::storage::engine::{Incomplete, ReadPoint};

pub struct AdminService {
    node: Arc<Node>,
}

impl AdminService {
    /// Admits a call to a test-only hook: `UNIMPLEMENTED` in builds without the
    /// `fault-injection` feature (every release build), `FAILED_PRECONDITION` on a node started
    /// without `--fault-injection`.
    fn test_hook(&self, method: &str) -> Result<(), Status> {
        if !cfg!(feature = "fault-injection") {
            return Err(Status::unimplemented(format!(
                "LEDGER_UNIMPLEMENTED: {method} is a test-only hook, not in this build"
            )));
        }
        if !self.node.config.fault_injection {
            return Err(Status::failed_precondition(
                "LEDGER_FAULT_INJECTION_DISABLED: start the node with --fault-injection",
            ));
        }
        Ok(())
    }
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

fn membership_to_pb(m: &StoredMembership) -> pb::Membership {
    let membership = m.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let mut out = pb::Membership::default();
    for (id, node) in membership.nodes() {
        let member = pb::Member {
            node_id: *id,
            address: node.addr.clone(),
            peer_address: node.peer_addr.clone(),
            incarnation: node.incarnation,
        };
        if voters.contains(id) {
            out.voters.push(member);
        } else {
            out.learners.push(member);
        }
    }
    out
}

/// Describes the membership a change produced.
fn membership_response(
    response: &openraft::raft::ClientWriteResponse<crate::raft::types::TypeConfig>,
) -> pb::MembershipResponse {
    let membership = response.membership.clone().unwrap_or_default();
    pb::MembershipResponse {
        log_index: response.log_id.index,
        membership: Some(membership_to_pb(&StoredMembership::new(
            Some(response.log_id),
            membership,
        ))),
    }
}

fn check_address(field: &str, address: &str) -> Result<(), Status> {
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(to_status(NodeError::invalid(
            field,
            format!("'{address}' is not HOST:PORT"),
        ))),
    }
}

/// Bytes per streamed backup chunk.
const BACKUP_CHUNK_BYTES: usize = 1 << 20;

type BackupStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::BackupChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Admin for AdminService {
    type BackupStream = BackupStream;

    async fn backup(
        &self,
        _request: Request<pb::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        let node = self.node.clone();
        let work_dir = node.config.data_dir.join("backups");
        let nanos = node.env.wall_clock_ns();
        let path = work_dir.join(format!("backup-{nanos}.lbk"));
        let file = path.clone();
        let header = crate::blocking::spawn(move || {
            node.engine.write_backup(
                &node.config.cluster,
                node.config.node_id,
                &work_dir,
                &file,
                nanos,
            )
        })
        .await
        .map_err(|e| to_status(NodeError::Internal(e.to_string())))?
        .map_err(|e| to_status(NodeError::Internal(format!("backup failed: {e}"))))?;
        tracing::info!(
            applied_index = header.applied_index,
            bytes = header.snapshot_bytes,
            "backup taken"
        );
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let result = async {
                let mut source = tokio::fs::File::open(&path).await?;
                let mut buffer = vec![0u8; BACKUP_CHUNK_BYTES];
                loop {
                    let n = source.read(&mut buffer).await?;
                    if n == 0 {
                        return Ok::<(), std::io::Error>(());
                    }
                    let chunk = pb::BackupChunk {
                        data: buffer[..n].to_vec(),
                    };
                    if tx.send(Ok(chunk)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            .await;
            if let Err(e) = result {
                let _ = tx
                    .send(Err(to_status(NodeError::Internal(e.to_string()))))
                    .await;
            }
            let _ = tokio::fs::remove_file(&path).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn init(
        &self,
        request: Request<pb::InitRequest>,
    ) -> Result<Response<pb::InitResponse>, Status> {
        let r = request.into_inner();
        if r.members.is_empty() {
            return Err(to_status(NodeError::invalid("members", "no members given")));
        }
        let mut members = BTreeMap::new();
        for (i, m) in r.members.iter().enumerate() {
            if m.node_id == 0 {
                return Err(to_status(NodeError::invalid(
                    format!("members[{i}].node_id"),
                    "must not be 0",
                )));
            }
            check_address(&format!("members[{i}].address"), &m.address)?;
            check_address(&format!("members[{i}].peer_address"), &m.peer_address)?;
            members.insert(m.node_id, (m.address.clone(), m.peer_address.clone()));
        }
        if self.node.raft.is_initialized().await.unwrap_or(false) {
            return Err(Status::failed_precondition(
                "LEDGER_ALREADY_INITIALIZED: this node already belongs to an initialized cluster",
            ));
        }
        // Each member tells its incarnation; one that already belongs to a cluster refuses.
        let nodes = identity::gather(
            &self.node.peers,
            self.node.config.node_id,
            self.node.incarnation,
            &members,
        )
        .await
        .map_err(|e| match e {
            GatherError::Unreachable(why) => Status::unavailable(format!(
                "LEDGER_UNAVAILABLE: cannot read every member's identity, nothing initialized: \
                 {why}"
            )),
            GatherError::AlreadyInitialized(_) => {
                Status::failed_precondition(format!("LEDGER_ALREADY_INITIALIZED: {e}"))
            }
        })?;
        self.node
            .raft
            .initialize(nodes)
            .await
            .map_err(|e| to_status(NodeError::invalid("members", e.to_string())))?;
        Ok(Response::new(pb::InitResponse {}))
    }

    async fn add_learner(
        &self,
        request: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let r = request.into_inner();
        if r.node_id == 0 {
            return Err(to_status(NodeError::invalid("node_id", "must not be 0")));
        }
        check_address("address", &r.address)?;
        check_address("peer_address", &r.peer_address)?;
        self.node.check_writable().map_err(to_status)?;
        // The membership records the incarnation the node itself reports (raft/identity.rs).
        let identity = self
            .node
            .peers
            .identify(
                r.node_id,
                &r.peer_address,
                Duration::from_millis(IDENTIFY_TIMEOUT_MS),
            )
            .await
            .map_err(|why| {
                Status::unavailable(format!(
                    "LEDGER_UNAVAILABLE: cannot read node {}'s identity at its peer port, \
                     nothing changed: {why}",
                    r.node_id
                ))
            })?;
        let recorded = self
            .node
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&r.node_id)
            .map(|n| n.incarnation);
        if let Some(recorded) = recorded.filter(|i| *i != identity.incarnation) {
            return Err(Status::failed_precondition(format!(
                "LEDGER_WRONG_INCARNATION: node {} is a member as incarnation {recorded:016x}, \
                 and the node at {} is incarnation {:016x} (its data was lost or replaced): \
                 remove it from the membership first, then add it (`ledgerctl cluster replace \
                 --node-id {}`, docs/operations.md)",
                r.node_id, r.peer_address, identity.incarnation, r.node_id
            )));
        }
        let response = self
            .node
            .raft
            .add_learner(
                r.node_id,
                LedgerNode::new(r.address, r.peer_address, identity.incarnation),
                r.blocking,
            )
            .await
            .map_err(|e| to_status(NodeError::from_write(e)))?;
        Ok(Response::new(membership_response(&response)))
    }

    async fn change_membership(
        &self,
        request: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let r = request.into_inner();
        if r.voter_ids.is_empty() {
            return Err(to_status(NodeError::invalid(
                "voter_ids",
                "a cluster needs at least one voter",
            )));
        }
        self.node.check_writable().map_err(to_status)?;
        let voters: BTreeSet<u64> = r.voter_ids.iter().copied().collect();
        let response = self
            .node
            .raft
            .change_membership(voters, r.retain)
            .await
            .map_err(|e| to_status(NodeError::from_write(e)))?;
        Ok(Response::new(membership_response(&response)))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let m = self.node.raft.metrics().borrow().clone();
        let (leader_id, leader_address) = self.node.leader();
        let engine = self.node.engine.clone();
        let (meta, applied, committed) = crate::blocking::spawn(move || {
            let committed = engine.saved_committed_index();
            // Read even mid-install: the status says what the node holds. A record that
            // cannot be read leaves the meta as read (the health problem says why).
            let mut read = None;
            let outcome = engine.read(Incomplete::Allow, &mut |point| {
                read = Some((read_meta(point.store), point.applied_index));
            });
            match (outcome, read) {
                (Ok(()) | Err(NodeError::Unhealthy(_)), Some((meta, applied))) => {
                    Ok((meta, applied, committed?))
                }
                (Err(e), _) => Err(e),
                (Ok(()), None) => Err(NodeError::Internal("the state was not read".into())),
            }
        })
        .await
        .map_err(|e| to_status(NodeError::Internal(e.to_string())))?
        .map_err(to_status)?;
        // A leader cut off from its quorum reports itself unhealthy: it still says `Leader`
        // (that is openraft's view), but serves nothing, and `cluster status` shows why.
        let problem = self
            .node
            .health
            .problem()
            .or_else(|| self.node.leader_without_quorum(&m));
        let replication = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, matched)| pb::FollowerProgress {
                        node_id: *id,
                        has_matched: matched.is_some(),
                        matched_index: matched.map(|l| l.index).unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Response::new(pb::StatusResponse {
            node_id: self.node.config.node_id,
            address: self.node.advertise_addr.clone(),
            state: format!("{:?}", m.state),
            current_term: m.current_term,
            has_leader: leader_id.is_some(),
            leader_id: leader_id.unwrap_or(0),
            leader_address: leader_address.unwrap_or_default(),
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            // Never behind what this node applied: applying requires the entry committed.
            committed_index: committed.max(m.last_applied.map(|l| l.index).unwrap_or(0)),
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            purged_index: m.purged.map(|l| l.index).unwrap_or(0),
            membership: Some(membership_to_pb(&m.membership_config)),
            replication,
            healthy: problem.is_none(),
            unhealthy_reason: problem.unwrap_or_default(),
            state_digest: meta.digest.to_be_bytes().to_vec(),
            digest_applied_index: applied,
            audit_chain: meta.chain.to_vec(),
            audit_index: meta.last_log_index,
            has_quorum_ack: m.millis_since_quorum_ack.is_some(),
            millis_since_quorum_ack: m.millis_since_quorum_ack.unwrap_or(0),
            peer_address: self.node.advertise_peer_addr.clone(),
            insecure: self.node.config.insecure.clone().unwrap_or_default(),
            incarnation: self.node.incarnation,
            pid: std::process::id(),
        }))
    }

    async fn verify(
        &self,
        request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        let at_index = request.into_inner().at_index;
        let engine = self.node.engine.clone();
        let response = crate::blocking::spawn(move || {
            let mut response = None;
            let outcome = engine.read(Incomplete::Refuse, &mut |point| {
                response = Some(verify_point(point, at_index));
            });
            match (outcome, response) {
                (Ok(()), Some(response)) => Ok(response),
                // A failed read makes the checks see missing records: report the read.
                (Err(NodeError::Unhealthy(e)), Some(mut response)) => {
                    response.ok = false;
                    response.violations.push(e);
                    Ok(response)
                }
                (Err(e), _) => Err(e),
                (Ok(()), None) => Err(NodeError::Internal("the state was not read".into())),
            }
        })
        .await
        .map_err(|e| to_status(NodeError::Internal(e.to_string())))?
        .map_err(to_status)?;
        Ok(Response::new(response))
    }

    async fn inject_partition(
        &self,
        request: Request<pb::PartitionRequest>,
    ) -> Result<Response<pb::PartitionResponse>, Status> {
        self.test_hook("InjectPartition")?;
        #[cfg(feature = "fault-injection")]
        {
            let blocked: BTreeSet<u64> =
                request.into_inner().blocked_node_ids.into_iter().collect();
            tracing::warn!(
                ?blocked,
                "injected partition: refusing Raft RPCs from these nodes"
            );
            *self.node.blocked_peers.write().expect("blocked peers lock") = blocked;
        }
        #[cfg(not(feature = "fault-injection"))]
        let _ = request;
        Ok(Response::new(pb::PartitionResponse {}))
    }

    async fn inject_clock_offset(
        &self,
        request: Request<pb::ClockOffsetRequest>,
    ) -> Result<Response<pb::ClockOffsetResponse>, Status> {
        self.test_hook("InjectClockOffset")?;
        #[cfg(feature = "fault-injection")]
        {
            let offset_ms = request.into_inner().offset_ms;
            tracing::warn!(offset_ms, "injected clock offset");
            self.node.clock.shift(offset_ms);
        }
        #[cfg(not(feature = "fault-injection"))]
        let _ = request;
        Ok(Response::new(pb::ClockOffsetResponse {}))
    }

    async fn inject_sync_delay(
        &self,
        request: Request<pb::SyncDelayRequest>,
    ) -> Result<Response<pb::SyncDelayResponse>, Status> {
        self.test_hook("InjectSyncDelay")?;
        #[cfg(feature = "fault-injection")]
        {
            let request = request.into_inner();
            tracing::warn!(
                delay_ms = request.delay_ms,
                fail_next = request.fail_next,
                "injected fsync delay"
            );
            self.node.wal_sync.set_delay_ms(u64::from(request.delay_ms));
            if request.fail_next {
                self.node.wal_sync.fail_next_sync();
            }
        }
        #[cfg(not(feature = "fault-injection"))]
        let _ = request;
        Ok(Response::new(pb::SyncDelayResponse {}))
    }
}

/// Checks the state at `point`: invariants, the state digest, the audit chain, and the audit
/// link at `at_index` when asked.
fn verify_point(point: &ReadPoint<'_>, at_index: u64) -> pb::VerifyResponse {
    let mut response = pb::VerifyResponse {
        applied_index: point.applied_index,
        ..Default::default()
    };
    match check_invariants(point.store) {
        Ok(report) => {
            response.ok = true;
            response.state_digest = report.digest.to_be_bytes().to_vec();
            response.accounts = report.accounts;
            response.transfers = report.transfers;
            response.bets = report.bets;
        }
        Err(violations) => response.violations = violations,
    }
    // The audit chain, recomputed link by link from the audit table, must end at the
    // node's head and at the state digest recomputed from the records.
    match verify_audit(point.store) {
        Ok(report) => {
            response.audit_entries = report.records;
            response.audit_head = report.head.to_vec();
        }
        Err(problem) => {
            response.ok = false;
            response.violations.push(format!("audit chain: {problem}"));
        }
    }
    if at_index > 0 {
        if let Some((index, link)) = audit_link_at(point.store, at_index) {
            response.link_index = index;
            response.link = link.to_vec();
        }
    }
    response
}
