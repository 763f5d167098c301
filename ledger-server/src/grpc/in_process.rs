//! The client port without a transport: the simulator's (and tests') way into a node.
//!
//! [`InProcessChannel`] hands each request to the same stack the client port serves (the
//! [`Layers`](super::Layers) of `router`: error details, metrics, authentication, limits; then
//! the Ledger and Admin services), built by the same functions, so a call goes through the
//! same request path as over gRPC, encoded and decoded by tonic's codec on both ends, with
//! only HTTP/2, TLS and TCP left out. The generated clients take it as their channel:
//! `LedgerClient::new(channel)`, `AdminClient::new(channel)`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http;
use tonic::service::Routes;
use tower_layer::Layer;
use tower_service::Service;

use super::{client_layers, client_services};
use crate::node::Node;
use crate::security::auth::AuthPolicy;

type Reply = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

/// A channel to one node's client services, in the same process.
#[derive(Clone)]
pub struct InProcessChannel {
    call: Arc<dyn Fn(http::Request<Body>) -> Reply + Send + Sync>,
}

impl std::fmt::Debug for InProcessChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InProcessChannel")
    }
}

impl InProcessChannel {
    /// A channel to `node`'s client services behind the client port's layers, checked by
    /// `auth` as the port checks them.
    pub fn new(node: &Arc<Node>, client_message_bytes_max: usize, auth: AuthPolicy) -> Self {
        let (ledger, admin) = client_services(node, client_message_bytes_max);
        let routes = Routes::new(ledger).add_service(admin);
        let service = client_layers(node, auth).layer(routes);
        Self {
            call: Arc::new(move |request| {
                let mut service = service.clone();
                Box::pin(async move {
                    std::future::poll_fn(|cx| {
                        Service::<http::Request<Body>>::poll_ready(&mut service, cx)
                    })
                    .await?;
                    service.call(request).await
                })
            }),
        }
    }
}

impl Service<http::Request<Body>> for InProcessChannel {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Reply;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        (self.call)(request)
    }
}
