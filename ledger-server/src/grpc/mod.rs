//! The gRPC services of a node, all on one port: the client API (`ledger_service.rs`), the
//! admin API (`admin_service.rs`) and Raft's own RPCs (`raft_service.rs`).

pub mod admin_service;
pub mod ledger_service;
pub mod raft_service;
pub mod status;

use std::sync::Arc;

use ledger_client::proto::admin::admin_server::AdminServer;
use ledger_client::proto::ledger::ledger_server::LedgerServer;
use ledger_client::proto::raft::raft_server::RaftServer;
use openraft::{BasicNode, Raft, RaftTypeConfig};
use tonic::transport::server::Router;
use tonic::transport::Server;

use crate::metrics::MetricsLayer;
use crate::node::Node;
use crate::raft::network::RAFT_MESSAGE_BYTES_MAX;
use crate::security::auth::AuthLayer;
use crate::security::limits::LimitsLayer;
use crate::security::tls::TlsSettings;

/// The layers every request goes through, outermost first: metrics (so that refusals are
/// counted too), authentication, limits.
pub type Layers = tower_layer::Stack<
    LimitsLayer,
    tower_layer::Stack<AuthLayer, tower_layer::Stack<MetricsLayer, tower_layer::Identity>>,
>;

/// Builds the gRPC router of a node: TLS if configured, then [`Layers`], then the services.
pub fn router(
    node: Arc<Node>,
    client_message_bytes_max: usize,
    tls: Option<&TlsSettings>,
    auth: AuthLayer,
) -> Result<Router<Layers>, tonic::transport::Error> {
    let ledger = LedgerServer::new(ledger_service::LedgerService::new(node.clone()))
        .max_decoding_message_size(client_message_bytes_max)
        .max_encoding_message_size(client_message_bytes_max);
    let admin = AdminServer::new(admin_service::AdminService::new(node.clone()));
    let raft = RaftServer::new(
        raft_service::RaftService::new(node.raft.clone(), node.config.cluster.clone())
            .with_blocked_peers(node.blocked_peers.clone()),
    )
    .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
    .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX);
    // No HTTP/2 stream cap: it would apply to peer connections too, where streams of RPCs that
    // timed out while a node was paused pile up; the per-connection limit is in `limits.rs`.
    let mut server = Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls.server_config())?;
    }
    Ok(server
        .layer(MetricsLayer {
            metrics: node.metrics.clone(),
        })
        .layer(auth)
        .layer(LimitsLayer::new(node.config.limits))
        .add_service(ledger)
        .add_service(admin)
        .add_service(raft))
}

/// Returns the gRPC server of Raft's RPCs for `raft`, a node of cluster `cluster_name`, with
/// the Raft message size limit applied to both directions.
pub fn raft_server<C>(
    raft: Raft<C>,
    cluster_name: impl Into<String>,
) -> RaftServer<raft_service::RaftService<C>>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    RaftServer::new(raft_service::RaftService::new(raft, cluster_name))
        .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX)
}
