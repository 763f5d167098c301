//! Raft's RPCs between nodes of one process: the transport the simulator and in-process tests
//! give [`NetworkFactory`](super::network::NetworkFactory) instead of gRPC.
//!
//! Everything above and below the wire is the production code: the sending side seals the
//! same envelopes (`raft/network.rs`), and each request is handed to the receiving node's
//! [`RaftService`](crate::grpc::raft_service::RaftService) (the same checks of cluster,
//! incarnation, crc32 and payload) as a `tonic::Request`, only without HTTP/2 and TCP. What
//! the network does to a message is asked of a [`LinkFaults`] at each call: deliver it,
//! deliver it late, or lose it (the caller then sees its deadline pass, as over a real
//! network). Time is tokio's, so on a paused runtime a run is driven by virtual time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ledger_wire::proto::raft::raft_server::Raft as RaftRpc;
use ledger_wire::proto::raft::{IdentifyReply, IdentifyRequest, RaftReply, RaftRequest};
use openraft::network::RPCTypes;
use tonic::{Request, Response, Status};

/// What the network does to one message from `from` to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    /// Delivered after this long (the answer comes back as late again).
    Delay(Duration),
    /// Lost: the caller hears nothing until its deadline.
    Lose,
    /// The request arrives after this long and is handled, but its answer is lost (a link cut
    /// in one direction): the caller hears nothing until its deadline.
    LoseReply(Duration),
    /// Delivered after the first delay, and once more after the second (a duplicate the
    /// network made); the caller hears the first answer, the second is dropped.
    Duplicate(Duration, Duration),
}

/// Decides each message's [`Fate`]: the simulator's partitions, delays and losses.
pub trait LinkFaults: Send + Sync {
    fn fate(&self, from: u64, to: u64) -> Fate;
}

/// Every node's Raft service in this process, by id, and the faults between them.
#[derive(Default)]
pub struct InProcessNet {
    services: RwLock<HashMap<u64, Arc<dyn RaftRpc>>>,
    faults: RwLock<Option<Arc<dyn LinkFaults>>>,
}

impl std::fmt::Debug for InProcessNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut nodes: Vec<u64> = self.read_services().keys().copied().collect();
        nodes.sort_unstable();
        f.debug_struct("InProcessNet")
            .field("nodes", &nodes)
            .finish()
    }
}

impl InProcessNet {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Makes node `id` reachable through `service` (again: a restarted node replaces itself).
    pub fn register(&self, id: u64, service: Arc<dyn RaftRpc>) {
        self.services
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, service);
    }

    /// Makes node `id` unreachable, as a stopped process is.
    pub fn unregister(&self, id: u64) {
        self.services
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Decides every message's fate from now on (`None`: every message is delivered).
    pub fn set_faults(&self, faults: Option<Arc<dyn LinkFaults>>) {
        *self.faults.write().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    fn read_services(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u64, Arc<dyn RaftRpc>>> {
        self.services.read().unwrap_or_else(|p| p.into_inner())
    }

    fn fate(&self, from: u64, to: u64) -> Fate {
        match &*self.faults.read().unwrap_or_else(|p| p.into_inner()) {
            Some(faults) => faults.fate(from, to),
            None => Fate::Deliver,
        }
    }

    /// Calls `rpc` of node `to` from node `from`, within `timeout`.
    pub async fn call(
        &self,
        from: u64,
        to: u64,
        rpc: RPCTypes,
        request: Request<RaftRequest>,
        timeout: Duration,
    ) -> Result<Response<RaftReply>, Status> {
        let (metadata, _, message) = request.into_parts();
        self.deliver(from, to, timeout, move |service| {
            let request =
                Request::from_parts(metadata.clone(), Default::default(), message.clone());
            async move {
                match rpc {
                    RPCTypes::AppendEntries => service.append_entries(request).await,
                    RPCTypes::Vote => service.vote(request).await,
                    RPCTypes::InstallSnapshot => service.install_snapshot(request).await,
                }
            }
        })
        .await
    }

    /// Asks node `to` who it is, from node `from`, within `timeout`.
    pub async fn identify(
        &self,
        from: u64,
        to: u64,
        request: Request<IdentifyRequest>,
        timeout: Duration,
    ) -> Result<Response<IdentifyReply>, Status> {
        let (metadata, _, message) = request.into_parts();
        self.deliver(from, to, timeout, move |service| {
            let request =
                Request::from_parts(metadata.clone(), Default::default(), message.clone());
            async move { service.identify(request).await }
        })
        .await
    }

    async fn deliver<T, F, Fut>(
        &self,
        from: u64,
        to: u64,
        timeout: Duration,
        handle: F,
    ) -> Result<T, Status>
    where
        F: Fn(Arc<dyn RaftRpc>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>> + Send + 'static,
        T: Send + 'static,
    {
        let service = self.read_services().get(&to).cloned();
        let Some(service) = service else {
            return Err(Status::unavailable(format!(
                "node {to} is not running (in-process network)"
            )));
        };
        let lost = || {
            Status::deadline_exceeded(format!(
                "no answer from node {to} within {timeout:?} (lost)"
            ))
        };
        let delay = match self.fate(from, to) {
            Fate::Deliver => Duration::ZERO,
            Fate::Delay(delay) => delay,
            Fate::Lose => {
                tokio::time::sleep(timeout).await;
                return Err(lost());
            }
            Fate::Duplicate(delay, again) => {
                let copy = handle(service.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(again).await;
                    let _ = copy.await;
                });
                delay
            }
            Fate::LoseReply(delay) => {
                let started = tokio::time::Instant::now();
                tokio::time::sleep(delay).await;
                let _ = tokio::time::timeout(timeout.saturating_sub(delay), handle(service)).await;
                tokio::time::sleep_until(started + timeout).await;
                return Err(lost());
            }
        };
        let exchange = async {
            tokio::time::sleep(delay).await;
            let reply = handle(service).await;
            tokio::time::sleep(delay).await;
            reply
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(reply) => reply,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer from node {to} within {timeout:?}"
            ))),
        }
    }
}
