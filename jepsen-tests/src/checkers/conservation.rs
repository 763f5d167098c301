//! `conservation`: money is neither created nor destroyed, and no account goes below zero where
//! its flags forbid it.
//!
//! Property (DESIGN.md "Invariants", docs/consistency.md promise 3): every transfer debits one
//! account and credits another of the same ledger by the same amount, posted and pending
//! separately. All the workload's accounts are on one ledger, so over the whole set of
//! `Setup.initial` accounts:
//! - the sum of nets (`credits_posted - debits_posted`) equals the sum of the initial nets;
//! - the sum of pending nets (`credits_pending - debits_pending`) equals its initial sum (bet
//!   holds are pending transfers player -> house);
//! - an account of `Setup.non_negative` (`debits_must_not_exceed_credits`) never has a negative
//!   net, nor `debits_posted + debits_pending > credits_posted` (the flag's own rule in
//!   `ledger-core/src/create_transfer.rs`, which includes held stakes).
//!
//! Checked on every `ok` `ReadAll` (one linearizable read of every account at once) and on every
//! node's `FinalRead`. A read that lacks a workload account is an anomaly: its sum cannot be
//! checked.
//!
//! `info` operations: writes are not looked at, so an unknown write needs no special case:
//! whatever it did, it moved money without creating any. `info` and `fail` reads carry no values
//! and are skipped.

use std::collections::BTreeMap;

use serde_json::json;

use super::views;
use super::{Anomalies, Checker, Verdict};
use crate::history::{Balance, History};

pub struct Conservation;

impl Checker for Conservation {
    fn name(&self) -> &'static str {
        "conservation"
    }

    fn check(&self, history: &History) -> Verdict {
        let setup = &history.setup;
        let expected = Totals::of(setup.initial.values());
        let mut anomalies = Anomalies::default();
        let reads = views::balance_reads(history);
        for read in &reads {
            let what = format!("event {} (read)", read.event);
            check_balances(&what, read.balances, history, expected, &mut anomalies);
        }
        let finals = views::final_reads(history);
        for read in &finals {
            let what = format!("event {} (final read of node {})", read.event, read.node);
            check_balances(&what, read.balances, history, expected, &mut anomalies);
        }
        anomalies.verdict(json!({
            "accounts": setup.initial.len(),
            "non_negative_accounts": setup.non_negative.len(),
            "initial_net_total": expected.net.to_string(),
            "reads_checked": reads.len(),
            "final_reads_checked": finals.len(),
        }))
    }
}

/// Sums over a set of accounts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Totals {
    net: i128,
    pending_net: i128,
}

impl Totals {
    fn of<'a>(balances: impl Iterator<Item = &'a Balance>) -> Totals {
        balances.fold(Totals::default(), |t, b| Totals {
            net: t.net + b.net(),
            pending_net: t.pending_net + (b.credits_pending as i128 - b.debits_pending as i128),
        })
    }
}

fn check_balances(
    what: &str,
    balances: &BTreeMap<u128, Balance>,
    history: &History,
    expected: Totals,
    anomalies: &mut Anomalies,
) {
    let setup = &history.setup;
    let missing: Vec<u128> = setup
        .initial
        .keys()
        .filter(|id| !balances.contains_key(id))
        .copied()
        .collect();
    if missing.is_empty() {
        let found = Totals::of(setup.initial.keys().map(|id| &balances[id]));
        if found.net != expected.net {
            anomalies.push(format!(
                "{what}: sum of nets over {} accounts is {}, expected {} (initial), off by {}",
                setup.initial.len(),
                found.net,
                expected.net,
                found.net - expected.net
            ));
        }
        if found.pending_net != expected.pending_net {
            anomalies.push(format!(
                "{what}: sum of pending nets (credits_pending - debits_pending) is {}, expected {} (initial)",
                found.pending_net, expected.pending_net
            ));
        }
    } else {
        anomalies.push(format!(
            "{what}: lacks workload account(s) {missing:?}, so its sum cannot be checked"
        ));
    }
    for id in &setup.non_negative {
        let Some(b) = balances.get(id) else { continue };
        if b.net() < 0 {
            anomalies.push(format!(
                "{what}: account {id} has net {} below zero (credits_posted {}, debits_posted {}) but must not go negative",
                b.net(),
                b.credits_posted,
                b.debits_posted
            ));
        } else if b.debits_posted.saturating_add(b.debits_pending) > b.credits_posted {
            anomalies.push(format!(
                "{what}: account {id} has debits_posted {} + debits_pending {} > credits_posted {} (debits_must_not_exceed_credits)",
                b.debits_posted, b.debits_pending, b.credits_posted
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{final_read_op, HistoryBuilder};
    use super::*;
    use crate::history::Op;

    fn bank() -> HistoryBuilder {
        let mut h = HistoryBuilder::new(&[(1, 100), (2, 50), (3, 0)]);
        h.non_negative(&[1, 2]);
        h
    }

    #[test]
    fn a_history_that_only_moves_money_is_accepted() {
        let mut h = bank();
        h.transfer(1, 10, 1, 2, 30);
        h.read(2, &[(1, 70), (2, 80), (3, 0)]);
        // An account without the flag may go negative.
        h.transfer(1, 11, 3, 1, 5);
        h.read(2, &[(1, 75), (2, 80), (3, -5)]);
        h.final_reads(&[(1, 75), (2, 80), (3, -5)], &[10, 11]);
        let verdict = Conservation.check(&h.build());
        assert!(verdict.valid, "{verdict:?}");
        assert_eq!(verdict.stats["reads_checked"], 2);
        assert_eq!(verdict.stats["final_reads_checked"], 3);
    }

    #[test]
    fn a_read_whose_sum_is_off_by_one_is_flagged() {
        let mut h = bank();
        h.transfer(1, 10, 1, 2, 30);
        h.read(2, &[(1, 70), (2, 81), (3, 0)]);
        let verdict = Conservation.check(&h.build());
        assert!(!verdict.valid);
        assert_eq!(verdict.anomalies.len(), 1, "{verdict:?}");
        assert_eq!(
            verdict.anomalies[0],
            "event 3 (read): sum of nets over 3 accounts is 151, expected 150 (initial), off by 1"
        );
    }

    #[test]
    fn a_final_read_that_destroyed_money_is_flagged() {
        let mut h = bank();
        h.final_read(1, &[(1, 100), (2, 50), (3, 0)], &[]);
        h.final_read(2, &[(1, 90), (2, 50), (3, 0)], &[]);
        let verdict = Conservation.check(&h.build());
        assert!(!verdict.valid);
        assert_eq!(verdict.stats["anomalies"], 1);
        assert!(
            verdict.anomalies[0].starts_with("event 1 (final read of node 2): sum of nets"),
            "{verdict:?}"
        );
    }

    #[test]
    fn an_overdraft_of_a_non_negative_account_is_flagged() {
        let mut h = bank();
        h.transfer(1, 10, 1, 3, 120);
        h.read(2, &[(1, -20), (2, 50), (3, 120)]);
        let verdict = Conservation.check(&h.build());
        assert!(!verdict.valid);
        assert_eq!(
            verdict.anomalies,
            ["event 3 (read): account 1 has net -20 below zero (credits_posted 0, debits_posted 20) but must not go negative"]
        );
    }

    #[test]
    fn a_hold_beyond_the_credits_of_a_non_negative_account_is_flagged() {
        let mut h = bank();
        let mut held = final_read_op(1, &[(1, 100), (2, 50), (3, 0)], &[]);
        if let Op::FinalRead { balances, .. } = &mut held {
            let player = balances.get_mut(&1).expect("account 1");
            player.debits_pending = 101;
            balances.get_mut(&3).expect("account 3").credits_pending = 101;
        }
        h.harness_ok(held);
        let verdict = Conservation.check(&h.build());
        assert_eq!(
            verdict.anomalies,
            ["event 0 (final read of node 1): account 1 has debits_posted 0 + debits_pending 101 > credits_posted 100 (debits_must_not_exceed_credits)"]
        );
    }

    #[test]
    fn a_pending_amount_without_its_counterpart_is_flagged() {
        let mut h = bank();
        let mut held = final_read_op(1, &[(1, 100), (2, 50), (3, 0)], &[]);
        if let Op::FinalRead { balances, .. } = &mut held {
            balances.get_mut(&3).expect("account 3").credits_pending = 7;
        }
        h.harness_ok(held);
        let verdict = Conservation.check(&h.build());
        assert_eq!(
            verdict.anomalies,
            ["event 0 (final read of node 1): sum of pending nets (credits_pending - debits_pending) is 7, expected 0 (initial)"]
        );
    }

    #[test]
    fn a_read_that_lacks_an_account_is_flagged() {
        let mut h = bank();
        h.read(2, &[(1, 100), (2, 50)]);
        let verdict = Conservation.check(&h.build());
        assert_eq!(
            verdict.anomalies,
            ["event 1 (read): lacks workload account(s) [3], so its sum cannot be checked"]
        );
    }
}
