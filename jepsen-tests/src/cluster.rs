//! The cluster under test: real `ledger-server` processes on loopback in a scratch folder,
//! every node-to-node link through the harness's proxies ([`Net`]), and the admin calls the
//! nemeses need (who leads, remove and re-add a member).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ledger_client::local_cluster::{LocalCluster, NodeOptions};
use ledger_client::proto::admin::admin_client::AdminClient;
use ledger_client::proto::admin::{
    AddLearnerRequest, ChangeMembershipRequest, StatusRequest, StatusResponse,
};

use crate::net::Net;

/// How long an admin call may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a membership change may take (a learner catching up included).
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct TestCluster {
    local: Arc<Mutex<LocalCluster>>,
    pub net: Net,
    pub ids: Vec<u64>,
    /// The clients reach the nodes through the client proxies (`client-partition`).
    proxy_clients: bool,
}

fn harness_error(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl TestCluster {
    /// Starts `nodes` nodes in `dir` with every peer link proxied (and, with `proxy_clients`,
    /// every client link too), and waits for a leader.
    pub async fn start(
        binary: &Path,
        dir: &Path,
        nodes: u64,
        extra_args: Vec<String>,
        proxy_clients: bool,
    ) -> Result<TestCluster, String> {
        let ids: Vec<u64> = (1..=nodes).collect();
        let net = Net::new(&ids).await.map_err(harness_error)?;
        let advertise = if proxy_clients {
            ids.iter()
                .filter_map(|id| Some((*id, net.client_addr(*id)?.to_string())))
                .collect()
        } else {
            Default::default()
        };
        let options = NodeOptions {
            extra_args,
            node_args: ids.iter().map(|id| (*id, net.route_args(*id))).collect(),
            advertise,
            ..NodeOptions::default()
        };
        let binary = binary.to_path_buf();
        let dir: PathBuf = dir.to_path_buf();
        let local =
            tokio::task::spawn_blocking(move || LocalCluster::start(&binary, &dir, nodes, options))
                .await
                .map_err(harness_error)?
                .map_err(harness_error)?;
        for node in &local.nodes {
            let addrs = node.addrs.ok_or("a started node reported no address")?;
            net.set_target(node.id, addrs.peer);
            net.set_client_target(node.id, addrs.grpc);
        }
        let cluster = TestCluster {
            local: Arc::new(Mutex::new(local)),
            net,
            ids,
            proxy_clients,
        };
        cluster
            .blocking(|c| c.wait_ready(Duration::from_secs(60)))
            .await?;
        Ok(cluster)
    }

    /// Runs a (blocking) operation on the processes off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut LocalCluster) -> Result<T, ledger_client::local_cluster::LocalClusterError>
            + Send
            + 'static,
    ) -> Result<T, String> {
        let local = self.local.clone();
        tokio::task::spawn_blocking(move || f(&mut local.lock().expect("cluster lock")))
            .await
            .map_err(harness_error)?
            .map_err(harness_error)
    }

    pub fn endpoint(&self, id: u64) -> String {
        format!(
            "http://{}",
            self.local.lock().expect("cluster lock").grpc_addr(id)
        )
    }

    /// The client address of node `id`, as its membership entry records it (its client
    /// proxy when the clients go through proxies).
    pub fn address(&self, id: u64) -> String {
        match self.net.client_addr(id).filter(|_| self.proxy_clients) {
            Some(proxy) => proxy.to_string(),
            None => self
                .local
                .lock()
                .expect("cluster lock")
                .grpc_addr(id)
                .to_string(),
        }
    }

    /// Where the workload's clients reach the nodes: through the client proxies when the run
    /// has them, otherwise directly. The harness's own calls always go directly.
    pub fn client_endpoints(&self) -> Vec<String> {
        self.ids
            .iter()
            .map(|id| format!("http://{}", self.address(*id)))
            .collect()
    }

    /// The peer port of node `id`, as its membership entry records it.
    pub fn peer_address(&self, id: u64) -> String {
        self.local
            .lock()
            .expect("cluster lock")
            .peer_addr(id)
            .to_string()
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.ids.iter().map(|id| self.endpoint(*id)).collect()
    }

    pub async fn kill(&self, id: u64) -> Result<(), String> {
        self.blocking(move |c| c.kill(id)).await
    }

    /// Starts node `id` again if it is stopped, or if its process exited by itself (a node
    /// exits when its Raft stops on a fatal error); returns how it exited, in that case.
    pub async fn restart(&self, id: u64) -> Result<Option<String>, String> {
        self.blocking(move |c| {
            let exited = c
                .reap(id)?
                .map(|status| format!("node {id} had exited by itself ({status})"));
            if c.node(id).pid.is_none() {
                c.restart(id)?;
            }
            Ok(exited)
        })
        .await
    }

    pub async fn signal(&self, id: u64, signal: &'static str) -> Result<(), String> {
        self.blocking(move |c| c.signal(id, signal)).await
    }

    /// Shifts node `id`'s wall clock by `offset_ms` (0: back to the system clock); the nodes
    /// run with `--fault-injection` for the `clock` nemesis.
    pub async fn set_clock(&self, id: u64, offset_ms: i64) -> Result<(), String> {
        let request = ledger_client::proto::admin::ClockOffsetRequest { offset_ms };
        let mut admin = self.admin_of(id).await?;
        admin
            .inject_clock_offset(request)
            .await
            .map_err(|e| format!("node {id}: {}", e.message()))?;
        Ok(())
    }

    async fn admin_of(&self, id: u64) -> Result<AdminClient<tonic::transport::Channel>, String> {
        AdminClient::connect(self.endpoint(id))
            .await
            .map_err(|e| format!("node {id}: {e}"))
    }

    /// Holds every fsync of node `id`'s log back by `delay_ms` (0: no more); the nodes run
    /// with `--fault-injection` for the `slow-disk` nemesis.
    pub async fn set_sync_delay(&self, id: u64, delay_ms: u32) -> Result<(), String> {
        let request = ledger_client::proto::admin::SyncDelayRequest {
            delay_ms,
            fail_next: false,
        };
        let mut admin = self.admin_of(id).await?;
        admin
            .inject_sync_delay(request)
            .await
            .map_err(|e| format!("node {id}: {}", e.message()))?;
        Ok(())
    }

    /// Replaces a member that came back with an empty disk, as docs/operations.md says (and
    /// `ledgerctl cluster replace` does): removed from the voters, added again as a learner
    /// (which records its new incarnation), promoted once it caught up.
    pub async fn replace(&self, id: u64) -> Result<(), String> {
        let voters = self.voters().await?;
        if voters.contains(&id) {
            let remaining: Vec<u64> = voters.into_iter().filter(|v| *v != id).collect();
            self.set_voters(remaining).await?;
        }
        self.add_voter(id).await
    }

    /// Kills a node, deletes its data and starts it empty (not a member until re-added).
    pub async fn wipe_and_restart(&self, id: u64) -> Result<(), String> {
        self.blocking(move |c| {
            c.kill(id)?;
            c.wipe(id)?;
            c.restart(id)
        })
        .await
    }

    pub async fn is_running(&self, id: u64) -> bool {
        self.local
            .lock()
            .expect("cluster lock")
            .node(id)
            .pid
            .is_some()
    }

    pub async fn status(&self, id: u64) -> Option<StatusResponse> {
        let endpoint = self.endpoint(id);
        let call = async move {
            let mut admin = AdminClient::connect(endpoint).await.ok()?;
            admin
                .status(StatusRequest {})
                .await
                .ok()
                .map(|r| r.into_inner())
        };
        tokio::time::timeout(ADMIN_TIMEOUT, call)
            .await
            .ok()
            .flatten()
    }

    /// The node that says it leads (and is running), if any.
    pub async fn leader(&self) -> Option<u64> {
        for id in &self.ids {
            if let Some(s) = self.status(*id).await {
                if s.state == "Leader" && s.has_leader && s.leader_id == *id {
                    return Some(*id);
                }
            }
        }
        None
    }

    /// Waits for a leader for up to `timeout`.
    pub async fn await_leader(&self, timeout: Duration) -> Option<u64> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(leader) = self.leader().await {
                return Some(leader);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// The voters, as the leader knows them.
    pub async fn voters(&self) -> Result<Vec<u64>, String> {
        let leader = self
            .await_leader(Duration::from_secs(10))
            .await
            .ok_or("no leader")?;
        let status = self.status(leader).await.ok_or("leader did not answer")?;
        Ok(status
            .membership
            .map(|m| m.voters.iter().map(|v| v.node_id).collect())
            .unwrap_or_default())
    }

    async fn admin_of_leader(&self) -> Result<AdminClient<tonic::transport::Channel>, String> {
        let leader = self
            .await_leader(Duration::from_secs(10))
            .await
            .ok_or("no leader")?;
        AdminClient::connect(self.endpoint(leader))
            .await
            .map_err(harness_error)
    }

    /// Makes `voters` the voter set (removed voters leave the cluster).
    pub async fn set_voters(&self, voters: Vec<u64>) -> Result<(), String> {
        let mut admin = self.admin_of_leader().await?;
        let call = admin.change_membership(ChangeMembershipRequest {
            voter_ids: voters,
            retain: false,
        });
        tokio::time::timeout(MEMBERSHIP_TIMEOUT, call)
            .await
            .map_err(|_| "membership change timed out".to_string())?
            .map_err(|s| s.message().to_string())?;
        Ok(())
    }

    /// Adds `id` as a learner (waiting until it caught up), then makes it a voter.
    pub async fn add_voter(&self, id: u64) -> Result<(), String> {
        let mut admin = self.admin_of_leader().await?;
        let call = admin.add_learner(AddLearnerRequest {
            node_id: id,
            address: self.address(id),
            blocking: true,
            peer_address: self.peer_address(id),
        });
        tokio::time::timeout(MEMBERSHIP_TIMEOUT, call)
            .await
            .map_err(|_| "adding a learner timed out".to_string())?
            .map_err(|s| s.message().to_string())?;
        let mut voters = self.voters().await?;
        if !voters.contains(&id) {
            voters.push(id);
        }
        self.set_voters(voters).await
    }

    /// Ends every fault: links healed, paused nodes resumed, stopped or exited nodes started,
    /// removed voters added back. Returns a line for each node found exited by itself.
    pub async fn heal(&self) -> Result<Vec<String>, String> {
        self.net.heal();
        let mut exited = Vec::new();
        for id in self.ids.clone() {
            self.signal(id, "CONT").await?;
            exited.extend(self.restart(id).await?);
        }
        let voters = self.voters().await?;
        for id in self.ids.clone() {
            if !voters.contains(&id) {
                self.add_voter(id).await?;
            }
        }
        Ok(exited)
    }

    /// Stops every process.
    pub async fn stop(&self) {
        let _ = self
            .blocking(|c| {
                c.stop_all();
                Ok(())
            })
            .await;
    }
}
