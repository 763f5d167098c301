//! The checkers: pure functions from a [`History`] to a [`Verdict`], one property per file.
//!
//! | name | file | property |
//! |---|---|---|
//! | `conservation` | `conservation.rs` | money is neither created nor destroyed; no overdraft where forbidden |
//! | `no_lost_writes` | `no_lost_writes.rs` | every acknowledged write survives; no failed write appears |
//! | `exactly_once` | `exactly_once.rs` | no write is applied twice, whatever the retries |
//! | `linearizable_reads` | `linearizable.rs` | balance reads are linearizable (WGL search per account) |
//! | `consistent_cut` | `consistent_cut.rs` | each read of several balances shows one real-time-consistent set of transfers |
//! | `convergence` | `convergence.rs` | replicas agree after healing, and the cluster takes writes |
//! | `bets` | `bets.rs` | bet statuses follow their market's settlement; players' money follows their bets |
//! | `hold_expiry` | `hold_expiry.rs` | no hold is found expired before its timeout by the harness's clock (the `clock` nemesis) |
//! | `ledger` | `ledger.rs` | the `ledger` workload's holds, posts, voids, chains, balancing and closing transfers applied as the data model says, on every node |
//! | `progress` | `progress.rs` | every `slow` window (a quorum still connected) has a successful operation |
//!
//! `views.rs` holds the readings of a history that several checkers share (the attempts of each
//! write id, the final reads). Every checker treats an `info` operation (or one that never
//! completed) as unknown: it may or may not have taken effect, and each file's header says how
//! it allows for both.

use serde::Serialize;

use crate::history::History;

pub mod bets;
pub mod conservation;
pub mod consistent_cut;
pub mod convergence;
pub mod exactly_once;
pub mod hold_expiry;
pub mod ledger;
pub mod linearizable;
pub mod no_lost_writes;
pub mod progress;
mod views;

#[cfg(test)]
mod test_support;

/// How many anomaly lines a verdict keeps; all of them are counted in `stats.anomalies`.
pub const ANOMALIES_KEPT_MAX: usize = 20;

/// What a checker concluded.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Verdict {
    pub valid: bool,
    /// One line per anomaly found (bounded: the first ones).
    pub anomalies: Vec<String>,
    /// Figures about what was checked (operations, reads, ...).
    pub stats: serde_json::Value,
}

pub trait Checker {
    /// The name in `results.json`.
    fn name(&self) -> &'static str;
    fn check(&self, history: &History) -> Verdict;
}

/// Returns every checker, in the order their verdicts are reported.
pub fn all() -> Vec<Box<dyn Checker>> {
    vec![
        Box::new(conservation::Conservation),
        Box::new(no_lost_writes::NoLostWrites),
        Box::new(exactly_once::ExactlyOnce),
        Box::new(linearizable::LinearizableReads),
        Box::new(consistent_cut::ConsistentCut::default()),
        Box::new(convergence::Convergence),
        Box::new(bets::Bets),
        Box::new(progress::Progress),
        Box::new(hold_expiry::HoldExpiry),
        Box::new(ledger::LedgerModel),
    ]
}

/// Collects a checker's anomalies: keeps the first [`ANOMALIES_KEPT_MAX`] lines and counts all.
#[derive(Debug, Default)]
pub(crate) struct Anomalies {
    kept: Vec<String>,
    count: u64,
}

impl Anomalies {
    pub(crate) fn push(&mut self, line: String) {
        self.count += 1;
        if self.kept.len() < ANOMALIES_KEPT_MAX {
            self.kept.push(line);
        }
    }

    /// Returns the verdict: valid exactly when no anomaly was found. `stats` must be a JSON
    /// object; the anomaly count is added to it as `anomalies`.
    pub(crate) fn verdict(self, mut stats: serde_json::Value) -> Verdict {
        assert!(stats.is_object(), "a verdict's stats are a JSON object");
        stats["anomalies"] = self.count.into();
        Verdict {
            valid: self.count == 0,
            anomalies: self.kept,
            stats,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_returns_every_checker_once_in_report_order() {
        let names: Vec<&str> = all().iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "conservation",
                "no_lost_writes",
                "exactly_once",
                "linearizable_reads",
                "consistent_cut",
                "convergence",
                "bets",
                "progress",
                "hold_expiry",
                "ledger"
            ]
        );
    }

    #[test]
    fn anomalies_are_bounded_but_all_counted() {
        let mut anomalies = Anomalies::default();
        for i in 0..(ANOMALIES_KEPT_MAX + 5) {
            anomalies.push(format!("anomaly {i}"));
        }
        let verdict = anomalies.verdict(serde_json::json!({}));
        assert!(!verdict.valid);
        assert_eq!(verdict.anomalies.len(), ANOMALIES_KEPT_MAX);
        assert_eq!(verdict.stats["anomalies"], (ANOMALIES_KEPT_MAX + 5) as u64);
        assert!(Anomalies::default().verdict(serde_json::json!({})).valid);
    }
}
