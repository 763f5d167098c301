//! The node's environment: its wall clock and its randomness.
//!
//! Every place in the server that reads the wall clock or draws a random number asks an
//! [`Env`]: cluster time (`clock.rs`), token expiry (`security/auth.rs`), backup file names
//! (`grpc/admin_service.rs`), request ids (`grpc/ledger_service.rs`) and a new database's
//! incarnation (`raft/log_store.rs`). A node in production runs on [`SystemEnv`]; tests and
//! the simulator give each node a [`ManualEnv`], whose clock they set (skew, drift, jumps) and
//! whose generator is seeded, so that a run is a function of its seed. Monotonic time is
//! tokio's (`tokio::time::Instant`), which a paused tokio runtime drives.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub trait Env: Send + Sync + std::fmt::Debug {
    /// Nanoseconds since the Unix epoch by this node's wall clock (0 if it reads before it).
    fn wall_clock_ns(&self) -> u64;
    /// A uniformly drawn number.
    fn random_u64(&self) -> u64;

    /// Whole seconds since the Unix epoch by this node's wall clock.
    fn wall_clock_secs(&self) -> u64 {
        self.wall_clock_ns() / 1_000_000_000
    }
}

/// The machine's clock and the operating system's randomness.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemEnv;

impl Env for SystemEnv {
    fn wall_clock_ns(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
            .unwrap_or(0)
    }

    fn random_u64(&self) -> u64 {
        rand::random()
    }
}

/// A wall clock that moves only when told to, and a seeded generator.
#[derive(Debug)]
pub struct ManualEnv {
    wall_clock_ns: AtomicI64,
    rng: Mutex<StdRng>,
}

impl ManualEnv {
    pub fn new(wall_clock_ns: u64, seed: u64) -> Self {
        Self {
            wall_clock_ns: AtomicI64::new(wall_clock_ns.min(i64::MAX as u64) as i64),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }

    /// Sets the wall clock (a jump, forwards or back).
    pub fn set_wall_clock_ns(&self, ns: u64) {
        self.wall_clock_ns
            .store(ns.min(i64::MAX as u64) as i64, Ordering::Relaxed);
    }

    /// Moves the wall clock by `delta_ns` (negative: back).
    pub fn advance_ns(&self, delta_ns: i64) {
        let _ = self
            .wall_clock_ns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |ns| {
                Some(ns.saturating_add(delta_ns).max(0))
            });
    }
}

impl Env for ManualEnv {
    fn wall_clock_ns(&self) -> u64 {
        self.wall_clock_ns.load(Ordering::Relaxed).max(0) as u64
    }

    fn random_u64(&self) -> u64 {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).gen()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_env_moves_only_when_told_and_replays_its_draws() {
        let env = ManualEnv::new(5_000_000_000, 7);
        assert_eq!(env.wall_clock_ns(), 5_000_000_000);
        assert_eq!(env.wall_clock_secs(), 5);
        env.advance_ns(-6_000_000_000);
        assert_eq!(env.wall_clock_ns(), 0, "never before the epoch");
        env.set_wall_clock_ns(42);
        assert_eq!(env.wall_clock_ns(), 42);
        let draws: Vec<u64> = (0..4).map(|_| env.random_u64()).collect();
        let again = ManualEnv::new(0, 7);
        assert_eq!(
            draws,
            (0..4).map(|_| again.random_u64()).collect::<Vec<_>>()
        );
        let other = ManualEnv::new(0, 8);
        assert_ne!(draws[0], other.random_u64());
    }

    #[test]
    fn the_system_env_reads_the_machine_clock() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let read = SystemEnv.wall_clock_ns();
        assert!(read >= before && read - before < 60_000_000_000);
    }
}
