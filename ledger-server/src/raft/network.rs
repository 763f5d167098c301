//! Raft's RPCs to other nodes over gRPC: where an entry leaves for the followers.
//!
//! [`NetworkFactory`] is openraft's `RaftNetworkFactory`; it hands out one [`PeerConnection`]
//! (openraft's `RaftNetwork`) per replication stream or election. The HTTP/2 channel to a peer
//! is created lazily, cached in the factory by node id and address, and shared by every
//! connection and RPC to that peer, so neither a new replication stream nor an election opens
//! a TCP connection of its own.
//!
//! Calls go to each peer's peer port (the `peer_addr` of its membership entry, or its
//! `--route`), never to its client port. With TLS the connection presents this node's
//! certificate; every call carries the cluster's peer secret when one is configured
//! (`security/peer.rs` checks both on the receiving side).
//!
//! Each request is an envelope (`ledger.raft.RaftRequest`): the cluster name (the receiver
//! refuses other clusters), the sender's id, and the openraft message encoded with postcard
//! plus its crc32 ([`seal`] / [`unseal`]). The reply carries the receiver's
//! `Result<Response, RaftError>`, sealed the same way, so openraft's errors come back typed.
//!
//! Failures map onto openraft's `RPCError` so that openraft reacts as it should: a peer that
//! cannot be connected to, or that refuses this node (another cluster), is `Unreachable`
//! (openraft backs off), an RPC that outlives `RPCOption::hard_ttl` is `Timeout`, an append
//! too large for one message is `PayloadTooLarge` (openraft sends fewer entries), anything
//! else on the wire is `Network`.
//! Snapshots travel as openraft 0.9's chunked `install_snapshot` requests; openraft cuts the
//! chunks (`Config::snapshot_max_chunk_size`), each one sealed like any request. While a chunk
//! is unanswered, the connection sends the follower its leader's heartbeats itself
//! ([`PeerConnection::heartbeats`]).
//!
//! In the simulator and in-process tests the same connections run over an
//! [`InProcessNet`](super::in_process::InProcessNet) instead of gRPC
//! ([`NetworkFactory::with_in_process`]): the envelopes, checks and error mapping are these.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledger_wire::proto::raft::raft_client::RaftClient;
use ledger_wire::proto::raft::{IdentifyReply, IdentifyRequest, RaftReply, RaftRequest};
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftTypeConfig};
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::in_process::InProcessNet;
use crate::clock::Clock;
use crate::config::HEARTBEAT_INTERVAL_MS;

/// The node id type every configuration served by this network uses.
type NodeId = u64;

/// Where a member's peer port is, as its membership entry records it.
pub trait PeerAddress {
    /// `host:port` of the member's Raft service.
    fn peer_addr(&self) -> &str;
    /// The member's incarnation as the membership records it (`raft/identity.rs`); 0 where
    /// none is recorded, which disables the checks.
    fn incarnation(&self) -> u64;
}

impl PeerAddress for crate::raft::types::LedgerNode {
    fn peer_addr(&self) -> &str {
        &self.peer_addr
    }

    fn incarnation(&self) -> u64 {
        self.incarnation
    }
}

/// Test configurations of the network layer record one address per node, and no incarnation.
impl PeerAddress for BasicNode {
    fn peer_addr(&self) -> &str {
        &self.addr
    }

    fn incarnation(&self) -> u64 {
        0
    }
}

/// Largest Raft message on the wire, either way: an append of many entries, or a snapshot
/// chunk. Applied to the client here and to the server in `grpc::raft_server`.
pub const RAFT_MESSAGE_BYTES_MAX: usize = 64 << 20;
/// openraft's default snapshot chunk (3 MiB) must fit in one message with room to spare.
const SNAPSHOT_CHUNK_DEFAULT_BYTES: usize = 3 << 20;
const _: () = assert!(SNAPSHOT_CHUNK_DEFAULT_BYTES * 2 <= RAFT_MESSAGE_BYTES_MAX);

/// How long to wait for a TCP connection to a peer before reporting it unreachable.
pub const RAFT_CONNECT_TIMEOUT_MS: u64 = 500;
/// How often an idle peer connection is pinged, to notice a dead peer without an RPC.
pub const RAFT_KEEPALIVE_INTERVAL_MS: u64 = 10_000;
/// How long a keepalive ping may go unanswered before the connection is dropped.
pub const RAFT_KEEPALIVE_TIMEOUT_MS: u64 = 5_000;

/// Why a sealed payload was refused.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The bytes are not the ones the sender checksummed: damaged on the way or by a bug.
    #[error("payload crc32 mismatch: header says {expected:#010x}, payload hashes to {actual:#010x} ({len} bytes)")]
    Crc32Mismatch {
        expected: u32,
        actual: u32,
        len: usize,
    },
    /// The checksum matched but the bytes are not the expected message (version skew, bug).
    #[error("payload does not decode as {what}: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: postcard::Error,
    },
}

/// Encodes a message with postcard and returns it with its crc32.
pub fn seal<T: Serialize>(value: &T) -> Result<(Vec<u8>, u32), postcard::Error> {
    let payload = postcard::to_stdvec(value)?;
    let crc32 = crc32fast::hash(&payload);
    Ok((payload, crc32))
}

/// Verifies a payload's crc32, then decodes it; a payload whose checksum does not match is
/// never decoded.
pub fn unseal<T: DeserializeOwned>(payload: &[u8], crc32: u32) -> Result<T, PayloadError> {
    let actual = crc32fast::hash(payload);
    if actual != crc32 {
        return Err(PayloadError::Crc32Mismatch {
            expected: crc32,
            actual,
            len: payload.len(),
        });
    }
    postcard::from_bytes(payload).map_err(|source| PayloadError::Decode {
        what: std::any::type_name::<T>(),
        source,
    })
}

/// Builds the endpoint of a peer from its `host:port` address: the one place where peer
/// traffic is configured. With `tls`, the connection is TLS (`https://`): the peer must show a
/// certificate from the cluster CA for that address, and this node shows its own.
pub fn peer_endpoint(
    addr: &str,
    tls: Option<&ClientTlsConfig>,
) -> Result<Endpoint, tonic::transport::Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?
        .connect_timeout(Duration::from_millis(RAFT_CONNECT_TIMEOUT_MS))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_millis(RAFT_KEEPALIVE_INTERVAL_MS))
        .keep_alive_timeout(Duration::from_millis(RAFT_KEEPALIVE_TIMEOUT_MS))
        .keep_alive_while_idle(true);
    match tls {
        Some(tls) => endpoint.tls_config(tls.clone()),
        None => Ok(endpoint),
    }
}

type ChannelCache = HashMap<NodeId, (String, Channel)>;

/// Creates the connections of one node to its peers, sharing one channel per peer.
///
/// Clones share the channel cache.
pub struct NetworkFactory<C> {
    cluster_name: String,
    node_id: NodeId,
    /// This node's incarnation, sent with every call (`raft/identity.rs`).
    incarnation: u64,
    /// This node's clock, told each peer's clock reading (`clock.rs`).
    clock: Arc<Clock>,
    /// The heartbeat interval (`config::Timings`).
    heartbeat_ms: u64,
    channels: Arc<Mutex<ChannelCache>>,
    /// Peers reached at another address than their membership's (`--route`).
    routes: Arc<HashMap<NodeId, String>>,
    /// TLS towards peers (`None`: plaintext).
    tls: Option<Arc<ClientTlsConfig>>,
    /// The cluster's peer secret, sent with every call (`security/peer.rs`).
    secret: Option<MetadataValue<Ascii>>,
    /// Peers reached in this process instead of over gRPC (simulator, tests).
    in_process: Option<Arc<InProcessNet>>,
    _config: PhantomData<fn() -> C>,
}

impl<C> Clone for NetworkFactory<C> {
    fn clone(&self) -> Self {
        Self {
            cluster_name: self.cluster_name.clone(),
            node_id: self.node_id,
            incarnation: self.incarnation,
            clock: self.clock.clone(),
            heartbeat_ms: self.heartbeat_ms,
            channels: self.channels.clone(),
            routes: self.routes.clone(),
            tls: self.tls.clone(),
            secret: self.secret.clone(),
            in_process: self.in_process.clone(),
            _config: PhantomData,
        }
    }
}

impl<C> fmt::Debug for NetworkFactory<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkFactory")
            .field("cluster_name", &self.cluster_name)
            .field("node_id", &self.node_id)
            .field("channels", &self.channel_count())
            .finish()
    }
}

impl<C> NetworkFactory<C> {
    /// Returns the factory of node `node_id` in cluster `cluster_name`.
    pub fn new(cluster_name: impl Into<String>, node_id: NodeId) -> Self {
        Self {
            cluster_name: cluster_name.into(),
            node_id,
            incarnation: 0,
            clock: Arc::default(),
            heartbeat_ms: HEARTBEAT_INTERVAL_MS,
            channels: Arc::new(Mutex::new(HashMap::new())),
            routes: Arc::new(HashMap::new()),
            tls: None,
            secret: None,
            in_process: None,
            _config: PhantomData,
        }
    }

    /// Reaches every peer through `net`, in this process, instead of over gRPC.
    pub fn with_in_process(mut self, net: Arc<InProcessNet>) -> Self {
        self.in_process = Some(net);
        self
    }

    /// Learns the peers' clocks into `clock` from every reply.
    pub fn with_clock(mut self, clock: Arc<Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sends a follower its leader's heartbeats this often while a snapshot chunk is in flight.
    pub fn with_heartbeat_ms(mut self, heartbeat_ms: u64) -> Self {
        self.heartbeat_ms = heartbeat_ms;
        self
    }

    /// Sends this incarnation as this node's with every call.
    pub fn with_incarnation(mut self, incarnation: u64) -> Self {
        self.incarnation = incarnation;
        self
    }

    /// Asks the node at `addr` (its peer port) who it is; `target` is the id the caller
    /// expects there (the channel cache is keyed by it).
    pub async fn identify(
        &self,
        target: NodeId,
        addr: &str,
        timeout: Duration,
    ) -> Result<IdentifyReply, String> {
        let addr = self
            .routes
            .get(&target)
            .map(String::as_str)
            .unwrap_or(addr)
            .to_string();
        let mut request = call_with(
            IdentifyRequest {
                cluster_name: self.cluster_name.clone(),
                from_node_id: self.node_id,
            },
            self.secret.as_ref(),
        );
        request.set_timeout(timeout);
        let mut client = self
            .peer_client(target, &addr)
            .map_err(|e| format!("bad peer address '{addr}' of node {target}: {e}"))?;
        let reply = tokio::time::timeout(timeout, client.identify(request, timeout))
            .await
            .map_err(|_| format!("node {target} at {addr} did not answer within {timeout:?}"))?
            .map_err(|status| format!("node {target} at {addr}: {}", status.message()))?
            .into_inner();
        if reply.cluster_name != self.cluster_name || reply.node_id != target {
            return Err(format!(
                "the node at {addr} is node {} of cluster '{}', not node {target} of cluster '{}'",
                reply.node_id, reply.cluster_name, self.cluster_name
            ));
        }
        if reply.incarnation == 0 {
            return Err(format!(
                "node {target} at {addr} reports no incarnation (an older build?)"
            ));
        }
        Ok(reply)
    }

    /// Reaches the given peers at these addresses instead of their membership addresses.
    pub fn with_routes(mut self, routes: impl IntoIterator<Item = (NodeId, String)>) -> Self {
        self.routes = Arc::new(routes.into_iter().collect());
        self
    }

    /// Connects to peers over TLS with this configuration.
    pub fn with_tls(mut self, tls: Option<ClientTlsConfig>) -> Self {
        self.tls = tls.map(Arc::new);
        self
    }

    /// Sends this peer secret with every call.
    pub fn with_peer_secret(mut self, secret: Option<MetadataValue<Ascii>>) -> Self {
        self.secret = secret;
        self
    }

    /// Returns how many peer channels are cached (one per peer that was ever contacted).
    pub fn channel_count(&self) -> usize {
        self.lock_channels().len()
    }

    /// Returns the cached channel to `target` at `addr`, creating it (unconnected) if there is
    /// none. A peer that moved to another address gets a new channel; the old one is dropped.
    fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut channels = self.lock_channels();
        if let Some((cached_addr, channel)) = channels.get(&target) {
            if cached_addr == addr {
                return Ok(channel.clone());
            }
        }
        let channel = peer_endpoint(addr, self.tls.as_deref())?.connect_lazy();
        channels.insert(target, (addr.to_string(), channel.clone()));
        Ok(channel)
    }

    /// The client of `target`: in this process, or on the cached channel to `addr`.
    fn peer_client(
        &self,
        target: NodeId,
        addr: &str,
    ) -> Result<PeerClient, tonic::transport::Error> {
        if let Some(net) = &self.in_process {
            return Ok(PeerClient::InProcess {
                net: net.clone(),
                from: self.node_id,
                to: target,
            });
        }
        let channel = self.channel(target, addr)?;
        Ok(PeerClient::Grpc(
            RaftClient::new(channel)
                .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX),
        ))
    }

    fn lock_channels(&self) -> std::sync::MutexGuard<'_, ChannelCache> {
        // The cache is only read and inserted into under the lock, never left half-updated, so
        // a panic elsewhere while it was held does not make it unusable.
        self.channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<C> RaftNetworkFactory<C> for NetworkFactory<C>
where
    C: RaftTypeConfig<NodeId = NodeId>,
    C::Node: PeerAddress,
{
    type Network = PeerConnection<C>;

    async fn new_client(&mut self, target: NodeId, node: &C::Node) -> PeerConnection<C> {
        let addr = self
            .routes
            .get(&target)
            .map(String::as_str)
            .unwrap_or(node.peer_addr())
            .to_string();
        let client = self
            .peer_client(target, &addr)
            .map_err(|e| format!("bad address '{addr}' of node {target}: {e}"));
        PeerConnection {
            cluster_name: self.cluster_name.clone(),
            from: self.node_id,
            from_incarnation: self.incarnation,
            clock: self.clock.clone(),
            heartbeat_ms: self.heartbeat_ms,
            target,
            target_node: node.clone(),
            client,
            secret: self.secret.clone(),
            _config: PhantomData,
        }
    }
}

/// The connection of one node to one peer (openraft's `RaftNetwork`).
pub struct PeerConnection<C: RaftTypeConfig> {
    cluster_name: String,
    from: NodeId,
    from_incarnation: u64,
    clock: Arc<Clock>,
    heartbeat_ms: u64,
    target: NodeId,
    target_node: C::Node,
    /// The client on the shared channel, or why the peer's address is unusable.
    client: Result<PeerClient, String>,
    secret: Option<MetadataValue<Ascii>>,
    _config: PhantomData<fn() -> C>,
}

/// How a connection reaches its peer: gRPC on the peer's channel, or the peer's service in
/// this process.
#[derive(Clone)]
enum PeerClient {
    Grpc(RaftClient<Channel>),
    InProcess {
        net: Arc<InProcessNet>,
        from: NodeId,
        to: NodeId,
    },
}

impl PeerClient {
    /// Sends `request` as `action`; the deadline is `timeout` (over gRPC it also travels in
    /// the request's `grpc-timeout` header).
    async fn call(
        &mut self,
        action: RPCTypes,
        request: tonic::Request<RaftRequest>,
        timeout: Duration,
    ) -> Result<tonic::Response<RaftReply>, tonic::Status> {
        match self {
            PeerClient::Grpc(client) => match action {
                RPCTypes::AppendEntries => client.append_entries(request).await,
                RPCTypes::Vote => client.vote(request).await,
                RPCTypes::InstallSnapshot => client.install_snapshot(request).await,
            },
            PeerClient::InProcess { net, from, to } => {
                net.call(*from, *to, action, request, timeout).await
            }
        }
    }
    /// Asks the peer who it is.
    async fn identify(
        &mut self,
        request: tonic::Request<IdentifyRequest>,
        timeout: Duration,
    ) -> Result<tonic::Response<IdentifyReply>, tonic::Status> {
        match self {
            PeerClient::Grpc(client) => client.identify(request).await,
            PeerClient::InProcess { net, from, to } => {
                net.identify(*from, *to, request, timeout).await
            }
        }
    }
}

type RpcResult<C, Resp, E> =
    Result<Resp, RPCError<NodeId, <C as RaftTypeConfig>::Node, RaftError<NodeId, E>>>;

/// Wraps an envelope into a call that carries the peer secret, if there is one.
fn call(
    envelope: RaftRequest,
    secret: Option<&MetadataValue<Ascii>>,
) -> tonic::Request<RaftRequest> {
    call_with(envelope, secret)
}

/// Wraps a message into a call that carries the peer secret, if there is one.
fn call_with<T>(message: T, secret: Option<&MetadataValue<Ascii>>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(secret) = secret {
        request
            .metadata_mut()
            .insert(crate::security::peer::PEER_SECRET_HEADER, secret.clone());
    }
    request
}

impl<C> PeerConnection<C>
where
    C: RaftTypeConfig<NodeId = NodeId>,
    C::Node: PeerAddress,
{
    /// Builds the envelope of a sealed payload.
    fn envelope(&self, payload: Vec<u8>, crc32: u32) -> RaftRequest {
        RaftRequest {
            cluster_name: self.cluster_name.clone(),
            from_node_id: self.from,
            payload,
            crc32,
            from_incarnation: self.from_incarnation,
            to_incarnation: self.target_node.incarnation(),
        }
    }

    /// Sends one envelope and returns the peer's own `Result`, decoded.
    async fn send<Resp, E>(
        &mut self,
        action: RPCTypes,
        envelope: RaftRequest,
        option: &RPCOption,
    ) -> RpcResult<C, Resp, E>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(client) => client,
            Err(reason) => {
                let e = std::io::Error::other(reason.clone());
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
        };
        let mut request = call(envelope, self.secret.as_ref());
        // The deadline travels in the grpc-timeout header: tonic enforces it on this side and
        // the receiver drops the work when it expires.
        request.set_timeout(option.hard_ttl());
        let started = tokio::time::Instant::now();
        let reply = client.call(action, request, option.hard_ttl()).await;
        let reply: RaftReply = match reply {
            Ok(reply) => reply.into_inner(),
            Err(status) => return Err(self.status_to_rpc_error(action, status, option)),
        };
        self.clock
            .learn(self.target, started, started.elapsed(), reply.wall_clock_ns);
        let result: Result<Resp, RaftError<NodeId, E>> = unseal(&reply.payload, reply.crc32)
            .map_err(|e| {
                let e =
                    std::io::Error::other(format!("{action} reply from node {}: {e}", self.target));
                RPCError::Network(NetworkError::new(&e))
            })?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.target_node.clone(),
                e,
            ))
        })
    }

    /// Classifies a failed call for openraft.
    fn status_to_rpc_error<E: std::error::Error>(
        &self,
        action: RPCTypes,
        status: tonic::Status,
        option: &RPCOption,
    ) -> RPCError<NodeId, C::Node, RaftError<NodeId, E>> {
        match classify(&status) {
            Failure::Unreachable => RPCError::Unreachable(Unreachable::new(&status)),
            Failure::Timeout => RPCError::Timeout(Timeout {
                action,
                id: self.from,
                target: self.target,
                timeout: option.hard_ttl(),
            }),
            Failure::Other => RPCError::Network(NetworkError::new(&status)),
        }
    }

    /// Seals a request; an unencodable request is a network error of this RPC.
    /// Sends `heartbeat` (an empty AppendEntries of the leader's vote) every heartbeat interval,
    /// answered or not, until dropped.
    ///
    /// openraft 0.9 sends a follower nothing else while one of its snapshot chunks is in
    /// flight, and the last chunk is answered only once the follower has installed the whole
    /// snapshot: 62 s at 10 million accounts, during which the follower heard nothing from
    /// its leader and stood for election 93 times; when the install ended, the leader saw the
    /// higher term and stood down (docs/benchmarks.md). The receiver counts each chunk as a
    /// heartbeat too (`grpc/raft_service.rs`); this covers the wait for an answer. An empty
    /// AppendEntries with no previous log id and no commit index only checks and refreshes
    /// the vote, and a follower that saw a newer leader refuses it.
    fn heartbeats(&self, heartbeat: RaftRequest) -> impl std::future::Future<Output = Infallible> {
        let client = self.client.clone().ok();
        let secret = self.secret.clone();
        let heartbeat_ms = self.heartbeat_ms;
        async move {
            let period = Duration::from_millis(heartbeat_ms);
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Some(mut client) = client.clone() {
                    let mut request = call(heartbeat.clone(), secret.as_ref());
                    request.set_timeout(period);
                    if let Err(status) = client.call(RPCTypes::AppendEntries, request, period).await
                    {
                        tracing::debug!(%status, "heartbeat beside a snapshot chunk failed");
                    }
                }
            }
        }
    }

    fn seal_request<T: Serialize>(
        &self,
        action: RPCTypes,
        request: &T,
    ) -> Result<RaftRequest, NetworkError> {
        let (payload, crc32) = seal(request).map_err(|e| {
            let e = std::io::Error::other(format!("{action} request does not encode: {e}"));
            NetworkError::new(&e)
        })?;
        Ok(self.envelope(payload, crc32))
    }
}

/// What a failed call means for openraft.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// No connection to the peer, or a peer that refuses this node: back off before retrying.
    Unreachable,
    /// The deadline passed before the answer came.
    Timeout,
    /// Anything else: a refused or damaged RPC, a broken stream.
    Other,
}

/// Classifies a status by the local error that caused it, if any, then by its code.
fn classify(status: &tonic::Status) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return Failure::Unreachable;
        }
        if e.is::<tonic::TimeoutExpired>() {
            return Failure::Timeout;
        }
        source = e.source();
    }
    match status.code() {
        // Raised by the transport: a connection that broke or was refused (the Raft service
        // itself never answers UNAVAILABLE), or an unanswered keepalive ping.
        tonic::Code::Unavailable => Failure::Unreachable,
        // The peer refuses this node (another cluster) or serves no Raft at that address: it
        // will not change its mind by the next heartbeat, so openraft should back off rather
        // than log a refusal on every one.
        tonic::Code::PermissionDenied | tonic::Code::Unimplemented => Failure::Unreachable,
        tonic::Code::DeadlineExceeded => Failure::Timeout,
        _ => Failure::Other,
    }
}

impl<C> RaftNetwork<C> for PeerConnection<C>
where
    C: RaftTypeConfig<NodeId = NodeId>,
    C::Node: PeerAddress,
{
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, C::Node, RaftError<NodeId>>> {
        let entries = rpc.entries.len() as u64;
        let envelope = self.seal_request(RPCTypes::AppendEntries, &rpc)?;
        if envelope.encoded_len() > RAFT_MESSAGE_BYTES_MAX {
            // openraft retries with at most this many entries; a single entry that does not
            // fit can never be sent, which the hint of 1 makes openraft report.
            let hint = (entries / 2).max(1);
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(hint),
            ));
        }
        self.send(RPCTypes::AppendEntries, envelope, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, C::Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let envelope = self.seal_request(RPCTypes::InstallSnapshot, &rpc)?;
        if envelope.encoded_len() > RAFT_MESSAGE_BYTES_MAX {
            // A chunk's size is openraft's `snapshot_max_chunk_size`: this is a configuration
            // error, which openraft reports without retrying.
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(1),
            ));
        }
        let heartbeat = AppendEntriesRequest::<C> {
            vote: rpc.vote,
            prev_log_id: None,
            entries: Vec::new(),
            leader_commit: None,
        };
        let heartbeats = self.heartbeats(self.seal_request(RPCTypes::AppendEntries, &heartbeat)?);
        tokio::select! {
            biased;
            reply = self.send(RPCTypes::InstallSnapshot, envelope, &option) => reply,
            never = heartbeats => match never {},
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, C::Node, RaftError<NodeId>>> {
        let envelope = self.seal_request(RPCTypes::Vote, &rpc)?;
        self.send(RPCTypes::Vote, envelope, &option).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_payload_unseals_to_the_same_value() {
        let value = (7u64, String::from("entry"), vec![1u8, 2, 3]);
        let (payload, crc32) = seal(&value).expect("seal");
        let back: (u64, String, Vec<u8>) = unseal(&payload, crc32).expect("unseal");
        assert_eq!(back, value);
    }

    #[test]
    fn a_flipped_byte_fails_the_crc32_before_decoding() {
        let (mut payload, crc32) = seal(&(1u64, 2u64)).expect("seal");
        payload[0] ^= 0x01;
        let err = unseal::<(u64, u64)>(&payload, crc32).expect_err("damaged payload");
        assert!(matches!(err, PayloadError::Crc32Mismatch { .. }), "{err}");
    }

    #[test]
    fn a_payload_of_the_wrong_type_is_a_decode_error() {
        let garbage = vec![0xffu8; 3];
        let crc32 = crc32fast::hash(&garbage);
        let err = unseal::<(u64, String)>(&garbage, crc32).expect_err("garbage");
        assert!(matches!(err, PayloadError::Decode { .. }), "{err}");
    }

    #[test]
    fn statuses_are_classified_for_openraft() {
        assert_eq!(
            classify(&tonic::Status::unavailable("connection refused")),
            Failure::Unreachable
        );
        assert_eq!(
            classify(&tonic::Status::deadline_exceeded("late")),
            Failure::Timeout
        );
        assert_eq!(
            classify(&tonic::Status::permission_denied("other cluster")),
            Failure::Unreachable
        );
        assert_eq!(
            classify(&tonic::Status::invalid_argument("undecodable")),
            Failure::Other
        );
        assert_eq!(classify(&tonic::Status::data_loss("crc")), Failure::Other);
    }

    #[tokio::test]
    async fn one_channel_per_peer_is_cached_and_replaced_when_the_address_changes() {
        let factory = NetworkFactory::<crate::raft::types::TypeConfig>::new("c", 1);
        factory.channel(2, "127.0.0.1:1").expect("channel");
        factory.channel(2, "127.0.0.1:1").expect("channel");
        factory.channel(3, "127.0.0.1:2").expect("channel");
        assert_eq!(factory.channel_count(), 2);
        factory.channel(2, "127.0.0.1:3").expect("channel");
        assert_eq!(factory.channel_count(), 2);
        let cached = factory
            .lock_channels()
            .get(&2)
            .map(|(addr, _)| addr.clone());
        assert_eq!(cached.as_deref(), Some("127.0.0.1:3"));
    }
}
