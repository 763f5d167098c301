//! `ledger`: the `ledger` workload's writes (holds, posts, voids, linked chains, balancing and
//! closing transfers) are applied as the data model says, on every node.
//!
//! Property (DESIGN.md's two-phase transfers, linked events and closing; docs/data-model.md),
//! checked on each node's final read, which lists every transfer of the workload that node
//! stores (as stored: a post names the amount it moved, a balancing transfer the amount it
//! could move), the status of every pending transfer, and the accounts it has closed:
//! - **balances are the fold of the stored transfers**: for every workload account, posted
//!   debits and credits are the initial ones plus every stored plain, balancing and post
//!   transfer, and pending ones the initial ones plus every stored pending transfer still
//!   `pending`. A transfer applied twice, an expiry that released nothing, a post that moved
//!   the wrong amount: each shows here;
//! - **a pending transfer is resolved at most once, as its status says**: `posted` with exactly
//!   one stored post, `voided` with one void, `pending` or `expired` with neither, `expired`
//!   only with a timeout; no post moves more than was held; no post or void without its hold;
//! - **linked chains are all or nothing**: a node stores every transfer of a chain or none;
//! - **what was acknowledged is there, what failed is not**: every transfer of an `ok` write
//!   is stored, none of a write whose every attempt failed; a stored transfer has the
//!   accounts, flags and timeout it was submitted with, and the amount (at most the amount,
//!   for a balancing transfer);
//! - **a closed account takes no new transfer**: the accounts closed at the end are exactly
//!   those with a closing hold `pending` or `posted`, and no stored transfer other than a post
//!   or void touches an account at a cluster time when a closing hold had it closed (from the
//!   hold's timestamp to its void's, or to its timeout when it expired, or on).
//!
//! `info` writes may or may not have been applied: only all-or-nothing and the fold constrain
//! them. Conservation and overdrafts on every read are `conservation`'s business.

use std::collections::{BTreeMap, BTreeSet};

use ledger_core::TransferFlags;
use serde_json::json;

use super::views::{self, FinalRead};
use super::{Anomalies, Checker, Verdict};
use crate::history::{Balance, History, Kind, LedgerTransfer, Op, StoredTransfer};

const NANOS_PER_SECOND: u64 = 1_000_000_000;

pub struct LedgerModel;

/// One write of the workload over all its attempts (the same transfer ids each time).
struct Write<'a> {
    what: &'a str,
    transfers: &'a [LedgerTransfer],
    acknowledged: bool,
    /// Every attempt ended `fail`.
    failed: bool,
}

impl Checker for LedgerModel {
    fn name(&self) -> &'static str {
        "ledger"
    }

    fn check(&self, history: &History) -> Verdict {
        let mut anomalies = Anomalies::default();
        if !views::has_ledger_writes(history) {
            return anomalies.verdict(json!({
                "checked": false,
                "reason": "no ledger workload writes",
            }));
        }
        let writes = writes(history);
        let submitted: BTreeMap<u128, (&LedgerTransfer, &str)> = writes
            .values()
            .flat_map(|w| w.transfers.iter().map(move |t| (t.id, (t, w.what))))
            .collect();
        let finals = views::final_reads(history);
        let mut stored_total = 0;
        for read in &finals {
            let events = final_ledger(history, read.event);
            let Some((stored, pending, closed)) = events else {
                continue;
            };
            stored_total += stored.len();
            let node = format!("node {}", read.node);
            let by_id: BTreeMap<u128, &StoredTransfer> =
                stored.iter().map(|s| (s.transfer.id, s)).collect();
            check_fold(&node, read, history, stored, pending, &mut anomalies);
            check_pending(&node, stored, pending, &mut anomalies);
            check_writes(&node, &writes, &by_id, &submitted, &mut anomalies);
            check_closing(&node, stored, pending, closed, &mut anomalies);
        }
        let count = |f: &dyn Fn(&Write) -> bool| writes.values().filter(|w| f(w)).count();
        anomalies.verdict(json!({
            "writes": writes.len(),
            "acknowledged": count(&|w| w.acknowledged),
            "failed": count(&|w| w.failed),
            "unknown": count(&|w| !w.acknowledged && !w.failed),
            "chains": count(&|w| w.what == "chain"),
            "final_reads_checked": finals.len(),
            "stored_transfers_checked": stored_total,
        }))
    }
}

/// The workload's writes, keyed by their first transfer id, with how their attempts ended.
fn writes(history: &History) -> BTreeMap<u128, Write<'_>> {
    let mut writes: BTreeMap<u128, Write<'_>> = BTreeMap::new();
    for pair in history.pairs() {
        let Op::LedgerWrite {
            what, transfers, ..
        } = &pair.invoke.op
        else {
            continue;
        };
        let Some(first) = transfers.first() else {
            continue;
        };
        let write = writes.entry(first.id).or_insert(Write {
            what,
            transfers,
            acknowledged: false,
            failed: true,
        });
        match pair.outcome() {
            Kind::Ok => {
                write.acknowledged = true;
                write.failed = false;
            }
            Kind::Fail => {}
            _ => write.failed = false,
        }
    }
    writes
}

type LedgerFinal<'a> = (
    &'a [StoredTransfer],
    &'a [crate::history::PendingState],
    &'a [u128],
);

fn final_ledger(history: &History, event: u64) -> Option<LedgerFinal<'_>> {
    match &history.events.get(event as usize)?.op {
        Op::FinalRead {
            stored,
            pending,
            closed,
            ..
        } => Some((stored, pending, closed)),
        _ => None,
    }
}

fn flags(t: &LedgerTransfer) -> TransferFlags {
    TransferFlags(t.flags)
}

fn is_resolution(t: &LedgerTransfer) -> bool {
    flags(t).intersects(
        TransferFlags::POST_PENDING_TRANSFER.union(TransferFlags::VOID_PENDING_TRANSFER),
    )
}

fn status_of(pending: &[crate::history::PendingState], id: u128) -> Option<&str> {
    pending
        .iter()
        .find(|p| p.id == id)
        .map(|p| p.status.as_str())
}

/// Balances are the initial ones plus the fold of the stored transfers.
fn check_fold(
    node: &str,
    read: &FinalRead,
    history: &History,
    stored: &[StoredTransfer],
    pending: &[crate::history::PendingState],
    anomalies: &mut Anomalies,
) {
    let mut expected: BTreeMap<u128, Balance> = history.setup.initial.clone();
    for s in stored {
        let t = &s.transfer;
        let f = flags(t);
        let (posted, held) = if f.contains(TransferFlags::PENDING) {
            (false, status_of(pending, t.id) == Some("pending"))
        } else if f.contains(TransferFlags::VOID_PENDING_TRANSFER) {
            (false, false)
        } else {
            (true, false)
        };
        if let Some(b) = expected.get_mut(&t.from) {
            if posted {
                b.debits_posted += t.amount;
            }
            if held {
                b.debits_pending += t.amount;
            }
        }
        if let Some(b) = expected.get_mut(&t.to) {
            if posted {
                b.credits_posted += t.amount;
            }
            if held {
                b.credits_pending += t.amount;
            }
        }
    }
    for (account, want) in &expected {
        match read.balances.get(account) {
            Some(got) if got == want => {}
            Some(got) => anomalies.push(format!(
                "{node} account {account}: balances {got:?}, the fold of its stored transfers gives {want:?}"
            )),
            None => anomalies.push(format!("{node}: account {account} missing from the final read")),
        }
    }
}

/// Each pending transfer is resolved at most once, as its status says.
fn check_pending(
    node: &str,
    stored: &[StoredTransfer],
    pending: &[crate::history::PendingState],
    anomalies: &mut Anomalies,
) {
    let mut resolutions: BTreeMap<u128, Vec<&LedgerTransfer>> = BTreeMap::new();
    for s in stored.iter().filter(|s| is_resolution(&s.transfer)) {
        resolutions
            .entry(s.transfer.pending_id)
            .or_default()
            .push(&s.transfer);
    }
    let holds: BTreeMap<u128, &LedgerTransfer> = stored
        .iter()
        .filter(|s| flags(&s.transfer).contains(TransferFlags::PENDING))
        .map(|s| (s.transfer.id, &s.transfer))
        .collect();
    for (id, hold) in &holds {
        let resolved = resolutions.get(id).map(Vec::as_slice).unwrap_or_default();
        let posts: Vec<&&LedgerTransfer> = resolved
            .iter()
            .filter(|r| flags(r).contains(TransferFlags::POST_PENDING_TRANSFER))
            .collect();
        let status = status_of(pending, *id);
        let consistent = match status {
            Some("posted") => resolved.len() == 1 && posts.len() == 1,
            Some("voided") => resolved.len() == 1 && posts.is_empty(),
            Some("pending") => resolved.is_empty(),
            Some("expired") => resolved.is_empty() && hold.timeout_s > 0,
            _ => false,
        };
        if !consistent {
            let ids: Vec<u128> = resolved.iter().map(|r| r.id).collect();
            anomalies.push(format!(
                "{node} hold {id} (timeout {} s): status {status:?} with posts and voids {ids:?}",
                hold.timeout_s
            ));
        }
        for post in posts {
            if post.amount > hold.amount {
                anomalies.push(format!(
                    "{node} post {} moved {} of hold {id}, which held {}",
                    post.id, post.amount, hold.amount
                ));
            }
        }
    }
    for (pending_id, resolved) in &resolutions {
        if !holds.contains_key(pending_id) {
            anomalies.push(format!(
                "{node}: {:?} resolve hold {pending_id}, which is not stored",
                resolved.iter().map(|r| r.id).collect::<Vec<_>>()
            ));
        }
    }
}

/// Acknowledged writes are stored, failed ones are not, chains are all or nothing, and what is
/// stored is what was submitted.
fn check_writes(
    node: &str,
    writes: &BTreeMap<u128, Write<'_>>,
    by_id: &BTreeMap<u128, &StoredTransfer>,
    submitted: &BTreeMap<u128, (&LedgerTransfer, &str)>,
    anomalies: &mut Anomalies,
) {
    for (first, write) in writes {
        let found = write
            .transfers
            .iter()
            .filter(|t| by_id.contains_key(&t.id))
            .count();
        if write.acknowledged && found < write.transfers.len() {
            anomalies.push(format!(
                "{node}: acknowledged {} {first} has {found} of its {} transfers",
                write.what,
                write.transfers.len()
            ));
        } else if write.failed && found > 0 {
            anomalies.push(format!(
                "{node}: failed {} {first} has {found} of its {} transfers",
                write.what,
                write.transfers.len()
            ));
        } else if found != 0 && found != write.transfers.len() {
            anomalies.push(format!(
                "{node}: {} {first} is partly applied: {found} of {} transfers",
                write.what,
                write.transfers.len()
            ));
        }
    }
    for (id, s) in by_id {
        let Some((t, what)) = submitted.get(id) else {
            continue;
        };
        let got = &s.transfer;
        let without_link = |f: u16| f & !TransferFlags::LINKED.0;
        let amount_ok = if flags(t).contains(TransferFlags::BALANCING_DEBIT) {
            got.amount <= t.amount
        } else {
            is_resolution(t) || got.amount == t.amount
        };
        let fields_ok = without_link(got.flags) == without_link(t.flags)
            && got.pending_id == t.pending_id
            && (is_resolution(t)
                || (got.from, got.to, got.timeout_s) == (t.from, t.to, t.timeout_s));
        if !amount_ok || !fields_ok {
            anomalies.push(format!(
                "{node}: {what} transfer {id} stored as {got:?}, submitted as {t:?}"
            ));
        }
    }
}

/// The accounts closed at the end are those a closing hold still closes, and no transfer
/// touched an account while a closing hold had it closed.
fn check_closing(
    node: &str,
    stored: &[StoredTransfer],
    pending: &[crate::history::PendingState],
    closed: &[u128],
    anomalies: &mut Anomalies,
) {
    let closing = |s: &&StoredTransfer| {
        let f = flags(&s.transfer);
        f.contains(TransferFlags::PENDING) && f.contains(TransferFlags::CLOSING_DEBIT)
    };
    let mut still_closed: BTreeSet<u128> = BTreeSet::new();
    let mut windows: Vec<(u128, u64, u64, u128)> = Vec::new();
    for c in stored.iter().filter(closing) {
        let status = status_of(pending, c.transfer.id);
        let until = match status {
            Some("pending") | Some("posted") => {
                still_closed.insert(c.transfer.from);
                u64::MAX
            }
            Some("voided") => stored
                .iter()
                .find(|v| v.transfer.pending_id == c.transfer.id && is_resolution(&v.transfer))
                .map(|v| v.timestamp)
                .unwrap_or(c.timestamp),
            Some("expired") => c.timestamp + u64::from(c.transfer.timeout_s) * NANOS_PER_SECOND,
            _ => c.timestamp,
        };
        windows.push((c.transfer.from, c.timestamp, until, c.transfer.id));
    }
    let closed: BTreeSet<u128> = closed.iter().copied().collect();
    if closed != still_closed {
        anomalies.push(format!(
            "{node}: accounts {closed:?} closed at the end, closing holds in force on {still_closed:?}"
        ));
    }
    for s in stored {
        let t = &s.transfer;
        if is_resolution(t) {
            continue;
        }
        for (account, from, until, hold) in &windows {
            let touches = t.from == *account || t.to == *account;
            if touches && t.id != *hold && s.timestamp > *from && s.timestamp < *until {
                anomalies.push(format!(
                    "{node}: transfer {} touched account {account} at {}, closed by hold {hold} from {from} to {until}",
                    t.id, s.timestamp
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::balances;
    use crate::history::{PendingState, Process, Recorder};

    const PENDING: u16 = TransferFlags::PENDING.0;
    const POST: u16 = TransferFlags::POST_PENDING_TRANSFER.0;
    const VOID: u16 = TransferFlags::VOID_PENDING_TRANSFER.0;
    const LINKED: u16 = TransferFlags::LINKED.0;
    const CLOSING: u16 = TransferFlags::PENDING.0 | TransferFlags::CLOSING_DEBIT.0;

    fn t(
        id: u128,
        from: u128,
        to: u128,
        amount: u128,
        pending_id: u128,
        flags: u16,
    ) -> LedgerTransfer {
        LedgerTransfer {
            id,
            from,
            to,
            amount,
            pending_id,
            flags,
            timeout_s: 0,
        }
    }

    /// A history of `writes` (each one attempt, by its own client, ending as `kind`), then one
    /// final read of node 1 holding `stored` (timestamps in order), `pending` and `closed`,
    /// with `nets`/pending balances given as full balances.
    struct Run {
        recorder: Recorder,
        time: u64,
    }

    impl Run {
        fn new() -> Run {
            let mut recorder = Recorder::default();
            recorder.history.setup.initial = balances(&[(1, 100), (2, 100), (11, 100)]);
            recorder.history.setup.nodes = vec![1];
            Run { recorder, time: 0 }
        }

        fn write(&mut self, client: u64, what: &str, transfers: Vec<LedgerTransfer>, kind: Kind) {
            let op = |results: Vec<String>| Op::LedgerWrite {
                what: what.into(),
                transfers: transfers.clone(),
                attempt: 0,
                results,
            };
            self.time += 10;
            let p = Process::Client(client);
            self.recorder
                .push(self.time, p, Kind::Invoke, op(vec![]), None);
            self.time += 10;
            let result = match kind {
                Kind::Ok => vec!["created".to_string(); transfers.len()],
                Kind::Fail => vec!["linked_event_failed".to_string(); transfers.len()],
                _ => vec![],
            };
            self.recorder.push(self.time, p, kind, op(result), None);
        }

        fn finish(
            mut self,
            stored: Vec<LedgerTransfer>,
            pending: &[(u128, &str)],
            closed: Vec<u128>,
            balances: BTreeMap<u128, Balance>,
        ) -> History {
            let stored = stored
                .into_iter()
                .enumerate()
                .map(|(i, transfer)| StoredTransfer {
                    transfer,
                    timestamp: 1_000 * (i as u64 + 1),
                })
                .collect();
            let pending = pending
                .iter()
                .map(|(id, status)| PendingState {
                    id: *id,
                    status: status.to_string(),
                })
                .collect();
            self.time += 10;
            self.recorder.push(
                self.time,
                Process::Harness,
                Kind::Ok,
                Op::FinalRead {
                    node: 1,
                    applied_index: 10,
                    digest: "d".into(),
                    balances,
                    transfers: vec![],
                    bets: vec![],
                    markets: vec![],
                    stored,
                    pending,
                    closed,
                },
                None,
            );
            self.recorder.history
        }
    }

    fn bal(
        debits_posted: u128,
        credits_posted: u128,
        debits_pending: u128,
        credits_pending: u128,
    ) -> Balance {
        Balance {
            debits_posted,
            credits_posted,
            debits_pending,
            credits_pending,
        }
    }

    /// Hold 10 of 1 -> 2, post 6 of it; a chain 2 -> 1 (3) and 1 -> 2 (2); a failed chain; a
    /// closing hold on 11, voided.
    type Legal = (
        Run,
        Vec<LedgerTransfer>,
        Vec<(u128, &'static str)>,
        BTreeMap<u128, Balance>,
    );

    fn legal() -> Legal {
        let mut run = Run::new();
        let hold = t(10, 1, 2, 10, 0, PENDING);
        let post = t(11, 1, 2, 6, 10, POST);
        let chain = vec![t(20, 2, 1, 3, 0, LINKED), t(21, 1, 2, 2, 0, 0)];
        let doomed = vec![t(30, 1, 2, 1, 0, LINKED), t(31, 1, 99_999, 1, 0, 0)];
        let close = t(40, 11, 1, 0, 0, CLOSING);
        let reopen = t(41, 11, 1, 0, 40, VOID);
        run.write(1, "hold", vec![hold.clone()], Kind::Ok);
        run.write(2, "post", vec![post.clone()], Kind::Ok);
        run.write(3, "chain", chain.clone(), Kind::Ok);
        run.write(4, "chain", doomed, Kind::Fail);
        run.write(5, "close", vec![close.clone()], Kind::Ok);
        run.write(6, "reopen", vec![reopen.clone()], Kind::Ok);
        let stored = vec![
            hold,
            post,
            chain[0].clone(),
            chain[1].clone(),
            close,
            reopen,
        ];
        let pending = vec![(10, "posted"), (40, "voided")];
        let mut balances = balances(&[(1, 100), (2, 100), (11, 100)]);
        balances.insert(1, bal(6 + 2, 100 + 3, 0, 0));
        balances.insert(2, bal(3, 100 + 6 + 2, 0, 0));
        (run, stored, pending, balances)
    }

    fn verdict(history: &History) -> Verdict {
        LedgerModel.check(history)
    }

    #[test]
    fn holds_posts_chains_and_closing_applied_as_the_model_says_pass() {
        let (run, stored, pending, balances) = legal();
        let v = verdict(&run.finish(stored, &pending, vec![], balances));
        assert!(v.valid, "{:?}", v.anomalies);
        assert_eq!(v.stats["writes"], 6);
        assert_eq!(v.stats["failed"], 1);
    }

    #[test]
    fn a_post_applied_twice_breaks_the_fold() {
        let (run, stored, pending, mut balances) = legal();
        balances.get_mut(&1).unwrap().debits_posted += 6;
        balances.get_mut(&2).unwrap().credits_posted += 6;
        let v = verdict(&run.finish(stored, &pending, vec![], balances));
        assert!(!v.valid);
        assert!(
            v.anomalies[0].contains("the fold of its stored transfers"),
            "{:?}",
            v.anomalies
        );
    }

    #[test]
    fn a_hold_both_posted_and_voided_is_flagged() {
        let (run, mut stored, pending, balances) = legal();
        stored.push(t(12, 1, 2, 10, 10, VOID));
        let v = verdict(&run.finish(stored, &pending, vec![], balances));
        assert!(!v.valid);
        assert!(
            v.anomalies.iter().any(|a| a.contains("hold 10")),
            "{:?}",
            v.anomalies
        );
    }

    #[test]
    fn a_chain_applied_in_part_or_a_failed_chain_applied_is_flagged() {
        let (run, mut stored, pending, mut balances) = legal();
        // Leg 21 of the acknowledged chain lost, leg 30 of the failed chain applied.
        stored.retain(|s| s.id != 21);
        stored.push(t(30, 1, 2, 1, 0, 0));
        balances.insert(1, bal(6 + 1, 100 + 3, 0, 0));
        balances.insert(2, bal(3, 100 + 6 + 1, 0, 0));
        let v = verdict(&run.finish(stored, &pending, vec![], balances));
        assert!(!v.valid);
        let text = v.anomalies.join("\n");
        assert!(
            text.contains("acknowledged chain 20 has 1 of its 2"),
            "{text}"
        );
        assert!(text.contains("failed chain 30 has 1 of its 2"), "{text}");
    }

    #[test]
    fn a_transfer_while_the_account_was_closed_is_flagged() {
        let mut run = Run::new();
        let close = t(40, 11, 1, 0, 0, CLOSING);
        let sneak = t(50, 11, 2, 5, 0, 0);
        run.write(1, "close", vec![close.clone()], Kind::Ok);
        run.write(2, "transfer", vec![sneak.clone()], Kind::Ok);
        let mut balances = balances(&[(1, 100), (2, 100), (11, 100)]);
        balances.insert(11, bal(5, 100, 0, 0));
        balances.insert(2, bal(0, 105, 0, 0));
        let history = run.finish(vec![close, sneak], &[(40, "pending")], vec![11], balances);
        let v = verdict(&history);
        assert!(!v.valid);
        assert!(
            v.anomalies[0].contains("touched account 11"),
            "{:?}",
            v.anomalies
        );
    }

    #[test]
    fn an_account_left_closed_after_its_closing_hold_was_voided_is_flagged() {
        let (run, stored, pending, balances) = legal();
        let v = verdict(&run.finish(stored, &pending, vec![11], balances));
        assert!(!v.valid);
        assert!(
            v.anomalies[0].contains("closed at the end"),
            "{:?}",
            v.anomalies
        );
    }

    #[test]
    fn an_unknown_write_may_be_applied_or_not_but_not_in_part() {
        for applied in [false, true] {
            let mut run = Run::new();
            let chain = vec![t(20, 2, 1, 3, 0, LINKED), t(21, 1, 2, 2, 0, 0)];
            run.write(1, "chain", chain.clone(), Kind::Info);
            let mut balances = balances(&[(1, 100), (2, 100), (11, 100)]);
            let stored = if applied {
                balances.insert(1, bal(2, 103, 0, 0));
                balances.insert(2, bal(3, 102, 0, 0));
                chain
            } else {
                vec![]
            };
            let v = verdict(&run.finish(stored, &[], vec![], balances));
            assert!(v.valid, "applied {applied}: {:?}", v.anomalies);
        }
    }

    #[test]
    fn histories_without_ledger_writes_are_not_checked() {
        let run = Run::new();
        let v = verdict(&run.recorder.history);
        assert!(v.valid);
        assert_eq!(v.stats["checked"], false);
    }
}
