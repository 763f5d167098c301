//! Command-line configuration of a node, and the named limits and timings it runs with.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Heartbeat from the leader to each follower. openraft 0.9 also uses it as the timeout of
/// every AppendEntries RPC, so it must cover replicating (and fsyncing) a full batch of large
/// entries on a loaded host: at 50 ms, batches of 8,189 transfers timed out and replication
/// stalled; at 100 ms, 40 s of full batches still saw 24 timeouts (each puts the follower's
/// replication in backoff, and enough of them cost an election); at 150 ms, none
/// (docs/benchmarks.md).
pub const HEARTBEAT_INTERVAL_MS: u64 = 150;
/// A follower starts an election once it has heard nothing for the leader lease plus a random
/// time in this range. The maximum is openraft's leader lease: a follower also refuses to vote
/// while it heard from a leader within it. So a failover takes one lease plus one timeout,
/// 1,050-1,200 ms, and a follower calls an election only after 7 heartbeats went unheard.
pub const ELECTION_TIMEOUT_MS_MIN: u64 = 450;
pub const ELECTION_TIMEOUT_MS_MAX: u64 = 600;
/// Most entries in one AppendEntries RPC (openraft's default is 300), so that one RPC fits in
/// the heartbeat interval openraft uses as its timeout even for a follower catching up. 32 was
/// still too many once on a slower host (a re-added follower stayed at its snapshot index; see
/// docs/testing.md).
pub const RAFT_PAYLOAD_ENTRIES_MAX: u64 = 8;
/// Most bytes of stored entries in one AppendEntries RPC, beyond its first entry (which is
/// always sent). Entries range from a few hundred bytes to a full batch of about a megabyte,
/// so the entry count alone does not bound an RPC (`raft/log_store.rs`).
pub const RAFT_PAYLOAD_BYTES_MAX: usize = 256 << 10;
/// Bytes per InstallSnapshot RPC (openraft's default is 3 MiB).
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1 << 20;
/// Time for one InstallSnapshot RPC (openraft's default is 200 ms).
pub const SNAPSHOT_CHUNK_TIMEOUT_MS: u64 = 5_000;
/// How long a write may wait for its entry to be applied before the answer is "unknown".
pub const WRITE_TIMEOUT_MS: u64 = 5_000;
/// How long a linearizable read may wait to confirm leadership.
pub const READ_TIMEOUT_MS: u64 = 2_000;
/// A leader that has not heard from a quorum for this long refuses new writes at once.
pub const QUORUM_STALE_MS: u64 = 2 * ELECTION_TIMEOUT_MS_MAX;
/// RocksDB block cache while restoring a backup (a short-lived process).
pub const RESTORE_BLOCK_CACHE_MB: usize = 64;
/// Largest gRPC message a client may send or receive.
pub const CLIENT_MESSAGE_BYTES_MAX: usize = 16 << 20;

const _: () = assert!(HEARTBEAT_INTERVAL_MS * 3 <= ELECTION_TIMEOUT_MS_MIN);
const _: () = assert!(ELECTION_TIMEOUT_MS_MIN < ELECTION_TIMEOUT_MS_MAX);
const _: () = assert!(READ_TIMEOUT_MS <= WRITE_TIMEOUT_MS);

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Debug, Parser)]
#[command(
    name = "ledger-server",
    version,
    about = "A Ledger database node",
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Development mode: a single-node cluster in ./ledger-data, initialized on first start,
    /// gRPC on 127.0.0.1:7000 and HTTP on 127.0.0.1:7001 unless overridden.
    #[arg(long)]
    pub dev: bool,

    /// This node's id (1 or more), fixed for the life of its data directory.
    #[arg(long, env = "LEDGER_NODE_ID")]
    pub node_id: Option<u64>,

    /// Where the node keeps its RocksDB database and snapshots.
    #[arg(long, env = "LEDGER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address the gRPC server (client, admin and Raft services) listens on.
    #[arg(long, env = "LEDGER_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,

    /// Address the HTTP server (metrics, health) listens on.
    #[arg(long, env = "LEDGER_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,

    /// Address other nodes and clients use to reach this node's gRPC server (defaults to
    /// --grpc-addr).
    #[arg(long, env = "LEDGER_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,

    /// Name of the cluster; nodes refuse Raft traffic from other clusters.
    #[arg(long, env = "LEDGER_CLUSTER", default_value = "ledger")]
    pub cluster: String,

    /// Bootstrap a new cluster made of this node and the --peer nodes, if not done already.
    /// Give it to exactly one node of a new cluster.
    #[arg(long)]
    pub init: bool,

    /// Another voter of the initial cluster, as ID=HOST:PORT (with --init).
    #[arg(long = "peer", value_parser = parse_peer)]
    pub peers: Vec<(u64, String)>,

    /// Reach node ID at HOST:PORT instead of the address in the membership (a proxy, a NAT).
    /// The partition harness routes every node-to-node link through its own proxy this way.
    #[arg(long = "route", value_parser = parse_peer)]
    pub routes: Vec<(u64, String)>,

    /// Take a snapshot (and purge the log behind it) every this many applied entries.
    #[arg(long, env = "LEDGER_SNAPSHOT_LOGS", default_value_t = 20_000)]
    pub snapshot_logs: u64,

    /// RocksDB block cache, in MiB (the main bounded use of memory).
    #[arg(long, default_value_t = 256)]
    pub block_cache_mb: usize,

    /// Allow the admin API to inject network partitions (testing and chaos runs only).
    #[arg(long)]
    pub fault_injection: bool,

    /// This node's TLS certificate (PEM). With --tls-key and --tls-ca, the gRPC port speaks
    /// only TLS and peers must present a certificate from the CA (docs/security.md).
    #[arg(long, env = "LEDGER_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,

    /// This node's TLS private key (PEM).
    #[arg(long, env = "LEDGER_TLS_KEY", requires_all = ["tls_cert", "tls_ca"])]
    pub tls_key: Option<PathBuf>,

    /// The cluster CA certificate (PEM): signs every node's certificate.
    #[arg(long, env = "LEDGER_TLS_CA", requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,

    /// Tokens and their roles (JSON, see docs/security.md). Without it, client calls are not
    /// authenticated.
    #[arg(long, env = "LEDGER_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,

    /// Client calls served at once by this node; more are refused with RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "LEDGER_MAX_REQUESTS_IN_FLIGHT",
        default_value_t = crate::security::limits::REQUESTS_IN_FLIGHT_MAX
    )]
    pub max_requests_in_flight: usize,

    /// Client calls served at once for one connection; more are refused with
    /// RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "LEDGER_MAX_REQUESTS_PER_CONNECTION",
        default_value_t = crate::security::limits::CONNECTION_REQUESTS_IN_FLIGHT_MAX
    )]
    pub max_requests_per_connection: usize,

    /// Negative control of the partition harness: apply retried transfers again (breaks
    /// exactly-once on purpose). Exists only in builds with the `negative-control` feature.
    #[cfg(feature = "negative-control")]
    #[arg(long, hide = true)]
    pub unsafe_skip_idempotency: bool,

    /// Log output format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

#[derive(Clone, Debug, Subcommand)]
pub enum Command {
    /// Seed an empty data directory from a backup (`ledgerctl backup`) as the only node of a
    /// new cluster, then exit; start the node on that directory as usual afterwards.
    Restore(RestoreArgs),
}

#[derive(Clone, Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup file.
    #[arg(long)]
    pub from: PathBuf,
    /// An empty (or absent) data directory.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The new node's id.
    #[arg(long)]
    pub node_id: u64,
    /// The new cluster's name.
    #[arg(long, default_value = "ledger")]
    pub cluster: String,
    /// HOST:PORT the node will serve gRPC on (its address in the new membership).
    #[arg(long)]
    pub advertise_addr: String,
}

fn parse_peer(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("peer '{s}' is not ID=HOST:PORT"))?;
    let id: u64 = id
        .parse()
        .map_err(|_| format!("peer id '{id}' is not a number"))?;
    if id == 0 {
        return Err("peer id must not be 0".into());
    }
    if !addr.contains(':') {
        return Err(format!("peer address '{addr}' is not HOST:PORT"));
    }
    Ok((id, addr.to_string()))
}

/// The resolved settings of a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: u64,
    pub cluster: String,
    pub data_dir: PathBuf,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub advertise_addr: Option<String>,
    /// Initialize a cluster of these voters (including this node) if not initialized yet.
    pub init_members: Option<Vec<(u64, String)>>,
    /// Addresses that override the membership's for reaching some peers.
    pub routes: Vec<(u64, String)>,
    pub snapshot_logs: u64,
    pub block_cache_mb: usize,
    pub fault_injection: bool,
    pub tls: Option<crate::security::tls::TlsFiles>,
    pub auth_file: Option<PathBuf>,
    pub limits: crate::security::limits::Limits,
}

impl NodeConfig {
    /// Resolves command-line arguments, with the `--dev` defaults.
    pub fn from_args(args: &Args) -> Result<Self, String> {
        let node_id = match (args.node_id, args.dev) {
            (Some(0), _) => return Err("--node-id must be 1 or more".into()),
            (Some(id), _) => id,
            (None, true) => 1,
            (None, false) => return Err("--node-id is required (or use --dev)".into()),
        };
        let data_dir = match (&args.data_dir, args.dev) {
            (Some(dir), _) => dir.clone(),
            (None, true) => PathBuf::from("ledger-data"),
            (None, false) => return Err("--data-dir is required (or use --dev)".into()),
        };
        let default_grpc: SocketAddr = "127.0.0.1:7000".parse().expect("literal address");
        let default_http: SocketAddr = "127.0.0.1:7001".parse().expect("literal address");
        let grpc_addr = args.grpc_addr.unwrap_or(default_grpc);
        let http_addr = args.http_addr.unwrap_or(default_http);
        let init_members = if args.init || args.dev {
            let own = args
                .advertise_addr
                .clone()
                .unwrap_or_else(|| grpc_addr.to_string());
            let mut members = vec![(node_id, own)];
            for (id, addr) in &args.peers {
                if members.iter().any(|(m, _)| m == id) {
                    return Err(format!("node id {id} appears twice in the initial members"));
                }
                members.push((*id, addr.clone()));
            }
            Some(members)
        } else {
            if !args.peers.is_empty() {
                return Err("--peer is only meaningful with --init".into());
            }
            None
        };
        if args.snapshot_logs == 0 {
            return Err("--snapshot-logs must be 1 or more".into());
        }
        if args.max_requests_in_flight == 0 {
            return Err("--max-requests-in-flight must be 1 or more".into());
        }
        let tls = match (&args.tls_cert, &args.tls_key, &args.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => Some(crate::security::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            }),
            (None, None, None) => None,
            _ => return Err("--tls-cert, --tls-key and --tls-ca go together".into()),
        };
        if args.auth_file.is_some() && tls.is_none() && !args.dev {
            return Err(
                "--auth-file needs TLS (--tls-cert, --tls-key, --tls-ca): without it \
                        tokens cross the network in clear and Raft's RPCs are not authenticated \
                        (--dev allows it, for loopback)"
                    .into(),
            );
        }
        if args.max_requests_per_connection == 0 {
            return Err("--max-requests-per-connection must be 1 or more".into());
        }
        Ok(Self {
            node_id,
            cluster: args.cluster.clone(),
            data_dir,
            grpc_addr,
            http_addr,
            advertise_addr: args.advertise_addr.clone(),
            init_members,
            routes: args.routes.clone(),
            snapshot_logs: args.snapshot_logs,
            block_cache_mb: args.block_cache_mb,
            fault_injection: args.fault_injection,
            tls,
            auth_file: args.auth_file.clone(),
            limits: crate::security::limits::Limits {
                total: args.max_requests_in_flight,
                per_connection: args.max_requests_per_connection,
            },
        })
    }
}
