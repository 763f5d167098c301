//! What a request must get past before a handler sees it. All of it sits in front of the
//! services in the tower stacks of the two gRPC ports (`grpc::router` for clients,
//! `grpc::peer_router` for peers), in this order:
//!
//! 0. **Secure by default** (`config.rs`, `check_exposure`): a node on a non-loopback address
//!    needs TLS and an auth file, or an explicit `--insecure`; test-only hooks are refused by
//!    builds without them.
//! 1. **TLS** (`tls.rs`): with `--tls-cert/--tls-key/--tls-ca`, both gRPC ports speak only
//!    TLS. A client certificate is optional on the client port, but one that is presented must
//!    chain to the cluster CA; the peer port requires one (mutual TLS between nodes).
//! 2. **Peers** (`peer.rs`): Raft's RPCs are served on the peer port only, and every call
//!    there proves it comes from a node of this cluster (certificate or peer secret), within
//!    the peer limits.
//! 3. **Authentication and roles** (`auth.rs`): with `--auth-file`, every client call carries a
//!    bearer token whose role (`read` < `write` < `admin`) must cover the method
//!    (`UNAUTHENTICATED`, `PERMISSION_DENIED`).
//! 4. **Limits and load shedding** (`limits.rs`): requests in flight per connection and in
//!    total are bounded; over a bound the request is refused at once with
//!    `RESOURCE_EXHAUSTED` and the limit in the message. Message size is checked by tonic (and
//!    its answer rewritten in `limits.rs`); events per batch and query size where the request is
//!    decoded (`grpc/ledger_service.rs`).
//!
//! docs/security.md says what this protects against and how to configure it.

pub mod auth;
pub mod limits;
pub mod peer;
pub mod tls;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;

/// A check a request must pass before it reaches the services: it is admitted, or answered at
/// once with the refusal (which the check has logged and counted as it sees fit).
pub trait Gate: Clone + Send + Sync + 'static {
    fn admit<B>(&self, request: &http::Request<B>) -> Result<(), Status>;
}

/// The tower layer of a [`Gate`].
#[derive(Clone, Debug, Default)]
pub struct GateLayer<G>(pub G);

impl<S, G: Gate> tower_layer::Layer<S> for GateLayer<G> {
    type Service = GateService<S, G>;

    fn layer(&self, inner: S) -> Self::Service {
        GateService {
            inner,
            gate: self.0.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct GateService<S, G> {
    inner: S,
    gate: G,
}

impl<S, G, B, R> tower_service::Service<http::Request<B>> for GateService<S, G>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
    G: Gate,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self.gate.admit(&request) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => {
                let response = status.into_http();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

/// The connection a request came on, as tonic records it in the request's extensions.
pub(crate) fn remote_addr<B>(request: &http::Request<B>) -> Option<std::net::SocketAddr> {
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .and_then(|info| info.remote_addr())
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        })
}

/// Whether the request came over TLS with a client certificate that chains to the cluster CA
/// (rustls has verified it during the handshake; an unverifiable one ends the handshake).
pub(crate) fn has_verified_peer_certificate<B>(request: &http::Request<B>) -> bool {
    request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs())
        .is_some_and(|certs| !certs.is_empty())
}
