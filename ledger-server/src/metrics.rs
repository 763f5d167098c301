//! Prometheus metrics of a node, served on the HTTP port at `/metrics` (OpenMetrics text).
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `ledger_requests_total` | counter | `service`, `method`, `code` | gRPC requests answered, by gRPC status code (`Ok`, `FailedPrecondition`, ...) |
//! | `ledger_request_duration_seconds` | histogram | `service`, `method` | time to answer (p50/p99/p999 by `histogram_quantile`) |
//! | `ledger_events_total` | counter | `kind`, `outcome` | events applied by this node's state machine: `outcome` is `ok` or `rejected` (a result code other than success) |
//! | `ledger_raft_term`, `ledger_raft_leader_id`, `ledger_raft_is_leader` | gauge | | Raft's view |
//! | `ledger_raft_last_log_index`, `ledger_raft_committed_index`, `ledger_raft_applied_index`, `ledger_raft_snapshot_index`, `ledger_raft_purged_index` | gauge | | log positions |
//! | `ledger_raft_replication_lag_entries` | gauge | `follower` | on the leader: its last log index minus what the follower matched |
//! | `ledger_snapshots_built_total`, `ledger_snapshots_installed_total`, `ledger_log_purges_total` | counter | | |
//! | `ledger_rocksdb_size_bytes` | gauge | `cf`, `kind` | per column family: `sst` (live SST files) and `memtable` bytes |
//! | `ledger_group_commit_entries_total`, `ledger_group_commit_requests_total`, `ledger_requests_shed_total` | counter | | group commit on the leader |
//! | `ledger_group_commit_batch_requests` | histogram | | client requests per Raft entry |
//! | `ledger_peer_refusals_total` | counter | `reason` | Raft calls refused on the peer port: `unauthenticated`, `wrong_cluster`, `peer_mismatch`, `not_a_member`, `wrong_incarnation`, `unknown_incarnation`, `limit` |
//! | `ledger_insecure` | gauge | | 1 when the node was started with `--insecure` and lacks TLS or an auth file |
//! | `ledger_clock_offset_seconds` | gauge | `peer` | each peer's wall clock minus this node's, from the latest round trip (`clock.rs`) |
//! | `ledger_clock_unsynchronized_total` | counter | | proposals a leader refused because no majority of voters' clocks agreed |
//!
//! Request metrics are taken by [`MetricsLayer`] around every gRPC service; Raft gauges and
//! RocksDB sizes are read when `/metrics` is scraped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use tonic::codegen::http;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: String,
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    service: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub kind: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FollowerLabels {
    follower: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CfLabels {
    cf: String,
    kind: &'static str,
}

/// Counters the storage layers increment themselves.
#[derive(Clone, Debug, Default)]
pub struct StorageCounters {
    pub events: Family<EventLabels, Counter>,
    pub snapshots_built: Counter,
    pub snapshots_installed: Counter,
    pub log_purges: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub reason: &'static str,
}

/// What the security layers report (`security/peer.rs`, `grpc/raft_service.rs`).
#[derive(Clone, Debug, Default)]
pub struct SecurityCounters {
    /// Raft calls refused on the peer port, by reason.
    pub peer_refusals: Family<RefusalLabels, Counter>,
    /// 1 on a node running insecure on purpose (`--insecure`).
    pub insecure: Gauge,
}

impl SecurityCounters {
    /// Counts one refused peer call.
    pub fn refuse_peer(&self, reason: &'static str) {
        self.peer_refusals
            .get_or_create(&RefusalLabels { reason })
            .inc();
    }
}

/// Counters and the histogram of group commit.
#[derive(Clone, Debug)]
pub struct GroupCommitCounters {
    pub entries: Counter,
    pub requests: Counter,
    pub shed: Counter,
    pub batch_requests: Histogram,
}

impl Default for GroupCommitCounters {
    fn default() -> Self {
        Self {
            entries: Counter::default(),
            requests: Counter::default(),
            shed: Counter::default(),
            batch_requests: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
        }
    }
}

/// The values read from Raft at scrape time.
#[derive(Clone, Copy, Debug, Default)]
pub struct RaftReading {
    pub term: u64,
    pub leader_id: Option<u64>,
    pub is_leader: bool,
    pub last_log_index: u64,
    pub committed_index: u64,
    pub applied_index: u64,
    pub snapshot_index: u64,
    pub purged_index: u64,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<MethodLabels, Histogram>,
    pub storage: StorageCounters,
    pub group_commit: GroupCommitCounters,
    pub security: SecurityCounters,
    pub clock: crate::clock::ClockMetrics,
    term: Gauge,
    leader_id: Gauge,
    is_leader: Gauge,
    last_log_index: Gauge,
    committed_index: Gauge,
    applied_index: Gauge,
    snapshot_index: Gauge,
    purged_index: Gauge,
    replication_lag: Family<FollowerLabels, Gauge>,
    rocksdb_bytes: Family<CfLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "ledger_requests",
            "gRPC requests answered, by status code",
            requests.clone(),
        );
        let latency = Family::<MethodLabels, Histogram>::new_with_constructor(|| {
            // 100 µs to about 26 s.
            Histogram::new(exponential_buckets(0.0001, 2.0, 19))
        });
        registry.register_with_unit(
            "ledger_request_duration",
            "Time to answer a gRPC request",
            Unit::Seconds,
            latency.clone(),
        );
        let storage = StorageCounters::default();
        registry.register(
            "ledger_events",
            "Events applied by this node's state machine, by kind and outcome",
            storage.events.clone(),
        );
        let group_commit = GroupCommitCounters::default();
        let counters = [
            (
                "ledger_snapshots_built",
                "Snapshots built",
                &storage.snapshots_built,
            ),
            (
                "ledger_snapshots_installed",
                "Snapshots received from the leader and installed",
                &storage.snapshots_installed,
            ),
            (
                "ledger_log_purges",
                "Purges of the Raft log behind a snapshot",
                &storage.log_purges,
            ),
            (
                "ledger_group_commit_entries",
                "Raft entries proposed by group commit",
                &group_commit.entries,
            ),
            (
                "ledger_group_commit_requests",
                "Client requests proposed by group commit",
                &group_commit.requests,
            ),
            (
                "ledger_requests_shed",
                "Client requests refused because the leader's queue was full",
                &group_commit.shed,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "ledger_group_commit_batch_requests",
            "Client requests per proposed Raft entry",
            group_commit.batch_requests.clone(),
        );
        let security = SecurityCounters::default();
        registry.register(
            "ledger_peer_refusals",
            "Raft calls refused on the peer port, by reason",
            security.peer_refusals.clone(),
        );
        registry.register(
            "ledger_insecure",
            "1 when the node runs insecure on purpose (--insecure without TLS or auth)",
            security.insecure.clone(),
        );
        let clock = crate::clock::ClockMetrics::default();
        registry.register_with_unit(
            "ledger_clock_offset",
            "Each peer's wall clock minus this node's, from the latest round trip",
            Unit::Seconds,
            clock.offsets.clone(),
        );
        registry.register(
            "ledger_clock_unsynchronized",
            "Proposals refused because no majority of voters' clocks agreed",
            clock.unsynchronized.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let term = gauge(&mut registry, "ledger_raft_term", "Current Raft term");
        let leader_id = gauge(
            &mut registry,
            "ledger_raft_leader_id",
            "The leader this node knows (0: none)",
        );
        let is_leader = gauge(&mut registry, "ledger_raft_is_leader", "1 on the leader");
        let last_log_index = gauge(
            &mut registry,
            "ledger_raft_last_log_index",
            "Last index in this node's log",
        );
        let committed_index = gauge(
            &mut registry,
            "ledger_raft_committed_index",
            "Committed index this node saved",
        );
        let applied_index = gauge(
            &mut registry,
            "ledger_raft_applied_index",
            "Last index applied to the state machine",
        );
        let snapshot_index = gauge(
            &mut registry,
            "ledger_raft_snapshot_index",
            "Last index in the current snapshot",
        );
        let purged_index = gauge(
            &mut registry,
            "ledger_raft_purged_index",
            "Last index purged from the log",
        );
        let replication_lag = Family::<FollowerLabels, Gauge>::default();
        registry.register(
            "ledger_raft_replication_lag_entries",
            "On the leader: entries a follower has yet to match",
            replication_lag.clone(),
        );
        let rocksdb_bytes = Family::<CfLabels, Gauge>::default();
        registry.register_with_unit(
            "ledger_rocksdb_size",
            "RocksDB size per column family",
            Unit::Bytes,
            rocksdb_bytes.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            storage,
            group_commit,
            security,
            clock,
            term,
            leader_id,
            is_leader,
            last_log_index,
            committed_index,
            applied_index,
            snapshot_index,
            purged_index,
            replication_lag,
            rocksdb_bytes,
        }
    }

    /// Records one answered gRPC request.
    pub fn observe_request(&self, path: &str, code: tonic::Code, seconds: f64) {
        // "/ledger.v1.Ledger/CreateTransfers" -> ("Ledger", "CreateTransfers"); paths that are
        // not ours share one label, so made-up paths cannot grow the label set.
        let (service, method) =
            crate::security::auth::known_method(path).unwrap_or(("unknown", "unknown"));
        let (service, method) = (service.to_string(), method.to_string());
        self.requests
            .get_or_create(&RequestLabels {
                service: service.clone(),
                method: method.clone(),
                code: format!("{code:?}"),
            })
            .inc();
        self.latency
            .get_or_create(&MethodLabels { service, method })
            .observe(seconds);
    }

    /// Sets the Raft gauges, replication lags and storage sizes, and encodes everything.
    pub fn render(
        &self,
        raft: RaftReading,
        lags: &[(u64, u64)],
        storage: &[crate::storage::engine::StorageBytes],
    ) -> String {
        self.term.set(gauge_value(raft.term));
        self.leader_id.set(gauge_value(raft.leader_id.unwrap_or(0)));
        self.is_leader.set(i64::from(raft.is_leader));
        self.last_log_index.set(gauge_value(raft.last_log_index));
        self.committed_index.set(gauge_value(raft.committed_index));
        self.applied_index.set(gauge_value(raft.applied_index));
        self.snapshot_index.set(gauge_value(raft.snapshot_index));
        self.purged_index.set(gauge_value(raft.purged_index));
        self.replication_lag.clear();
        for (follower, lag) in lags {
            self.replication_lag
                .get_or_create(&FollowerLabels {
                    follower: *follower,
                })
                .set(gauge_value(*lag));
        }
        for figure in storage {
            self.rocksdb_bytes
                .get_or_create(&CfLabels {
                    cf: figure.area.to_string(),
                    kind: figure.kind,
                })
                .set(gauge_value(figure.bytes));
        }
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Records every gRPC request's method, status code and latency.
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    pub metrics: Arc<Metrics>,
}

impl<S> tower_layer::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// The status of a gRPC answer: in the headers when the call failed before any message
/// (how tonic answers unary errors), otherwise `Ok` (it then comes in the trailers).
fn status_of<B>(response: &http::Response<B>) -> tonic::Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from)
        .unwrap_or(tonic::Code::Ok)
}

impl<S, B, R> tower_service::Service<http::Request<B>> for MetricsService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_string();
        let started = Instant::now();
        let metrics = self.metrics.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await;
            let code = match &response {
                Ok(r) => status_of(r),
                Err(_) => tonic::Code::Unknown,
            };
            metrics.observe_request(&path, code, started.elapsed().as_secs_f64());
            response
        })
    }
}

/// Counts the events of applied commands by kind and outcome (success is code 0 in every
/// result enum). Runs on every node for every entry, so it allocates nothing.
pub fn count_events(
    events: &Family<EventLabels, Counter>,
    results: &[ledger_core::CommandResults],
) {
    use ledger_core::CommandResults as R;
    fn tally<T: Copy>(results: &[T], code: impl Fn(T) -> u32) -> (u64, u64) {
        let ok = results.iter().filter(|r| code(**r) == 0).count() as u64;
        (ok, results.len() as u64 - ok)
    }
    for result in results {
        let (kind, (ok, rejected)) = match result {
            R::CreateAccounts(r) => ("account", tally(r, |c| c.code())),
            R::CreateTransfers(r) => ("transfer", tally(r, |c| c.code())),
            R::CreateMarkets(r) => ("market", tally(r, |c| c.code())),
            R::PlaceBets(r) => ("bet", tally(r, |c| c.code())),
            R::SettleMarkets(r) => ("settlement", tally(r, |c| c.code())),
            R::BetActions(r) => ("bet_action", tally(r, |c| c.code())),
            R::Rejected(_) => continue,
        };
        if ok > 0 {
            events
                .get_or_create(&EventLabels {
                    kind,
                    outcome: "ok",
                })
                .inc_by(ok);
        }
        if rejected > 0 {
            events
                .get_or_create(&EventLabels {
                    kind,
                    outcome: "rejected",
                })
                .inc_by(rejected);
        }
    }
}
