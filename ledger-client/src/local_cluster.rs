//! A cluster of real `ledger-server` processes on this machine: what `ledgerctl local up`
//! starts for development, and what the cluster tests and the partition harness drive.
//!
//! Ports are chosen at run time: every node first binds port 0 for its client, peer and HTTP
//! ports and writes the addresses it got to `<data dir>/addrs.json`; the first node is then
//! started with `--init` and the others as `--peer`s. A restarted node binds the same
//! addresses again, because they are part of the cluster's membership. The cluster's layout is
//! saved in `<dir>/cluster.json`, so that a later `ledgerctl local down` can stop processes
//! started by another invocation.
//!
//! The nodes authenticate each other with a random peer secret written to
//! `<dir>/peer-secret` (mode 0600) when the cluster is created: a local cluster is secure by
//! default too, and no other process on the machine can speak Raft to it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How long to wait for a started process to report its addresses.
pub const NODE_START_TIMEOUT_MS: u64 = 20_000;
/// How often to poll while waiting for a condition.
const POLL_INTERVAL_MS: u64 = 50;

#[derive(Debug, thiserror::Error)]
pub enum LocalClusterError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("node {node}: {reason}")]
    Node { node: u64, reason: String },
    #[error("{0}")]
    Layout(String),
}

/// The addresses a node reports after binding (written by ledger-server).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddrs {
    /// The client port (Ledger and Admin services).
    pub grpc: SocketAddr,
    /// The peer port (Raft's RPCs).
    pub peer: SocketAddr,
    pub http: SocketAddr,
}

/// The file, in a local cluster's folder, that holds its peer secret.
pub const PEER_SECRET_FILE: &str = "peer-secret";

/// Writes a new random peer secret (64 hex digits, 256 bits from the OS) to `path`, readable by
/// its owner only. Refuses to overwrite an existing file.
pub fn write_peer_secret(path: &Path) -> std::io::Result<()> {
    use rand::RngCore;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(format!("{secret}\n").as_bytes())?;
    file.sync_all()
}

/// One node's saved layout.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LocalNode {
    pub id: u64,
    pub data_dir: PathBuf,
    pub addrs: Option<NodeAddrs>,
    pub pid: Option<u32>,
}

/// Options for starting nodes.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub cluster: String,
    /// Extra arguments given to every ledger-server process.
    pub extra_args: Vec<String>,
    /// Fixed ports: node i gets gRPC `base + 3(i-1)`, HTTP `base + 3(i-1) + 1` and peer
    /// `base + 3(i-1) + 2`.
    pub base_port: Option<u16>,
    /// Extra arguments for one node only (the partition harness's `--route`s).
    pub node_args: std::collections::BTreeMap<u64, Vec<String>>,
    /// Environment variables for every process (`RUST_LOG`, say).
    pub env: Vec<(String, String)>,
    /// The client address a node is known by, when clients reach it through something in
    /// between (the partition harness's client proxies): given as its `--advertise-addr`, and
    /// to the first node for its membership, so that leader hints name it too.
    pub advertise: std::collections::BTreeMap<u64, String>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            cluster: "ledger".into(),
            extra_args: Vec::new(),
            base_port: None,
            node_args: Default::default(),
            env: Vec::new(),
            advertise: Default::default(),
        }
    }
}

/// A cluster of ledger-server processes, all on 127.0.0.1.
pub struct LocalCluster {
    pub dir: PathBuf,
    pub binary: PathBuf,
    pub options: NodeOptions,
    pub nodes: Vec<LocalNode>,
    children: Vec<Option<Child>>,
}

#[derive(Serialize, Deserialize)]
struct Layout {
    binary: PathBuf,
    cluster: String,
    nodes: Vec<LocalNode>,
    /// The extra arguments every node was started with (`--latency-profile`, say), so that a
    /// node restarted from this layout runs with the same settings as the others.
    #[serde(default)]
    extra_args: Vec<String>,
}

impl LocalCluster {
    /// Starts `count` nodes in `dir` and bootstraps them as one cluster. Returns once every
    /// process reported its addresses; use [`LocalCluster::wait_ready`] to wait for a leader.
    pub fn start(
        binary: &Path,
        dir: &Path,
        count: u64,
        options: NodeOptions,
    ) -> Result<Self, LocalClusterError> {
        if count == 0 {
            return Err(LocalClusterError::Layout(
                "a cluster needs at least one node".into(),
            ));
        }
        std::fs::create_dir_all(dir)?;
        let secret = dir.join(PEER_SECRET_FILE);
        if !secret.exists() {
            write_peer_secret(&secret)?;
        }
        let mut cluster = Self {
            dir: dir.to_path_buf(),
            binary: binary.to_path_buf(),
            options,
            nodes: (1..=count)
                .map(|id| LocalNode {
                    id,
                    data_dir: dir.join(format!("node{id}")),
                    addrs: None,
                    pid: None,
                })
                .collect(),
            children: (0..count).map(|_| None).collect(),
        };
        // Followers first, so the first node can name them when it bootstraps the cluster.
        for id in 2..=count {
            cluster.spawn(id, false)?;
        }
        cluster.spawn(1, true)?;
        cluster.save()?;
        Ok(cluster)
    }

    /// Starts again, with `binary`, the cluster a previous `start` left in `dir`: every node on
    /// its own addresses (they are in the membership) and data, none bootstrapped. Refuses while
    /// any of its nodes still runs, naming them.
    pub fn resume(binary: &Path, dir: &Path) -> Result<Self, LocalClusterError> {
        let mut cluster = Self::load(dir)?;
        let running: Vec<String> = cluster
            .nodes
            .iter()
            .filter_map(|n| {
                let pid = n.pid?;
                process_serves(pid, &n.data_dir).then(|| format!("node {} (pid {pid})", n.id))
            })
            .collect();
        if !running.is_empty() {
            return Err(LocalClusterError::Layout(format!(
                "the cluster in {} is running ({}); stop it first with `ledgerctl local down \
                 --dir {}`",
                dir.display(),
                running.join(", "),
                dir.display()
            )));
        }
        cluster.binary = binary.to_path_buf();
        let ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
        for id in ids {
            cluster.spawn(id, false)?;
        }
        cluster.save()?;
        Ok(cluster)
    }

    /// Whether `dir` holds a cluster a previous `start` left there.
    pub fn exists_in(dir: &Path) -> bool {
        dir.join("cluster.json").exists()
    }

    /// Loads the layout a previous `start` saved in `dir` (processes are not owned).
    pub fn load(dir: &Path) -> Result<Self, LocalClusterError> {
        let bytes = std::fs::read(dir.join("cluster.json")).map_err(|e| {
            LocalClusterError::Layout(format!("no cluster in {}: {e}", dir.display()))
        })?;
        let layout: Layout = serde_json::from_slice(&bytes)
            .map_err(|e| LocalClusterError::Layout(format!("bad cluster.json: {e}")))?;
        let count = layout.nodes.len();
        Ok(Self {
            dir: dir.to_path_buf(),
            binary: layout.binary,
            options: NodeOptions {
                cluster: layout.cluster,
                extra_args: layout.extra_args,
                ..NodeOptions::default()
            },
            nodes: layout.nodes,
            children: (0..count).map(|_| None).collect(),
        })
    }

    fn save(&self) -> Result<(), LocalClusterError> {
        let layout = Layout {
            binary: self.binary.clone(),
            cluster: self.options.cluster.clone(),
            nodes: self.nodes.clone(),
            extra_args: self.options.extra_args.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&layout).expect("layout serializes");
        std::fs::write(self.dir.join("cluster.json"), bytes)?;
        Ok(())
    }

    fn index(&self, id: u64) -> Result<usize, LocalClusterError> {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .ok_or_else(|| LocalClusterError::Layout(format!("no node {id}")))
    }

    pub fn node(&self, id: u64) -> &LocalNode {
        &self.nodes[self.index(id).expect("known node id")]
    }

    /// Returns the gRPC endpoints (`http://host:port`) of every node.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter_map(|n| n.addrs.map(|a| format!("http://{}", a.grpc)))
            .collect()
    }

    pub fn grpc_addr(&self, id: u64) -> SocketAddr {
        self.node(id).addrs.expect("node has started once").grpc
    }

    pub fn http_addr(&self, id: u64) -> SocketAddr {
        self.node(id).addrs.expect("node has started once").http
    }

    pub fn peer_addr(&self, id: u64) -> SocketAddr {
        self.node(id).addrs.expect("node has started once").peer
    }

    fn spawn(&mut self, id: u64, init: bool) -> Result<(), LocalClusterError> {
        let i = self.index(id)?;
        let node = self.nodes[i].clone();
        std::fs::create_dir_all(&node.data_dir)?;
        let addrs_file = node.data_dir.join("addrs.json");
        let (grpc, http, peer) = match (node.addrs, self.options.base_port) {
            (Some(a), _) => (a.grpc.to_string(), a.http.to_string(), a.peer.to_string()),
            (None, Some(base)) => {
                let port = base + 3 * (id as u16 - 1);
                (
                    format!("127.0.0.1:{port}"),
                    format!("127.0.0.1:{}", port + 1),
                    format!("127.0.0.1:{}", port + 2),
                )
            }
            (None, None) => (
                "127.0.0.1:0".into(),
                "127.0.0.1:0".into(),
                "127.0.0.1:0".into(),
            ),
        };
        let _ = std::fs::remove_file(&addrs_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.data_dir.with_extension("log"))?;
        let mut command = Command::new(&self.binary);
        command
            .arg("--node-id")
            .arg(id.to_string())
            .arg("--cluster")
            .arg(&self.options.cluster)
            .arg("--data-dir")
            .arg(&node.data_dir)
            .arg("--grpc-addr")
            .arg(&grpc)
            .arg("--http-addr")
            .arg(&http)
            .arg("--peer-addr")
            .arg(&peer)
            .arg("--peer-secret-file")
            .arg(self.dir.join(PEER_SECRET_FILE))
            .args(&self.options.extra_args)
            .args(self.options.node_args.get(&id).into_iter().flatten())
            .args(
                self.options
                    .advertise
                    .get(&id)
                    .into_iter()
                    .flat_map(|a| ["--advertise-addr", a.as_str()]),
            )
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        if init {
            command.arg("--init");
            for other in &self.nodes {
                if other.id != id {
                    let addrs = other.addrs.ok_or_else(|| LocalClusterError::Node {
                        node: other.id,
                        reason: "started without reporting its addresses".into(),
                    })?;
                    let grpc = match self.options.advertise.get(&other.id) {
                        Some(advertised) => advertised.clone(),
                        None => addrs.grpc.to_string(),
                    };
                    command
                        .arg("--peer")
                        .arg(format!("{}={grpc},{}", other.id, addrs.peer));
                }
            }
        }
        let mut child = command.spawn().map_err(|e| LocalClusterError::Node {
            node: id,
            reason: format!("cannot start {}: {e}", self.binary.display()),
        })?;
        let deadline = Instant::now() + Duration::from_millis(NODE_START_TIMEOUT_MS);
        let addrs = loop {
            if let Ok(bytes) = std::fs::read(&addrs_file) {
                if let Ok(addrs) = serde_json::from_slice::<NodeAddrs>(&bytes) {
                    break addrs;
                }
            }
            if let Some(status) = child.try_wait()? {
                return Err(LocalClusterError::Node {
                    node: id,
                    reason: format!(
                        "exited with {status} during start-up; see {}",
                        node.data_dir.with_extension("log").display()
                    ),
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(LocalClusterError::Node {
                    node: id,
                    reason: "did not report its addresses in time".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        };
        self.nodes[i].addrs = Some(addrs);
        self.nodes[i].pid = Some(child.id());
        self.children[i] = Some(child);
        Ok(())
    }

    /// Whether node `id`'s process has exited by itself; if so, it is marked stopped (so that
    /// [`Self::restart`] starts it again) and its exit status is returned.
    pub fn reap(&mut self, id: u64) -> Result<Option<std::process::ExitStatus>, LocalClusterError> {
        let i = self.index(id)?;
        let exited = match self.children[i].as_mut() {
            Some(child) => child.try_wait()?,
            None => None,
        };
        if exited.is_some() {
            self.children[i] = None;
            self.nodes[i].pid = None;
            self.save()?;
        }
        Ok(exited)
    }

    /// Starts a stopped node again on its addresses and data.
    pub fn restart(&mut self, id: u64) -> Result<(), LocalClusterError> {
        self.spawn(id, false)?;
        self.save()
    }

    /// Deletes a stopped node's data directory.
    pub fn wipe(&mut self, id: u64) -> Result<(), LocalClusterError> {
        let dir = self.node(id).data_dir.clone();
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        Ok(())
    }

    /// Sends a signal to a node's process (`KILL`, `TERM`, `STOP`, `CONT`).
    pub fn signal(&mut self, id: u64, signal: &str) -> Result<(), LocalClusterError> {
        let i = self.index(id)?;
        let Some(pid) = self.nodes[i].pid else {
            return Ok(());
        };
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if signal == "STOP" && status.success() {
            wait_for_state(pid, 'T');
        }
        if matches!(signal, "KILL" | "TERM") {
            if let Some(mut child) = self.children[i].take() {
                let _ = child.wait();
            } else if status.success() {
                wait_for_exit(pid);
            }
            self.nodes[i].pid = None;
            self.save()?;
        }
        Ok(())
    }

    /// SIGKILLs a node: no chance to flush or say goodbye.
    pub fn kill(&mut self, id: u64) -> Result<(), LocalClusterError> {
        self.signal(id, "KILL")
    }

    /// Stops every node.
    pub fn stop_all(&mut self) {
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        for id in ids {
            let _ = self.signal(id, "CONT");
            let _ = self.signal(id, "TERM");
        }
    }

    /// Returns the parsed `/health/ready` answer of a node, or `None` if it does not answer.
    pub fn ready(&self, id: u64) -> Option<(bool, serde_json::Value)> {
        let addr = self.node(id).addrs?.http;
        http_get(addr, "/health/ready").map(|(code, body)| {
            let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
            (code == 200, json)
        })
    }

    /// Waits until every running node answers ready, or `timeout` passes.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), LocalClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            let waiting: Vec<u64> = self
                .nodes
                .iter()
                .filter(|n| n.pid.is_some())
                .filter(|n| !matches!(self.ready(n.id), Some((true, _))))
                .map(|n| n.id)
                .collect();
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LocalClusterError::Layout(format!(
                    "nodes {waiting:?} not ready after {} ms",
                    timeout.as_millis()
                )));
            }
            std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        }
    }
}

impl Drop for LocalCluster {
    /// Processes this value started die with it; loaded layouts are left alone.
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl LocalCluster {
    /// Releases the started processes so they outlive this value (for `ledgerctl local up`).
    pub fn detach(mut self) {
        for child in self.children.iter_mut() {
            child.take();
        }
    }
}

/// Waits until a process that is not our child has exited. A dead process whose parent has
/// not reaped it yet (a zombie) has exited too.
/// Whether process `pid` is a ledger-server serving `data_dir` (and not another process that
/// was given the number of one that exited).
fn process_serves(pid: u32, data_dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let data_dir = data_dir.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == data_dir)
}

/// How long `signal` waits for a stopped process to be reported stopped.
const STOP_WAIT_MS: u64 = 2_000;

/// Waits (at most [`STOP_WAIT_MS`]) until the kernel reports every thread of process `pid` in
/// `state` (`/proc/<pid>/task/*/stat`): `kill -STOP` returns before every thread of the target
/// has stopped, and a test that pauses a node must not race its last moments.
fn wait_for_state(pid: u32, state: char) {
    let deadline = Instant::now() + Duration::from_millis(STOP_WAIT_MS);
    let all_in_state = || -> Option<bool> {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        let mut all = true;
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // The state follows the command name, which is in parentheses and may hold spaces.
            let current = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next());
            all &= current.is_none_or(|c| c == state);
        }
        Some(all)
    };
    while Instant::now() < deadline {
        // A process that is gone (None) has nothing left to stop.
        if all_in_state().unwrap_or(true) {
            return;
        }
        std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS / 10));
    }
}

fn wait_for_exit(pid: u32) {
    let deadline = Instant::now() + Duration::from_millis(NODE_START_TIMEOUT_MS);
    let running = || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    };
    while running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS / 10));
    }
}

/// A minimal HTTP/1.0 GET: returns the status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let timeout = Duration::from_millis(1_000);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// A one-node cluster in a temporary folder, for the runnable examples of the documentation
/// (`cargo test --doc`, after `cargo build` has built `ledger-server`). Stopped and removed on
/// drop.
#[doc(hidden)]
pub struct ExampleCluster {
    cluster: Option<LocalCluster>,
    dir: PathBuf,
}

impl ExampleCluster {
    /// Finds `ledger-server` in the target directory (`$CARGO_TARGET_DIR` or the workspace's
    /// `target/`) and starts one node with it.
    pub fn start() -> Result<Self, LocalClusterError> {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"));
        // The newest build: `./scripts/test` builds in release, a plain `cargo build` in debug.
        let binary = ["debug", "release"]
            .iter()
            .map(|profile| target.join(profile).join("ledger-server"))
            .filter_map(|path| Some((path.metadata().ok()?.modified().ok()?, path)))
            .max()
            .map(|(_, path)| path)
            .ok_or_else(|| {
                LocalClusterError::Layout(format!(
                    "no ledger-server under {}; run `cargo build --workspace` first",
                    target.display()
                ))
            })?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("ledger-example-{}-{nanos}", std::process::id()));
        let cluster = LocalCluster::start(&binary, &dir, 1, NodeOptions::default())?;
        cluster.wait_ready(Duration::from_millis(NODE_START_TIMEOUT_MS))?;
        Ok(ExampleCluster {
            cluster: Some(cluster),
            dir,
        })
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.cluster
            .as_ref()
            .map(LocalCluster::endpoints)
            .unwrap_or_default()
    }
}

impl Drop for ExampleCluster {
    fn drop(&mut self) {
        drop(self.cluster.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
