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
//!    round trip took, so the peer's offset is `peer clock - (sent + rtt / 2)`, within
//!    `± rtt / 2` ([`Clock::learn`]). A leader hears from every voter at each heartbeat, and
//!    a candidate from every voter it asks for a vote, so a new leader has samples at once.
//! 2. **Agreement.** Each voter is an interval of offsets relative to this node: its sample's
//!    offset, widened by the sample's error and by [`CLOCK_TOLERANCE_MS`]; this node is
//!    `[-tolerance, +tolerance]`. Marzullo's algorithm finds the smallest interval that a
//!    majority of the voters' intervals contain ([`agreement`]). Samples older than
//!    [`SAMPLE_MAX_AGE_MS`] count for nothing.
//! 3. **Stamp.** The leader's clock, moved into that interval ([`Clock::cluster_time`]). When
//!    its own clock is right, that is its own clock; when it is a day ahead, it is the
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
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// How far apart two clocks may be and still agree, beyond what the round trip leaves
/// unknown. NTP keeps servers within a few milliseconds; this leaves room for a bad day.
pub const CLOCK_TOLERANCE_MS: u64 = 250;
/// A sample older than this counts for nothing: the clocks may have moved since.
pub const SAMPLE_MAX_AGE_MS: u64 = 5_000;

const NANOS_PER_MS: i64 = 1_000_000;

/// One peer's clock as a round trip measured it.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Peer clock minus this node's clock, in nanoseconds.
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
#[derive(Debug, Default)]
pub struct Clock {
    /// Added to the system clock: 0 except in tests (`--clock-offset-ms`).
    shift_ns: AtomicI64,
    samples: Mutex<HashMap<u64, Sample>>,
    metrics: ClockMetrics,
}

impl Clock {
    pub fn new(metrics: ClockMetrics) -> Self {
        Self {
            metrics,
            ..Self::default()
        }
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
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let shift = self.shift_ns.load(std::sync::atomic::Ordering::Relaxed);
        system.saturating_add(shift).max(0) as u64
    }

    /// Records a round trip to `peer`: sent at `sent_ns` by this clock, answered after `rtt`
    /// with the peer's clock reading `peer_ns` (0: the peer sent none).
    pub fn learn(&self, peer: u64, sent_ns: u64, rtt: Duration, peer_ns: u64) {
        if peer_ns == 0 {
            return;
        }
        let half = (rtt.as_nanos() / 2).min(i64::MAX as u128) as i64;
        let midpoint = (sent_ns as i64).saturating_add(half);
        let sample = Sample {
            offset_ns: (peer_ns as i64).saturating_sub(midpoint),
            error_ns: half,
            at: Instant::now(),
        };
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        // A tighter sample is worth keeping for a while over a looser newer one (a round trip
        // slowed by a busy disk says less); a fresh one replaces any older than a second.
        let keep_old = samples.get(&peer).is_some_and(|old| {
            old.error_ns < sample.error_ns && old.at.elapsed() < Duration::from_secs(1)
        });
        if !keep_old {
            samples.insert(peer, sample);
            self.metrics
                .offsets
                .get_or_create(&PeerLabels { peer })
                .set(sample.offset_ns as f64 / 1e9);
        }
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
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let mut intervals = Vec::new();
        let mut count = 0;
        for voter in voters {
            count += 1;
            if voter == own {
                intervals.push((-tolerance, tolerance));
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
        let now = self.now_ns() as i64;
        match agreement(&intervals) {
            Some((agreeing, lo, hi)) if agreeing >= needed => {
                Ok(now.saturating_add(0i64.clamp(lo, hi)).max(0) as u64)
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

    fn clock_with(offsets_ms: &[(u64, i64)]) -> Clock {
        let clock = Clock::default();
        let now = clock.now_ns();
        for (peer, offset) in offsets_ms {
            let peer_ns = (now as i64 + offset * MS) as u64;
            clock.learn(*peer, now, Duration::from_millis(2), peer_ns);
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
    fn a_shifted_clock_reads_shifted() {
        let clock = Clock::default();
        let before = clock.now_ns();
        clock.shift(DAY_MS);
        let after = clock.now_ns();
        assert!(after - before >= (DAY_MS * MS) as u64);
    }
}
