//! `hold_expiry`: no hold expires before its timeout, by the harness's own clock.
//!
//! Property (docs/consistency.md, "Time"): cluster time is bounded by a quorum of clocks, so a
//! pending transfer expires no earlier than its timeout, within the documented bound, even
//! while the `clock` nemesis shifts one node's clock by an hour or a day. The hold prober
//! (`workload::hold_prober`) makes holds and posts each one later; a post answered
//! `pending_transfer_expired` says that, at the post's cluster time, the hold had expired.
//!
//! The hold was stamped no earlier than its request was sent, and the post no later than its
//! answer came back, each within the bound of one stamp (`2 × 250 ms` of clock tolerance plus
//! half a round trip, `ledger-server/src/clock.rs`). So the harness's time from the hold's
//! invocation to the post's completion must be at least the timeout minus twice that bound,
//! [`SLACK_MS`]; less is an anomaly. Holds and posts whose outcome is unknown say nothing.

use std::collections::BTreeMap;

use serde_json::json;

use super::{Anomalies, Checker, Verdict};
use crate::history::{History, Kind, Op};

/// Twice the bound of one stamp, with room for the round trips on a loaded host.
pub const SLACK_MS: u64 = 1_500;

pub struct HoldExpiry;

impl Checker for HoldExpiry {
    fn name(&self) -> &'static str {
        "hold_expiry"
    }

    fn check(&self, history: &History) -> Verdict {
        let mut anomalies = Anomalies::default();
        // Hold id -> (invocation time, timeout in seconds).
        let mut holds: BTreeMap<u128, (u64, u32)> = BTreeMap::new();
        let (mut expired, mut posted) = (0u64, 0u64);
        let mut closest_ms: Option<i64> = None;
        for event in &history.events {
            match (&event.op, event.kind) {
                (Op::Hold { id, timeout_s, .. }, Kind::Invoke) => {
                    holds.insert(*id, (event.time_ns, *timeout_s));
                }
                (
                    Op::PostHold {
                        hold,
                        result: Some(result),
                        ..
                    },
                    Kind::Ok,
                ) => {
                    if result != "pending_transfer_expired" {
                        posted += 1;
                        continue;
                    }
                    expired += 1;
                    let Some((made, timeout_s)) = holds.get(hold) else {
                        anomalies.push(format!("hold {hold} expired but was never made"));
                        continue;
                    };
                    let age_ms = (event.time_ns.saturating_sub(*made) / 1_000_000) as i64;
                    let early_ms = i64::from(*timeout_s) * 1_000 - age_ms;
                    closest_ms = Some(closest_ms.map_or(early_ms, |c| c.max(early_ms)));
                    if early_ms > SLACK_MS as i64 {
                        anomalies.push(format!(
                            "hold {hold} (timeout {timeout_s} s) was found expired {:.1} s after \
                             it was requested, by the harness's clock",
                            age_ms as f64 / 1e3
                        ));
                    }
                }
                _ => {}
            }
        }
        anomalies.verdict(json!({
            "holds": holds.len(),
            "posted": posted,
            "expired": expired,
            "earliest_expiry_before_timeout_ms": closest_ms,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::HistoryBuilder;

    fn hold(h: &mut HistoryBuilder, id: u128, timeout_s: u32) {
        h.harness(
            Kind::Invoke,
            Op::Hold {
                id,
                timeout_s,
                result: None,
            },
        );
        h.harness(
            Kind::Ok,
            Op::Hold {
                id,
                timeout_s,
                result: Some("created".into()),
            },
        );
    }

    fn post(h: &mut HistoryBuilder, id: u128, hold: u128, result: &str) {
        h.harness(
            Kind::Invoke,
            Op::PostHold {
                id,
                hold,
                result: None,
            },
        );
        h.harness(
            Kind::Ok,
            Op::PostHold {
                id,
                hold,
                result: Some(result.into()),
            },
        );
    }

    #[test]
    fn a_hold_found_expired_long_before_its_timeout_is_flagged() {
        let mut h = HistoryBuilder::new(&[(1, 100)]);
        hold(&mut h, 1, 3_600);
        post(&mut h, 2, 1, "pending_transfer_expired");
        let verdict = HoldExpiry.check(&h.build());
        assert!(!verdict.valid, "{verdict:?}");
        assert_eq!(verdict.stats["expired"], 1);
    }

    #[test]
    fn holds_posted_in_time_or_expired_after_their_timeout_are_accepted() {
        let mut h = HistoryBuilder::new(&[(1, 100)]);
        hold(&mut h, 1, 3_600);
        post(&mut h, 2, 1, "created");
        // A zero timeout would be refused by the server; 0 s here stands for "long enough".
        hold(&mut h, 3, 0);
        post(&mut h, 4, 3, "pending_transfer_expired");
        let verdict = HoldExpiry.check(&h.build());
        assert!(verdict.valid, "{verdict:?}");
        assert_eq!(verdict.stats["posted"], 1);
    }
}
