//! `exactly_once`: no write is applied twice, whatever the retries.
//!
//! Property (docs/consistency.md promise 2, DESIGN.md "every id is applied at most once; every
//! balance equals the fold of its transfers"): the state machine remembers every id, so a retry
//! answers `exists` and never applies the write again. Checked three ways:
//! - in the history: no write id (transfer, bet, settlement) has two `ok` attempts that both
//!   answered `created` (each says "I applied it");
//! - in each node's `FinalRead`: no transfer id is listed twice, and every listed id was
//!   submitted by some client;
//! - in each node's `FinalRead`, the fold: every workload account's net equals its initial net
//!   plus the amounts of the listed transfers crediting it, minus those debiting it, each id
//!   counted once. A transfer applied twice (or an extra, unlisted one) shows as a mismatch.
//!
//! The fold holds only when transfers are the only thing that moves the workload's money. In
//! the bets workload, holds, payouts and compensations are transfers with derived ids that the
//! final read does not list, so the fold is skipped there and the stats say so; the money of
//! bets is checked by `bets`. In the `ledger` workload, holds, posts and voids move pending
//! and posted amounts apart, so the fold there is `ledger`'s, over every stored transfer.
//!
//! `info` operations: the fold uses the transfers the node lists, whatever their outcome in the
//! history, so an unknown transfer counts exactly when the node says it applied it. Whether that
//! list is right is `no_lost_writes`'s business.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::views::{self, Attempts, FinalRead, TransferWrite};
use super::{Anomalies, Checker, Verdict};
use crate::history::History;

pub struct ExactlyOnce;

impl Checker for ExactlyOnce {
    fn name(&self) -> &'static str {
        "exactly_once"
    }

    fn check(&self, history: &History) -> Verdict {
        let mut anomalies = Anomalies::default();
        let transfers = views::transfers(history);
        let bets = views::bets(history);
        let settles = views::settles(history);
        let mut retried = 0;
        for (kind, attempts) in transfers
            .iter()
            .map(|(id, w)| (("transfer", *id), &w.attempts))
            .chain(bets.iter().map(|(id, w)| (("bet", *id), &w.attempts)))
            .chain(
                settles
                    .iter()
                    .map(|(id, w)| (("settlement", *id), &w.attempts)),
            )
        {
            if attempts.count > 1 {
                retried += 1;
            }
            check_created_once(kind, attempts, &mut anomalies);
        }

        let finals = views::final_reads(history);
        let fold = !views::has_bets(history) && !views::has_ledger_writes(history);
        for read in &finals {
            check_listed_once(read, &transfers, &mut anomalies);
            if fold {
                check_fold(read, history, &transfers, &mut anomalies);
            }
        }
        anomalies.verdict(json!({
            "write_ids": transfers.len() + bets.len() + settles.len(),
            "retried_ids": retried,
            "final_reads": finals.len(),
            "balance_fold": if fold {
                json!(format!("checked on {} final read(s)", finals.len()))
            } else {
                json!("skipped: bets workload (bet transfers are not listed in final reads)")
            },
        }))
    }
}

fn check_created_once((kind, id): (&str, u128), attempts: &Attempts, anomalies: &mut Anomalies) {
    if attempts.created_events.len() > 1 {
        anomalies.push(format!(
            "{kind} {id}: {} attempts answered created (events {:?}): applied more than once",
            attempts.created_events.len(),
            attempts.created_events
        ));
    }
}

fn check_listed_once(
    read: &FinalRead<'_>,
    transfers: &BTreeMap<u128, TransferWrite>,
    anomalies: &mut Anomalies,
) {
    let mut seen = BTreeSet::new();
    for id in read.transfers {
        if !seen.insert(*id) {
            anomalies.push(format!(
                "node {} (event {}): transfer {id} listed more than once",
                read.node, read.event
            ));
        }
        if !transfers.contains_key(id) {
            anomalies.push(format!(
                "node {} (event {}): transfer {id} was never submitted by a client",
                read.node, read.event
            ));
        }
    }
}

fn check_fold(
    read: &FinalRead<'_>,
    history: &History,
    transfers: &BTreeMap<u128, TransferWrite>,
    anomalies: &mut Anomalies,
) {
    let listed: BTreeSet<u128> = read.transfers.iter().copied().collect();
    for (account, initial) in &history.setup.initial {
        let Some(found) = read.balances.get(account) else {
            anomalies.push(format!(
                "node {} (event {}): account {account} missing from the final read",
                read.node, read.event
            ));
            continue;
        };
        let (mut credits, mut debits, mut count) = (0i128, 0i128, 0usize);
        let mut touching: Vec<(u128, u128)> = Vec::new();
        for id in &listed {
            let Some(t) = transfers.get(id) else { continue };
            if t.from == t.to {
                continue;
            }
            if t.to == *account {
                credits += t.amount as i128;
            } else if t.from == *account {
                debits += t.amount as i128;
            } else {
                continue;
            }
            count += 1;
            touching.push((*id, t.amount));
        }
        let expected = initial.net() + credits - debits;
        if found.net() != expected {
            let off = found.net() - expected;
            let suspects: Vec<u128> = touching
                .iter()
                .filter(|(_, amount)| *amount as i128 == off.abs())
                .map(|(id, _)| *id)
                .take(3)
                .collect();
            let hint = if suspects.is_empty() {
                String::new()
            } else {
                format!("; the amount of transfer(s) {suspects:?}")
            };
            anomalies.push(format!(
                "node {} (event {}): account {account} net {}, expected {expected} = initial {} + credits {credits} - debits {debits} of the {count} listed transfer(s) touching it (off by {off}{hint})",
                read.node,
                read.event,
                found.net(),
                initial.net()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{place_bet_op, HistoryBuilder};
    use super::*;

    fn bank() -> HistoryBuilder {
        HistoryBuilder::new(&[(1, 100), (2, 100), (3, 0)])
    }

    #[test]
    fn retries_that_answer_exists_and_a_matching_fold_are_accepted() {
        let mut h = bank();
        h.transfer(1, 10, 1, 2, 5);
        h.invoke_transfer(2, 11, 2, 3, 7);
        h.info(2);
        h.invoke_transfer(2, 11, 2, 3, 7);
        h.ok(2, "exists");
        h.invoke_transfer(1, 12, 3, 1, 1);
        h.info(1);
        h.final_reads(&[(1, 95), (2, 98), (3, 7)], &[10, 11]);
        let verdict = ExactlyOnce.check(&h.build());
        assert!(verdict.valid, "{verdict:?}");
        assert_eq!(verdict.stats["retried_ids"], 1);
    }

    #[test]
    fn a_transfer_counted_twice_in_a_balance_is_flagged() {
        let mut h = bank();
        h.transfer(1, 10, 1, 2, 5);
        h.final_read(1, &[(1, 95), (2, 105), (3, 0)], &[10]);
        // Node 2 lists the transfer once but applied it twice.
        h.final_read(2, &[(1, 90), (2, 110), (3, 0)], &[10]);
        let verdict = ExactlyOnce.check(&h.build());
        assert!(!verdict.valid);
        assert_eq!(
            verdict.anomalies,
            [
                "node 2 (event 3): account 1 net 90, expected 95 = initial 100 + credits 0 - debits 5 of the 1 listed transfer(s) touching it (off by -5; the amount of transfer(s) [10])",
                "node 2 (event 3): account 2 net 110, expected 105 = initial 100 + credits 5 - debits 0 of the 1 listed transfer(s) touching it (off by 5; the amount of transfer(s) [10])",
            ]
        );
    }

    #[test]
    fn two_attempts_that_both_created_the_same_id_are_flagged() {
        let mut h = bank();
        h.invoke_transfer(1, 10, 1, 2, 5);
        h.info(1);
        h.invoke_transfer(1, 10, 1, 2, 5);
        h.ok(1, "created");
        h.invoke_transfer(1, 10, 1, 2, 5);
        h.ok(1, "created");
        let verdict = ExactlyOnce.check(&h.build());
        assert_eq!(
            verdict.anomalies,
            ["transfer 10: 2 attempts answered created (events [3, 5]): applied more than once"]
        );
    }

    #[test]
    fn a_transfer_listed_twice_or_never_submitted_is_flagged() {
        let mut h = bank();
        h.transfer(1, 10, 1, 2, 5);
        h.final_read(1, &[(1, 95), (2, 105), (3, 0)], &[10, 10, 99]);
        let verdict = ExactlyOnce.check(&h.build());
        assert_eq!(
            verdict.anomalies,
            [
                "node 1 (event 2): transfer 10 listed more than once",
                "node 1 (event 2): transfer 99 was never submitted by a client",
            ]
        );
    }

    #[test]
    fn the_fold_is_skipped_for_the_bets_workload_but_retries_are_still_checked() {
        let mut h = bank();
        h.invoke_op(1, place_bet_op(50, 1, 7, 1, 10, 20_000));
        h.ok(1, "created");
        h.invoke_op(1, place_bet_op(50, 1, 7, 1, 10, 20_000));
        h.ok(1, "created");
        h.final_reads(&[(1, 80), (2, 120), (3, 0)], &[]);
        let verdict = ExactlyOnce.check(&h.build());
        assert_eq!(
            verdict.anomalies,
            ["bet 50: 2 attempts answered created (events [1, 3]): applied more than once"]
        );
        assert!(verdict.stats["balance_fold"]
            .as_str()
            .expect("a sentence")
            .starts_with("skipped"));
    }
}
