//! What a seed makes of a run: the cluster's size, how long it runs, the workload, and which
//! faults are on and how often they strike.
//!
//! Swarm testing: each seed switches each kind of fault on or off (half the seeds each) and
//! draws its strength, so that some runs meet one fault alone and others all of them at
//! once. Everything here is drawn from the seed before the run starts.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How far apart the clocks NTP keeps in step may be.
pub const GOOD_CLOCK_SKEW: Duration = Duration::from_millis(50);

/// A run's shape, drawn from its seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub seed: u64,
    /// Voters: 3 or 5.
    pub nodes: u64,
    /// How long the workload runs, in virtual time (healing and checking come after).
    pub duration: Duration,
    /// Concurrent clients, each with one request in flight.
    pub clients: usize,
    /// Accounts the transfers move money between.
    pub accounts: u64,
    /// Entries between snapshots (small: followers catch up by snapshot).
    pub snapshot_logs: u64,
    pub faults: Faults,
}

/// Which faults strike, and how often. Zero or `false`: off.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Probability that a message between two nodes is lost.
    pub loss: f64,
    /// Probability that a message between two nodes is delivered twice.
    pub duplicate: f64,
    /// Each message is held up to this long, in each direction (messages overtake each other).
    pub delay_max: Duration,
    /// Partitions come and go: some links cut, in one direction or both.
    pub partitions: bool,
    /// Nodes crash and restart from what their storage holds.
    pub crashes: bool,
    /// Crashes are power losses half the time: what was not fsynced is lost, and some writes
    /// are torn at the log's tail. Now and then the whole cluster loses power at once.
    pub power_loss: bool,
    /// An fsync of the log fails now and then (EIO): the node must stop rather than go on,
    /// and is restarted from its storage, as its service manager would (builds with the
    /// `fault-injection` feature; without it, this fault is skipped).
    pub fsync_errors: bool,
    /// The wall clocks of a minority of nodes are off by up to this much, forwards or back;
    /// the others agree within [`GOOD_CLOCK_SKEW`], as NTP keeps them. (With no majority of
    /// clocks in agreement, a leader refuses to stamp entries by design: `clock.rs`.)
    pub clock_skew: Duration,
    /// The wall clocks of that minority jump forwards or back during the run.
    pub clock_jumps: bool,
    /// Probability that a client sends an acknowledged transfer again (an application's
    /// retry), which must be answered `exists` and applied once.
    pub resend: f64,
}

impl Plan {
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_1ed6_e400_0000);
        let on = |rng: &mut StdRng| rng.gen_bool(0.5);
        let faults = Faults {
            loss: if on(&mut rng) {
                rng.gen_range(0.001..0.1)
            } else {
                0.0
            },
            duplicate: 0.0,
            delay_max: if on(&mut rng) {
                Duration::from_millis(rng.gen_range(1..=200))
            } else {
                Duration::from_millis(1)
            },
            partitions: on(&mut rng),
            crashes: on(&mut rng),
            power_loss: on(&mut rng),
            fsync_errors: on(&mut rng),
            clock_skew: if on(&mut rng) {
                Duration::from_millis(rng.gen_range(1..=120_000))
            } else {
                Duration::ZERO
            },
            clock_jumps: on(&mut rng),
            resend: if on(&mut rng) {
                rng.gen_range(0.01..0.3)
            } else {
                0.0
            },
        };
        let mut plan = Self {
            seed,
            nodes: if rng.gen_bool(0.8) { 3 } else { 5 },
            duration: Duration::from_millis(rng.gen_range(5_000..=20_000)),
            clients: rng.gen_range(1..=6),
            accounts: rng.gen_range(2..=16),
            snapshot_logs: rng.gen_range(50..=400),
            faults,
        };
        // Drawn last, so that the faults above stay what they were for every seed.
        if on(&mut rng) {
            plan.faults.duplicate = rng.gen_range(0.01..0.1);
        }
        plan
    }
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let x = &self.faults;
        write!(
            f,
            "seed {}: {} nodes, {:.1} s, {} clients, {} accounts, snapshot every {} entries; \
             loss {:.3}, duplicates {:.3}, delay up to {} ms, partitions {}, crashes {}, power loss {}, fsync \
             errors {}, clock skew up to {} ms, clock jumps {}, resend {:.2}",
            self.seed,
            self.nodes,
            self.duration.as_secs_f64(),
            self.clients,
            self.accounts,
            self.snapshot_logs,
            x.loss,
            x.duplicate,
            x.delay_max.as_millis(),
            x.partitions,
            x.crashes,
            x.power_loss,
            x.fsync_errors,
            x.clock_skew.as_millis(),
            x.clock_jumps,
            x.resend
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_makes_the_same_plan_and_seeds_differ() {
        assert_eq!(Plan::from_seed(7), Plan::from_seed(7));
        let plans: Vec<Plan> = (0..64).map(Plan::from_seed).collect();
        // Swarm: each fault is on in some plans and off in others.
        assert!(plans.iter().any(|p| p.faults.crashes) && plans.iter().any(|p| !p.faults.crashes));
        assert!(plans.iter().any(|p| p.faults.partitions));
        assert!(plans.iter().any(|p| !p.faults.partitions));
        assert!(plans.iter().any(|p| p.faults.loss > 0.0));
        assert!(plans.iter().any(|p| p.faults.loss == 0.0));
        assert!(plans.iter().any(|p| p.nodes == 5));
        assert!(plans.iter().any(|p| p.faults.duplicate > 0.0));
    }
}
