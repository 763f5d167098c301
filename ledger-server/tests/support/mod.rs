//! A cluster of real ledger-server processes for the integration tests, and small helpers to
//! talk to it through the generated gRPC clients.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use ledger_client::local_cluster::{LocalCluster, NodeOptions};
use ledger_client::proto::admin::admin_client::AdminClient;
use ledger_client::proto::admin::{StatusRequest, StatusResponse, VerifyRequest, VerifyResponse};
use ledger_client::proto::ledger as pb;
use ledger_client::proto::ledger::ledger_client::LedgerClient;
use tonic::transport::Channel;

pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Harness {
    pub cluster: LocalCluster,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub fn start(nodes: u64, extra_args: &[&str]) -> Self {
        Self::start_with(nodes, extra_args, &[])
    }

    /// [`Harness::start`], with `node_args` given to one node each.
    pub fn start_with(nodes: u64, extra_args: &[&str], node_args: &[(u64, &[&str])]) -> Self {
        Self::start_options(
            nodes,
            NodeOptions {
                extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
                node_args: node_args
                    .iter()
                    .map(|(id, args)| (*id, args.iter().map(|s| s.to_string()).collect()))
                    .collect(),
                ..NodeOptions::default()
            },
        )
    }

    /// [`Harness::start`] with every option of the processes (their environment, say).
    pub fn start_options(nodes: u64, options: NodeOptions) -> Self {
        let mut dir = tempfile::tempdir().expect("temp dir");
        // LEDGER_TEST_KEEP=1 keeps every cluster's folder (data and node logs) after the test.
        if std::env::var_os("LEDGER_TEST_KEEP").is_some() {
            dir.disable_cleanup(true);
            eprintln!("cluster folder kept: {}", dir.path().display());
        }
        let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_ledger-server"));
        let cluster =
            LocalCluster::start(&binary, dir.path(), nodes, options).expect("cluster starts");
        cluster.wait_ready(READY_TIMEOUT).expect("cluster ready");
        Self { cluster, dir }
    }

    /// The peer secret the cluster's nodes authenticate each other with.
    pub fn peer_secret(&self) -> String {
        std::fs::read_to_string(
            self.dir
                .path()
                .join(ledger_client::local_cluster::PEER_SECRET_FILE),
        )
        .expect("peer secret")
        .trim()
        .to_string()
    }

    pub fn endpoint(&self, id: u64) -> String {
        format!("http://{}", self.cluster.grpc_addr(id))
    }

    pub async fn ledger(&self, id: u64) -> LedgerClient<Channel> {
        LedgerClient::connect(self.endpoint(id))
            .await
            .expect("connect ledger")
    }

    pub async fn admin(&self, id: u64) -> AdminClient<Channel> {
        AdminClient::connect(self.endpoint(id))
            .await
            .expect("connect admin")
    }

    pub async fn status(&self, id: u64) -> Option<StatusResponse> {
        let mut admin = AdminClient::connect(self.endpoint(id)).await.ok()?;
        admin
            .status(StatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    pub async fn verify(&self, id: u64) -> VerifyResponse {
        self.admin(id)
            .await
            .verify(VerifyRequest::default())
            .await
            .expect("verify")
            .into_inner()
    }

    /// Waits until a node among `candidates` is the confirmed leader: it reports itself leader,
    /// no candidate claims leadership in a later term, and a majority of the cluster (among the
    /// candidates that answer) agrees on it in its term. A node resumed after a pause still
    /// calls itself leader of its old term until it hears from the others; it is not taken.
    pub async fn leader_among(&self, candidates: &[u64], timeout: Duration) -> u64 {
        let majority = self.cluster.nodes.len() / 2 + 1;
        let deadline = Instant::now() + timeout;
        loop {
            let mut statuses = Vec::new();
            for id in candidates {
                if let Some(s) = self.status(*id).await {
                    statuses.push(s);
                }
            }
            let claimant = statuses
                .iter()
                .filter(|s| s.state == "Leader" && s.has_leader && s.leader_id == s.node_id)
                .max_by_key(|s| s.current_term);
            if let Some(leader) = claimant {
                let agreeing = statuses
                    .iter()
                    .filter(|s| {
                        s.current_term == leader.current_term
                            && s.has_leader
                            && s.leader_id == leader.node_id
                    })
                    .count();
                let newer = statuses
                    .iter()
                    .any(|s| s.current_term > leader.current_term);
                if agreeing >= majority && !newer {
                    return leader.node_id;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader among {candidates:?} after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Makes node `target` the leader: pauses whichever other node leads until another is
    /// elected, again and again (elections pick at random) until `target` is.
    pub async fn make_leader(&mut self, target: u64) {
        let ids: Vec<u64> = self.cluster.nodes.iter().map(|n| n.id).collect();
        for _ in 0..30 {
            let leader = self.leader().await;
            if leader == target {
                return;
            }
            self.cluster
                .signal(leader, "STOP")
                .expect("pause the leader");
            let others: Vec<u64> = ids.iter().copied().filter(|id| *id != leader).collect();
            self.leader_among(&others, READY_TIMEOUT).await;
            self.cluster.signal(leader, "CONT").expect("resume");
        }
        panic!("node {target} never won an election");
    }

    pub async fn leader(&self) -> u64 {
        let ids: Vec<u64> = self.cluster.nodes.iter().map(|n| n.id).collect();
        self.leader_among(&ids, READY_TIMEOUT).await
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.status(id).await {
                if s.applied_index >= index {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not apply {index} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs `ledgerctl` (built beside ledger-server by `cargo build --workspace`) with `args`
/// against `endpoints`; returns its `--json` output, and fails the test if it fails.
pub fn ledgerctl_json(args: &[&str], endpoints: &str) -> serde_json::Value {
    let server = std::path::PathBuf::from(env!("CARGO_BIN_EXE_ledger-server"));
    let output = std::process::Command::new(server.with_file_name("ledgerctl"))
        .args(args)
        .arg("--json")
        .env("LEDGER_ENDPOINTS", endpoints)
        .output()
        .expect("ledgerctl runs");
    assert!(
        output.status.success(),
        "ledgerctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("ledgerctl --json prints JSON")
}

pub fn u(v: u128) -> Option<pb::U128> {
    Some(v.into())
}

pub fn account(id: u128, flags: u32) -> pb::Account {
    pb::Account {
        id: u(id),
        ledger: 1,
        code: 1,
        flags,
        ..Default::default()
    }
}

pub fn transfer(id: u128, debit: u128, credit: u128, amount: u128) -> pb::Transfer {
    pb::Transfer {
        id: u(id),
        debit_account_id: u(debit),
        credit_account_id: u(credit),
        amount: u(amount),
        ledger: 1,
        code: 1,
        ..Default::default()
    }
}

pub async fn create_accounts(
    client: &mut LedgerClient<Channel>,
    accounts: Vec<pb::Account>,
) -> pb::WriteResponse {
    client
        .create_accounts(pb::CreateAccountsRequest {
            accounts,
            request_id: String::new(),
        })
        .await
        .expect("create accounts")
        .into_inner()
}

pub async fn create_transfers(
    client: &mut LedgerClient<Channel>,
    transfers: Vec<pb::Transfer>,
) -> Result<pb::WriteResponse, tonic::Status> {
    client
        .create_transfers(pb::CreateTransfersRequest {
            transfers,
            request_id: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

pub async fn lookup_accounts(
    client: &mut LedgerClient<Channel>,
    ids: &[u128],
    consistency: pb::ReadConsistency,
) -> pb::AccountsResponse {
    client
        .lookup_accounts(pb::LookupRequest {
            ids: ids.iter().map(|id| (*id).into()).collect(),
            consistency: consistency as i32,
        })
        .await
        .expect("lookup accounts")
        .into_inner()
}

pub async fn lookup_transfers(
    client: &mut LedgerClient<Channel>,
    ids: &[u128],
    consistency: pb::ReadConsistency,
) -> pb::TransfersResponse {
    client
        .lookup_transfers(pb::LookupRequest {
            ids: ids.iter().map(|id| (*id).into()).collect(),
            consistency: consistency as i32,
        })
        .await
        .expect("lookup transfers")
        .into_inner()
}

/// Waits until every node has applied the same index and reports the same digest; returns it.
pub async fn converged_digest(h: &Harness, ids: &[u64], timeout: Duration) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut seen = Vec::new();
        for id in ids {
            if let Some(s) = h.status(*id).await {
                seen.push((s.digest_applied_index, s.state_digest));
            }
        }
        if seen.len() == ids.len() && seen.windows(2).all(|w| w[0] == w[1]) {
            return seen[0].1.clone();
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not converge: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Makes node `node` drop the Raft RPCs of `blocked` (needs `--fault-injection`); an empty list
/// heals it.
pub async fn partition(h: &Harness, node: u64, blocked: &[u64]) {
    h.admin(node)
        .await
        .inject_partition(ledger_client::proto::admin::PartitionRequest {
            blocked_node_ids: blocked.to_vec(),
        })
        .await
        .expect("inject partition");
}
