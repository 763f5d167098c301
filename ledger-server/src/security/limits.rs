//! Limits on requests in flight, and load shedding.
//!
//! A client call is admitted only while fewer than [`Limits::per_caller`] calls of its
//! connection and fewer than [`Limits::total`] calls of the whole node are in flight.
//! Otherwise it is refused at once with `RESOURCE_EXHAUSTED` and the limit in the message:
//! the client backs off and retries (`LedgerClient` does), and the calls already admitted keep
//! a bounded latency instead of queueing behind an unbounded backlog. The leader's proposal
//! queue (`group_commit.rs`) sheds the same way when it is full.
//!
//! Raft's RPCs are served on the peer port (`security/peer.rs`), whose own limits are
//! [`Limits::peer`]: calls in flight per remote address and in total, and calls per second per
//! remote address, so that a flood from one address does not starve the other nodes. Client
//! load never counts against them: heartbeats get through an overloaded node, or overload
//! would turn into elections.
//!
//! This layer also gives requests tonic could not decode the statuses the rest of the API uses:
//! an oversized request `RESOURCE_EXHAUSTED`, with the limit (tonic answers `OUT_OF_RANGE`), and
//! a malformed one `INVALID_ARGUMENT` (tonic answers `INTERNAL`, which here means "bug,
//! outcome unknown").
//!
//! A streaming answer (`Backup`) holds its slot until its first message, not to its end.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::time::Instant;

use prometheus_client::metrics::counter::Counter;
use tonic::codegen::http;
use tonic::Status;

/// Default for `--max-requests-in-flight`: client calls being served by a node at once.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 256;
/// Default for `--max-requests-per-connection`: client calls in flight on one TCP connection
/// (each call is an HTTP/2 stream of it) at once.
pub const CONNECTION_REQUESTS_IN_FLIGHT_MAX: usize = 128;

/// Raft calls being served at once on the peer port.
pub const PEER_CALLS_IN_FLIGHT_MAX: usize = 128;
/// Raft calls in flight from one remote IP address at once. A node sends a peer at most a few
/// at a time (one append, one vote, a snapshot chunk and its heartbeat), so this admits a
/// cluster on one host (loopback) with room to spare, and keeps one address from holding
/// every slot of [`PEER_CALLS_IN_FLIGHT_MAX`].
pub const PEER_ADDRESS_CALLS_IN_FLIGHT_MAX: usize = 32;
/// Raft calls per second from one remote IP address. A follower's leader sends it one append
/// per round trip, a few thousand a second on loopback under full load.
pub const PEER_ADDRESS_CALLS_PER_SECOND_MAX: u32 = 50_000;
/// TCP connections from one remote IP address at once on the peer port (a node keeps one to
/// each peer; the rest are reconnections whose old connection has not closed yet).
pub const PEER_CONNECTIONS_PER_ADDRESS_MAX: usize = 16;

const _: () = assert!(PEER_ADDRESS_CALLS_IN_FLIGHT_MAX * 2 <= PEER_CALLS_IN_FLIGHT_MAX);

/// What a per-caller bound counts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Each TCP connection apart (client port: many clients share an address behind a NAT).
    Connection,
    /// Each remote IP address, whatever its connections (peer port).
    Address,
}

/// The limits of one port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub total: usize,
    /// Calls in flight per connection or address, as `scope` says.
    pub per_caller: usize,
    pub scope: Scope,
    /// Calls admitted per second per caller, if bounded.
    pub calls_per_second: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            total: REQUESTS_IN_FLIGHT_MAX,
            per_caller: CONNECTION_REQUESTS_IN_FLIGHT_MAX,
            scope: Scope::Connection,
            calls_per_second: None,
        }
    }
}

impl Limits {
    /// The limits of the peer port.
    pub fn peer() -> Self {
        Self {
            total: PEER_CALLS_IN_FLIGHT_MAX,
            per_caller: PEER_ADDRESS_CALLS_IN_FLIGHT_MAX,
            scope: Scope::Address,
            calls_per_second: Some(PEER_ADDRESS_CALLS_PER_SECOND_MAX),
        }
    }

    fn caller(&self, addr: SocketAddr) -> SocketAddr {
        match self.scope {
            Scope::Connection => addr,
            Scope::Address => SocketAddr::new(addr.ip(), 0),
        }
    }

    fn caller_word(&self) -> &'static str {
        match self.scope {
            Scope::Connection => "connection",
            Scope::Address => "address",
        }
    }
}

/// A token bucket per remote address: each holds up to one second of calls and refills at the
/// configured rate.
#[derive(Debug, Default)]
struct Rates {
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

/// Buckets idle this long are full again and are dropped, so that the map stays small.
const RATE_BUCKET_IDLE_SECONDS: f64 = 1.0;

impl Rates {
    fn admit(&mut self, ip: IpAddr, per_second: u32, now: Instant) -> bool {
        let capacity = f64::from(per_second);
        if self.buckets.len() > 1024 {
            self.buckets.retain(|_, (_, last)| {
                now.duration_since(*last).as_secs_f64() < RATE_BUCKET_IDLE_SECONDS
            });
        }
        let (tokens, last) = self.buckets.entry(ip).or_insert((capacity, now));
        let refill = now.duration_since(*last).as_secs_f64() * capacity;
        *tokens = (*tokens + refill).min(capacity);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct InFlight {
    limits: Limits,
    total: AtomicUsize,
    /// Calls in flight per caller (see [`Scope`]); entries at zero are removed.
    connections: Mutex<HashMap<SocketAddr, usize>>,
    rates: Mutex<Rates>,
    /// Counts refusals, where the port reports them (the peer port's `limit` reason).
    refusals: Option<Counter>,
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

    fn admit(self: &Arc<Self>, remote: Option<SocketAddr>) -> Result<Admission, Status> {
        let result = self.try_admit(remote);
        if result.is_err() {
            if let Some(refusals) = &self.refusals {
                refusals.inc();
            }
        }
        result
    }

    fn try_admit(self: &Arc<Self>, remote: Option<SocketAddr>) -> Result<Admission, Status> {
        if let (Some(per_second), Some(addr)) = (self.limits.calls_per_second, remote) {
            let admitted = self
                .rates
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .admit(addr.ip(), per_second, Instant::now());
            if !admitted {
                return Err(Status::resource_exhausted(format!(
                    "LEDGER_RESOURCE_EXHAUSTED: this address is at its limit of {per_second} \
                     calls per second; retry with backoff"
                )));
            }
        }
        let connection = remote.map(|addr| self.limits.caller(addr));
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
            if *count >= self.limits.per_caller {
                drop(connections);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Status::resource_exhausted(format!(
                    "LEDGER_RESOURCE_EXHAUSTED: this {} is at its limit of {} requests in \
                     flight; retry with backoff",
                    self.limits.caller_word(),
                    self.limits.per_caller
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
        Self::with_refusal_counter(limits, None)
    }

    /// The same, counting every refusal in `refusals`.
    pub fn with_refusal_counter(limits: Limits, refusals: Option<Counter>) -> Self {
        Self {
            in_flight: Arc::new(InFlight {
                limits,
                total: AtomicUsize::new(0),
                connections: Mutex::new(HashMap::new()),
                rates: Mutex::new(Rates::default()),
                refusals,
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

/// Rewrites tonic's answers to requests it could not decode into the statuses the rest of the
/// API uses, which say "not applied": an oversized message (tonic: `OUT_OF_RANGE`) becomes
/// `RESOURCE_EXHAUSTED` with the limit, and a message that is not valid protobuf (tonic:
/// `INTERNAL`, which the server's status table reserves for "bug, outcome unknown", so that a
/// client following it would retry a malformed request until its deadline) becomes
/// `INVALID_ARGUMENT`.
fn rewrite_decode_errors<R>(response: &mut http::Response<R>) {
    let headers = response.headers_mut();
    let code = headers.get("grpc-status").and_then(|v| v.to_str().ok());
    let out_of_range = (tonic::Code::OutOfRange as i32).to_string();
    let internal = (tonic::Code::Internal as i32).to_string();
    if code != Some(out_of_range.as_str()) && code != Some(internal.as_str()) {
        return;
    }
    let Ok(status) = Status::from_header_map(headers).ok_or(()) else {
        return;
    };
    let replacement = match status.code() {
        tonic::Code::OutOfRange
            if status
                .message()
                .contains("decoded message length too large") =>
        {
            Status::resource_exhausted(format!(
                "LEDGER_RESOURCE_EXHAUSTED: request too large: {}",
                status.message()
            ))
        }
        tonic::Code::Internal
            if status
                .message()
                .starts_with("failed to decode Protobuf message") =>
        {
            Status::invalid_argument(format!(
                "LEDGER_INVALID_ARGUMENT: malformed request: {}",
                status.message()
            ))
        }
        _ => return,
    };
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
        match self.in_flight.admit(super::remote_addr(&request)) {
            Ok(admission) => {
                let answer = self.inner.call(request);
                Box::pin(async move {
                    let mut response = answer.await;
                    drop(admission);
                    if let Ok(response) = &mut response {
                        rewrite_decode_errors(response);
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

/// Open connections per remote IP address on a port, bounded: a connection past the bound is
/// closed as soon as it is accepted (`startup.rs` filters the peer port's accepted connections).
#[derive(Debug)]
pub struct ConnectionSlots {
    per_address: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection's place in [`ConnectionSlots`]; released when the connection closes.
#[derive(Debug)]
pub struct ConnectionSlot {
    slots: Arc<ConnectionSlots>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.slots.lock_open();
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl ConnectionSlots {
    pub fn new(per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            per_address,
            open: Mutex::new(HashMap::new()),
        })
    }

    fn lock_open(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a slot for a connection from `ip`, or returns `None` when that address is at its
    /// bound.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        let mut open = self.lock_open();
        let count = open.entry(ip).or_insert(0);
        if *count >= self.per_address {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            slots: self.clone(),
            ip,
        })
    }
}

/// An accepted TCP connection that holds its [`ConnectionSlot`] until it is dropped.
#[derive(Debug)]
pub struct CountedStream {
    stream: tokio::net::TcpStream,
    _slot: ConnectionSlot,
}

impl CountedStream {
    pub fn new(stream: tokio::net::TcpStream, slot: ConnectionSlot) -> Self {
        Self {
            stream,
            _slot: slot,
        }
    }
}

impl tonic::transport::server::Connected for CountedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl tokio::io::AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_flight(total: usize, per_connection: usize) -> Arc<InFlight> {
        LimitsLayer::new(Limits {
            total,
            per_caller: per_connection,
            ..Limits::default()
        })
        .in_flight
    }

    #[test]
    fn peer_limits_count_by_address_so_one_address_cannot_take_every_slot() {
        let refusals = Counter::default();
        let counts = LimitsLayer::with_refusal_counter(
            Limits {
                total: 4,
                per_caller: 2,
                scope: Scope::Address,
                calls_per_second: None,
            },
            Some(refusals.clone()),
        )
        .in_flight;
        let flood_a: SocketAddr = "10.0.0.9:1000".parse().expect("addr");
        let flood_b: SocketAddr = "10.0.0.9:2000".parse().expect("addr");
        let peer: SocketAddr = "10.0.0.2:3000".parse().expect("addr");
        let _a = counts.admit(Some(flood_a)).expect("first");
        let _b = counts
            .admit(Some(flood_b))
            .expect("second, other connection");
        let refused = counts
            .admit(Some(flood_a))
            .err()
            .expect("third from the same address refused");
        assert!(refused.message().contains("address is at its limit of 2"));
        assert!(
            counts.admit(Some(peer)).is_ok(),
            "another address still gets in"
        );
        assert_eq!(refusals.get(), 1);
    }

    #[test]
    fn connections_per_address_are_bounded_and_released_on_close() {
        let slots = ConnectionSlots::new(2);
        let flood: IpAddr = "10.0.0.9".parse().expect("ip");
        let peer: IpAddr = "10.0.0.2".parse().expect("ip");
        let a = slots.take(flood).expect("first");
        let _b = slots.take(flood).expect("second");
        assert!(
            slots.take(flood).is_none(),
            "third from one address refused"
        );
        assert!(slots.take(peer).is_some(), "another address gets in");
        drop(a);
        assert!(
            slots.take(flood).is_some(),
            "a closed connection frees its slot"
        );
    }

    #[test]
    fn the_rate_per_address_refuses_a_burst_and_refills() {
        let mut rates = Rates::default();
        let now = Instant::now();
        let flood: IpAddr = "10.0.0.9".parse().expect("ip");
        let peer: IpAddr = "10.0.0.2".parse().expect("ip");
        for _ in 0..10 {
            assert!(rates.admit(flood, 10, now));
        }
        assert!(!rates.admit(flood, 10, now), "the eleventh in one instant");
        assert!(
            rates.admit(peer, 10, now),
            "other addresses are not affected"
        );
        let later = now + std::time::Duration::from_millis(200);
        assert!(
            rates.admit(flood, 10, later),
            "two calls refilled after 200 ms"
        );
        assert!(rates.admit(flood, 10, later));
        assert!(!rates.admit(flood, 10, later));
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
    fn requests_tonic_cannot_decode_get_the_statuses_of_the_api() {
        let mut response: http::Response<()> = Status::out_of_range(
            "Error, decoded message length too large: found 20 bytes, the limit is: 10 bytes",
        )
        .into_http();
        rewrite_decode_errors(&mut response);
        let status = Status::from_header_map(response.headers()).expect("status");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("the limit is: 10 bytes"));

        let mut other: http::Response<()> = Status::out_of_range("something else").into_http();
        rewrite_decode_errors(&mut other);
        let status = Status::from_header_map(other.headers()).expect("status");
        assert_eq!(status.code(), tonic::Code::OutOfRange);

        let mut malformed: http::Response<()> = Status::internal(
            "failed to decode Protobuf message: CreateTransfersRequest.transfers: invalid wire type",
        )
        .into_http();
        rewrite_decode_errors(&mut malformed);
        let status = Status::from_header_map(malformed.headers()).expect("status");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status
            .message()
            .contains("CreateTransfersRequest.transfers"));

        let mut bug: http::Response<()> = Status::internal("LEDGER_INTERNAL: a bug").into_http();
        rewrite_decode_errors(&mut bug);
        let status = Status::from_header_map(bug.headers()).expect("status");
        assert_eq!(
            status.code(),
            tonic::Code::Internal,
            "other INTERNAL answers stay"
        );
    }
}
