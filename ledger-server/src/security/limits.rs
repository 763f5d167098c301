//! Limits on requests in flight, and load shedding.
//!
//! A client call is admitted only while fewer than [`Limits::per_connection`] calls of its
//! connection and fewer than [`Limits::total`] calls of the whole node are in flight.
//! Otherwise it is refused at once with `RESOURCE_EXHAUSTED` and the limit in the message:
//! the client backs off and retries (`LedgerClient` does), and the calls already admitted keep
//! a bounded latency instead of queueing behind an unbounded backlog. The leader's proposal
//! queue (`group_commit.rs`) sheds the same way when it is full.
//!
//! Raft's RPCs are never counted or shed: heartbeats must get through an overloaded node, or
//! overload would turn into elections.
//!
//! This layer also gives an oversized request the status the rest of the API uses for a limit
//! (tonic answers `OUT_OF_RANGE`; the answer here is `RESOURCE_EXHAUSTED`, with the limit).
//!
//! A streaming answer (`Backup`) holds its slot until its first message, not to its end.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::Status;

use super::auth::{required, Caller};

/// Default for `--max-requests-in-flight`: client calls being served by a node at once.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 256;
/// Default for `--max-requests-per-connection`: client calls in flight on one TCP connection
/// (each call is an HTTP/2 stream of it) at once.
pub const CONNECTION_REQUESTS_IN_FLIGHT_MAX: usize = 128;

/// The limits of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub total: usize,
    pub per_connection: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            total: REQUESTS_IN_FLIGHT_MAX,
            per_connection: CONNECTION_REQUESTS_IN_FLIGHT_MAX,
        }
    }
}

#[derive(Debug)]
struct InFlight {
    limits: Limits,
    total: AtomicUsize,
    /// Calls in flight per connection (by the peer's address); entries at zero are removed.
    connections: Mutex<HashMap<SocketAddr, usize>>,
}

/// A call's place in the counts; released when the call ends.
struct Admission {
    in_flight: Arc<InFlight>,
    connection: Option<SocketAddr>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.in_flight.total.fetch_sub(1, Ordering::AcqRel);
        if let Some(addr) = self.connection {
            let mut connections = self.in_flight.lock_connections();
            if let Some(count) = connections.get_mut(&addr) {
                *count -= 1;
                if *count == 0 {
                    connections.remove(&addr);
                }
            }
        }
    }
}

impl InFlight {
    fn lock_connections(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, usize>> {
        // Counts are updated in one step under the lock; a panic elsewhere leaves them whole.
        self.connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn admit(self: &Arc<Self>, connection: Option<SocketAddr>) -> Result<Admission, Status> {
        let total = self.total.fetch_add(1, Ordering::AcqRel);
        if total >= self.limits.total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Status::resource_exhausted(format!(
                "LEDGER_RESOURCE_EXHAUSTED: the node is at its limit of {} requests in flight; \
                 retry with backoff",
                self.limits.total
            )));
        }
        if let Some(addr) = connection {
            let mut connections = self.lock_connections();
            let count = connections.entry(addr).or_insert(0);
            if *count >= self.limits.per_connection {
                drop(connections);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Status::resource_exhausted(format!(
                    "LEDGER_RESOURCE_EXHAUSTED: this connection is at its limit of {} requests \
                     in flight; retry with backoff",
                    self.limits.per_connection
                )));
            }
            *count += 1;
        }
        Ok(Admission {
            in_flight: self.clone(),
            connection,
        })
    }
}

/// The tower layer that applies [`Limits`] to client calls.
#[derive(Clone, Debug)]
pub struct LimitsLayer {
    in_flight: Arc<InFlight>,
}

impl LimitsLayer {
    pub fn new(limits: Limits) -> Self {
        Self {
            in_flight: Arc::new(InFlight {
                limits,
                total: AtomicUsize::new(0),
                connections: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl<S> tower_layer::Layer<S> for LimitsLayer {
    type Service = LimitsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LimitsService {
            inner,
            in_flight: self.in_flight.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct LimitsService<S> {
    inner: S,
    in_flight: Arc<InFlight>,
}

/// Rewrites tonic's `OUT_OF_RANGE` for an oversized message into `RESOURCE_EXHAUSTED`.
fn oversized_to_resource_exhausted<R>(response: &mut http::Response<R>) {
    let headers = response.headers_mut();
    let out_of_range = (tonic::Code::OutOfRange as i32).to_string();
    if headers.get("grpc-status").and_then(|v| v.to_str().ok()) != Some(out_of_range.as_str()) {
        return;
    }
    let Ok(status) = Status::from_header_map(headers).ok_or(()) else {
        return;
    };
    if !status
        .message()
        .contains("decoded message length too large")
    {
        return;
    }
    let replacement = Status::resource_exhausted(format!(
        "LEDGER_RESOURCE_EXHAUSTED: request too large: {}",
        status.message()
    ));
    headers.remove("grpc-message");
    let _ = replacement.add_header(headers);
}

impl<S, B, R> tower_service::Service<http::Request<B>> for LimitsService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if matches!(required(request.uri().path()), Caller::Peer) {
            return Box::pin(self.inner.call(request));
        }
        match self.in_flight.admit(super::remote_addr(&request)) {
            Ok(admission) => {
                let answer = self.inner.call(request);
                Box::pin(async move {
                    let mut response = answer.await;
                    drop(admission);
                    if let Ok(response) = &mut response {
                        oversized_to_resource_exhausted(response);
                    }
                    response
                })
            }
            Err(status) => {
                let response = status.into_http();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_flight(total: usize, per_connection: usize) -> Arc<InFlight> {
        LimitsLayer::new(Limits {
            total,
            per_connection,
        })
        .in_flight
    }

    #[test]
    fn total_limit_refuses_with_the_limit_in_the_message() {
        let counts = in_flight(2, 10);
        let a = counts.admit(None).expect("first");
        let _b = counts.admit(None).expect("second");
        let refused = counts.admit(None).err().expect("third refused");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.message().contains("limit of 2 requests"),
            "{}",
            refused.message()
        );
        drop(a);
        assert!(counts.admit(None).is_ok(), "a released slot is reusable");
    }

    #[test]
    fn per_connection_limit_counts_each_connection_apart() {
        let counts = in_flight(100, 1);
        let one: SocketAddr = "127.0.0.1:1000".parse().expect("addr");
        let two: SocketAddr = "127.0.0.1:2000".parse().expect("addr");
        let held = counts.admit(Some(one)).expect("first on one");
        let refused = counts
            .admit(Some(one))
            .err()
            .expect("second on one refused");
        assert!(refused
            .message()
            .contains("connection is at its limit of 1"));
        assert!(
            counts.admit(Some(two)).is_ok(),
            "another connection is not affected"
        );
        drop(held);
        assert!(
            counts.lock_connections().get(&one).is_none(),
            "idle entries are removed"
        );
        assert!(counts.admit(Some(one)).is_ok());
        assert_eq!(
            counts.total.load(Ordering::Acquire),
            0,
            "refusals leave no count behind"
        );
    }

    #[test]
    fn oversized_message_answer_becomes_resource_exhausted() {
        let mut response: http::Response<()> = Status::out_of_range(
            "Error, decoded message length too large: found 20 bytes, the limit is: 10 bytes",
        )
        .into_http();
        oversized_to_resource_exhausted(&mut response);
        let status = Status::from_header_map(response.headers()).expect("status");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("the limit is: 10 bytes"));

        let mut other: http::Response<()> = Status::out_of_range("something else").into_http();
        oversized_to_resource_exhausted(&mut other);
        let status = Status::from_header_map(other.headers()).expect("status");
        assert_eq!(status.code(), tonic::Code::OutOfRange);
    }
}
