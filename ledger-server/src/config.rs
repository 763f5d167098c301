//! Command-line configuration of a node, and the named limits and timings it runs with.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Heartbeat from the leader to each follower, in the `lan` profile. openraft 0.9 also uses it
/// as the timeout of every AppendEntries RPC, so it must cover a round trip plus replicating
/// (and fsyncing) a full batch of large entries on a loaded host: at 50 ms, batches of 8,189
/// transfers timed out and replication stalled; at 100 ms, 40 s of full batches still saw 24
/// timeouts (each puts the follower's replication in backoff, and enough of them cost an
/// election); at 150 ms, none (docs/benchmarks.md). The same timeout is why a link slower than
/// about 150 ms round trip made no progress at all with it: see [`Timings::regional`].
pub const HEARTBEAT_INTERVAL_MS: u64 = 150;
/// A follower starts an election once it has heard nothing for the leader lease plus a random
/// time in this range (`lan` profile). The maximum is openraft's leader lease: a follower also
/// refuses to vote while it heard from a leader within it. So a failover takes one lease plus
/// one timeout, 1,050-1,200 ms, and a follower calls an election only after 7 heartbeats went
/// unheard.
pub const ELECTION_TIMEOUT_MS_MIN: u64 = 450;
pub const ELECTION_TIMEOUT_MS_MAX: u64 = 600;
/// Bounds of the timing settings, checked at start.
pub const HEARTBEAT_INTERVAL_MS_MIN: u64 = 20;
pub const ELECTION_TIMEOUT_MS_LIMIT: u64 = 60_000;
/// Heartbeats a follower must miss before it may call an election: fewer, and one slow round
/// trip or fsync costs an election.
pub const HEARTBEATS_PER_ELECTION_TIMEOUT_MIN: u64 = 3;
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
/// RocksDB block cache while restoring a backup (a short-lived process).
pub const RESTORE_BLOCK_CACHE_MB: usize = 64;
/// Largest gRPC message a client may send or receive.
pub const CLIENT_MESSAGE_BYTES_MAX: usize = 16 << 20;

const _: () =
    assert!(HEARTBEAT_INTERVAL_MS * HEARTBEATS_PER_ELECTION_TIMEOUT_MIN <= ELECTION_TIMEOUT_MS_MIN);
const _: () = assert!(ELECTION_TIMEOUT_MS_MIN < ELECTION_TIMEOUT_MS_MAX);
const _: () = assert!(READ_TIMEOUT_MS <= WRITE_TIMEOUT_MS);

/// The timings of Raft, for the round trip between the nodes (`--latency-profile`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LatencyProfile {
    /// One data centre or region: round trips of a few milliseconds, up to about 50 ms.
    Lan,
    /// Nodes in different regions: round trips up to about 300 ms.
    Regional,
}

/// Heartbeat and election timeouts, in milliseconds. Checked against each other at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
}

impl Timings {
    /// One region: see [`HEARTBEAT_INTERVAL_MS`] and [`ELECTION_TIMEOUT_MS_MIN`].
    pub const fn lan() -> Self {
        Self {
            heartbeat_ms: HEARTBEAT_INTERVAL_MS,
            election_min_ms: ELECTION_TIMEOUT_MS_MIN,
            election_max_ms: ELECTION_TIMEOUT_MS_MAX,
        }
    }

    /// Round trips up to 300 ms. openraft 0.9 times every AppendEntries out at the heartbeat
    /// interval, so the interval must hold a 300 ms round trip plus a batch's fsync and apply
    /// on a loaded host: 600 ms. Elections wait for 3 missed heartbeats and more. A failover
    /// takes the lease (the maximum) plus one timeout: 4.2-4.8 s (docs/benchmarks.md; with
    /// 750 ms and 3,000-4,000 ms it took 7.9 s).
    pub const fn regional() -> Self {
        Self {
            heartbeat_ms: 600,
            election_min_ms: 1_800,
            election_max_ms: 2_400,
        }
    }

    pub const fn of(profile: LatencyProfile) -> Self {
        match profile {
            LatencyProfile::Lan => Self::lan(),
            LatencyProfile::Regional => Self::regional(),
        }
    }

    /// How long a leader may go without hearing from a quorum before it refuses writes.
    pub const fn quorum_stale_ms(&self) -> u64 {
        2 * self.election_max_ms
    }

    /// Refuses timings that would cause elections or could never elect, naming the flags.
    pub fn check(&self) -> Result<(), String> {
        let Self {
            heartbeat_ms,
            election_min_ms,
            election_max_ms,
        } = *self;
        if heartbeat_ms < HEARTBEAT_INTERVAL_MS_MIN {
            return Err(format!(
                "--heartbeat-ms {heartbeat_ms}: at least {HEARTBEAT_INTERVAL_MS_MIN} ms"
            ));
        }
        if election_min_ms < HEARTBEATS_PER_ELECTION_TIMEOUT_MIN * heartbeat_ms {
            return Err(format!(
                "--election-timeout-min-ms {election_min_ms} must be at least \
                 {HEARTBEATS_PER_ELECTION_TIMEOUT_MIN} heartbeats (--heartbeat-ms {heartbeat_ms}): \
                 a follower would call an election after one slow round trip"
            ));
        }
        if election_max_ms <= election_min_ms {
            return Err(format!(
                "--election-timeout-max-ms {election_max_ms} must be above \
                 --election-timeout-min-ms {election_min_ms} (the random spread is what lets \
                 one candidate win)"
            ));
        }
        if election_max_ms > ELECTION_TIMEOUT_MS_LIMIT {
            return Err(format!(
                "--election-timeout-max-ms {election_max_ms}: at most {ELECTION_TIMEOUT_MS_LIMIT}"
            ));
        }
        Ok(())
    }
}

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

    /// Address of the client port: the gRPC server of the Ledger and Admin services
    /// [default: 127.0.0.1:7000].
    #[arg(long, env = "LEDGER_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,

    /// Address of the peer port: the gRPC server of Raft's RPCs between nodes, and nothing
    /// else, so that a firewall can admit only the other nodes to it [default: 127.0.0.1:7002].
    #[arg(long, env = "LEDGER_PEER_ADDR")]
    pub peer_addr: Option<SocketAddr>,

    /// Address the HTTP server (metrics, health) listens on.
    #[arg(long, env = "LEDGER_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,

    /// Address clients use to reach this node's client port, as recorded in the membership
    /// and sent in leader hints (defaults to --grpc-addr).
    #[arg(long, env = "LEDGER_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,

    /// Address the other nodes use to reach this node's peer port, as recorded in the
    /// membership (defaults to --peer-addr).
    #[arg(long, env = "LEDGER_ADVERTISE_PEER_ADDR")]
    pub advertise_peer_addr: Option<String>,

    /// Name of the cluster; nodes refuse Raft traffic from other clusters.
    #[arg(long, env = "LEDGER_CLUSTER", default_value = "ledger")]
    pub cluster: String,

    /// Bootstrap a new cluster made of this node and the --peer nodes, if not done already.
    /// Give it to exactly one node of a new cluster.
    #[arg(long)]
    pub init: bool,

    /// Another voter of the initial cluster, as ID=CLIENT_HOST:PORT,PEER_HOST:PORT (with
    /// --init): its client port and its peer port.
    #[arg(long = "peer", value_parser = parse_member)]
    pub peers: Vec<(u64, String, String)>,

    /// Reach node ID's peer port at HOST:PORT instead of the peer address in the membership (a
    /// proxy, a NAT). The partition harness routes every node-to-node link through its own
    /// proxy this way.
    #[arg(long = "route", value_parser = parse_peer)]
    pub routes: Vec<(u64, String)>,

    /// Raft's timings for the round trip between the nodes: `lan` (one region, up to about
    /// 50 ms) or `regional` (up to 300 ms; slower failover). Every node of a cluster should
    /// use the same (docs/operations.md, "Latency profiles").
    #[arg(
        long,
        env = "LEDGER_LATENCY_PROFILE",
        value_enum,
        default_value = "lan"
    )]
    pub latency_profile: LatencyProfile,

    /// The leader's heartbeat interval, overriding the profile's. openraft 0.9 also times out
    /// each AppendEntries after it, so it must exceed the round trip between nodes.
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,

    /// A follower waits a random time between these two after its leader's lease before it
    /// calls an election, overriding the profile's. At least 3 heartbeats.
    #[arg(long)]
    pub election_timeout_min_ms: Option<u64>,

    #[arg(long)]
    pub election_timeout_max_ms: Option<u64>,

    /// Take a snapshot (and purge the log behind it) every this many applied entries.
    #[arg(long, env = "LEDGER_SNAPSHOT_LOGS", default_value_t = 20_000)]
    pub snapshot_logs: u64,

    /// RocksDB block cache, in MiB (the main bounded use of memory).
    #[arg(long, default_value_t = 256)]
    pub block_cache_mb: usize,

    /// Allow the admin API to inject network partitions. A test-only hook: only builds with
    /// the `fault-injection` cargo feature (the test command's) accept it; release builds
    /// refuse to start with it.
    #[arg(long)]
    pub fault_injection: bool,

    /// Shift this node's wall clock by this many milliseconds (may be negative). A test-only
    /// hook, like --fault-injection (which it needs): release builds refuse it.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub clock_offset_ms: i64,

    /// Lose what was written but not yet fsynced when the process is killed, as a power
    /// failure would: RocksDB keeps its write-ahead log in memory until the fsync thread syncs
    /// it. A test-only hook, like --fault-injection (which it needs): the harness's
    /// `power-loss` faults.
    #[arg(long)]
    pub simulate_power_loss: bool,

    /// Run on a non-loopback address without TLS or without an auth file, on purpose. The node
    /// then says so: a warning in its log at start and every minute, a note in
    /// /health/ready, and the metric ledger_insecure 1 (docs/security.md).
    #[arg(long)]
    pub insecure: bool,

    /// The cluster's shared peer secret (a file, the same on every node, at least 32
    /// characters; `ledgerctl peer-secret --out FILE` writes one). Without TLS, every Raft call
    /// must carry it; a node with neither TLS nor a peer secret accepts no Raft call.
    #[arg(long, env = "LEDGER_PEER_SECRET_FILE")]
    pub peer_secret_file: Option<PathBuf>,

    /// This node's TLS certificate (PEM). With --tls-key and --tls-ca, the client and peer
    /// ports speak only TLS, and peers must present a certificate from the CA that names them
    /// (docs/security.md).
    #[arg(long, env = "LEDGER_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,

    /// This node's TLS private key (PEM).
    #[arg(long, env = "LEDGER_TLS_KEY", requires_all = ["tls_cert", "tls_ca"])]
    pub tls_key: Option<PathBuf>,

    /// The cluster CA certificate (PEM): signs every node's certificate.
    #[arg(long, env = "LEDGER_TLS_CA", requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,

    /// Tokens and their roles (JSON, see docs/security.md). Without it, client calls are not
    /// authenticated, which only a loopback node or an --insecure one allows.
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
    /// Negative control: linearizable reads served from local state without confirming
    /// leadership (`negative_control.rs`).
    #[cfg(feature = "negative-control")]
    #[arg(long, hide = true)]
    pub unsafe_stale_reads: bool,
    /// Negative control: writes acknowledged before a quorum has them.
    #[cfg(feature = "negative-control")]
    #[arg(long, hide = true)]
    pub unsafe_early_ack: bool,
    /// Negative control: log changes reported durable without an fsync.
    #[cfg(feature = "negative-control")]
    #[arg(long, hide = true)]
    pub unsafe_skip_fsync: bool,

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
    /// HOST:PORT of the node's client port (its client address in the new membership).
    #[arg(long)]
    pub advertise_addr: String,
    /// HOST:PORT of the node's peer port (its peer address in the new membership).
    #[arg(long)]
    pub advertise_peer_addr: String,
}

/// Parses `ID=CLIENT_HOST:PORT,PEER_HOST:PORT` (an initial member).
fn parse_member(s: &str) -> Result<(u64, String, String), String> {
    let (id, addrs) =
        parse_peer(s).map_err(|e| format!("{e} (expected ID=CLIENT_HOST:PORT,PEER_HOST:PORT)"))?;
    let Some((client, peer)) = addrs.split_once(',') else {
        return Err(format!(
            "peer '{s}' names one address; give its client and its peer port: \
             ID=CLIENT_HOST:PORT,PEER_HOST:PORT"
        ));
    };
    for addr in [client, peer] {
        if !addr.contains(':') {
            return Err(format!("peer address '{addr}' is not HOST:PORT"));
        }
    }
    Ok((id, client.to_string(), peer.to_string()))
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
    pub peer_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub advertise_addr: Option<String>,
    pub advertise_peer_addr: Option<String>,
    /// Initialize a cluster of these voters (including this node) if not initialized yet:
    /// id, client address, peer address.
    pub init_members: Option<Vec<(u64, String, String)>>,
    /// Peer addresses that override the membership's for reaching some peers.
    pub routes: Vec<(u64, String)>,
    pub snapshot_logs: u64,
    /// Raft's heartbeat and election timeouts (`--latency-profile` and overrides).
    pub timings: Timings,
    pub block_cache_mb: usize,
    pub fault_injection: bool,
    /// Test-only shift of this node's clock (`--clock-offset-ms`).
    pub clock_offset_ms: i64,
    /// Test-only: unsynced writes are lost when the process dies (`--simulate-power-loss`).
    pub simulate_power_loss: bool,
    pub tls: Option<crate::security::tls::TlsFiles>,
    pub auth_file: Option<PathBuf>,
    pub peer_secret_file: Option<PathBuf>,
    /// Why the node runs insecure (`--insecure` on a non-loopback address without TLS or an
    /// auth file); `None` on a node that is not.
    pub insecure: Option<String>,
    pub limits: crate::security::limits::Limits,
}

/// Whether this build has the test-only fault-injection hooks.
pub const FAULT_INJECTION_BUILT_IN: bool = cfg!(feature = "fault-injection");

/// Refuses `--fault-injection` in a build without the hooks (every release build).
pub fn check_fault_injection(requested: bool, built_in: bool) -> Result<(), String> {
    if requested && !built_in {
        return Err(
            "--fault-injection is a test-only hook, and this build does not have it (it was \
             built without the `fault-injection` cargo feature, as release builds are); remove \
             the flag"
                .into(),
        );
    }
    Ok(())
}

/// What the secure-by-default rule needs to know about a node's settings.
#[derive(Clone, Debug)]
pub struct Exposure {
    /// The addresses the node listens on for gRPC (client and peer ports).
    pub listen: Vec<SocketAddr>,
    pub tls: bool,
    pub auth_file: bool,
    pub insecure: bool,
    pub dev: bool,
}

/// Secure unless told otherwise: a node listening on an address other than loopback needs TLS
/// (which also makes peers authenticate by mutual TLS) and an auth file, or an explicit
/// `--insecure`. Returns why the node runs insecure, if it does; refuses with the flags to add.
pub fn check_exposure(e: &Exposure) -> Result<Option<String>, String> {
    let exposed: Vec<String> = e
        .listen
        .iter()
        .filter(|a| !a.ip().is_loopback())
        .map(|a| a.to_string())
        .collect();
    if exposed.is_empty() {
        return Ok(None);
    }
    let exposed = exposed.join(", ");
    if e.dev {
        return Err(format!(
            "--dev listens on loopback addresses only, and {exposed} is not one; drop --dev and \
             give the full settings (docs/operations.md)"
        ));
    }
    let mut missing = Vec::new();
    if !e.tls {
        missing.push("--tls-cert FILE --tls-key FILE --tls-ca FILE (`ledgerctl certs` makes them)");
    }
    if !e.auth_file {
        missing.push("--auth-file FILE (`ledgerctl token` makes its entries)");
    }
    if missing.is_empty() {
        return Ok(None);
    }
    let what = match (e.tls, e.auth_file) {
        (false, false) => "without TLS and without client tokens",
        (false, true) => "without TLS",
        _ => "without client tokens",
    };
    if e.insecure {
        return Ok(Some(format!(
            "listening on {exposed} {what} (--insecure): anyone who reaches these ports can \
             read traffic{}",
            if e.auth_file {
                ""
            } else {
                " and call every method"
            }
        )));
    }
    Err(format!(
        "refusing to listen on {exposed} {what}. Add {}; or, to run without them on purpose, \
         add --insecure (docs/security.md)",
        missing.join(" and ")
    ))
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
        let default_peer: SocketAddr = "127.0.0.1:7002".parse().expect("literal address");
        let grpc_addr = args.grpc_addr.unwrap_or(default_grpc);
        let http_addr = args.http_addr.unwrap_or(default_http);
        let peer_addr = args.peer_addr.unwrap_or(default_peer);
        let init_members = if args.init || args.dev {
            // This node's own addresses are filled in once its ports are bound (`startup.rs`).
            let mut members = vec![(node_id, String::new(), String::new())];
            for (id, addr, peer) in &args.peers {
                if members.iter().any(|(m, _, _)| m == id) {
                    return Err(format!("node id {id} appears twice in the initial members"));
                }
                members.push((*id, addr.clone(), peer.clone()));
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
        let insecure = check_exposure(&Exposure {
            listen: vec![grpc_addr, peer_addr],
            tls: tls.is_some(),
            auth_file: args.auth_file.is_some(),
            insecure: args.insecure,
            dev: args.dev,
        })?;
        check_fault_injection(args.fault_injection, FAULT_INJECTION_BUILT_IN)?;
        for (flag, given) in [
            ("--clock-offset-ms", args.clock_offset_ms != 0),
            ("--simulate-power-loss", args.simulate_power_loss),
        ] {
            if given && !args.fault_injection {
                return Err(format!(
                    "{flag} is a test-only hook: it needs --fault-injection (and a build with \
                     the `fault-injection` feature)"
                ));
            }
        }
        let peers_authenticated = tls.is_some() || args.peer_secret_file.is_some();
        if !args.peers.is_empty() && !peers_authenticated {
            return Err(
                "--peer: the nodes of a cluster must authenticate each other; add TLS \
                 (--tls-cert, --tls-key, --tls-ca) or --peer-secret-file FILE, the same on \
                 every node (`ledgerctl peer-secret --out FILE` writes one)"
                    .into(),
            );
        }
        let profile = Timings::of(args.latency_profile);
        let timings = Timings {
            heartbeat_ms: args.heartbeat_ms.unwrap_or(profile.heartbeat_ms),
            election_min_ms: args
                .election_timeout_min_ms
                .unwrap_or(profile.election_min_ms),
            election_max_ms: args
                .election_timeout_max_ms
                .unwrap_or(profile.election_max_ms),
        };
        timings.check()?;
        if args.max_requests_per_connection == 0 {
            return Err("--max-requests-per-connection must be 1 or more".into());
        }
        Ok(Self {
            node_id,
            cluster: args.cluster.clone(),
            data_dir,
            grpc_addr,
            peer_addr,
            http_addr,
            advertise_addr: args.advertise_addr.clone(),
            advertise_peer_addr: args.advertise_peer_addr.clone(),
            init_members,
            routes: args.routes.clone(),
            snapshot_logs: args.snapshot_logs,
            timings,
            block_cache_mb: args.block_cache_mb,
            fault_injection: args.fault_injection,
            clock_offset_ms: args.clock_offset_ms,
            simulate_power_loss: args.simulate_power_loss,
            tls,
            auth_file: args.auth_file.clone(),
            peer_secret_file: args.peer_secret_file.clone(),
            insecure,
            limits: crate::security::limits::Limits {
                total: args.max_requests_in_flight,
                per_caller: args.max_requests_per_connection,
                ..Default::default()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_are_checked_against_each_other() {
        assert!(Timings::lan().check().is_ok());
        assert!(Timings::regional().check().is_ok());
        let regional = Timings::regional();
        // The regional heartbeat holds a 300 ms round trip with room for a batch's fsync.
        assert!(regional.heartbeat_ms >= 2 * 300);
        let too_eager = Timings {
            election_min_ms: 2 * regional.heartbeat_ms,
            ..regional
        };
        assert!(too_eager
            .check()
            .expect_err("refused")
            .contains("--election-timeout-min-ms"));
        let no_spread = Timings {
            election_max_ms: regional.election_min_ms,
            ..regional
        };
        assert!(no_spread
            .check()
            .expect_err("refused")
            .contains("--election-timeout-max-ms"));
        let too_fast = Timings {
            heartbeat_ms: 5,
            ..Timings::lan()
        };
        assert!(too_fast.check().is_err());
    }

    fn exposure(addr: &str, tls: bool, auth_file: bool, insecure: bool) -> Exposure {
        Exposure {
            listen: vec![
                addr.parse().expect("addr"),
                "127.0.0.1:7002".parse().expect("addr"),
            ],
            tls,
            auth_file,
            insecure,
            dev: false,
        }
    }

    #[test]
    fn loopback_nodes_need_nothing_more() {
        assert_eq!(
            check_exposure(&exposure("127.0.0.1:7000", false, false, false)),
            Ok(None)
        );
        assert_eq!(
            check_exposure(&exposure("[::1]:7000", false, false, false)),
            Ok(None)
        );
    }

    #[test]
    fn an_exposed_node_without_tls_or_tokens_is_refused_with_the_flags_to_add() {
        let refused =
            check_exposure(&exposure("0.0.0.0:7000", false, false, false)).expect_err("refused");
        for flag in [
            "--tls-cert",
            "--tls-key",
            "--tls-ca",
            "--auth-file",
            "--insecure",
        ] {
            assert!(refused.contains(flag), "{flag} missing from: {refused}");
        }
        let refused =
            check_exposure(&exposure("10.1.2.3:7000", true, false, false)).expect_err("refused");
        assert!(refused.contains("--auth-file") && !refused.contains("--tls-cert"));
        assert_eq!(
            check_exposure(&exposure("0.0.0.0:7000", true, true, false)),
            Ok(None)
        );
    }

    #[test]
    fn insecure_runs_exposed_and_says_why() {
        let why = check_exposure(&exposure("0.0.0.0:7000", false, false, true))
            .expect("allowed")
            .expect("insecure");
        assert!(why.contains("0.0.0.0:7000"), "{why}");
        let mut dev = exposure("0.0.0.0:7000", false, false, true);
        dev.dev = true;
        assert!(check_exposure(&dev).is_err(), "--dev stays on loopback");
    }

    #[test]
    fn fault_injection_is_refused_by_builds_without_it() {
        let refused = check_fault_injection(true, false).expect_err("refused");
        assert!(refused.contains("test-only"), "{refused}");
        assert!(check_fault_injection(true, true).is_ok());
        assert!(check_fault_injection(false, false).is_ok());
    }

    #[test]
    fn initial_members_name_both_ports() {
        assert_eq!(
            parse_member("2=10.0.0.2:7000,10.0.0.2:7002"),
            Ok((2, "10.0.0.2:7000".into(), "10.0.0.2:7002".into()))
        );
        let one = parse_member("2=10.0.0.2:7000").expect_err("one address");
        assert!(one.contains("PEER_HOST:PORT"), "{one}");
        assert!(parse_member("0=a:1,b:2").is_err());
    }
}
