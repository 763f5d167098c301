//! What happened in a run, in order, stamped with virtual time: faults, elections, every
//! client operation and its outcome, and each node's final state. Two runs of one seed must
//! give the same trace; its hash is the run's fingerprint (`ledger-sim run --trace` prints
//! it whole; with `LEDGER_SIM_TRACE_LIVE` set, each event goes to stderr as it happens, to
//! follow a run that does not end).

use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub struct Trace {
    start: tokio::time::Instant,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Trace {
    pub fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            lines: Arc::default(),
        }
    }

    /// Records `what` at the current virtual time.
    pub fn event(&self, what: impl std::fmt::Display) {
        let at = self.start.elapsed();
        let line = format!("{:>10.3} ms {what}", at.as_secs_f64() * 1_000.0);
        if std::env::var_os("LEDGER_SIM_TRACE_LIVE").is_some() {
            eprintln!("{line}");
        }
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The fingerprint of the run: xxh3 of every line.
    pub fn hash(&self) -> u64 {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for line in self.lines.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            hasher.update(line.as_bytes());
            hasher.update(b"\n");
        }
        hasher.digest()
    }
}

impl Default for Trace {
    fn default() -> Self {
        Self::new()
    }
}
