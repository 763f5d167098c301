//! The simulated world around the nodes: each machine's wall clock, and the network between
//! them.
//!
//! Virtual time is tokio's paused clock: it moves only when every task waits, straight to the
//! next timer. A node's wall clock is that time plus its own offset and drift
//! ([`SimClock`]); the network decides each message's fate from a generator seeded by the run
//! ([`Links`]). The runtime is single-threaded, so every draw comes in the same order in
//! every run of a seed.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use ledger_server::env::Env;
use ledger_server::raft::in_process::{Fate, LinkFaults};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// 2026-01-01T00:00:00Z, where every run's wall clocks start (before offsets).
pub const EPOCH_NS: u64 = 1_767_225_600_000_000_000;

/// One machine's wall clock and randomness: virtual time, shifted by an offset that jumps can
/// move and stretched by a drift, and a seeded generator.
#[derive(Debug)]
pub struct SimClock {
    start: tokio::time::Instant,
    offset_ns: AtomicI64,
    /// Parts per million the clock runs fast (positive) or slow.
    drift_ppm: i64,
    rng: Mutex<StdRng>,
}

impl SimClock {
    pub fn new(offset_ns: i64, drift_ppm: i64, seed: u64) -> Self {
        Self {
            start: tokio::time::Instant::now(),
            offset_ns: AtomicI64::new(offset_ns),
            drift_ppm,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }

    /// Moves the clock by `delta_ns` (negative: back), as an operator or NTP step would.
    pub fn jump(&self, delta_ns: i64) {
        self.offset_ns.fetch_add(delta_ns, Ordering::Relaxed);
    }

    pub fn offset_ns(&self) -> i64 {
        self.offset_ns.load(Ordering::Relaxed)
    }
}

impl Env for SimClock {
    fn wall_clock_ns(&self) -> u64 {
        let elapsed = self.start.elapsed().as_nanos() as i128;
        let drifted = elapsed + elapsed * i128::from(self.drift_ppm) / 1_000_000;
        let ns = i128::from(EPOCH_NS) + drifted + i128::from(self.offset_ns());
        ns.clamp(0, i128::from(u64::MAX)) as u64
    }

    fn random_u64(&self) -> u64 {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).gen()
    }
}

/// The network's faults: cut links (one-way or both), loss, duplication and delay, drawn per
/// message.
#[derive(Debug)]
pub struct Links {
    state: Mutex<LinkState>,
}

#[derive(Debug)]
struct LinkState {
    rng: StdRng,
    /// Links `(from, to)` that deliver nothing.
    cut: BTreeSet<(u64, u64)>,
    loss: f64,
    duplicate: f64,
    delay_max: Duration,
}

impl Links {
    pub fn new(seed: u64, loss: f64, duplicate: f64, delay_max: Duration) -> Self {
        Self {
            state: Mutex::new(LinkState {
                rng: StdRng::seed_from_u64(seed),
                cut: BTreeSet::new(),
                loss,
                duplicate,
                delay_max,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cuts the link from `from` to `to` (one direction).
    pub fn cut(&self, from: u64, to: u64) {
        self.state().cut.insert((from, to));
    }

    /// Mends every cut link.
    pub fn heal_cuts(&self) {
        self.state().cut.clear();
    }

    /// Mends every link, and stops losing and duplicating messages (the network heals for
    /// the final checks).
    pub fn heal(&self) {
        let mut state = self.state();
        state.cut.clear();
        state.loss = 0.0;
        state.duplicate = 0.0;
    }

    /// The links cut now.
    pub fn cut_links(&self) -> Vec<(u64, u64)> {
        self.state().cut.iter().copied().collect()
    }
}

impl LinkFaults for Links {
    fn fate(&self, from: u64, to: u64) -> Fate {
        let mut state = self.state();
        if state.cut.contains(&(from, to)) {
            return Fate::Lose;
        }
        let max = state.delay_max.as_micros() as u64;
        let delay = Duration::from_micros(state.rng.gen_range(0..=max));
        if state.cut.contains(&(to, from)) {
            // The request arrives and is acted on; its answer cannot come back.
            return Fate::LoseReply(delay);
        }
        if state.loss > 0.0 {
            let loss = state.loss;
            if state.rng.gen_bool(loss) {
                // Lost on the way there or on the way back: only the first is sure to do nothing.
                return if state.rng.gen_bool(0.5) {
                    Fate::Lose
                } else {
                    Fate::LoseReply(delay)
                };
            }
        }
        if state.duplicate > 0.0 {
            let duplicate = state.duplicate;
            if state.rng.gen_bool(duplicate) {
                let again = Duration::from_micros(state.rng.gen_range(0..=max.max(1) * 2));
                return Fate::Duplicate(delay, again);
            }
        }
        Fate::Delay(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_clock_follows_virtual_time_with_its_offset_drift_and_jumps() {
        let clock = SimClock::new(-1_000_000_000, 1_000, 1);
        assert_eq!(clock.wall_clock_ns(), EPOCH_NS - 1_000_000_000);
        tokio::time::sleep(Duration::from_secs(10)).await;
        // 10 s of virtual time, 1,000 ppm fast: 10.01 s.
        assert_eq!(
            clock.wall_clock_ns(),
            EPOCH_NS - 1_000_000_000 + 10_010_000_000
        );
        clock.jump(-20_000_000_000);
        assert_eq!(clock.wall_clock_ns(), EPOCH_NS - 10_990_000_000);
    }

    #[test]
    fn a_link_cut_one_way_loses_requests_one_way_and_answers_the_other_and_healing_mends_it() {
        let links = Links::new(3, 0.0, 0.0, Duration::from_millis(5));
        links.cut(1, 2);
        assert_eq!(links.fate(1, 2), Fate::Lose);
        assert!(
            matches!(links.fate(2, 1), Fate::LoseReply(_)),
            "2's requests arrive, their answers cannot come back"
        );
        assert!(matches!(links.fate(1, 3), Fate::Delay(d) if d <= Duration::from_millis(5)));
        links.heal();
        assert!(matches!(links.fate(1, 2), Fate::Delay(_)));
        let duplicating = Links::new(3, 0.0, 1.0, Duration::from_millis(5));
        assert!(matches!(duplicating.fate(1, 2), Fate::Duplicate(..)));
    }
}
