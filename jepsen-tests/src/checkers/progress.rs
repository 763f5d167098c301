//! `progress`: the cluster keeps serving through every fault that leaves a quorum connected.
//!
//! Property (docs/consistency.md, "Latency profiles"): a `slow` fault delays and drops traffic
//! on every link but cuts none, within the round trips the servers' latency profile is built
//! for, so a majority can still elect, commit and confirm reads. Each `slow` window must
//! therefore hold at least one client operation that completed `ok` inside it. Before the
//! profiles, windows of +105 to +141 ms per direction had no successful read or write for their
//! whole length: openraft 0.9 timed every AppendEntries out at the 150 ms heartbeat.
//!
//! Other faults are not held to it: a partition may leave the clients' leader in a minority,
//! and an election can outlast a short window.

use serde_json::json;

use super::{Anomalies, Checker, Verdict};
use crate::history::{History, Kind, Op, Process};

pub struct Progress;

/// The faults during which the cluster must keep serving.
const MUST_SERVE: &[&str] = &["slow"];

impl Checker for Progress {
    fn name(&self) -> &'static str {
        "progress"
    }

    fn check(&self, history: &History) -> Verdict {
        let mut anomalies = Anomalies::default();
        // Open windows by name: start time.
        let mut open: Vec<(&str, u64)> = Vec::new();
        let mut windows = Vec::new();
        for event in &history.events {
            if let (Process::Nemesis, Op::Fault { name, start, .. }) = (&event.process, &event.op) {
                if !MUST_SERVE.contains(&name.as_str()) {
                    continue;
                }
                if *start {
                    open.push((name, event.time_ns));
                } else if let Some(i) = open.iter().position(|(n, _)| n == name) {
                    let (name, from) = open.remove(i);
                    windows.push((name, from, event.time_ns));
                }
            }
        }
        let mut served = Vec::new();
        for (name, from, to) in &windows {
            let ok = history
                .events
                .iter()
                .filter(|e| matches!(e.process, Process::Client(_)) && e.kind == Kind::Ok)
                .filter(|e| e.time_ns >= *from && e.time_ns <= *to)
                .count();
            served.push(ok);
            if ok == 0 {
                anomalies.push(format!(
                    "no operation succeeded during the {name} window {:.1}-{:.1} s",
                    *from as f64 / 1e9,
                    *to as f64 / 1e9
                ));
            }
        }
        anomalies.verdict(json!({
            "windows": windows.len(),
            "fewest_ok_in_a_window": served.iter().min(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::HistoryBuilder;

    #[test]
    fn a_slow_window_without_a_success_is_flagged() {
        let mut h = HistoryBuilder::new(&[(1, 100), (2, 100)]);
        h.transfer(0, 10, 1, 2, 5);
        h.fault("slow", true);
        h.invoke_transfer(0, 11, 1, 2, 5);
        h.info(0);
        h.fault("slow", false);
        h.transfer(0, 12, 1, 2, 5);
        let verdict = Progress.check(&h.build());
        assert!(!verdict.valid, "{verdict:?}");
        assert_eq!(verdict.stats["windows"], 1);
    }

    #[test]
    fn a_slow_window_with_a_success_and_other_faults_are_accepted() {
        let mut h = HistoryBuilder::new(&[(1, 100), (2, 100)]);
        h.fault("slow", true);
        h.transfer(0, 10, 1, 2, 5);
        h.fault("slow", false);
        // A partition may stop the clients' leader: not held to progress.
        h.fault("partition", true);
        h.invoke_transfer(0, 11, 1, 2, 5);
        h.info(0);
        h.fault("partition", false);
        let verdict = Progress.check(&h.build());
        assert!(verdict.valid, "{verdict:?}");
        assert_eq!(verdict.stats["fewest_ok_in_a_window"], 1);
    }
}
