//! The gRPC services of a node, on two ports: the client port serves the client API
//! (`ledger_service.rs`) and the admin API (`admin_service.rs`); the peer port serves only
//! Raft's own RPCs (`raft_service.rs`), so that a network policy can admit only the other
//! nodes to it (docs/security.md).

pub mod admin_service;
pub mod in_process;
pub mod ledger_service;
pub mod raft_service;
pub mod status;

use std::sync::Arc;

use ledger_wire::proto::admin::admin_server::AdminServer;
use ledger_wire::proto::ledger::ledger_server::LedgerServer;
use ledger_wire::proto::raft::raft_server::RaftServer;
use openraft::{Raft, RaftTypeConfig};
use tonic::transport::server::Router;
use tonic::transport::Server;

use crate::metrics::MetricsLayer;
use crate::node::Node;
use crate::raft::network::RAFT_MESSAGE_BYTES_MAX;
use crate::security::auth::AuthPolicy;
use crate::security::limits::{Limits, LimitsLayer};
use crate::security::peer::PeerAuthPolicy;
use crate::security::tls::TlsSettings;
use crate::security::GateLayer;

/// The layers every client request goes through, outermost first: the standard error details
/// (`status.rs`), metrics (so that refusals are counted too), authentication, limits.
pub type Layers = tower_layer::Stack<
    LimitsLayer,
    tower_layer::Stack<
        GateLayer<AuthPolicy>,
        tower_layer::Stack<
            MetricsLayer,
            tower_layer::Stack<status::ErrorDetailsLayer, tower_layer::Identity>,
        >,
    >,
>;

/// The layers of the peer port, outermost first: metrics, peer authentication (before any
/// slot is taken, so that unauthenticated floods hold none), peer limits.
pub type PeerLayers = tower_layer::Stack<
    LimitsLayer,
    tower_layer::Stack<
        GateLayer<PeerAuthPolicy>,
        tower_layer::Stack<MetricsLayer, tower_layer::Identity>,
    >,
>;

/// Builds the peer port's router: TLS with a required client certificate if configured, then
/// [`PeerLayers`], then the Raft service alone.
/// The node's Raft service as the peer port serves it: the envelope's checks of cluster,
/// incarnation and checksum, the peers' clocks sampled, refusals counted.
pub fn raft_service(node: &Node) -> raft_service::RaftService<crate::raft::types::TypeConfig> {
    let service = raft_service::RaftService::new(node.raft.clone(), node.config.cluster.clone())
        .with_incarnation(node.incarnation, node.health.clone())
        .with_clock(node.clock.clone())
        .with_counters(node.metrics.security.clone());
    #[cfg(feature = "fault-injection")]
    let service = service.with_blocked_peers(node.blocked_peers.clone());
    service
}

pub fn peer_router(
    node: Arc<Node>,
    tls: Option<&TlsSettings>,
    auth: PeerAuthPolicy,
) -> Result<Router<PeerLayers>, tonic::transport::Error> {
    let raft = RaftServer::new(raft_service(&node))
        .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX);
    let mut server = Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls.peer_server_config())?;
    }
    let refusals = node
        .metrics
        .security
        .peer_refusals
        .get_or_create(&crate::metrics::RefusalLabels { reason: "limit" })
        .clone();
    Ok(server
        .layer(MetricsLayer {
            metrics: node.metrics.clone(),
        })
        .layer(GateLayer(auth))
        .layer(LimitsLayer::with_refusal_counter(
            Limits::peer(),
            Some(refusals),
        ))
        .add_service(raft))
}

/// Builds the client port's router: TLS if configured, then [`Layers`], then the Ledger and
/// Admin services.
pub fn router(
    node: Arc<Node>,
    client_message_bytes_max: usize,
    tls: Option<&TlsSettings>,
    auth: AuthPolicy,
) -> Result<Router<tower_layer::Stack<Layers, tower_layer::Identity>>, tonic::transport::Error> {
    let (ledger, admin) = client_services(&node, client_message_bytes_max);
    // No HTTP/2 stream cap: the per-connection limit is in `limits.rs`, with a clear answer.
    let mut server = Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls.server_config())?;
    }
    Ok(server
        .layer(client_layers(&node, auth))
        .add_service(ledger)
        .add_service(admin))
}

/// The client port's [`Layers`], outermost first: error details, metrics, authentication by
/// `auth`, limits.
pub fn client_layers(node: &Node, auth: AuthPolicy) -> Layers {
    tower_layer::Stack::new(
        LimitsLayer::new(node.config.limits),
        tower_layer::Stack::new(
            GateLayer(auth),
            tower_layer::Stack::new(
                MetricsLayer {
                    metrics: node.metrics.clone(),
                },
                tower_layer::Stack::new(status::ErrorDetailsLayer, tower_layer::Identity::new()),
            ),
        ),
    )
}

/// The client port's two services, with the message size limit applied to both directions.
pub fn client_services(
    node: &Arc<Node>,
    client_message_bytes_max: usize,
) -> (
    LedgerServer<ledger_service::LedgerService>,
    AdminServer<admin_service::AdminService>,
) {
    let ledger = LedgerServer::new(ledger_service::LedgerService::new(node.clone()))
        .max_decoding_message_size(client_message_bytes_max)
        .max_encoding_message_size(client_message_bytes_max);
    let admin = AdminServer::new(admin_service::AdminService::new(node.clone()));
    (ledger, admin)
}

/// Returns the gRPC server of Raft's RPCs for `raft`, a node of cluster `cluster_name`, with
/// the Raft message size limit applied to both directions (no peer checks: for tests of the
/// network layer).
pub fn raft_server<C>(
    raft: Raft<C>,
    cluster_name: impl Into<String>,
) -> RaftServer<raft_service::RaftService<C>>
where
    C: RaftTypeConfig<NodeId = u64>,
    C::Node: crate::raft::network::PeerAddress,
{
    RaftServer::new(raft_service::RaftService::new(raft, cluster_name))
        .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX)
}
