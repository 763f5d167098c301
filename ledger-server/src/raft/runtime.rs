//! openraft's async runtime for Ledger: tokio's, except for its random numbers, which the
//! simulator can seed.
//!
//! openraft draws each election timeout from its runtime's `thread_rng`. With
//! [`openraft::TokioRuntime`] that is the operating system's randomness, so two runs of one
//! schedule elect at different moments. [`LedgerRuntime`] draws from a per-thread generator
//! seeded from the operating system, or, after [`seed_randomness`], from that seed: on a
//! single-threaded runtime with paused time (the simulator, `raft/in_process.rs`) elections
//! then come at the same virtual moments every run. Everything else is tokio's.

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::{AsyncRuntime, OptionalSend, TokioRuntime};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// 0: seeded from the operating system; otherwise the seed of [`seed_randomness`].
static SEED: AtomicU64 = AtomicU64::new(0);
/// Bumped by every [`seed_randomness`], so that each thread reseeds its generator.
static GENERATION: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static RNG: RefCell<(u64, StdRng)> = RefCell::new((u64::MAX, StdRng::from_entropy()));
}

/// Makes every generator of [`LedgerRuntime`] start again from `seed` (0: from the operating
/// system). The simulator calls it before it starts a run's nodes.
pub fn seed_randomness(seed: u64) {
    SEED.store(seed, Ordering::SeqCst);
    GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// A handle on this thread's generator, as `rand::rngs::ThreadRng` is.
#[derive(Clone, Copy, Debug, Default)]
pub struct RuntimeRng;

impl RuntimeRng {
    fn with<T>(f: impl FnOnce(&mut StdRng) -> T) -> T {
        RNG.with(|cell| {
            let mut state = cell.borrow_mut();
            let generation = GENERATION.load(Ordering::SeqCst);
            if state.0 != generation {
                let seed = SEED.load(Ordering::SeqCst);
                state.1 = if seed == 0 {
                    StdRng::from_entropy()
                } else {
                    StdRng::seed_from_u64(seed)
                };
                state.0 = generation;
            }
            f(&mut state.1)
        })
    }
}

impl RngCore for RuntimeRng {
    fn next_u32(&mut self) -> u32 {
        Self::with(|rng| rng.next_u32())
    }

    fn next_u64(&mut self) -> u64 {
        Self::with(|rng| rng.next_u64())
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        Self::with(|rng| rng.fill_bytes(dest))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        Self::with(|rng| rng.try_fill_bytes(dest))
    }
}

/// [`TokioRuntime`] with [`RuntimeRng`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LedgerRuntime;

type Tokio = TokioRuntime;

impl AsyncRuntime for LedgerRuntime {
    type JoinError = <Tokio as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <Tokio as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <Tokio as AsyncRuntime>::Sleep;
    type Instant = <Tokio as AsyncRuntime>::Instant;
    type TimeoutError = <Tokio as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = <Tokio as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = RuntimeRng;
    type OneshotSender<T: OptionalSend> = <Tokio as AsyncRuntime>::OneshotSender<T>;
    type OneshotReceiverError = <Tokio as AsyncRuntime>::OneshotReceiverError;
    type OneshotReceiver<T: OptionalSend> = <Tokio as AsyncRuntime>::OneshotReceiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        Tokio::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Tokio::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Tokio::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Tokio::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Tokio::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        Tokio::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        RuntimeRng
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        Tokio::oneshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn a_seeded_runtime_draws_the_same_numbers_every_time() {
        seed_randomness(42);
        let first: Vec<u64> = (0..5)
            .map(|_| LedgerRuntime::thread_rng().gen_range(0..1_000_000))
            .collect();
        seed_randomness(42);
        let again: Vec<u64> = (0..5)
            .map(|_| LedgerRuntime::thread_rng().gen_range(0..1_000_000))
            .collect();
        assert_eq!(first, again);
        seed_randomness(43);
        let other: Vec<u64> = (0..5)
            .map(|_| LedgerRuntime::thread_rng().gen_range(0..1_000_000))
            .collect();
        assert_ne!(first, other);
        seed_randomness(0);
    }
}
