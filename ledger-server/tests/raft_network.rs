//! Raft's RPCs over gRPC (`raft/network.rs` sending, `grpc/raft_service.rs` receiving),
//! between real openraft nodes on loopback ports chosen at run time.
//!
//! The nodes keep their log and state in memory (a small store defined here, with snapshots),
//! so that these tests exercise the network alone: replication to every node, a snapshot
//! streamed in many chunks to a learner that joins after the log was purged, the envelope's
//! refusals (wrong cluster, damaged payload, undecodable payload), and how transport failures
//! are reported to openraft (unreachable peer, deadline, typed remote error).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledger_client::proto::raft::raft_client::RaftClient;
use ledger_client::proto::raft::raft_server::{Raft as RaftRpc, RaftServer};
use ledger_client::proto::raft::{IdentifyReply, IdentifyRequest, RaftReply, RaftRequest};
use ledger_server::grpc::raft_server;
use ledger_server::grpc::raft_service::RaftService;
use ledger_server::raft::in_process::{Fate, InProcessNet, LinkFaults};
use ledger_server::raft::network::{seal, unseal, NetworkFactory, RAFT_MESSAGE_BYTES_MAX};
use openraft::error::{Fatal, RPCError, RaftError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, VoteRequest, VoteResponse};
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, BasicNode, Config, Entry, EntryPayload, LogId, LogState, Raft, RaftLogReader,
    RaftSnapshotBuilder, SnapshotMeta, SnapshotPolicy, StorageError, StorageIOError,
    StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::server::Router;
use tonic::transport::Server;
use tonic::{Code, Request, Response, Status};

const CLUSTER: &str = "raft-network-test";
/// Deadline of every wait on the cluster: generous, because these tests assert behaviour, not
/// speed (a loaded machine may take a while to elect a leader).
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// The per-RPC deadline given to direct calls of the network.
const RPC_TTL: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// The type configuration: the production constraints (u64 ids, `BasicNode` addresses, serde).

/// Application data of the test configuration: set `key` to `value`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Put {
    key: String,
    value: u64,
}

openraft::declare_raft_types!(
    pub TestConfig:
        D = Put,
        R = Option<u64>,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TestConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = ledger_server::raft::runtime::LedgerRuntime,
);

fn storage_error(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

// ---------------------------------------------------------------------------------------------
// An in-memory Raft log.

#[derive(Default)]
struct LogInner {
    vote: Option<Vote<u64>>,
    committed: Option<LogId<u64>>,
    purged: Option<LogId<u64>>,
    entries: BTreeMap<u64, Entry<TestConfig>>,
}

/// The log of one node; clones share it (a clone is the log reader).
#[derive(Clone, Default)]
struct MemLog {
    inner: Arc<Mutex<LogInner>>,
}

impl MemLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        self.inner.lock().expect("log lock")
    }
}

impl RaftLogReader<TestConfig> for MemLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TestConfig>>, StorageError<u64>> {
        let inner = self.lock();
        Ok(inner.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TestConfig> for MemLog {
    type LogReader = MemLog;

    async fn get_log_state(&mut self) -> Result<LogState<TestConfig>, StorageError<u64>> {
        let inner = self.lock();
        let last = inner.entries.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: inner.purged,
            last_log_id: last.or(inner.purged),
        })
    }

    async fn get_log_reader(&mut self) -> MemLog {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        self.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        Ok(self.lock().vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        self.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TestConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TestConfig>> + Send,
        I::IntoIter: Send,
    {
        {
            let mut inner = self.lock();
            for entry in entries {
                inner.entries.insert(entry.log_id.index, entry);
            }
        }
        // Memory is as durable as this store gets: the entries are "flushed" once inserted.
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.lock().entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let mut inner = self.lock();
        let kept = inner.entries.split_off(&(log_id.index + 1));
        inner.entries = kept;
        inner.purged = Some(log_id);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// An in-memory state machine with snapshots.

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct SmState {
    last_applied: Option<LogId<u64>>,
    last_membership: StoredMembership<u64, BasicNode>,
    data: BTreeMap<String, u64>,
}

#[derive(Default)]
struct SmInner {
    state: SmState,
    snapshot: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
    snapshots_built: u64,
    snapshots_installed: u64,
    /// How long an install takes (a large snapshot written to disk).
    install_delay: Duration,
}

/// The state machine of one node; clones share it (a clone is the snapshot builder, and the
/// test's handle on the node's data).
#[derive(Clone, Default)]
struct MemStateMachine {
    inner: Arc<Mutex<SmInner>>,
}

impl MemStateMachine {
    fn lock(&self) -> std::sync::MutexGuard<'_, SmInner> {
        self.inner.lock().expect("state machine lock")
    }

    fn data(&self) -> BTreeMap<String, u64> {
        self.lock().state.data.clone()
    }

    fn snapshots_installed(&self) -> u64 {
        self.lock().snapshots_installed
    }
}

impl RaftSnapshotBuilder<TestConfig> for MemStateMachine {
    async fn build_snapshot(
        &mut self,
    ) -> Result<openraft::Snapshot<TestConfig>, StorageError<u64>> {
        let mut inner = self.lock();
        let bytes = serde_json::to_vec(&inner.state).map_err(storage_error)?;
        inner.snapshots_built += 1;
        let meta = SnapshotMeta {
            last_log_id: inner.state.last_applied,
            last_membership: inner.state.last_membership.clone(),
            snapshot_id: format!("snapshot-{}", inner.snapshots_built),
        };
        inner.snapshot = Some((meta.clone(), bytes.clone()));
        Ok(openraft::Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TestConfig> for MemStateMachine {
    type SnapshotBuilder = MemStateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let inner = self.lock();
        Ok((
            inner.state.last_applied,
            inner.state.last_membership.clone(),
        ))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Option<u64>>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TestConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.lock();
        let mut responses = Vec::new();
        for entry in entries {
            inner.state.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => None,
                EntryPayload::Normal(put) => inner.state.data.insert(put.key, put.value),
                EntryPayload::Membership(membership) => {
                    inner.state.last_membership =
                        StoredMembership::new(Some(entry.log_id), membership);
                    None
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let delay = self.lock().install_delay;
        tokio::time::sleep(delay).await;
        let bytes = snapshot.into_inner();
        let mut state: SmState = serde_json::from_slice(&bytes).map_err(storage_error)?;
        state.last_applied = meta.last_log_id;
        state.last_membership = meta.last_membership.clone();
        let mut inner = self.lock();
        inner.state = state;
        inner.snapshot = Some((meta.clone(), bytes));
        inner.snapshots_installed += 1;
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<openraft::Snapshot<TestConfig>>, StorageError<u64>> {
        let inner = self.lock();
        Ok(inner
            .snapshot
            .as_ref()
            .map(|(meta, bytes)| openraft::Snapshot {
                meta: meta.clone(),
                snapshot: Box::new(Cursor::new(bytes.clone())),
            }))
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes on loopback.

/// A gRPC server on a loopback port chosen by the OS, stopped by [`TestServer::stop`].
struct TestServer {
    addr: String,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl TestServer {
    /// Binds a loopback port now; `serve` turns it into a server once it is known.
    async fn bind() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address").to_string();
        (listener, addr)
    }

    fn serve(listener: TcpListener, addr: String, router: Router) -> Self {
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(router.serve_with_incoming_shutdown(
            TcpListenerStream::new(listener),
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        let _ = self.shutdown.send(());
        self.task
            .await
            .expect("server task")
            .expect("server ran without a transport error");
    }
}

/// A node's Raft service, counting the snapshot chunks it receives.
struct CountingRaftService {
    inner: RaftService<TestConfig>,
    snapshot_chunks: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl RaftRpc for CountingRaftService {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        self.inner.append_entries(request).await
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        self.inner.vote(request).await
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        self.snapshot_chunks.fetch_add(1, Ordering::Relaxed);
        self.inner.install_snapshot(request).await
    }

    async fn identify(
        &self,
        request: Request<IdentifyRequest>,
    ) -> Result<Response<IdentifyReply>, Status> {
        self.inner.identify(request).await
    }
}

struct TestNode {
    id: u64,
    /// How many InstallSnapshot RPCs (one chunk each) this node received.
    snapshot_chunks: Arc<AtomicU64>,
    raft: Raft<TestConfig>,
    log: MemLog,
    state_machine: MemStateMachine,
    network: NetworkFactory<TestConfig>,
    server: TestServer,
}

impl TestNode {
    async fn start(id: u64, config: Arc<Config>) -> Self {
        let bound = TestServer::bind().await;
        Self::start_with(
            id,
            config,
            bound,
            MemLog::default(),
            MemStateMachine::default(),
        )
        .await
    }

    /// Starts node `id` on `bound` over `log` and `state_machine`, which may hold what the
    /// node kept from an earlier run.
    async fn start_with(
        id: u64,
        config: Arc<Config>,
        (listener, addr): (TcpListener, String),
        log: MemLog,
        state_machine: MemStateMachine,
    ) -> Self {
        let network = NetworkFactory::<TestConfig>::new(CLUSTER, id);
        let raft = Raft::new(
            id,
            config,
            network.clone(),
            log.clone(),
            state_machine.clone(),
        )
        .await
        .expect("raft starts");
        let snapshot_chunks = Arc::new(AtomicU64::new(0));
        let service = CountingRaftService {
            inner: RaftService::new(raft.clone(), CLUSTER),
            snapshot_chunks: snapshot_chunks.clone(),
        };
        let router = Server::builder().add_service(
            RaftServer::new(service)
                .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX),
        );
        let server = TestServer::serve(listener, addr, router);
        Self {
            id,
            snapshot_chunks,
            raft,
            log,
            state_machine,
            network,
            server,
        }
    }

    fn node(&self) -> BasicNode {
        BasicNode::new(self.server.addr.clone())
    }

    async fn stop(self) {
        stop_all(vec![self]).await;
    }
}

/// Stops every Raft core first, then every server, so that no core is left retrying RPCs
/// against servers that are going away.
async fn stop_all(nodes: Vec<TestNode>) {
    for n in &nodes {
        n.raft.shutdown().await.expect("raft shuts down");
    }
    for n in nodes {
        n.server.stop().await;
    }
}

fn config(small_snapshots: bool) -> Arc<Config> {
    let mut config = Config {
        cluster_name: CLUSTER.to_string(),
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        ..Default::default()
    };
    if small_snapshots {
        config.snapshot_policy = SnapshotPolicy::LogsSinceLast(5);
        config.max_in_snapshot_log_to_keep = 0;
        config.purge_batch_size = 1;
        // Tiny chunks, so that one snapshot travels as many InstallSnapshot RPCs.
        config.snapshot_max_chunk_size = 64;
    }
    Arc::new(config.validate().expect("valid raft config"))
}

/// Starts nodes 1..=count, initializes them as one cluster and returns them with the leader's
/// id once one is elected.
async fn start_cluster(count: u64, config: Arc<Config>) -> (Vec<TestNode>, u64) {
    let mut nodes = Vec::new();
    for id in 1..=count {
        nodes.push(TestNode::start(id, config.clone()).await);
    }
    let members: BTreeMap<u64, BasicNode> = nodes.iter().map(|n| (n.id, n.node())).collect();
    nodes[0]
        .raft
        .initialize(members)
        .await
        .expect("cluster initializes");
    let metrics = nodes[0]
        .raft
        .wait(Some(WAIT_TIMEOUT))
        .metrics(|m| m.current_leader.is_some(), "a leader is elected")
        .await
        .expect("a leader within the deadline");
    let leader = metrics.current_leader.expect("leader id");
    (nodes, leader)
}

fn node(nodes: &[TestNode], id: u64) -> &TestNode {
    nodes.iter().find(|n| n.id == id).expect("node exists")
}

/// Writes `key-{i}` = i for i in `range` through the leader and returns the last log index.
async fn write(leader: &TestNode, range: std::ops::Range<u64>) -> u64 {
    let mut last_index = 0;
    for i in range {
        let put = Put {
            key: format!("key-{i}"),
            value: i,
        };
        let response = leader.raft.client_write(put).await.expect("write commits");
        last_index = response.log_id.index;
    }
    last_index
}

fn expected(range: std::ops::Range<u64>) -> BTreeMap<String, u64> {
    range.map(|i| (format!("key-{i}"), i)).collect()
}

async fn wait_applied(node: &TestNode, index: u64) {
    node.raft
        .wait(Some(WAIT_TIMEOUT))
        .applied_index_at_least(Some(index), format!("node {} applies {index}", node.id))
        .await
        .unwrap_or_else(|e| panic!("node {} did not apply {index}: {e}", node.id));
}

// ---------------------------------------------------------------------------------------------
// Replication and snapshots over gRPC.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_writes_over_grpc() {
    let (nodes, leader_id) = start_cluster(3, config(false)).await;
    let leader = node(&nodes, leader_id);

    let last_index = write(leader, 0..10).await;

    for n in &nodes {
        wait_applied(n, last_index).await;
        assert_eq!(
            n.state_machine.data(),
            expected(0..10),
            "node {} state",
            n.id
        );
    }
    // The leader talked to both peers many times (votes, heartbeats, appends), over exactly
    // one cached channel each; no node ever holds more than one channel per peer.
    assert_eq!(leader.network.channel_count(), 2);
    for n in &nodes {
        assert!(n.network.channel_count() <= 2, "node {} channels", n.id);
    }

    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_behind_the_purged_log_catches_up_by_a_chunked_snapshot() {
    let config = config(true);
    let (mut nodes, leader_id) = start_cluster(3, config.clone()).await;
    let last_index = write(node(&nodes, leader_id), 0..20).await;

    // With a snapshot every 5 entries and none kept behind it, the leader purges its log.
    let leader = node(&nodes, leader_id);
    let metrics = leader
        .raft
        .wait(Some(WAIT_TIMEOUT))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index >= 10),
            "the leader purges its log behind a snapshot",
        )
        .await
        .expect("the leader purges within the deadline");
    let purged = metrics.purged.expect("purged log id").index;

    // Node 4 starts empty: the entries it lacks are gone, only a snapshot can bring it up.
    let learner = TestNode::start(4, config).await;
    leader
        .raft
        .add_learner(4, learner.node(), true)
        .await
        .expect("learner added");
    wait_applied(&learner, last_index).await;

    assert!(
        learner.state_machine.snapshots_installed() >= 1,
        "the learner installed a snapshot (the leader's log is purged up to {purged})"
    );
    let chunks = learner.snapshot_chunks.load(Ordering::Relaxed);
    assert!(chunks >= 2, "the snapshot came in {chunks} chunk(s)");
    assert_eq!(learner.state_machine.data(), expected(0..20));
    let membership = learner.raft.metrics().borrow().membership_config.clone();
    let learners: BTreeSet<u64> = membership.membership().learner_ids().collect();
    assert_eq!(learners, BTreeSet::from([4]));

    // Replication goes on by log after the snapshot.
    let leader = node(&nodes, leader_id);
    let last_index = write(leader, 20..23).await;
    wait_applied(&learner, last_index).await;
    assert_eq!(learner.state_machine.data(), expected(0..23));

    nodes.push(learner);
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_installing_a_slow_snapshot_keeps_its_leader() {
    // The last chunk is answered once the snapshot is installed, which takes 2 s here: more
    // than twice the longest election timeout (800 ms). Each chunk may take 5 s, as in
    // `config.rs`.
    let mut config = (*config(true)).clone();
    config.install_snapshot_timeout = 5_000;
    let config = Arc::new(config.validate().expect("valid raft config"));
    let (mut nodes, leader_id) = start_cluster(3, config.clone()).await;
    let follower_id = (1..=3).find(|id| *id != leader_id).expect("a follower");
    let last_index = write(node(&nodes, leader_id), 0..5).await;
    wait_applied(node(&nodes, follower_id), last_index).await;

    // The follower stops, keeping its log, vote and state, and falls behind the leader's
    // purged log while it is down.
    let at = nodes
        .iter()
        .position(|n| n.id == follower_id)
        .expect("follower");
    let follower = nodes.remove(at);
    let (log, state_machine, addr) = (
        follower.log.clone(),
        follower.state_machine.clone(),
        follower.server.addr.clone(),
    );
    follower.stop().await;
    let last_index = write(node(&nodes, leader_id), 5..30).await;
    node(&nodes, leader_id)
        .raft
        .wait(Some(WAIT_TIMEOUT))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index >= last_index - 5),
            "the leader purges its log behind a snapshot",
        )
        .await
        .expect("the leader purges within the deadline");
    let term = node(&nodes, leader_id).raft.metrics().borrow().current_term;

    state_machine.lock().install_delay = Duration::from_secs(2);
    let listener = TcpListener::bind(&addr)
        .await
        .expect("bind the same address");
    let follower =
        TestNode::start_with(follower_id, config, (listener, addr), log, state_machine).await;
    wait_applied(&follower, last_index).await;
    assert!(follower.state_machine.snapshots_installed() >= 1);
    nodes.push(follower);

    // No node stood for election while the follower installed: without heartbeats beside the
    // unanswered chunk it did, and its higher term unseated the leader.
    for n in &nodes {
        let m = n.raft.metrics().borrow().clone();
        assert_eq!(m.current_term, term, "node {} term", n.id);
        assert_eq!(m.current_leader, Some(leader_id), "node {} leader", n.id);
    }
    let last_index = write(node(&nodes, leader_id), 30..32).await;
    for n in &nodes {
        wait_applied(n, last_index).await;
        assert_eq!(
            n.state_machine.data(),
            expected(0..32),
            "node {} state",
            n.id
        );
    }
    stop_all(nodes).await;
}

// ---------------------------------------------------------------------------------------------
// The same connections in one process (`raft/in_process.rs`), on a paused clock: the seam the
// simulator runs on.

/// Loses every message to and from one node: that node is cut off.
struct CutOff(u64);

impl LinkFaults for CutOff {
    fn fate(&self, from: u64, to: u64) -> Fate {
        if from == self.0 || to == self.0 {
            Fate::Lose
        } else {
            Fate::Delay(Duration::from_millis(1))
        }
    }
}

/// Three nodes in one process over the in-process network: elect, write 10, cut the leader
/// off, elect another and write 10 more, heal, and wait until every node applied all 20 and
/// follows the new leader. Returns what happened when, in virtual time: the trace two runs of
/// one seed must share.
async fn in_process_scenario() -> Vec<String> {
    let started = tokio::time::Instant::now();
    let at = move || started.elapsed().as_nanos();
    let mut trace = Vec::new();
    let net = InProcessNet::new();
    let config = config(false);
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let network = NetworkFactory::<TestConfig>::new(CLUSTER, id).with_in_process(net.clone());
        let state_machine = MemStateMachine::default();
        let raft = Raft::new(
            id,
            config.clone(),
            network,
            MemLog::default(),
            state_machine.clone(),
        )
        .await
        .expect("raft starts");
        net.register(id, Arc::new(RaftService::new(raft.clone(), CLUSTER)));
        nodes.push((id, raft, state_machine));
    }
    let members: BTreeMap<u64, BasicNode> = (1..=3)
        .map(|id| (id, BasicNode::new(format!("in-process-{id}"))))
        .collect();
    nodes[0].1.initialize(members).await.expect("initializes");
    let wait_leader = |raft: Raft<TestConfig>, not: Option<u64>| async move {
        let m = raft
            .wait(Some(WAIT_TIMEOUT))
            .metrics(
                move |m| m.current_leader.is_some() && m.current_leader != not,
                "a leader",
            )
            .await
            .expect("a leader within the deadline");
        (m.current_leader.expect("leader"), m.current_term)
    };
    let (leader, term) = wait_leader(nodes[0].1.clone(), None).await;
    trace.push(format!("{} ns: node {leader} leads in term {term}", at()));
    let raft_of = |id: u64| nodes.iter().find(|n| n.0 == id).expect("node").1.clone();
    for i in 0..10 {
        let put = Put {
            key: format!("key-{i}"),
            value: i,
        };
        let written = raft_of(leader).client_write(put).await.expect("write");
        trace.push(format!("{} ns: key-{i} at {}", at(), written.log_id));
    }

    // Cut the leader off: the other two elect one of themselves and go on.
    net.set_faults(Some(Arc::new(CutOff(leader))));
    let other = nodes.iter().find(|n| n.0 != leader).expect("another").0;
    let (new_leader, term) = wait_leader(raft_of(other), Some(leader)).await;
    trace.push(format!(
        "{} ns: node {new_leader} leads in term {term}",
        at()
    ));
    assert_ne!(new_leader, leader);
    for i in 10..20 {
        let put = Put {
            key: format!("key-{i}"),
            value: i,
        };
        let written = raft_of(new_leader)
            .client_write(put)
            .await
            .expect("majority writes");
        trace.push(format!("{} ns: key-{i} at {}", at(), written.log_id));
    }

    // Heal: the old leader hears of the new term and catches up.
    net.set_faults(None);
    let last = raft_of(new_leader)
        .metrics()
        .borrow()
        .last_applied
        .expect("applied");
    for (id, raft, state_machine) in &nodes {
        raft.wait(Some(WAIT_TIMEOUT))
            .applied_index_at_least(Some(last.index), format!("node {id} catches up"))
            .await
            .expect("caught up");
        assert_eq!(state_machine.data(), expected(0..20), "node {id}");
        let metrics = raft.metrics().borrow().clone();
        assert_eq!(
            metrics.current_leader,
            Some(new_leader),
            "node {id} follows"
        );
        trace.push(format!("{} ns: node {id} applied {}", at(), last.index));
    }
    for (_, raft, _) in nodes {
        raft.shutdown().await.expect("shuts down");
    }
    trace
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn three_nodes_in_one_process_elect_replicate_and_heal_a_partition_on_virtual_time() {
    let wall = std::time::Instant::now();
    let started = tokio::time::Instant::now();
    let trace = in_process_scenario().await;
    assert_eq!(trace.len(), 2 + 20 + 3, "{trace:#?}");
    // Virtual time ran (elections, timeouts) while the machine's clock barely moved.
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert!(
        wall.elapsed() < started.elapsed(),
        "virtual {:?}, real {:?}",
        started.elapsed(),
        wall.elapsed()
    );
}

/// Replays a run: on one thread with paused time and openraft's generator seeded
/// (`raft/runtime.rs`), the same seed gives the same elections at the same virtual
/// nanoseconds, and another seed other ones.
#[test]
fn an_in_process_run_replays_exactly_from_its_seed() {
    let run = |seed: u64| {
        ledger_server::raft::runtime::seed_randomness(seed);
        let trace = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime")
            .block_on(in_process_scenario());
        ledger_server::raft::runtime::seed_randomness(0);
        trace
    };
    // Unseeded, two runs differ about half the time (each node draws its election timeout
    // once, and elections wait for ticks): five seeds make a replay by chance unlikely.
    let traces: Vec<Vec<String>> = [7, 8, 9, 10, 11].into_iter().map(run).collect();
    for (seed, trace) in [7, 8, 9, 10, 11].into_iter().zip(&traces) {
        assert_eq!(trace, &run(seed), "seed {seed} replays");
    }
    assert!(
        traces.iter().any(|t| t != &traces[0]),
        "other seeds, other timings: {traces:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The envelope's checks on the receiving side.

fn vote_envelope(cluster_name: &str) -> RaftRequest {
    let vote = VoteRequest::<u64>::new(Vote::new(1, 2), None);
    let (payload, crc32) = seal(&vote).expect("seal");
    RaftRequest {
        cluster_name: cluster_name.to_string(),
        from_node_id: 2,
        payload,
        crc32,
        ..Default::default()
    }
}

#[tokio::test]
async fn the_raft_service_refuses_other_clusters_and_damaged_or_undecodable_payloads() {
    let node = TestNode::start(1, config(false)).await;
    // The production service as `grpc::router` mounts it, on a port of its own.
    let (listener, addr) = TestServer::bind().await;
    let router = Server::builder().add_service(raft_server(node.raft.clone(), CLUSTER));
    let server = TestServer::serve(listener, addr.clone(), router);
    let mut client = RaftClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");

    // Control: a well-formed vote from this cluster is answered with the core's typed result.
    let reply = client
        .vote(vote_envelope(CLUSTER))
        .await
        .expect("vote answered")
        .into_inner();
    let result: Result<VoteResponse<u64>, RaftError<u64>> =
        unseal(&reply.payload, reply.crc32).expect("reply unseals");
    let response = result.expect("the core answers the vote");
    assert!(response.vote_granted, "{response:?}");

    let status = client
        .vote(vote_envelope("another-cluster"))
        .await
        .expect_err("another cluster is refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().starts_with("LEDGER_WRONG_CLUSTER"),
        "{status:?}"
    );
    assert!(status.message().contains("another-cluster"), "{status:?}");

    let mut damaged = vote_envelope(CLUSTER);
    damaged.crc32 ^= 1;
    let status = client
        .vote(damaged)
        .await
        .expect_err("a crc32 mismatch is refused");
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    assert!(status.message().contains("crc32"), "{status:?}");

    let mut flipped = vote_envelope(CLUSTER);
    flipped.payload[0] ^= 0x40;
    let status = client
        .vote(flipped)
        .await
        .expect_err("a flipped payload byte is refused");
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");

    // A vote is not an append: the checksum holds but the payload does not decode.
    let status = client
        .append_entries(vote_envelope(CLUSTER))
        .await
        .expect_err("an undecodable payload is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("AppendEntries"), "{status:?}");

    // Through the network: openraft is told that a peer refusing its cluster is unreachable,
    // so that it backs off instead of retrying at every heartbeat.
    let mut stranger = NetworkFactory::<TestConfig>::new("another-cluster", 9);
    let mut peer = stranger.new_client(1, &BasicNode::new(addr.clone())).await;
    let err = peer
        .vote(
            VoteRequest::new(Vote::new(1, 9), None),
            RPCOption::new(RPC_TTL),
        )
        .await
        .expect_err("another cluster is refused");
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");

    server.stop().await;
    node.stop().await;
}

// ---------------------------------------------------------------------------------------------
// How the sending side reports failures to openraft.

#[tokio::test]
async fn a_peer_nobody_listens_on_is_unreachable() {
    // Bind a port and release it, so that nothing listens there.
    let (listener, addr) = TestServer::bind().await;
    drop(listener);

    let mut factory = NetworkFactory::<TestConfig>::new(CLUSTER, 1);
    let mut peer = factory.new_client(2, &BasicNode::new(addr)).await;
    let err = peer
        .vote(
            VoteRequest::new(Vote::new(1, 1), None),
            RPCOption::new(RPC_TTL),
        )
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");

    let mut bad = factory
        .new_client(3, &BasicNode::new("not an address"))
        .await;
    let err = bad
        .vote(
            VoteRequest::new(Vote::new(1, 1), None),
            RPCOption::new(RPC_TTL),
        )
        .await
        .expect_err("bad address");
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
}

/// A Raft service that never answers.
struct Silent;

#[tonic::async_trait]
impl RaftRpc for Silent {
    async fn append_entries(
        &self,
        _request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        std::future::pending().await
    }

    async fn vote(&self, _request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        std::future::pending().await
    }

    async fn install_snapshot(
        &self,
        _request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        std::future::pending().await
    }

    async fn identify(
        &self,
        _request: Request<IdentifyRequest>,
    ) -> Result<Response<IdentifyReply>, Status> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn an_rpc_past_its_hard_ttl_is_a_timeout() {
    let (listener, addr) = TestServer::bind().await;
    let router = Server::builder().add_service(RaftServer::new(Silent));
    let server = TestServer::serve(listener, addr.clone(), router);

    let mut factory = NetworkFactory::<TestConfig>::new(CLUSTER, 1);
    let mut peer = factory.new_client(2, &BasicNode::new(addr)).await;
    let ttl = Duration::from_millis(200);
    let err = peer
        .vote(VoteRequest::new(Vote::new(1, 1), None), RPCOption::new(ttl))
        .await
        .expect_err("no answer");
    match err {
        RPCError::Timeout(timeout) => {
            assert_eq!(timeout.timeout, ttl);
            assert_eq!((timeout.id, timeout.target), (1, 2));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }

    server.stop().await;
}

#[tokio::test]
async fn an_error_of_the_remote_core_comes_back_typed() {
    let node = TestNode::start(1, config(false)).await;
    let addr = node.server.addr.clone();
    // The core stops; its gRPC server keeps answering, with the core's own error.
    node.raft.shutdown().await.expect("raft shuts down");

    let mut factory = NetworkFactory::<TestConfig>::new(CLUSTER, 2);
    let mut peer = factory.new_client(1, &BasicNode::new(addr)).await;
    let append = AppendEntriesRequest::<TestConfig> {
        vote: Vote::new_committed(1, 2),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    let err = peer
        .append_entries(append, RPCOption::new(RPC_TTL))
        .await
        .expect_err("the core is stopped");
    match err {
        RPCError::RemoteError(remote) => {
            assert_eq!(remote.target, 1);
            assert!(
                matches!(remote.source, RaftError::Fatal(Fatal::Stopped)),
                "{:?}",
                remote.source
            );
        }
        other => panic!("expected a remote error, got {other:?}"),
    }

    node.server.stop().await;
}
