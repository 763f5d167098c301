//! What a request must get past before a handler sees it. All of it sits in front of the
//! services in one tower stack (`grpc::router`), in this order:
//!
//! 1. **TLS** (`tls.rs`): with `--tls-cert/--tls-key/--tls-ca`, the port speaks only TLS. A
//!    client certificate is optional for clients, but one that is presented must chain to the
//!    cluster CA, and Raft's RPCs require one (mutual TLS between nodes).
//! 2. **Authentication and roles** (`auth.rs`): with `--auth-file`, every client call carries a
//!    bearer token whose role (`read` < `write` < `admin`) must cover the method
//!    (`UNAUTHENTICATED`, `PERMISSION_DENIED`).
//! 3. **Limits and load shedding** (`limits.rs`): requests in flight per connection and in
//!    total are bounded; over a bound the request is refused at once with
//!    `RESOURCE_EXHAUSTED` and the limit in the message. Message size is checked by tonic (and
//!    its answer rewritten in `limits.rs`); events per batch and query size where the request is
//!    decoded (`grpc/ledger_service.rs`).
//!
//! docs/security.md says what this protects against and how to configure it.

pub mod auth;
pub mod limits;
pub mod tls;

use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

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
