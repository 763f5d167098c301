//! A cluster of real nodes in one process: each node is ledger-server's own start-up
//! (`startup::start_in_process`: RocksDB, the log store, the state machine, openraft, the
//! group committer, the request handlers) with its data in a folder of its own, its Raft
//! reached over the in-process network, and its wall clock a [`SimClock`].
//!
//! A crash stops a node's Raft and tasks and takes it off the network, mid-request; a restart
//! opens its folder again, as a process started after a crash would (what its storage holds
//! and nothing else).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use ledger_server::config::{Args, NodeConfig, CLIENT_MESSAGE_BYTES_MAX};
use ledger_server::grpc::in_process::InProcessChannel;
use ledger_server::node::Node;
use ledger_server::raft::in_process::InProcessNet;
use ledger_server::startup::{self, InProcessNode};

use crate::trace::Trace;
use crate::world::{Links, SimClock};

/// The cluster's name (nodes refuse other clusters' traffic).
const CLUSTER: &str = "sim";
/// How long a restart waits for the crashed node's storage to be released by its last
/// in-flight requests, in virtual time.
const RELEASE_WAIT: Duration = Duration::from_secs(30);

struct Slot {
    clock: Arc<SimClock>,
    running: Option<InProcessNode>,
}

pub struct SimCluster {
    dir: PathBuf,
    snapshot_logs: u64,
    net: Arc<InProcessNet>,
    pub links: Arc<Links>,
    slots: BTreeMap<u64, Slot>,
    trace: Trace,
    /// Power losses so far (names the dead instances' folders).
    losses: u64,
}

/// A write torn as the power went, at the tail of the newest write-ahead log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Torn {
    /// Zeros: a region the file system allocated and never wrote.
    Zeros(usize),
    /// A record cut short: RocksDB's header (masked crc32c, length, type 1: a full record),
    /// promising `length` bytes of which only `payload` reached the disk. It stays within the
    /// log's 32 KiB block, as a real record's first fragment does.
    CutRecord {
        crc: u32,
        length: u16,
        payload: Vec<u8>,
    },
}

/// RocksDB's write-ahead log block, and a record header's size in it.
const WAL_BLOCK_BYTES: u64 = 32 * 1024;
const WAL_HEADER_BYTES: u64 = 7;

impl Torn {
    /// The bytes written at offset `size` of the log file.
    fn bytes(&self, size: u64) -> Vec<u8> {
        match self {
            Torn::Zeros(n) => vec![0; *n],
            Torn::CutRecord {
                crc,
                length,
                payload,
            } => {
                let room = WAL_BLOCK_BYTES - size % WAL_BLOCK_BYTES;
                if room <= WAL_HEADER_BYTES {
                    // The writer pads such a block's end with zeros.
                    return vec![0; room as usize];
                }
                let fits = (room - WAL_HEADER_BYTES - 1) as usize;
                let mut bytes = crc.to_le_bytes().to_vec();
                bytes.extend_from_slice(&length.to_le_bytes());
                bytes.push(1);
                bytes.extend_from_slice(&payload[..payload.len().min(fits)]);
                bytes
            }
        }
    }
}

/// Writes `torn` at the end of the newest write-ahead log file under `db`, if there is one;
/// returns how many bytes.
fn tear_newest_log(db: &std::path::Path, torn: &Torn) -> std::io::Result<usize> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(db)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let Some(newest) = logs.last() else {
        return Ok(0);
    };
    use std::io::Write;
    let size = std::fs::metadata(newest)?.len();
    let bytes = torn.bytes(size);
    std::fs::OpenOptions::new()
        .append(true)
        .open(newest)?
        .write_all(&bytes)?;
    Ok(bytes.len())
}

fn member(id: u64) -> (String, String) {
    (format!("node-{id}:7000"), format!("node-{id}:7002"))
}

impl SimCluster {
    /// Starts `clocks.len()` nodes (ids 1..) in folders under `dir`; node 1 bootstraps them.
    pub async fn start(
        dir: PathBuf,
        snapshot_logs: u64,
        clocks: Vec<Arc<SimClock>>,
        links: Arc<Links>,
        trace: Trace,
    ) -> Result<Self, String> {
        // The nodes authenticate each other as a real cluster must; the secret stays in the run.
        let secret = dir.join("peer-secret");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(&secret, "simulated-cluster-peer-secret-0123456789abcdef")
            .map_err(|e| format!("{}: {e}", secret.display()))?;
        let net = InProcessNet::new();
        net.set_faults(Some(links.clone()));
        let slots = clocks
            .into_iter()
            .enumerate()
            .map(|(i, clock)| {
                (
                    i as u64 + 1,
                    Slot {
                        clock,
                        running: None,
                    },
                )
            })
            .collect();
        let mut cluster = Self {
            dir,
            snapshot_logs,
            net,
            links,
            slots,
            trace,
            losses: 0,
        };
        let ids: Vec<u64> = cluster.slots.keys().copied().collect();
        for id in ids {
            cluster.boot(id).await?;
        }
        Ok(cluster)
    }

    pub fn ids(&self) -> Vec<u64> {
        self.slots.keys().copied().collect()
    }

    pub fn clock(&self, id: u64) -> &Arc<SimClock> {
        &self.slots[&id].clock
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.slots.get(&id).is_some_and(|s| s.running.is_some())
    }

    /// The node, if it runs.
    pub fn node(&self, id: u64) -> Option<Arc<Node>> {
        let slot = self.slots.get(&id)?;
        slot.running.as_ref().map(|r| r.node.clone())
    }

    /// A channel to the client services of node `id`, if it runs.
    pub fn channel(&self, id: u64) -> Option<InProcessChannel> {
        let running = self.slots.get(&id)?.running.as_ref()?;
        Some(InProcessChannel::new(
            &running.node,
            CLIENT_MESSAGE_BYTES_MAX,
            running.auth.clone(),
        ))
    }

    fn config(&self, id: u64) -> Result<NodeConfig, String> {
        let data = self.dir.join(format!("node-{id}"));
        let (addr, peer) = member(id);
        let mut argv: Vec<String> = [
            "ledger-server",
            "--node-id",
            &id.to_string(),
            "--cluster",
            CLUSTER,
            "--data-dir",
            &data.display().to_string(),
            "--grpc-addr",
            "127.0.0.1:0",
            "--peer-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--advertise-addr",
            &addr,
            "--advertise-peer-addr",
            &peer,
            "--snapshot-logs",
            &self.snapshot_logs.to_string(),
            "--block-cache-mb",
            "8",
            "--peer-secret-file",
            &self.dir.join("peer-secret").display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if id == 1 {
            argv.push("--init".into());
            for other in self.slots.keys().filter(|&&o| o != 1) {
                let (addr, peer) = member(*other);
                argv.push("--peer".into());
                argv.push(format!("{other}={addr},{peer}"));
            }
        }
        let args = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        let mut config = NodeConfig::from_args(&args)?;
        // RocksDB keeps its write-ahead log in memory until the log's fsync, so that a power
        // loss (`lose_power`) can lose what was not synced; a plain crash loses nothing.
        config.simulate_power_loss = true;
        Ok(config)
    }

    /// Starts node `id` from its folder, retrying while the crashed incarnation's storage is
    /// still held by requests it was serving.
    async fn boot(&mut self, id: u64) -> Result<(), String> {
        let config = self.config(id)?;
        let env = self.slots[&id].clock.clone();
        let give_up = tokio::time::Instant::now() + RELEASE_WAIT;
        let running = loop {
            match startup::start_in_process(config.clone(), env.clone(), self.net.clone()).await {
                Ok(running) => break running,
                // RocksDB's lock file, held until the crashed instance's last handle closes.
                Err(e)
                    if e.to_string().contains("/LOCK") && tokio::time::Instant::now() < give_up =>
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => return Err(format!("node {id} does not start: {e}")),
            }
        };
        self.slots
            .get_mut(&id)
            .expect("slot of a known node")
            .running = Some(running);
        Ok(())
    }

    /// Crashes node `id`: its Raft and tasks stop at once, mid-request.
    pub async fn crash(&mut self, id: u64) {
        let Some(running) = self.slots.get_mut(&id).and_then(|s| s.running.take()) else {
            return;
        };
        self.trace.event(format!("crash node {id}"));
        running.shutdown(&self.net).await;
    }

    /// Cuts node `id`'s power: it stops, and its disk keeps only what was fsynced. With
    /// `torn`, the newest write-ahead log file also ends in a write torn as the power went. The node's folder becomes that disk's image (the dead instance's files are
    /// moved aside, and its handles write there until they close).
    pub async fn lose_power(&mut self, id: u64, torn: Option<Torn>) -> Result<(), String> {
        let Some(running) = self.slots.get_mut(&id).and_then(|s| s.running.take()) else {
            return Ok(());
        };
        self.losses += 1;
        let folder = self.dir.join(format!("node-{id}"));
        let image = self.dir.join(format!("node-{id}.image"));
        let dead = self.dir.join(format!("node-{id}.lost-{}", self.losses));
        let err = |what: &str, e: std::io::Error| format!("node {id}: {what}: {e}");
        running
            .lose_power(&self.net, &image)
            .await
            .map_err(|e| err("disk image", e))?;
        std::fs::rename(&folder, &dead).map_err(|e| err("move aside", e))?;
        std::fs::rename(&image, &folder).map_err(|e| err("image in place", e))?;
        let torn_bytes = match torn {
            Some(torn) => {
                tear_newest_log(&folder.join("db"), &torn).map_err(|e| err("torn tail", e))?
            }
            None => 0,
        };
        self.trace.event(format!(
            "power loss of node {id} (torn tail of {torn_bytes} bytes)"
        ));
        Ok(())
    }

    /// Makes the next fsync of node `id`'s log fail, as an EIO would.
    pub fn fail_next_fsync(&mut self, id: u64) {
        #[cfg(feature = "fault-injection")]
        if let Some(node) = self.node(id) {
            node.wal_sync.fail_next_sync();
            self.trace
                .event(format!("the next fsync of node {id} fails"));
        }
        #[cfg(not(feature = "fault-injection"))]
        let _ = id;
    }

    /// Restarts node `id` from its storage.
    pub async fn restart(&mut self, id: u64) -> Result<(), String> {
        if self.is_running(id) {
            return Ok(());
        }
        self.trace.event(format!("restart node {id}"));
        self.boot(id).await
    }

    /// Stops every node (the end of a run).
    pub async fn stop(mut self) {
        for id in self.ids() {
            if let Some(running) = self.slots.get_mut(&id).and_then(|s| s.running.take()) {
                running.shutdown(&self.net).await;
            }
        }
    }
}
