//! Raft's RPCs to other nodes over gRPC: where an entry leaves for the followers.
//!
//! One HTTP/2 channel per target node is created lazily and reused by every RPC to it. Each
//! request carries the cluster name (the receiver refuses other clusters) and the openraft
//! message encoded with postcard plus its crc32. A target that cannot be reached is reported
//! as `Unreachable`, so openraft backs off instead of hammering it. Snapshots travel as
//! openraft's chunked `install_snapshot` requests, each chunk checksummed like any request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledger_client::proto::raft::raft_client::RaftClient;
use ledger_client::proto::raft::{RaftReply, RaftRequest};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::raft::types::{NodeId, TypeConfig};

/// Largest Raft message (an append of many entries, or a snapshot chunk).
pub const RAFT_MESSAGE_BYTES_MAX: usize = 64 << 20;
/// How long to wait for a TCP connection to a peer.
pub const RAFT_CONNECT_TIMEOUT_MS: u64 = 500;

/// Builds the endpoint of a peer; the one place to add TLS to peer traffic.
pub fn peer_endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_millis(RAFT_CONNECT_TIMEOUT_MS))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10)))
}

/// Encodes a message with its crc32.
pub fn seal<T: Serialize>(value: &T) -> Result<(Vec<u8>, u32), postcard::Error> {
    let payload = postcard::to_stdvec(value)?;
    let crc = crc32fast::hash(&payload);
    Ok((payload, crc))
}

/// Verifies and decodes a message.
pub fn unseal<T: DeserializeOwned>(payload: &[u8], crc: u32) -> Result<T, String> {
    if crc32fast::hash(payload) != crc {
        return Err("payload crc32 mismatch".into());
    }
    postcard::from_bytes(payload).map_err(|e| format!("payload does not decode: {e}"))
}

/// Creates connections to peers, sharing one channel per peer.
#[derive(Clone)]
pub struct NetworkFactory {
    cluster: String,
    node_id: NodeId,
    channels: Arc<Mutex<HashMap<(NodeId, String), Channel>>>,
}

impl NetworkFactory {
    pub fn new(cluster: String, node_id: NodeId) -> Self {
        Self {
            cluster,
            node_id,
            channels: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerConnection {
        let key = (target, node.addr.clone());
        let channel = {
            let mut channels = self.channels.lock().expect("channel cache lock");
            match channels.get(&key) {
                Some(channel) => Ok(channel.clone()),
                None => match peer_endpoint(&node.addr) {
                    Ok(endpoint) => {
                        let channel = endpoint.connect_lazy();
                        channels.insert(key, channel.clone());
                        Ok(channel)
                    }
                    Err(e) => Err(e.to_string()),
                },
            }
        };
        PeerConnection {
            target,
            cluster: self.cluster.clone(),
            from: self.node_id,
            client: channel.map(|c| {
                RaftClient::new(c)
                    .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
                    .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX)
            }),
        }
    }
}

/// The connection to one peer.
pub struct PeerConnection {
    target: NodeId,
    cluster: String,
    from: NodeId,
    client: Result<RaftClient<Channel>, String>,
}

#[derive(Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl PeerConnection {
    /// Sends one request; `Ok` holds the peer's own `Result`.
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
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
        let (payload, crc32) =
            seal(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut message = tonic::Request::new(RaftRequest {
            cluster: self.cluster.clone(),
            from_node_id: self.from,
            payload,
            crc32,
        });
        message.set_timeout(option.hard_ttl());
        let reply: Result<tonic::Response<RaftReply>, tonic::Status> = match rpc {
            Rpc::AppendEntries => client.append_entries(message).await,
            Rpc::Vote => client.vote(message).await,
            Rpc::InstallSnapshot => client.install_snapshot(message).await,
        };
        let reply = match reply {
            Ok(reply) => reply.into_inner(),
            Err(status) if status.code() == tonic::Code::Unavailable => {
                return Err(RPCError::Unreachable(Unreachable::new(&status)));
            }
            Err(status) => return Err(RPCError::Network(NetworkError::new(&status))),
        };
        let result: Result<Resp, RaftError<NodeId, E>> = unseal(&reply.payload, reply.crc32)
            .map_err(|e| RPCError::Network(NetworkError::new(&std::io::Error::other(e))))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Rpc::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Rpc::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}
