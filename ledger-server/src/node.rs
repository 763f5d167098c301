//! A running node: storage, Raft, the group committer and the servers, wired together.
//!
//! Start-up order: check the data directory belongs to this node and cluster, open the one
//! RocksDB, build the log store and the state machine over it, start openraft, bootstrap the
//! cluster if asked and not done yet, then serve gRPC (client, admin, Raft) and HTTP.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use openraft::{BasicNode, SnapshotPolicy};
use rocksdb::DB;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;

use crate::config::{
    NodeConfig, CLIENT_MESSAGE_BYTES_MAX, ELECTION_TIMEOUT_MS_MAX, ELECTION_TIMEOUT_MS_MIN,
    HEARTBEAT_INTERVAL_MS, QUORUM_STALE_MS, RAFT_PAYLOAD_ENTRIES_MAX, SNAPSHOT_CHUNK_BYTES,
    SNAPSHOT_CHUNK_TIMEOUT_MS,
};
use crate::error::NodeError;
use crate::group_commit::GroupCommitter;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::raft::log_store::{open_db, LogStore};
use crate::raft::network::NetworkFactory;
use crate::raft::state_machine::LedgerStateMachine;
use crate::raft::types::Raft;
use crate::security::auth::{AuthLayer, Authenticator};
use crate::security::tls::TlsSettings;

/// Who a data directory belongs to, written on first start and checked on every start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Identity {
    cluster: String,
    node_id: u64,
}

const IDENTITY_FILE: &str = "node.json";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {dir}: {reason}")]
    DataDir { dir: String, reason: String },
    #[error("storage: {0}")]
    Storage(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("security settings: {0}")]
    Security(String),
}

/// Everything a request handler needs.
pub struct Node {
    pub config: NodeConfig,
    /// The address other nodes and clients reach this node's gRPC server at.
    pub advertise_addr: String,
    pub raft: Raft,
    pub db: Arc<DB>,
    pub committer: GroupCommitter,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    /// Peers whose Raft RPCs are refused (fault injection; empty unless a test sets it).
    pub blocked_peers: crate::grpc::raft_service::BlockedPeers,
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
            if ms > QUORUM_STALE_MS {
                return Err(NodeError::Unavailable(format!(
                    "the leader has not heard from a quorum for {ms} ms"
                )));
            }
        }
        Ok(())
    }
}

/// A started node and its servers; dropping it does not stop them, `shutdown` does.
pub struct RunningNode {
    pub node: Arc<Node>,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    stop: watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningNode {
    /// Stops the servers and Raft.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for server in self.servers {
            let _ = server.await;
        }
        let _ = self.node.raft.shutdown().await;
    }
}

fn check_identity(dir: &Path, expected: &Identity) -> Result<(), StartError> {
    let err = |reason: String| StartError::DataDir {
        dir: dir.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    let path = dir.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let found: Identity = serde_json::from_slice(&bytes)
                .map_err(|e| err(format!("unreadable {IDENTITY_FILE}: {e}")))?;
            if &found != expected {
                return Err(err(format!(
                    "belongs to node {} of cluster '{}', not node {} of cluster '{}'",
                    found.node_id, found.cluster, expected.node_id, expected.cluster
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes = serde_json::to_vec_pretty(expected).map_err(|e| err(e.to_string()))?;
            std::fs::write(&path, bytes).map_err(|e| err(e.to_string()))
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// Marks a new data directory as node `node_id` of cluster `cluster` (as the first start does),
/// or checks that it already is.
pub fn claim_data_dir(dir: &Path, cluster: &str, node_id: u64) -> Result<(), StartError> {
    check_identity(
        dir,
        &Identity {
            cluster: cluster.to_string(),
            node_id,
        },
    )
}

/// Binds both listeners of a configuration (port 0 picks a free port).
pub async fn bind(config: &NodeConfig) -> Result<(TcpListener, TcpListener), StartError> {
    let listen = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|e| StartError::Listen {
                addr,
                reason: e.to_string(),
            })
    };
    Ok((
        listen(config.grpc_addr).await?,
        listen(config.http_addr).await?,
    ))
}

/// Starts a node on already bound listeners.
pub async fn start(
    config: NodeConfig,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
) -> Result<RunningNode, StartError> {
    let grpc_addr = grpc_listener.local_addr().map_err(|e| StartError::Listen {
        addr: config.grpc_addr,
        reason: e.to_string(),
    })?;
    let http_addr = http_listener.local_addr().map_err(|e| StartError::Listen {
        addr: config.http_addr,
        reason: e.to_string(),
    })?;
    let advertise_addr = config
        .advertise_addr
        .clone()
        .unwrap_or_else(|| grpc_addr.to_string());
    check_identity(
        &config.data_dir,
        &Identity {
            cluster: config.cluster.clone(),
            node_id: config.node_id,
        },
    )?;

    // Security settings are read before anything else is opened: a bad file stops the start.
    let tls = config
        .tls
        .as_ref()
        .map(TlsSettings::load)
        .transpose()
        .map_err(StartError::Security)?;
    let auth = AuthLayer {
        tokens: config
            .auth_file
            .as_deref()
            .map(Authenticator::load)
            .transpose()
            .map_err(StartError::Security)?
            .map(Arc::new),
        peers_need_certificate: tls.is_some(),
    };
    if auth.tokens.is_some() && tls.is_none() {
        // Only with --dev (config.rs refuses it otherwise).
        tracing::warn!("--auth-file without TLS: tokens cross the network in clear text");
    }

    let db = open_db(config.data_dir.join("db"), config.block_cache_mb)
        .map_err(|e| StartError::Storage(e.to_string()))?;
    let metrics = Arc::new(Metrics::new());
    let log_store = LogStore::new(db.clone())
        .map_err(|e| StartError::Storage(e.to_string()))?
        .with_purge_counter(metrics.storage.log_purges.clone());
    // A damaged log entry must never be served or voted on: check them all before Raft
    // starts, and refuse to run on a damaged log (the node is replaced, see
    // docs/consistency.md).
    let entries = log_store.verify_all().map_err(|e| {
        StartError::Storage(format!(
            "raft log damaged: {e}; this node must be replaced (docs/operations.md)"
        ))
    })?;
    tracing::info!(entries, "raft log verified");
    let health = Arc::new(Health::new(
        log_store.corrupted_flag(),
        log_store.poisoned_flag(),
    ));
    let state_machine = LedgerStateMachine::open(db.clone(), &config.data_dir.join("snapshots"))
        .map_err(|e| StartError::Storage(e.to_string()))?
        .with_counters(metrics.storage.clone());

    let raft_config = openraft::Config {
        cluster_name: config.cluster.clone(),
        heartbeat_interval: HEARTBEAT_INTERVAL_MS,
        election_timeout_min: ELECTION_TIMEOUT_MS_MIN,
        election_timeout_max: ELECTION_TIMEOUT_MS_MAX,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_logs),
        max_in_snapshot_log_to_keep: config.snapshot_logs.min(1_000),
        // openraft 0.9 gives every AppendEntries the heartbeat interval as its timeout: keep
        // each one small enough to finish in it, or a follower catching up never does.
        max_payload_entries: RAFT_PAYLOAD_ENTRIES_MAX,
        // openraft 0.9 gives each snapshot chunk 200 ms by default: a follower that fell behind
        // the purged log on a loaded host had every chunk time out and never caught up (found
        // in CI, docs/testing.md). Smaller chunks, and time enough for each.
        install_snapshot_timeout: SNAPSHOT_CHUNK_TIMEOUT_MS,
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
        ..Default::default()
    }
    .validate()
    .map_err(|e| StartError::Raft(e.to_string()))?;
    let network = NetworkFactory::new(config.cluster.clone(), config.node_id)
        .with_routes(config.routes.iter().cloned())
        .with_tls(tls.as_ref().map(TlsSettings::peer_client_config));
    let raft = Raft::new(
        config.node_id,
        Arc::new(raft_config),
        network,
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| StartError::Raft(e.to_string()))?;

    if let Some(members) = &config.init_members {
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if !initialized {
            let mut nodes = BTreeMap::new();
            for (id, addr) in members {
                // This node's own entry uses the address it actually listens on.
                let addr = if *id == config.node_id {
                    advertise_addr.clone()
                } else {
                    addr.clone()
                };
                nodes.insert(*id, BasicNode { addr });
            }
            tracing::info!(?nodes, "initializing a new cluster");
            raft.initialize(nodes)
                .await
                .map_err(|e| StartError::Raft(e.to_string()))?;
        }
    }

    let committer = GroupCommitter::start(raft.clone(), metrics.group_commit.clone());
    let node = Arc::new(Node {
        config,
        advertise_addr,
        raft,
        db,
        committer,
        health,
        metrics,
        blocked_peers: Default::default(),
    });

    let (stop, stopped) = watch::channel(false);
    let mut servers = Vec::new();
    let grpc = crate::grpc::router(node.clone(), CLIENT_MESSAGE_BYTES_MAX, tls.as_ref(), auth)
        .map_err(|e| StartError::Security(format!("TLS: {e}")))?;
    let mut grpc_stop = stopped.clone();
    servers.push(tokio::spawn(async move {
        // Without TCP_NODELAY, small responses wait for the peer's delayed ACK (~40 ms).
        let incoming = TcpListenerStream::new(grpc_listener).map(|stream| {
            if let Ok(stream) = &stream {
                let _ = stream.set_nodelay(true);
            }
            stream
        });
        let shutdown = async move {
            let _ = grpc_stop.wait_for(|s| *s).await;
        };
        if let Err(e) = grpc.serve_with_incoming_shutdown(incoming, shutdown).await {
            tracing::error!(error = %e, "gRPC server stopped");
        }
    }));
    let http = crate::http::router(node.clone());
    let mut http_stop = stopped;
    servers.push(tokio::spawn(async move {
        let shutdown = async move {
            let _ = http_stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(http_listener, http)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    }));
    write_addrs(&node.config.data_dir, grpc_addr, http_addr)?;
    tracing::info!(%grpc_addr, %http_addr, node_id = node.config.node_id, "node started");
    Ok(RunningNode {
        node,
        grpc_addr,
        http_addr,
        stop,
        servers,
    })
}

/// Publishes the bound addresses in `<data dir>/addrs.json` (ports may have been chosen by the
/// system), for tools that start nodes on port 0.
fn write_addrs(dir: &Path, grpc: SocketAddr, http: SocketAddr) -> Result<(), StartError> {
    let err = |e: std::io::Error| StartError::DataDir {
        dir: dir.display().to_string(),
        reason: e.to_string(),
    };
    let body = serde_json::json!({ "grpc": grpc, "http": http }).to_string();
    let tmp = dir.join("addrs.json.tmp");
    std::fs::write(&tmp, body).map_err(err)?;
    std::fs::rename(&tmp, dir.join("addrs.json")).map_err(err)
}
