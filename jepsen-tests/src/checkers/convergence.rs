//! `convergence`: after healing, every replica holds the same state, and the cluster takes
//! writes again.
//!
//! Property (docs/consistency.md promise 4, "one history"; DESIGN.md "identical state hashes
//! after healing"): all replicas apply the same log with the same deterministic function, so
//! once the faults are healed and the nodes have caught up:
//! - every node of `Setup.nodes` has exactly one `FinalRead` (a missing node is an anomaly);
//! - they all report the same `applied_index` and the same state `digest`;
//! - the same balances (all four fields of every workload account), the same set of workload
//!   transfer ids, and the same bets and markets;
//! - and at least one `ProbeWrite` after healing is `ok` (the cluster is live, not just agreed).
//!
//! Every node is compared with the node of the lowest id, so a single diverging node is named.
//!
//! `info` operations play no part: the final reads describe what was applied, whatever the
//! clients were told. A final read that is not `ok` is not a final read.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::views::{self, FinalRead};
use super::{Anomalies, Checker, Verdict};
use crate::history::{BetState, History, MarketState};
use crate::history::{Kind, Op, Process};

pub struct Convergence;

impl Checker for Convergence {
    fn name(&self) -> &'static str {
        "convergence"
    }

    fn check(&self, history: &History) -> Verdict {
        let mut anomalies = Anomalies::default();
        let finals = views::final_reads(history);
        let mut by_node: BTreeMap<u64, Vec<&FinalRead<'_>>> = BTreeMap::new();
        for read in &finals {
            by_node.entry(read.node).or_default().push(read);
        }
        let expected: BTreeSet<u64> = history.setup.nodes.iter().copied().collect();
        for node in &expected {
            if !by_node.contains_key(node) {
                anomalies.push(format!("node {node}: no final read"));
            }
        }
        for (node, reads) in &by_node {
            if reads.len() > 1 {
                let events: Vec<u64> = reads.iter().map(|r| r.event).collect();
                anomalies.push(format!(
                    "node {node}: {} final reads (events {events:?}), expected one",
                    reads.len()
                ));
            }
        }
        let unexpected: Vec<u64> = by_node
            .keys()
            .filter(|n| !expected.is_empty() && !expected.contains(n))
            .copied()
            .collect();
        let compared: Vec<&FinalRead<'_>> = by_node
            .iter()
            .filter(|(node, _)| expected.is_empty() || expected.contains(node))
            .map(|(_, reads)| reads[0])
            .collect();
        if compared.is_empty() {
            anomalies.push("no final read from any node of the cluster".to_string());
        }
        if let Some((first, rest)) = compared.split_first() {
            for read in rest {
                compare(first, read, &mut anomalies);
            }
        }

        let probes: Vec<Kind> = history
            .events
            .iter()
            .filter(|e| e.process == Process::Harness && matches!(e.op, Op::ProbeWrite))
            .filter(|e| e.kind != Kind::Invoke)
            .map(|e| e.kind)
            .collect();
        let probes_ok = probes.iter().filter(|k| **k == Kind::Ok).count();
        if probes_ok == 0 {
            anomalies.push(format!(
                "no probe write succeeded after healing ({} attempted)",
                probes.len()
            ));
        }
        anomalies.verdict(json!({
            "nodes": history.setup.nodes,
            "final_reads": finals.len(),
            "nodes_compared": compared.len(),
            "unexpected_nodes": unexpected,
            "applied_index": compared.first().map(|r| r.applied_index),
            "digest": compared.first().map(|r| r.digest),
            "probe_writes": probes.len(),
            "probe_writes_ok": probes_ok,
        }))
    }
}

/// Compares one node's final read with the reference node's.
fn compare(reference: &FinalRead<'_>, read: &FinalRead<'_>, anomalies: &mut Anomalies) {
    let (n, r) = (read.node, reference.node);
    if read.applied_index != reference.applied_index {
        anomalies.push(format!(
            "node {n}: applied_index {} differs from node {r}'s {}",
            read.applied_index, reference.applied_index
        ));
    }
    if read.digest != reference.digest {
        anomalies.push(format!(
            "node {n}: digest {} differs from node {r}'s {}",
            read.digest, reference.digest
        ));
    }
    let accounts: BTreeSet<&u128> = read
        .balances
        .keys()
        .chain(reference.balances.keys())
        .collect();
    for account in accounts {
        let (mine, theirs) = (read.balances.get(account), reference.balances.get(account));
        if mine != theirs {
            anomalies.push(format!(
                "node {n}: account {account} balance {mine:?} differs from node {r}'s {theirs:?}"
            ));
        }
    }
    let mine: BTreeSet<u128> = read.transfers.iter().copied().collect();
    let theirs: BTreeSet<u128> = reference.transfers.iter().copied().collect();
    if mine != theirs {
        let only_mine: Vec<u128> = mine.difference(&theirs).copied().take(5).collect();
        let only_theirs: Vec<u128> = theirs.difference(&mine).copied().take(5).collect();
        anomalies.push(format!(
            "node {n}: transfer set differs from node {r}'s ({} vs {} ids; only on node {n}: {only_mine:?}, only on node {r}: {only_theirs:?}, at most 5 shown)",
            mine.len(),
            theirs.len()
        ));
    }
    let bets = |b: &[BetState]| -> BTreeMap<u128, BetState> {
        b.iter().map(|x| (x.id, x.clone())).collect()
    };
    let (mine, theirs) = (bets(read.bets), bets(reference.bets));
    if mine != theirs {
        let differing: Vec<u128> = mine
            .keys()
            .chain(theirs.keys())
            .filter(|id| mine.get(id) != theirs.get(id))
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .take(5)
            .collect();
        anomalies.push(format!(
            "node {n}: bets differ from node {r}'s (ids {differing:?}, at most 5 shown)"
        ));
    }
    let markets = |m: &[MarketState]| -> BTreeMap<u128, MarketState> {
        m.iter().map(|x| (x.id, x.clone())).collect()
    };
    if markets(read.markets) != markets(reference.markets) {
        anomalies.push(format!("node {n}: markets differ from node {r}'s"));
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{final_read_op, HistoryBuilder};
    use super::*;

    fn agreed() -> HistoryBuilder {
        let mut h = HistoryBuilder::new(&[(1, 100), (2, 100)]);
        h.transfer(1, 10, 1, 2, 5);
        h
    }

    fn with_digest(node: u64, digest: &str) -> Op {
        let mut op = final_read_op(node, &[(1, 95), (2, 105)], &[10]);
        if let Op::FinalRead { digest: d, .. } = &mut op {
            *d = digest.to_string();
        }
        op
    }

    #[test]
    fn identical_replicas_and_a_successful_probe_are_accepted() {
        let mut h = agreed();
        h.final_reads(&[(1, 95), (2, 105)], &[10]);
        h.probe(false);
        h.probe(true);
        let verdict = Convergence.check(&h.build());
        assert!(verdict.valid, "{verdict:?}");
        assert_eq!(verdict.stats["nodes_compared"], 3);
        assert_eq!(verdict.stats["probe_writes"], 2);
    }

    #[test]
    fn digests_that_differ_are_flagged() {
        let mut h = agreed();
        h.harness_ok(with_digest(1, "aa"));
        h.harness_ok(with_digest(2, "bb"));
        h.harness_ok(with_digest(3, "aa"));
        h.probe(true);
        let verdict = Convergence.check(&h.build());
        assert!(!verdict.valid);
        assert_eq!(
            verdict.anomalies,
            ["node 2: digest bb differs from node 1's aa"]
        );
    }

    #[test]
    fn a_lagging_node_is_flagged_on_every_difference() {
        let mut h = agreed();
        h.final_read(1, &[(1, 95), (2, 105)], &[10]);
        let mut behind = final_read_op(2, &[(1, 100), (2, 100)], &[]);
        if let Op::FinalRead { applied_index, .. } = &mut behind {
            *applied_index = 99;
        }
        h.harness_ok(behind);
        h.final_read(3, &[(1, 95), (2, 105)], &[10]);
        h.probe(true);
        let verdict = Convergence.check(&h.build());
        assert_eq!(verdict.stats["anomalies"], 4, "{verdict:?}");
        assert_eq!(
            verdict.anomalies[0],
            "node 2: applied_index 99 differs from node 1's 100"
        );
        assert!(verdict.anomalies[1].starts_with("node 2: account 1 balance"));
        assert!(verdict.anomalies[3].starts_with(
            "node 2: transfer set differs from node 1's (0 vs 1 ids; only on node 2: [], only on node 1: [10]"
        ));
    }

    #[test]
    fn a_missing_node_and_a_cluster_that_takes_no_write_are_flagged() {
        let mut h = agreed();
        h.final_read(1, &[(1, 95), (2, 105)], &[10]);
        h.final_read(3, &[(1, 95), (2, 105)], &[10]);
        h.probe(false);
        let verdict = Convergence.check(&h.build());
        assert_eq!(
            verdict.anomalies,
            [
                "node 2: no final read",
                "no probe write succeeded after healing (1 attempted)"
            ]
        );
    }

    #[test]
    fn a_history_without_final_reads_is_not_valid() {
        let verdict = Convergence.check(&History::default());
        assert!(!verdict.valid);
        assert_eq!(
            verdict.anomalies,
            [
                "no final read from any node of the cluster",
                "no probe write succeeded after healing (0 attempted)"
            ]
        );
    }
}
