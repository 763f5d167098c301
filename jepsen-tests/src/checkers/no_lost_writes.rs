//! `no_lost_writes`: every acknowledged write survives on every node; no failed write appears.
//!
//! Property (docs/consistency.md promise 1, DESIGN.md "no acknowledged transfer is lost"): a
//! write is acknowledged only after its Raft entry is committed and applied, so after healing:
//! - every transfer id with at least one `ok` attempt is in the `transfers` of every node's
//!   `FinalRead`;
//! - every transfer id all of whose attempts are `fail` is in none of them (a definite failure
//!   must not take effect later);
//! - the same for bet ids (`PlaceBet`) in the final `bets`, when the run read bets (some final
//!   read lists bets or markets: then every node is checked).
//!
//! `info` operations: an id with no `ok` attempt and at least one `info` or unanswered attempt
//! may have been applied or not, so it may be present or absent; nothing is flagged for it. The
//! stats say how many such ids ended up present everywhere, absent everywhere, or neither
//! (replicas that disagree are the business of `convergence`).
//!
//! Acknowledged writes with no final read to look them up in are an anomaly: the property
//! cannot be checked, and a checker never passes what it could not check.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::views::{self, Attempts, FinalRead};
use super::{Anomalies, Checker, Verdict};
use crate::history::History;

pub struct NoLostWrites;

impl Checker for NoLostWrites {
    fn name(&self) -> &'static str {
        "no_lost_writes"
    }

    fn check(&self, history: &History) -> Verdict {
        let finals = views::final_reads(history);
        let mut anomalies = Anomalies::default();

        let transfer_writes = views::transfers(history);
        let transfers: BTreeMap<u128, &Attempts> = transfer_writes
            .iter()
            .map(|(id, w)| (*id, &w.attempts))
            .collect();
        let transfer_stats = check_ids(
            "transfer",
            &transfers,
            &finals,
            |read| read.transfers.iter().copied().collect(),
            &mut anomalies,
        );

        let bets_read = finals
            .iter()
            .any(|r| !r.bets.is_empty() || !r.markets.is_empty());
        let bet_writes = views::bets(history);
        let bet_attempts: BTreeMap<u128, &Attempts> = bet_writes
            .iter()
            .map(|(id, w)| (*id, &w.attempts))
            .collect();
        let bet_stats = if bets_read || bet_attempts.is_empty() {
            check_ids(
                "bet",
                &bet_attempts,
                &finals,
                |read| read.bets.iter().map(|b| b.id).collect(),
                &mut anomalies,
            )
        } else {
            json!({ "skipped": "no final read lists bets or markets" })
        };

        anomalies.verdict(json!({
            "final_reads": finals.len(),
            "transfers": transfer_stats,
            "bets": bet_stats,
        }))
    }
}

/// Checks the ids of one kind of write against the final reads; returns the figures.
fn check_ids(
    kind: &str,
    writes: &BTreeMap<u128, &Attempts>,
    finals: &[FinalRead<'_>],
    ids_of: impl Fn(&FinalRead<'_>) -> BTreeSet<u128>,
    anomalies: &mut Anomalies,
) -> serde_json::Value {
    let held: Vec<(u64, BTreeSet<u128>)> = finals.iter().map(|r| (r.node, ids_of(r))).collect();
    let acknowledged = writes.values().filter(|a| a.acknowledged()).count();
    if finals.is_empty() && acknowledged > 0 {
        anomalies.push(format!(
            "no final read: {acknowledged} acknowledged {kind}(s) cannot be looked up"
        ));
    }
    let (mut failed, mut unknown_everywhere, mut unknown_nowhere, mut unknown_split) = (0, 0, 0, 0);
    for (id, attempts) in writes {
        let on: Vec<u64> = held
            .iter()
            .filter(|(_, ids)| ids.contains(id))
            .map(|(node, _)| *node)
            .collect();
        if attempts.acknowledged() {
            for (node, ids) in &held {
                if !ids.contains(id) {
                    anomalies.push(format!(
                        "{kind} {id} acknowledged (ok at event {}) but missing on node {node}",
                        attempts.ok_events[0]
                    ));
                }
            }
        } else if attempts.definitely_failed() {
            failed += 1;
            if !on.is_empty() {
                anomalies.push(format!(
                    "{kind} {id} failed on all {} attempt(s) (first invoked at event {}) but present on node(s) {on:?}",
                    attempts.count, attempts.first_invoke_event
                ));
            }
        } else if on.is_empty() {
            unknown_nowhere += 1;
        } else if on.len() == held.len() {
            unknown_everywhere += 1;
        } else {
            unknown_split += 1;
        }
    }
    json!({
        "acknowledged": acknowledged,
        "failed": failed,
        "unknown_present_everywhere": unknown_everywhere,
        "unknown_absent_everywhere": unknown_nowhere,
        "unknown_present_on_some_nodes": unknown_split,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{bet_state, final_read_op, place_bet_op, HistoryBuilder};
    use super::*;
    use crate::history::Op;

    fn bank() -> HistoryBuilder {
        HistoryBuilder::new(&[(1, 100), (2, 100)])
    }

    #[test]
    fn acknowledged_present_failed_absent_and_unknown_either_way_is_accepted() {
        let mut h = bank();
        h.transfer(1, 10, 1, 2, 5);
        h.invoke_transfer(1, 11, 1, 2, 500);
        h.fail(1, "exceeds_credits");
        h.invoke_transfer(1, 12, 2, 1, 3);
        h.info(1);
        h.invoke_transfer(2, 13, 2, 1, 4);
        h.info(2);
        // A retry of an unknown one that finds it applied.
        h.invoke_transfer(2, 13, 2, 1, 4);
        h.ok(2, "exists");
        h.final_reads(&[(1, 99), (2, 101)], &[10, 13]);
        let verdict = NoLostWrites.check(&h.build());
        assert!(verdict.valid, "{verdict:?}");
        assert_eq!(verdict.stats["transfers"]["acknowledged"], 2);
        assert_eq!(verdict.stats["transfers"]["failed"], 1);
        assert_eq!(verdict.stats["transfers"]["unknown_absent_everywhere"], 1);
    }

    #[test]
    fn an_acknowledged_transfer_missing_on_node_2_is_flagged() {
        let mut h = bank();
        h.transfer(1, 10, 1, 2, 5);
        h.transfer(1, 11, 1, 2, 6);
        h.final_read(1, &[(1, 89), (2, 111)], &[10, 11]);
        h.final_read(2, &[(1, 95), (2, 105)], &[10]);
        h.final_read(3, &[(1, 89), (2, 111)], &[11, 10]);
        let verdict = NoLostWrites.check(&h.build());
        assert!(!verdict.valid);
        assert_eq!(
            verdict.anomalies,
            ["transfer 11 acknowledged (ok at event 3) but missing on node 2"]
        );
    }

    #[test]
    fn a_failed_transfer_that_took_effect_is_flagged() {
        let mut h = bank();
        h.invoke_transfer(1, 11, 1, 2, 5);
        h.fail(1, "exceeds_credits");
        h.invoke_transfer(1, 11, 1, 2, 5);
        h.fail(1, "id_already_failed");
        h.final_read(1, &[(1, 95), (2, 105)], &[11]);
        h.final_read(2, &[(1, 100), (2, 100)], &[]);
        let verdict = NoLostWrites.check(&h.build());
        assert_eq!(
            verdict.anomalies,
            ["transfer 11 failed on all 2 attempt(s) (first invoked at event 0) but present on node(s) [1]"]
        );
    }

    #[test]
    fn acknowledged_writes_without_any_final_read_are_flagged() {
        let mut h = bank();
        h.transfer(1, 10, 1, 2, 5);
        let verdict = NoLostWrites.check(&h.build());
        assert_eq!(
            verdict.anomalies,
            ["no final read: 1 acknowledged transfer(s) cannot be looked up"]
        );
    }

    #[test]
    fn an_acknowledged_bet_missing_from_a_node_that_read_bets_is_flagged() {
        let mut h = bank();
        h.invoke_op(1, place_bet_op(50, 1, 7, 1, 10, 20_000));
        h.ok(1, "created");
        h.invoke_op(1, place_bet_op(51, 1, 7, 2, 10, 20_000));
        h.ok(1, "created");
        for node in [1, 2] {
            let mut read = final_read_op(node, &[(1, 100), (2, 100)], &[]);
            if let Op::FinalRead { bets, .. } = &mut read {
                bets.push(bet_state(50, 1, 7, 1, 10));
                if node == 1 {
                    bets.push(bet_state(51, 1, 7, 2, 10));
                }
            }
            h.harness_ok(read);
        }
        let verdict = NoLostWrites.check(&h.build());
        assert_eq!(
            verdict.anomalies,
            ["bet 51 acknowledged (ok at event 3) but missing on node 2"]
        );
    }
}
