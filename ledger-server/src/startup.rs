//! Start-up: storage, Raft, the group committer and the servers, wired together into a
//! running [`Node`].
//!
//! Order: check the data directory belongs to this node and cluster, read the security
//! settings, open the one RocksDB, build the log store and the state machine over it, start
//! openraft, bootstrap the cluster if asked and not done yet, then serve the client port
//! (Ledger and Admin services), the peer port (Raft's RPCs only) and HTTP.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use openraft::SnapshotPolicy;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;

use crate::config::{
    NodeConfig, CLIENT_MESSAGE_BYTES_MAX, RAFT_PAYLOAD_ENTRIES_MAX, SNAPSHOT_CHUNK_BYTES,
    SNAPSHOT_CHUNK_TIMEOUT_MS,
};
use crate::group_commit::GroupCommitter;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::raft::identity;
use crate::raft::log_store::{open_db_for_node, LogStore};
use crate::raft::network::NetworkFactory;
use crate::raft::state_machine::LedgerStateMachine;
use crate::raft::types::Raft;
use crate::security::auth::{AuthPolicy, Authenticator};
use crate::security::limits::{ConnectionSlots, CountedStream, PEER_CONNECTIONS_PER_ADDRESS_MAX};
use crate::security::peer::{PeerAuthPolicy, PeerSecret};
use crate::security::tls::TlsSettings;

use crate::node::Node;

/// Who a data directory belongs to, written on first start and checked on every start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Identity {
    cluster: String,
    node_id: u64,
    /// The layout of what the directory stores; see [`DATA_DIR_FORMAT`].
    #[serde(default = "first_format")]
    format: u32,
}

const IDENTITY_FILE: &str = "node.json";
/// The format of the stored log, state and snapshots. 2: every member records a client and a
/// peer address (the peer port). A directory of format 1 holds memberships this build cannot
/// read; it is refused at start, never misread.
/// 3: every member also records its incarnation (`raft/identity.rs`).
pub const DATA_DIR_FORMAT: u32 = 3;

fn first_format() -> u32 {
    1
}

/// How often an insecure node repeats its warning.
const INSECURE_WARNING_INTERVAL_MS: u64 = 60_000;

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

/// A started node and its servers; dropping it does not stop them, `shutdown` does.
pub struct RunningNode {
    pub node: Arc<Node>,
    pub grpc_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    pub http_addr: SocketAddr,
    stop: watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningNode {
    /// Returns once Raft has stopped on a fatal error (a failed write to the log, say), with
    /// the error. The node then serves nothing: `main` exits, so that the service manager
    /// restarts it from its durable state instead of leaving a node that answers but cannot
    /// replicate. openraft 0.9 also stops its core when a snapshot is to be sent on a
    /// replication stream that has just ended on a higher vote (docs/testing.md).
    pub async fn raft_failed(&self) -> String {
        let mut metrics = self.node.raft.metrics();
        loop {
            match &metrics.borrow_and_update().running_state {
                Err(openraft::error::Fatal::Stopped) | Ok(()) => {}
                Err(fatal) => return fatal.to_string(),
            }
            if metrics.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stops the servers and Raft.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for server in self.servers {
            let _ = server.await;
        }
        let _ = self.node.raft.shutdown().await;
    }
}

/// A node of the simulator or of an in-process test: no ports; peers reach its Raft service
/// through the in-process network, clients its client services through
/// [`InProcessChannel`](crate::grpc::in_process::InProcessChannel).
pub struct InProcessNode {
    pub node: Arc<Node>,
    /// How its client services authenticate (the channel's `AuthPolicy`).
    pub auth: AuthPolicy,
    db: Arc<rocksdb::DB>,
    stop: watch::Sender<bool>,
}

impl InProcessNode {
    /// Stops Raft and the node's background tasks, as a stopped process would have them
    /// stop, and takes the node off the network. Its storage closes once the last handle on
    /// the node is dropped.
    pub async fn shutdown(self, net: &crate::raft::in_process::InProcessNet) {
        net.unregister(self.node.config.node_id);
        let _ = self.stop.send(true);
        let _ = self.node.raft.shutdown().await;
    }

    /// Crashes the node as a power failure would, for a node started with
    /// `simulate_power_loss` (RocksDB keeps its write-ahead log in memory until the log's
    /// fsync): the data directory as the disk holds it, every write since the last fsync
    /// missing, is copied to `image`, then the node stops. Restarting from `image` is
    /// restarting after the power came back. RocksDB's background work (flushes,
    /// compactions) is stopped first, so that no file is caught half written.
    pub async fn lose_power(
        self,
        net: &crate::raft::in_process::InProcessNet,
        image: &Path,
    ) -> std::io::Result<()> {
        net.unregister(self.node.config.node_id);
        self.db.cancel_all_background_work(true);
        let copied = copy_dir(&self.node.config.data_dir, image);
        self.shutdown(net).await;
        copied
    }
}

/// Copies folder `from` to `to`, recursively.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Starts a node whose peers are in this process (`net`), with the clock and randomness of
/// `env`: the same storage, Raft, group committer and request handlers as [`start`], without
/// TCP, TLS or HTTP. Members are addressed by the node's `--advertise-addr` and
/// `--advertise-peer-addr`, or `in-process-<id>`.
pub async fn start_in_process(
    config: NodeConfig,
    env: Arc<dyn crate::env::Env>,
    net: Arc<crate::raft::in_process::InProcessNet>,
) -> Result<InProcessNode, StartError> {
    let name = format!("in-process-{}", config.node_id);
    let advertise = (
        config
            .advertise_addr
            .clone()
            .unwrap_or_else(|| name.clone()),
        config.advertise_peer_addr.clone().unwrap_or(name),
    );
    let (stop, stopped) = watch::channel(false);
    let Assembled { node, auth, db, .. } =
        assemble(config, env, advertise, Some(net.clone()), stopped).await?;
    net.register(
        node.config.node_id,
        Arc::new(crate::grpc::raft_service(&node)),
    );
    Ok(InProcessNode {
        node,
        auth,
        db,
        stop,
    })
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
            if found.format != expected.format {
                return Err(err(format!(
                    "holds data of format {}, and this build reads format {} (members with a \
                     separate peer port and an incarnation); move the node to a new data directory and re-add it, \
                     or restore a backup taken with this build (docs/operations.md)",
                    found.format, expected.format
                )));
            }
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

/// How often a leader checks whether expiries wait for later entries.
const EXPIRY_PULSE_INTERVAL_MS: u64 = 50;

/// The expiry pulse: while applying left pending transfers past their timeout for later
/// entries (at most `ledger_core::EXPIRIES_PER_ENTRY_MAX` expire per entry), the leader
/// proposes entries without commands to carry on, so that the backlog drains without client
/// writes, in bounded steps.
fn spawn_expiry_pulse(
    raft: Raft,
    committer: GroupCommitter,
    expiries_due: Arc<std::sync::atomic::AtomicBool>,
    mut stopped: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let period = std::time::Duration::from_millis(EXPIRY_PULSE_INTERVAL_MS);
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = ticks.tick() => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
            let leads = {
                let metrics = raft.metrics().borrow().clone();
                metrics.current_leader == Some(metrics.id)
            };
            if leads && expiries_due.load(std::sync::atomic::Ordering::Relaxed) {
                let pulse = ledger_core::Command::CreateTransfers(Vec::new());
                let timeout = std::time::Duration::from_millis(crate::config::WRITE_TIMEOUT_MS);
                if let Err(e) = committer
                    .submit(pulse, "expiry-pulse".into(), timeout)
                    .await
                {
                    tracing::debug!(error = %e, "expiry pulse not committed");
                }
            }
        }
    });
}

/// Marks a new data directory as node `node_id` of cluster `cluster` (as the first start does),
/// or checks that it already is.
pub fn claim_data_dir(dir: &Path, cluster: &str, node_id: u64) -> Result<(), StartError> {
    check_identity(
        dir,
        &Identity {
            cluster: cluster.to_string(),
            node_id,
            format: DATA_DIR_FORMAT,
        },
    )
}

/// The bound listeners of a node.
#[derive(Debug)]
pub struct Listeners {
    /// The client port (Ledger and Admin services).
    pub grpc: TcpListener,
    /// The peer port (Raft's RPCs).
    pub peer: TcpListener,
    /// Metrics and health.
    pub http: TcpListener,
}

/// Binds the listeners of a configuration (port 0 picks a free port).
pub async fn bind(config: &NodeConfig) -> Result<Listeners, StartError> {
    let listen = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|e| StartError::Listen {
                addr,
                reason: e.to_string(),
            })
    };
    Ok(Listeners {
        grpc: listen(config.grpc_addr).await?,
        peer: listen(config.peer_addr).await?,
        http: listen(config.http_addr).await?,
    })
}

/// Starts a node on already bound listeners.
pub async fn start(config: NodeConfig, listeners: Listeners) -> Result<RunningNode, StartError> {
    start_with_env(config, listeners, Arc::new(crate::env::SystemEnv)).await
}

/// [`start`] with the wall clock and randomness of `env` (tests and the simulator).
pub async fn start_with_env(
    config: NodeConfig,
    listeners: Listeners,
    env: Arc<dyn crate::env::Env>,
) -> Result<RunningNode, StartError> {
    let Listeners {
        grpc: grpc_listener,
        peer: peer_listener,
        http: http_listener,
    } = listeners;
    let local = |listener: &TcpListener, configured: SocketAddr| {
        listener.local_addr().map_err(|e| StartError::Listen {
            addr: configured,
            reason: e.to_string(),
        })
    };
    let grpc_addr = local(&grpc_listener, config.grpc_addr)?;
    let peer_addr = local(&peer_listener, config.peer_addr)?;
    let http_addr = local(&http_listener, config.http_addr)?;
    let advertise_addr = config
        .advertise_addr
        .clone()
        .unwrap_or_else(|| grpc_addr.to_string());
    let advertise_peer_addr = config
        .advertise_peer_addr
        .clone()
        .unwrap_or_else(|| peer_addr.to_string());
    let (stop, stopped) = watch::channel(false);
    let Assembled {
        node,
        tls,
        auth,
        peer_secret,
        ..
    } = assemble(
        config,
        env,
        (advertise_addr, advertise_peer_addr),
        None,
        stopped.clone(),
    )
    .await?;

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
    let peer_auth = PeerAuthPolicy {
        require_certificate: tls.is_some(),
        secret: peer_secret,
        counters: node.metrics.security.clone(),
    };
    let peer = crate::grpc::peer_router(node.clone(), tls.as_ref(), peer_auth)
        .map_err(|e| StartError::Security(format!("TLS: {e}")))?;
    let mut peer_stop = stopped.clone();
    let slots = ConnectionSlots::new(PEER_CONNECTIONS_PER_ADDRESS_MAX);
    let refusals = node.metrics.security.clone();
    servers.push(tokio::spawn(async move {
        // Connections past the per-address bound are closed at once (dropped here), so that
        // one address cannot hold the peer port's connections.
        let incoming = TcpListenerStream::new(peer_listener).filter_map(move |stream| {
            let stream = match stream {
                Ok(stream) => stream,
                Err(e) => return Some(Err(e)),
            };
            let ip = stream.peer_addr().ok()?.ip();
            let Some(slot) = slots.take(ip) else {
                refusals.refuse_peer("limit");
                if crate::security::auth::should_log_refusal() {
                    tracing::warn!(%ip, "peer connection refused: too many from one address");
                }
                return None;
            };
            let _ = stream.set_nodelay(true);
            Some(Ok(CountedStream::new(stream, slot)))
        });
        let shutdown = async move {
            let _ = peer_stop.wait_for(|s| *s).await;
        };
        if let Err(e) = peer.serve_with_incoming_shutdown(incoming, shutdown).await {
            tracing::error!(error = %e, "peer gRPC server stopped");
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
    write_addrs(&node.config.data_dir, grpc_addr, peer_addr, http_addr)?;
    tracing::info!(%grpc_addr, %peer_addr, %http_addr, node_id = node.config.node_id, "node started");
    Ok(RunningNode {
        node,
        grpc_addr,
        peer_addr,
        http_addr,
        stop,
        servers,
    })
}

/// A node built and running, but not yet serving: what the TCP servers and the in-process
/// path both start from.
struct Assembled {
    node: Arc<Node>,
    db: Arc<rocksdb::DB>,
    tls: Option<TlsSettings>,
    auth: AuthPolicy,
    peer_secret: Option<Arc<PeerSecret>>,
}

/// Checks the data directory, reads the security settings, opens storage, starts Raft (over
/// gRPC, or over `in_process`), bootstraps the cluster if asked, and starts the group
/// committer and the expiry pulse, which end when `stopped` turns true.
async fn assemble(
    config: NodeConfig,
    env: Arc<dyn crate::env::Env>,
    (advertise_addr, advertise_peer_addr): (String, String),
    in_process: Option<Arc<crate::raft::in_process::InProcessNet>>,
    stopped: watch::Receiver<bool>,
) -> Result<Assembled, StartError> {
    check_identity(
        &config.data_dir,
        &Identity {
            cluster: config.cluster.clone(),
            node_id: config.node_id,
            format: DATA_DIR_FORMAT,
        },
    )?;

    // Security settings are read before anything else is opened: a bad file stops the start.
    let tls = config
        .tls
        .as_ref()
        .map(TlsSettings::load)
        .transpose()
        .map_err(StartError::Security)?;
    let auth = AuthPolicy {
        tokens: config
            .auth_file
            .as_deref()
            .map(Authenticator::load)
            .transpose()
            .map_err(StartError::Security)?
            .map(Arc::new),
        env: env.clone(),
    };
    let peer_secret = config
        .peer_secret_file
        .as_deref()
        .map(PeerSecret::load)
        .transpose()
        .map_err(StartError::Security)?
        .map(Arc::new);
    if tls.is_none() && peer_secret.is_none() {
        tracing::warn!(
            "no peer authentication (TLS or --peer-secret-file): this node accepts no Raft \
             calls, so it can only be a cluster of one"
        );
    }

    let db = open_db_for_node(
        config.data_dir.join("db"),
        config.block_cache_mb,
        config.simulate_power_loss,
    )
    .map_err(|e| StartError::Storage(e.to_string()))?;
    let metrics = Arc::new(Metrics::new());
    let log_store = LogStore::new(db.clone())
        .map_err(|e| StartError::Storage(e.to_string()))?
        .with_purge_counter(metrics.storage.log_purges.clone());
    #[cfg(feature = "fault-injection")]
    let wal_sync = log_store.wal_sync().clone();
    // A damaged log entry must never be served or voted on: check them all before Raft
    // starts, and refuse to run on a damaged log (the node is replaced, see
    // docs/consistency.md).
    let entries = log_store.verify_all().map_err(|e| {
        StartError::Storage(format!(
            "raft log damaged: {e}; this node must be replaced (docs/operations.md)"
        ))
    })?;
    let incarnation = log_store
        .incarnation(env.as_ref())
        .map_err(|e| StartError::Storage(e.to_string()))?;
    tracing::info!(entries, incarnation = %format!("{incarnation:016x}"), "raft log verified");
    let health = Arc::new(Health::new(
        log_store.corrupted_flag(),
        log_store.poisoned_flag(),
    ));
    let state_machine = LedgerStateMachine::open(db.clone(), &config.data_dir.join("snapshots"))
        .map_err(|e| StartError::Storage(e.to_string()))?
        .with_counters(metrics.storage.clone());

    let expiries_due = state_machine.expiries_due_flag();
    let raft_config = openraft::Config {
        cluster_name: config.cluster.clone(),
        heartbeat_interval: config.timings.heartbeat_ms,
        election_timeout_min: config.timings.election_min_ms,
        election_timeout_max: config.timings.election_max_ms,
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
    let clock = Arc::new(crate::clock::Clock::new(metrics.clock.clone(), env.clone()));
    #[cfg(feature = "fault-injection")]
    clock.shift(config.clock_offset_ms);
    let network = NetworkFactory::new(config.cluster.clone(), config.node_id)
        .with_routes(config.routes.iter().cloned())
        .with_tls(tls.as_ref().map(TlsSettings::peer_client_config))
        .with_peer_secret(peer_secret.as_ref().map(|s| s.header_value()))
        .with_incarnation(incarnation)
        .with_clock(clock.clone())
        .with_heartbeat_ms(config.timings.heartbeat_ms);
    let network = match in_process {
        Some(net) => network.with_in_process(net),
        None => network,
    };
    let raft = Raft::new(
        config.node_id,
        Arc::new(raft_config),
        network.clone(),
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
            // This node's own entry uses the addresses it actually listens on.
            let members: BTreeMap<u64, (String, String)> = members
                .iter()
                .map(|(id, addr, peer)| {
                    let addrs = if *id == config.node_id {
                        (advertise_addr.clone(), advertise_peer_addr.clone())
                    } else {
                        (addr.clone(), peer.clone())
                    };
                    (*id, addrs)
                })
                .collect();
            let own_id = config.node_id;
            let alone = members.len() == 1;
            let (raft, network) = (raft.clone(), network.clone());
            let bootstrap = async move {
                match identity::gather_patiently(&network, own_id, incarnation, &members).await {
                    Ok(nodes) => {
                        tracing::info!(?nodes, "initializing a new cluster");
                        if let Err(e) = raft.initialize(nodes).await {
                            tracing::error!(error = %e, "cannot initialize the cluster");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "not initializing the cluster"),
                }
            };
            // A cluster of one is initialized before the node serves; a larger one once every
            // member has told its incarnation, while this node serves (they may be waiting
            // for it).
            if alone {
                bootstrap.await;
            } else {
                tokio::spawn(bootstrap);
            }
        }
    }

    let committer =
        GroupCommitter::start(raft.clone(), clock.clone(), metrics.group_commit.clone());
    spawn_expiry_pulse(
        raft.clone(),
        committer.clone(),
        expiries_due,
        stopped.clone(),
    );
    let node = Arc::new(Node {
        config,
        advertise_addr,
        advertise_peer_addr,
        raft,
        incarnation,
        env,
        clock,
        peers: network,
        engine: Arc::new(crate::storage::engine::RocksEngine::new(db.clone())),
        committer,
        health,
        metrics,
        #[cfg(feature = "fault-injection")]
        blocked_peers: Default::default(),
        #[cfg(feature = "fault-injection")]
        wal_sync,
    });
    let engine_db = db;
    if let Some(why) = node.config.insecure.clone() {
        node.metrics.security.insecure.set(1);
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let period = std::time::Duration::from_millis(INSECURE_WARNING_INTERVAL_MS);
            let mut ticks = tokio::time::interval(period);
            loop {
                tokio::select! {
                    biased;
                    _ = ticks.tick() => {}
                    _ = stopped.wait_for(|s| *s) => return,
                }
                tracing::warn!(reason = %why, "this node runs INSECURE on purpose (--insecure)");
            }
        });
    }

    Ok(Assembled {
        node,
        db: engine_db,
        tls,
        auth,
        peer_secret,
    })
}

/// Publishes the bound addresses in `<data dir>/addrs.json` (ports may have been chosen by the
/// system), for tools that start nodes on port 0.
fn write_addrs(
    dir: &Path,
    grpc: SocketAddr,
    peer: SocketAddr,
    http: SocketAddr,
) -> Result<(), StartError> {
    let err = |e: std::io::Error| StartError::DataDir {
        dir: dir.display().to_string(),
        reason: e.to_string(),
    };
    let body = serde_json::json!({ "grpc": grpc, "peer": peer, "http": http }).to_string();
    let tmp = dir.join("addrs.json.tmp");
    std::fs::write(&tmp, body).map_err(err)?;
    std::fs::rename(&tmp, dir.join("addrs.json")).map_err(err)
}
