//! Cluster time: the timestamp a leader gives each entry, bounded by a quorum of clocks.
//!
//! Apply raises an entry's time to keep cluster time strictly increasing
//! (`ledger_core::ApplyCtx`), so one leader with a wrong clock would otherwise control it: a
//! leader a day ahead expires every pending transfer at its first write, and once leadership
//! moves back, cluster time stays frozen a day ahead until the wall clocks catch up. So a
//! leader stamps only inside the interval a quorum of voters' clocks agrees on:
//!
//! 1. **Samples.** Every Raft reply carries the receiver's wall clock
//!    (`RaftReply.wall_clock_ns`). The sender knows when it sent the call and how long the
//!    round trip took, by its monotonic clock, so the peer's clock reads
//!    `peer clock - (sent + rtt / 2)` ahead of this node's monotonic clock, within
//!    `± rtt / 2` ([`Clock::learn`]). A leader hears from every voter at each heartbeat, and a
//!    candidate from every voter it asks for a vote, so a new leader has samples at once.
//!    Samples are kept against the monotonic clock, not this node's wall clock: when this
//!    node's wall clock jumps, what it learnt of its peers stays true (samples taken against
//!    the wall clock let a leader whose clock had just jumped a day ahead stamp that day for
//!    a second, until fresh samples came: the harness's `clock` nemesis found holds expired
//!    seconds early).
//! 2. **Agreement.** Each voter is an interval of wall-clock readings relative to the
//!    monotonic clock: a peer's sample, widened by its error and by [`CLOCK_TOLERANCE_MS`];
//!    this node's own wall clock, read now, widened by the tolerance. Marzullo's algorithm
//!    finds the smallest interval that a majority of the voters' intervals contain
//!    ([`agreement`]). Samples older than [`SAMPLE_MAX_AGE_MS`] count for nothing.
//! 3. **Stamp.** This node's wall clock moved into that interval ([`Clock::cluster_time`]).
//!    When its own clock is right, that is its own clock; when it is a day ahead, it is the
//!    majority's time. When no majority agrees, the leader refuses to propose
//!    (`UNAVAILABLE`, `LEDGER_CLOCK_UNSYNCHRONIZED`: nothing applied) and counts it in
//!    `ledger_clock_unsynchronized_total`, until the clocks agree again.
//!
//! The bound: with a majority of voters' clocks within `e` of true time, a stamp is within
//! `e + 2 × CLOCK_TOLERANCE_MS + rtt / 2` of true time, so a hold never expires earlier than
//! its timeout by more than that (docs/consistency.md, "Time").
//!
//! Each peer's offset is exported as `ledger_clock_offset_seconds{peer}`. A test build
//! (`fault-injection`) can shift a node's clock (`--clock-offset-ms`), as the tests and the
//! harness's `clock` nemesis do.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// How far apart two clocks may be and still agree, beyond what the round trip leaves
/// unknown. NTP keeps servers within a few milliseconds; this leaves room for a bad day.
pub const CLOCK_TOLERANCE_MS: u64 = 250;
/// A sample older than this counts for nothing: the clocks may have moved since.
pub const SAMPLE_MAX_AGE_MS: u64 = 5_000;

use crate::env::{Env, SystemEnv};

const NANOS_PER_MS: i64 = 1_000_000;

/// One peer's clock as a round trip measured it.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Peer wall clock minus this node's monotonic clock (nanoseconds since `Clock::origin`).
    offset_ns: i64,
    /// Half the round trip: how wrong `offset_ns` may be.
    error_ns: i64,
    at: Instant,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub peer: u64,
}

/// The clock's metrics, registered by `metrics.rs`.
#[derive(Clone, Debug, Default)]
pub struct ClockMetrics {
    /// Each peer's clock minus this node's, in seconds, from the latest sample.
    pub offsets: Family<PeerLabels, Gauge<f64, AtomicU64>>,
    /// Proposals refused because no majority of clocks agreed.
    pub unsynchronized: Counter,
}

/// Why a leader cannot stamp an entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "LEDGER_CLOCK_UNSYNCHRONIZED: the clocks of a majority of voters do not agree (the best \
     agreement is {agreeing} of {voters} voters, {needed} needed, within {CLOCK_TOLERANCE_MS} ms \
     plus round trips); nothing was proposed. Check NTP on every node; \
     ledger_clock_offset_seconds shows each peer's offset"
)]
pub struct Unsynchronized {
    pub agreeing: usize,
    pub voters: usize,
    pub needed: usize,
}

/// This node's wall clock and what it knows of its peers'.
#[derive(Debug)]
pub struct Clock {
    /// Where the wall clock is read (`env.rs`).
    env: Arc<dyn Env>,
    /// Added to the system clock: 0 except in tests (`--clock-offset-ms`).
    shift_ns: AtomicI64,
    /// The start of the monotonic clock the samples are kept against.
    origin: Instant,
    samples: Mutex<HashMap<u64, Sample>>,
    metrics: ClockMetrics,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new(ClockMetrics::default(), Arc::new(SystemEnv))
    }
}

impl Clock {
    pub fn new(metrics: ClockMetrics, env: Arc<dyn Env>) -> Self {
        Self {
            env,
            shift_ns: AtomicI64::new(0),
            origin: Instant::now(),
            samples: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Nanoseconds of the monotonic clock at `at`.
    fn monotonic_ns(&self, at: Instant) -> i64 {
        at.saturating_duration_since(self.origin)
            .as_nanos()
            .min(i64::MAX as u128) as i64
    }

    /// Shifts this node's clock by `ms` (test builds only; see the module header).
    pub fn shift(&self, ms: i64) {
        self.shift_ns.store(
            ms.saturating_mul(NANOS_PER_MS),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// This node's wall clock, nanoseconds since the Unix epoch.
    pub fn now_ns(&self) -> u64 {
        let system = self.env.wall_clock_ns().min(i64::MAX as u64) as i64;
        let shift = self.shift_ns.load(std::sync::atomic::Ordering::Relaxed);
        system.saturating_add(shift).max(0) as u64
    }

    /// Records a round trip to `peer`: sent at `sent`, answered after `rtt` with the peer's
    /// wall clock reading `peer_ns` (0: the peer sent none). The newest sample replaces the
    /// last: a peer whose clock jumped is seen at once.
    pub fn learn(&self, peer: u64, sent: Instant, rtt: Duration, peer_ns: u64) {
        if peer_ns == 0 {
            return;
        }
        let half = (rtt.as_nanos() / 2).min(i64::MAX as u128) as i64;
        let midpoint = self.monotonic_ns(sent).saturating_add(half);
        let sample = Sample {
            offset_ns: (peer_ns as i64).saturating_sub(midpoint),
            error_ns: half,
            at: Instant::now(),
        };
        // This node's own wall clock against the same monotonic clock, for the metric.
        let own = (self.now_ns() as i64).saturating_sub(self.monotonic_ns(Instant::now()));
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer, sample);
        self.metrics
            .offsets
            .get_or_create(&PeerLabels { peer })
            .set(sample.offset_ns.saturating_sub(own) as f64 / 1e9);
    }

    /// The time to stamp an entry with, on leader `own` of `voters`: this clock moved into
    /// the interval a majority of the voters' clocks agree on.
    pub fn cluster_time(
        &self,
        own: u64,
        voters: impl IntoIterator<Item = u64>,
    ) -> Result<u64, Unsynchronized> {
        let tolerance = CLOCK_TOLERANCE_MS as i64 * NANOS_PER_MS;
        let max_age = Duration::from_millis(SAMPLE_MAX_AGE_MS);
        let monotonic = self.monotonic_ns(Instant::now());
        // This node's wall clock, as an offset from the monotonic clock like the samples.
        let mine = (self.now_ns() as i64).saturating_sub(monotonic);
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let mut intervals = Vec::new();
        let mut count = 0;
        for voter in voters {
            count += 1;
            if voter == own {
                intervals.push((
                    mine.saturating_sub(tolerance),
                    mine.saturating_add(tolerance),
                ));
            } else if let Some(s) = samples.get(&voter).filter(|s| s.at.elapsed() <= max_age) {
                let width = s.error_ns.saturating_add(tolerance);
                intervals.push((
                    s.offset_ns.saturating_sub(width),
                    s.offset_ns.saturating_add(width),
                ));
            }
        }
        drop(samples);
        let needed = count / 2 + 1;
        match agreement(&intervals) {
            Some((agreeing, lo, hi)) if agreeing >= needed => {
                Ok(monotonic.saturating_add(mine.clamp(lo, hi)).max(0) as u64)
            }
            best => {
                self.metrics.unsynchronized.inc();
                Err(Unsynchronized {
                    agreeing: best.map(|(n, _, _)| n).unwrap_or(0),
                    voters: count,
                    needed,
                })
            }
        }
    }
}

/// Marzullo's algorithm: the most intervals that share a point, and the smallest interval
/// `[lo, hi]` they all contain (the first such in order). `None` for no intervals.
pub fn agreement(intervals: &[(i64, i64)]) -> Option<(usize, i64, i64)> {
    // Starts before ends at the same point, so that touching intervals agree.
    let mut edges: Vec<(i64, i32)> = Vec::with_capacity(intervals.len() * 2);
    for (lo, hi) in intervals {
        edges.push((*lo, -1));
        edges.push((*hi, 1));
    }
    edges.sort_unstable();
    let (mut best, mut open) = (0usize, 0usize);
    let mut found = None;
    for (i, (at, kind)) in edges.iter().enumerate() {
        if *kind == -1 {
            open += 1;
            if open > best {
                best = open;
                // The agreement lasts until the next edge, which is an end.
                let until = edges.get(i + 1).map(|(next, _)| *next).unwrap_or(*at);
                found = Some((best, *at, until));
            }
        } else {
            open -= 1;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = NANOS_PER_MS;
    const DAY_MS: i64 = 86_400_000;

    #[test]
    fn marzullo_finds_the_interval_most_sources_share() {
        assert_eq!(agreement(&[]), None);
        assert_eq!(agreement(&[(0, 10)]), Some((1, 0, 10)));
        // Two agree on [8, 10]; the third is elsewhere.
        assert_eq!(agreement(&[(0, 10), (8, 12), (100, 110)]), Some((2, 8, 10)));
        // All three share [9, 10].
        assert_eq!(agreement(&[(0, 10), (8, 12), (9, 20)]), Some((3, 9, 10)));
        // Touching intervals agree at the point.
        assert_eq!(agreement(&[(0, 5), (5, 9)]), Some((2, 5, 5)));
    }

    /// A clock that learnt its peers' clocks `offsets_ms` away from its own wall clock.
    fn clock_with(offsets_ms: &[(u64, i64)]) -> Clock {
        let clock = Clock::default();
        for (peer, offset) in offsets_ms {
            let sent = Instant::now();
            let peer_ns = (clock.now_ns() as i64 + offset * MS) as u64;
            clock.learn(*peer, sent, Duration::from_millis(2), peer_ns);
        }
        clock
    }

    #[test]
    fn a_leader_whose_clock_is_a_day_ahead_stamps_the_majority_time() {
        // Both peers read a day behind this node: this node is the one that is wrong.
        let clock = clock_with(&[(2, -DAY_MS), (3, -DAY_MS + 40)]);
        let mine = clock.now_ns() as i64;
        let stamp = clock.cluster_time(1, [1, 2, 3]).expect("a majority agrees") as i64;
        let behind = mine - stamp;
        // Within tolerance (and the round trip) of the majority's clocks.
        assert!(
            (DAY_MS * MS - behind).abs() <= (2 * CLOCK_TOLERANCE_MS as i64 + 10) * MS,
            "stamped {behind} ns behind this clock"
        );
    }

    #[test]
    fn a_leader_with_a_right_clock_stamps_its_own_time() {
        let clock = clock_with(&[(2, 3), (3, -DAY_MS)]);
        let before = clock.now_ns();
        let stamp = clock
            .cluster_time(1, [1, 2, 3])
            .expect("agrees with node 2");
        assert!(stamp >= before && stamp - before < 100 * MS as u64);
    }

    #[test]
    fn without_a_majority_of_agreeing_clocks_nothing_is_stamped() {
        // Three clocks a day apart each.
        let clock = clock_with(&[(2, -DAY_MS), (3, DAY_MS)]);
        let refused = clock.cluster_time(1, [1, 2, 3]).expect_err("no majority");
        assert_eq!(
            refused,
            Unsynchronized {
                agreeing: 1,
                voters: 3,
                needed: 2
            }
        );
        // No sample from any peer: this node alone is not a majority of three.
        assert!(Clock::default().cluster_time(1, [1, 2, 3]).is_err());
        // A cluster of one agrees with itself.
        assert!(Clock::default().cluster_time(1, [1]).is_ok());
    }

    #[test]
    fn what_was_learnt_of_the_peers_survives_a_jump_of_this_clock() {
        // The peers agree with this clock; then this clock jumps a day ahead. The stamp stays
        // the peers' time at once, without waiting for new samples.
        let clock = clock_with(&[(2, 0), (3, 5)]);
        let before = clock.now_ns() as i64;
        clock.shift(DAY_MS);
        let stamp = clock.cluster_time(1, [1, 2, 3]).expect("the peers agree") as i64;
        assert!(
            (stamp - before).abs() < (CLOCK_TOLERANCE_MS as i64 + 100) * MS,
            "stamped {} ms from the peers' time",
            (stamp - before) / MS
        );
    }

    #[test]
    fn a_shifted_clock_reads_shifted() {
        let clock = Clock::default();
        let before = clock.now_ns();
        clock.shift(DAY_MS);
        let after = clock.now_ns();
        assert!(after - before >= (DAY_MS * MS) as u64);
    }
}
