//! The receiving side of Raft's RPCs: checks the sender's cluster and the payload's crc32,
//! decodes the openraft message and hands it to the local Raft core.

use ledger_client::proto::raft::raft_server::Raft as RaftRpc;
use ledger_client::proto::raft::{RaftReply, RaftRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::raft::network::{seal, unseal};
use crate::raft::types::Raft;

pub struct RaftService {
    raft: Raft,
    cluster: String,
}

impl RaftService {
    pub fn new(raft: Raft, cluster: String) -> Self {
        Self { raft, cluster }
    }

    fn open<T: DeserializeOwned>(&self, request: Request<RaftRequest>) -> Result<T, Status> {
        let r = request.into_inner();
        if r.cluster != self.cluster {
            return Err(Status::permission_denied(format!(
                "LEDGER_WRONG_CLUSTER: node {} belongs to cluster '{}', this node to '{}'",
                r.from_node_id, r.cluster, self.cluster
            )));
        }
        unseal(&r.payload, r.crc32).map_err(|reason| {
            if reason.contains("crc32") {
                Status::data_loss(format!("LEDGER_CORRUPT_MESSAGE: {reason}"))
            } else {
                Status::invalid_argument(format!("LEDGER_INVALID_ARGUMENT: payload: {reason}"))
            }
        })
    }
}

fn reply<T: Serialize>(result: &T) -> Result<Response<RaftReply>, Status> {
    let (payload, crc32) = seal(result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftReply { payload, crc32 }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = self.open(request)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc = self.open(request)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = self.open(request)?;
        reply(&self.raft.install_snapshot(rpc).await)
    }
}
