//! `consistent_cut`: every read of several balances at once shows one consistent cut of the
//! transfers.
//!
//! Property (docs/consistency.md "Reads": linearizable by default, and a `ReadAll` is one
//! request): an `ok` `ReadAll` read R returns all its balances as of one point in time. So there
//! must be a set S of transfers, those that took effect before that point, such that:
//! - (a) S holds every transfer acknowledged before R was invoked (its id's first `ok`
//!   completion precedes R's invocation);
//! - (b) S holds no transfer first invoked after R completed, none that definitely failed (every
//!   attempt `fail`) and, when the run has final reads, no unknown transfer that none of them
//!   lists (the final reads are the state after every write);
//! - (c) S is closed under real-time order: if T2 is in S and T1 was acknowledged before T2 was
//!   first invoked, T1 is in S;
//! - (d) the initial nets plus the transfers of S equal the read's nets on every account it
//!   returned, all at once (a transfer adds `amount` to the credited account's net and takes it
//!   from the debited one's, `Balance::net`).
//!
//! With (a) to (c), R can sit at one point of a total order of the transfers that respects real
//! time, S before it and the others after; (d) says it read that point. `linearizable_reads`
//! searches one account at a time, so it may put a transfer before R for one account and after R
//! for another: a read concurrent with T1 and T2 that shows T2 but not T1, where T1 was
//! acknowledged before T2 was invoked, passes there and fails here. Conversely this checker
//! takes each read alone: whether successive reads agree with one order is
//! `linearizable_reads`'s business, per account.
//!
//! How each transfer id counts for a read (attempts of one id are one transfer, applied at most
//! once, `views::transfers`): acknowledged before R's invocation: in S; acknowledged and
//! concurrent with R, or unknown (`info`, unanswered) and first invoked before R completed:
//! uncertain, the search decides; anything else: out of S. A transfer that touches no account
//! the read returned is left out altogether: it moves none of the read's nets, and real-time
//! order is transitive, so a constraint that passes through it also holds directly between the
//! transfers on either side. An account the read returned without an initial balance in the
//! set-up has no starting point and is left out too.
//!
//! The search, per read: depth first over the uncertain transfers, deciding each in or out.
//! Unknown transfers with the same accounts, amount and acknowledged predecessors are
//! interchangeable: they form one class, decided by how many of them are in. Pruning:
//! - bounds: for every subset of the read's accounts (each account alone when the read has more
//!   than [`CUT_ACCOUNTS_MAX`]), what the subset's total net still lacks must lie between the
//!   sums of the negative and of the positive changes the undecided transfers can still make to
//!   it. Over all subsets these are exactly the conditions for a fractional choice to exist (a
//!   transfer is an edge between two accounts; Gale's theorem on flows with demands);
//! - integers: per account, the exact sums the undecided transfers can add (subset-sum bitsets);
//! - real-time order: putting a transfer in puts its acknowledged predecessors in, leaving one
//!   out leaves its successors out, and what is so forced leaves the bounds at once;
//! - memoization: a state (position, what the nets lack, what is forced on the transfers not yet
//!   decided) proven dead is not explored again.
//!
//! The order of the choices only decides how fast a cut is found. Larger amounts first: once
//! only transfers of one amount remain, a fractional choice can be made whole (a flow problem
//! with integral capacities has an integral solution when it has one at all), so the bounds are
//! exact there and the search backtracks over the larger amounts only. Within an amount,
//! acknowledged transfers, then classes of unknown ones most recently invoked first. At each
//! choice, the likely one first: in for an acknowledged transfer that probably took effect
//! before the read's middle (during its attempt answered `created`, else soon after its first
//! invocation); with final reads, in for an unknown transfer the final state holds, invoked
//! before the read was. Then the count that leaves the nets closest to the read's. A depth-first
//! search that chose wrong early can spend long in a dead region, so the search restarts on the
//! Luby schedule, now and then trying another choice first; the states proven dead carry over,
//! so the search stays complete.
//!
//! The search is exponential in the worst case, so each read has a budget of
//! [`SEARCH_STEPS_PER_READ_MAX`] steps. A read whose search runs out is reported as an anomaly,
//! "unknown: search budget exhausted", never as valid. On simulated runs of the bank and
//! idempotency workloads (3000 operations, 8 accounts, hundreds of unknown transfers), the
//! hardest read of 450 runs took about an eighth of it.
//!
//! When no consistent cut exists, a second search without real-time order tells the two
//! anomalies apart: a read that some set of transfers explains only out of order (named in the
//! anomaly), and balances no set of transfers gives at all.
//!
//! Not checked here: the bets workload (bets move balances by transfers the history does not
//! list), and any history whose clients ran other operations than transfers and `ReadAll` reads;
//! the stats say it was skipped. The harness's own operations (hold prober, probe writes, final
//! reads) and the nemesis's faults are not client operations and do not count.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::json;

use super::views::{self, BalanceRead, TransferWrite};
use super::{Anomalies, Checker, Verdict};
use crate::history::{Balance, History, Kind, Op, Process};

/// The most search steps spent on one read before its verdict is "unknown".
pub const SEARCH_STEPS_PER_READ_MAX: u64 = 4_000_000;

/// The most dead states one read's search remembers (about 100 bytes each with 8 accounts and
/// 100 uncertain transfers).
const MEMO_STATES_PER_READ_MAX: usize = 1 << 19;

/// The steps of the shortest dive of the search: a unit of the restart schedule (at least four
/// steps per item, a dive with little backtracking).
const RESTART_STEPS_MIN: u64 = 1_000;

/// A dive after the first tries another choice first at one position in this many.
const PERTURB_ONE_IN: u64 = 16;

/// Up to this many accounts in a read, the bounds cover every subset of them; beyond, each
/// account alone.
const CUT_ACCOUNTS_MAX: usize = 10;

/// The most words of reachable-sum bitsets kept for one account of one read (positions times
/// the words of the range of sums); beyond that the account is pruned by bounds only.
const REACH_WORDS_MAX: usize = 1 << 18;
const _: () = assert!(CUT_ACCOUNTS_MAX < usize::BITS as usize);

/// The most pairs of transfers out of real-time order named in an anomaly.
const VIOLATIONS_SHOWN_MAX: usize = 4;

/// The most accounts listed in an anomaly, and ids in a class of unknown transfers.
const VALUES_SHOWN_MAX: usize = 8;

pub struct ConsistentCut {
    steps_per_read_max: u64,
}

impl Default for ConsistentCut {
    fn default() -> Self {
        ConsistentCut::with_step_budget(SEARCH_STEPS_PER_READ_MAX)
    }
}

impl ConsistentCut {
    /// A checker whose search gives up on a read after `steps_per_read_max` steps.
    pub fn with_step_budget(steps_per_read_max: u64) -> Self {
        ConsistentCut { steps_per_read_max }
    }
}

impl Checker for ConsistentCut {
    fn name(&self) -> &'static str {
        "consistent_cut"
    }

    fn check(&self, history: &History) -> Verdict {
        let mut anomalies = Anomalies::default();
        if let Some(reason) = out_of_scope(history) {
            return anomalies.verdict(json!({ "checked": false, "reason": reason }));
        }
        let transfers = views::transfers(history);
        let effects = likely_effects(history, &transfers);
        let reads = views::balance_reads(history);
        let finals = views::final_reads(history);
        // Transfer ids some node holds at the end; `None` without final reads.
        let held: Option<BTreeSet<u128>> = (!finals.is_empty()).then(|| {
            finals
                .iter()
                .flat_map(|r| r.transfers.iter().copied())
                .collect()
        });
        let (mut checked, mut inconsistent, mut exhausted) = (0u64, 0u64, 0u64);
        let (mut uncertain_max, mut uncertain_total) = (0usize, 0usize);
        let (mut steps, mut steps_max) = (0u64, 0u64);
        for read in &reads {
            let cut = Cut::new(
                read,
                &history.setup.initial,
                &transfers,
                &effects,
                held.as_ref(),
            );
            if cut.accounts.is_empty() {
                continue;
            }
            checked += 1;
            uncertain_max = uncertain_max.max(cut.uncertain);
            uncertain_total += cut.uncertain;
            let mut search = Search::new(&cut, true, self.steps_per_read_max);
            let outcome = search.run();
            steps += search.steps;
            steps_max = steps_max.max(search.steps);
            match outcome {
                Ok(Some(_)) => {}
                Ok(None) => {
                    inconsistent += 1;
                    anomalies.push(cut.explain(self.steps_per_read_max));
                }
                Err(Exhausted) => {
                    exhausted += 1;
                    anomalies.push(format!(
                        "unknown: search budget exhausted for read event {} ({} steps over {} uncertain transfers)",
                        read.event, search.steps, cut.uncertain
                    ));
                }
            }
        }
        let uncertain_mean = if checked == 0 {
            0.0
        } else {
            uncertain_total as f64 / checked as f64
        };
        anomalies.verdict(json!({
            "checked": true,
            "reads": reads.len(),
            "reads_checked": checked,
            "reads_inconsistent": inconsistent,
            "reads_exhausted": exhausted,
            "transfer_ids": transfers.len(),
            "final_reads_used": !finals.is_empty(),
            "uncertain_per_read_max": uncertain_max,
            "uncertain_per_read_mean": uncertain_mean,
            "steps": steps,
            "steps_per_read_max": steps_max,
            "search_steps_per_read_max": self.steps_per_read_max,
        }))
    }
}

/// Why the history is beyond this checker, if it is: then balances move by operations that are
/// not transfers of the history.
fn out_of_scope(history: &History) -> Option<&'static str> {
    if views::has_bets(history) {
        return Some("bets workload: bets move balances by transfers the history does not list");
    }
    let other = history.events.iter().any(|e| {
        matches!(e.process, Process::Client(_))
            && !matches!(e.op, Op::Transfer { .. } | Op::ReadAll { .. })
    });
    other.then_some("clients ran operations other than transfers and reads")
}

/// When each acknowledged transfer probably took effect (twice the time in ns, to stay
/// integral): the middle of its first attempt answered `created`, which applied it; without one
/// (an earlier, unanswered attempt applied it), its first invocation. Only the order of the
/// search's choices depends on it, never the verdict: result codes are `exactly_once`'s to check.
fn likely_effects(
    history: &History,
    transfers: &BTreeMap<u128, TransferWrite>,
) -> BTreeMap<u128, u128> {
    let mut created: BTreeMap<u128, u128> = BTreeMap::new();
    for pair in history.pairs() {
        let (Some(complete), Op::Transfer { id, .. }) = (pair.complete, &pair.invoke.op) else {
            continue;
        };
        if complete.kind == Kind::Ok
            && matches!(&complete.op, Op::Transfer { result: Some(r), .. } if r == "created")
        {
            let middle = u128::from(pair.invoke.time_ns) + u128::from(complete.time_ns);
            created.entry(*id).or_insert(middle);
        }
    }
    transfers
        .iter()
        .filter(|(_, t)| t.attempts.acknowledged())
        .map(|(id, t)| {
            let first = 2 * u128::from(t.attempts.first_invoke_ns);
            (*id, created.get(id).copied().unwrap_or(first))
        })
        .collect()
}

/// Uncertain transfers the search decides on together: one acknowledged transfer, or a class of
/// interchangeable unknown ones (same accounts, amount and acknowledged predecessors).
#[derive(Clone, Debug)]
struct Item {
    /// The transfer ids, sorted.
    ids: Vec<u128>,
    from: u128,
    to: u128,
    /// The positions of `from` and `to` among the read's accounts, when the read returned them.
    from_dim: Option<usize>,
    to_dim: Option<usize>,
    amount: i128,
    /// How many members probably took effect before the read, when there is a reason to think
    /// so: the search tries that count first.
    likely: Option<u32>,
    /// Items that must be in when this one is: acknowledged before it was first invoked.
    preds: Vec<usize>,
    /// Items that must be out when this one is.
    succs: Vec<usize>,
}

impl Item {
    fn count(&self) -> u32 {
        self.ids.len() as u32
    }

    /// What one member adds to the net of the read's account at position `dim`.
    fn delta_on(&self, dim: usize) -> i128 {
        let mut delta = 0;
        if self.to_dim == Some(dim) {
            delta += self.amount;
        }
        if self.from_dim == Some(dim) {
            delta -= self.amount;
        }
        delta
    }

    fn describe(&self) -> String {
        match self.ids.as_slice() {
            [id] => format!(
                "transfer {id} ({}->{}, amount {})",
                self.from, self.to, self.amount
            ),
            ids => {
                let shown: Vec<u128> = ids.iter().copied().take(VALUES_SHOWN_MAX).collect();
                format!(
                    "one of the {} unknown transfers {shown:?} ({}->{}, amount {} each)",
                    ids.len(),
                    self.from,
                    self.to,
                    self.amount
                )
            }
        }
    }

    /// The id that names the item in a sentence.
    fn name(&self) -> String {
        match self.ids.as_slice() {
            [id] => id.to_string(),
            ids => format!("{ids:?}"),
        }
    }
}

/// One read's search problem.
struct Cut<'a> {
    read: &'a BalanceRead<'a>,
    /// The accounts the read returned that have an initial balance, in order.
    accounts: Vec<u128>,
    /// Their nets as read.
    read_nets: Vec<i128>,
    /// Their nets after the transfers acknowledged before the read was invoked.
    forced_nets: Vec<i128>,
    /// How many transfers were acknowledged before the read was invoked.
    forced: usize,
    /// How many transfer ids are uncertain.
    uncertain: usize,
    /// The uncertain transfers, in the order the search decides them.
    items: Vec<Item>,
}

/// An uncertain transfer while the items are built.
struct Uncertain<'a> {
    id: u128,
    write: &'a TransferWrite,
    from_dim: Option<usize>,
    to_dim: Option<usize>,
}

impl<'a> Cut<'a> {
    fn new(
        read: &'a BalanceRead<'a>,
        initial: &BTreeMap<u128, Balance>,
        transfers: &'a BTreeMap<u128, TransferWrite>,
        effects: &BTreeMap<u128, u128>,
        held: Option<&BTreeSet<u128>>,
    ) -> Self {
        let accounts: Vec<u128> = read
            .balances
            .keys()
            .copied()
            .filter(|a| initial.contains_key(a))
            .collect();
        let read_nets: Vec<i128> = accounts.iter().map(|a| read.balances[a].net()).collect();
        let mut forced_nets: Vec<i128> = accounts.iter().map(|a| initial[a].net()).collect();
        let dim = |account: u128| accounts.binary_search(&account).ok();
        let mut forced = 0;
        let (mut acknowledged, mut unknown) = (Vec::new(), Vec::new());
        for (&id, write) in transfers {
            let (from_dim, to_dim) = (dim(write.from), dim(write.to));
            if write.from == write.to
                || write.amount == 0
                || (from_dim.is_none() && to_dim.is_none())
            {
                continue;
            }
            let a = &write.attempts;
            let uncertain = Uncertain {
                id,
                write,
                from_dim,
                to_dim,
            };
            if let Some(first_ok_ns) = a.first_ok_ns {
                if first_ok_ns < read.invoke_ns {
                    forced += 1;
                    apply(&mut forced_nets, from_dim, to_dim, write.amount as i128, 1);
                } else if a.first_invoke_ns <= read.complete_ns {
                    acknowledged.push(uncertain);
                }
            } else if !a.definitely_failed()
                && a.first_invoke_ns <= read.complete_ns
                && held.is_none_or(|h| h.contains(&id))
            {
                unknown.push(uncertain);
            }
        }
        let uncertain = acknowledged.len() + unknown.len();
        let items = items(read, acknowledged, unknown, effects, held.is_some());
        Cut {
            read,
            accounts,
            read_nets,
            forced_nets,
            forced,
            uncertain,
            items,
        }
    }

    /// What the uncertain transfers must add to each account's net.
    fn target(&self) -> Vec<i128> {
        self.read_nets
            .iter()
            .zip(&self.forced_nets)
            .map(|(read, forced)| read - forced)
            .collect()
    }

    /// The anomaly line of a read that no consistent cut explains: searches again without
    /// real-time order to tell a cut out of order from balances no set of transfers gives.
    fn explain(&self, budget: u64) -> String {
        let head = format!(
            "read event {} is not a consistent cut of the transfers",
            self.read.event
        );
        let mut relaxed = Search::new(self, false, budget);
        match relaxed.run() {
            Ok(Some(counts)) => {
                let mut pairs = Vec::new();
                for (j, item) in self.items.iter().enumerate() {
                    for &p in &item.preds {
                        if counts[j] > 0 && counts[p] == 0 {
                            pairs.push((p, j));
                        }
                    }
                }
                assert!(
                    !pairs.is_empty(),
                    "a cut that respects real-time order would have been found"
                );
                let shown: Vec<String> = pairs
                    .iter()
                    .take(VIOLATIONS_SHOWN_MAX)
                    .map(|&(p, j)| {
                        format!(
                            "{} without {}, which was acknowledged before {} was first invoked",
                            self.items[j].describe(),
                            self.items[p].describe(),
                            self.items[j].name()
                        )
                    })
                    .collect();
                format!(
                    "{head}: every set of transfers that gives its balances breaks real-time order, e.g. one with {}",
                    shown.join("; and ")
                )
            }
            Ok(None) => {
                let differ: Vec<String> = (0..self.accounts.len())
                    .filter(|&d| self.read_nets[d] != self.forced_nets[d])
                    .take(VALUES_SHOWN_MAX)
                    .map(|d| {
                        format!(
                            "account {} read {} against {}",
                            self.accounts[d], self.read_nets[d], self.forced_nets[d]
                        )
                    })
                    .collect();
                format!(
                    "{head}: no set of transfers gives its balances, in any order: {} acknowledged before it was invoked, {} uncertain; against the nets after the acknowledged ones alone: {}",
                    self.forced,
                    self.uncertain,
                    differ.join(", ")
                )
            }
            Err(Exhausted) => format!(
                "{head} (whether any set of transfers gives its balances, in any order, is unknown: search budget exhausted)"
            ),
        }
    }
}

/// Adds `count` transfers of `amount` to the nets of the accounts they touch.
fn apply(nets: &mut [i128], from: Option<usize>, to: Option<usize>, amount: i128, count: i128) {
    if let Some(d) = from {
        nets[d] -= amount * count;
    }
    if let Some(d) = to {
        nets[d] += amount * count;
    }
}

/// Where an item goes in the search's order: by amount, largest first; acknowledged (false)
/// before unknown (true); then by a time.
type Place = (std::cmp::Reverse<i128>, bool, u128);

/// What makes unknown transfers interchangeable: their accounts' positions, their amount and
/// their acknowledged predecessors.
type ClassKey = (Option<usize>, Option<usize>, u128, Vec<usize>);

/// Builds the items in the order the search decides them (see the module's header): larger
/// amounts first, then acknowledged transfers before classes of unknown ones, the unknown ones
/// most recently invoked first.
fn items(
    read: &BalanceRead<'_>,
    acknowledged: Vec<Uncertain<'_>>,
    unknown: Vec<Uncertain<'_>>,
    effects: &BTreeMap<u128, u128>,
    held_known: bool,
) -> Vec<Item> {
    let read_middle = u128::from(read.invoke_ns) + u128::from(read.complete_ns);
    let middle = |u: &Uncertain<'_>| {
        u128::from(u.write.attempts.first_invoke_ns)
            + u128::from(u.write.attempts.first_ok_ns.unwrap_or(u64::MAX))
    };
    let item = |u: &Uncertain<'_>, likely: Option<u32>, preds: Vec<usize>| Item {
        ids: vec![u.id],
        from: u.write.from,
        to: u.write.to,
        from_dim: u.from_dim,
        to_dim: u.to_dim,
        amount: u.write.amount as i128,
        likely,
        preds,
        succs: Vec::new(),
    };
    // The acknowledged transfers that must precede one first invoked at `invoke_ns`.
    let preds_of = |invoke_ns: u64| -> Vec<usize> {
        (0..acknowledged.len())
            .filter(|&k| {
                let first_ok_ns = acknowledged[k].write.attempts.first_ok_ns;
                first_ok_ns.is_some_and(|t| t < invoke_ns)
            })
            .collect()
    };
    // Each item with its place in the order.
    let mut items: Vec<(Item, Place)> = acknowledged
        .iter()
        .map(|u| {
            // Likely in when it probably took effect before the read's middle.
            let effect = effects.get(&u.id).copied().unwrap_or_else(|| middle(u));
            let likely = u32::from(effect < read_middle);
            let preds = preds_of(u.write.attempts.first_invoke_ns);
            let amount = std::cmp::Reverse(u.write.amount as i128);
            (item(u, Some(likely), preds), (amount, false, middle(u)))
        })
        .collect();
    // Classes of unknown transfers, keyed by what makes their members interchangeable, with
    // the latest first invocation among their members.
    let mut classes: BTreeMap<ClassKey, (Item, u64)> = BTreeMap::new();
    for u in &unknown {
        let invoke_ns = u.write.attempts.first_invoke_ns;
        let preds = preds_of(invoke_ns);
        let key = (u.from_dim, u.to_dim, u.write.amount, preds.clone());
        // When the final state holds it, it took effect, probably soon after it was invoked:
        // before the read if invoked before the read was.
        let likely = held_known.then_some(u32::from(invoke_ns < read.invoke_ns));
        match classes.entry(key) {
            Entry::Vacant(slot) => {
                slot.insert((item(u, likely, preds), invoke_ns));
            }
            // Transfers come in id order, so the ids stay sorted.
            Entry::Occupied(mut slot) => {
                let (class, latest) = slot.get_mut();
                class.ids.push(u.id);
                class.likely = class.likely.zip(likely).map(|(a, b)| a + b);
                *latest = (*latest).max(invoke_ns);
            }
        }
    }
    items.extend(classes.into_values().map(|(class, latest)| {
        let amount = std::cmp::Reverse(class.amount);
        (class, (amount, true, u128::from(u64::MAX - latest)))
    }));
    // The items were numbered acknowledged first: renumber the links in the order.
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (items[i].1, items[i].0.ids[0]));
    let mut place = vec![0; items.len()];
    for (position, &i) in order.iter().enumerate() {
        place[i] = position;
    }
    let mut slots: Vec<Option<Item>> = items.into_iter().map(|(item, _)| Some(item)).collect();
    let mut items: Vec<Item> = order
        .iter()
        .map(|&i| {
            let mut item = slots[i].take().expect("each item placed once");
            for p in &mut item.preds {
                *p = place[*p];
            }
            item
        })
        .collect();
    for j in 0..items.len() {
        for p in items[j].preds.clone() {
            items[p].succs.push(j);
        }
    }
    items
}

/// Per position, the least and the most the undecided items can still add to the total net of
/// each subset of the read's accounts.
struct Bounds {
    /// The subsets: each is a smaller subset (`None`: the empty one), listed before it, plus one
    /// account.
    subsets: Vec<(Option<usize>, usize)>,
    /// `low[pos * subsets + s]` and `high[..]`: the sums of the negative and of the positive
    /// changes the items from `pos` on can make to subset `s`'s total net.
    low: Vec<i128>,
    high: Vec<i128>,
    /// Per account, `reach[pos]`: the exact sums the items from `pos` on can add to its net, as
    /// bits offset by the least of them (empty when they span too wide a range to keep).
    reach: Vec<Reach>,
}

/// The sums some choice of counts of the items from each position on adds to one account's net.
struct Reach {
    least: i128,
    /// `words` words per position.
    words: usize,
    bits: Vec<u64>,
}

impl Reach {
    fn new(items: &[Item], dim: usize) -> Self {
        let changes: Vec<(i128, u32)> = items
            .iter()
            .map(|item| (item.delta_on(dim), item.count()))
            .collect();
        let least: i128 = changes
            .iter()
            .map(|&(d, c)| (d * i128::from(c)).min(0))
            .sum();
        let most: i128 = changes
            .iter()
            .map(|&(d, c)| (d * i128::from(c)).max(0))
            .sum();
        let words = usize::try_from((most - least).div_euclid(64) + 1).unwrap_or(usize::MAX);
        if words.saturating_mul(items.len() + 1) > REACH_WORDS_MAX {
            return Reach {
                least,
                words: 0,
                bits: Vec::new(),
            };
        }
        let mut bits = vec![0u64; words * (items.len() + 1)];
        let zero = (-least) as usize;
        let n = items.len();
        bits[n * words + zero / 64] |= 1 << (zero % 64);
        for (pos, &(delta, count)) in changes.iter().enumerate().rev() {
            let (head, tail) = bits.split_at_mut((pos + 1) * words);
            let (here, next) = (&mut head[pos * words..], &tail[..words]);
            here.copy_from_slice(next);
            // Each member of the class may add the delta once more.
            for _ in 0..if delta == 0 { 0 } else { count } {
                shift_or(here, delta as isize);
            }
        }
        Reach { least, words, bits }
    }

    /// Whether the items from `pos` on can add exactly `sum` (true when not kept).
    fn reaches(&self, pos: usize, sum: i128) -> bool {
        if self.words == 0 {
            return true;
        }
        let offset = sum - self.least;
        if offset < 0 || offset >= self.words as i128 * 64 {
            return false;
        }
        let offset = offset as usize;
        self.bits[pos * self.words + offset / 64] & (1 << (offset % 64)) != 0
    }
}

/// `bits |= bits shifted by `shift``: the sums of `bits`, with and without one more item of
/// that delta.
fn shift_or(bits: &mut [u64], shift: isize) {
    let from = bits.to_vec();
    let words = from.len() as isize;
    let (word_shift, bit_shift) = (shift.div_euclid(64), shift.rem_euclid(64) as u32);
    for (w, slot) in bits.iter_mut().enumerate() {
        // Bit b of the result comes from bit b - shift of `from`.
        let source = w as isize - word_shift;
        if (0..words).contains(&source) {
            *slot |= from[source as usize] << bit_shift;
        }
        if bit_shift != 0 && (0..words).contains(&(source - 1)) {
            *slot |= from[(source - 1) as usize] >> (64 - bit_shift);
        }
    }
}

impl Bounds {
    fn new(items: &[Item], accounts: usize) -> Self {
        let subsets: Vec<(Option<usize>, usize)> = if accounts <= CUT_ACCOUNTS_MAX {
            // The subset of bits `mask` is at index `mask - 1`; the same without its lowest
            // account comes before it.
            (1usize..(1 << accounts))
                .map(|mask| {
                    let rest = mask & (mask - 1);
                    (
                        (rest != 0).then(|| rest - 1),
                        mask.trailing_zeros() as usize,
                    )
                })
                .collect()
        } else {
            (0..accounts).map(|d| (None, d)).collect()
        };
        let k = subsets.len();
        let mut bounds = Bounds {
            subsets,
            low: vec![0i128; (items.len() + 1) * k],
            high: vec![0i128; (items.len() + 1) * k],
            reach: (0..accounts).map(|d| Reach::new(items, d)).collect(),
        };
        let mut changes = vec![0i128; k];
        for (pos, item) in items.iter().enumerate().rev() {
            bounds.changes(item, &mut changes);
            for (s, &change) in changes.iter().enumerate() {
                bounds.low[pos * k + s] = bounds.low[(pos + 1) * k + s] + change.min(0);
                bounds.high[pos * k + s] = bounds.high[(pos + 1) * k + s] + change.max(0);
            }
        }
        bounds
    }

    /// Sets `changes[s]` to what all the item's members add to subset `s`'s total net.
    fn changes(&self, item: &Item, changes: &mut [i128]) {
        let count = i128::from(item.count());
        for (s, &(parent, dim)) in self.subsets.iter().enumerate() {
            // A subset's total net changes by the sum of its accounts' changes.
            changes[s] = parent.map_or(0, |p| changes[p]) + item.delta_on(dim) * count;
        }
    }

    /// Whether the items from `pos` on may still add `lack` to the nets, leaving out the
    /// ranges in `forced` (those of items whose decision is already forced); `sums` is scratch.
    fn admit(&self, pos: usize, lack: &[i128], forced: &Forced, sums: &mut Vec<i128>) -> bool {
        let k = self.subsets.len();
        sums.clear();
        for (s, &(parent, dim)) in self.subsets.iter().enumerate() {
            let sum = parent.map_or(0, |p| sums[p]) + lack[dim];
            let low = self.low[pos * k + s] - forced.low[s];
            let high = self.high[pos * k + s] - forced.high[s];
            if sum < low || sum > high {
                return false;
            }
            sums.push(sum);
        }
        // The sums count forced items as optional: looser, still necessary.
        self.reach
            .iter()
            .zip(lack)
            .all(|(reach, &sum)| reach.reaches(pos, sum))
    }
}

/// The budget ran out.
struct Exhausted;

/// What is forced on an item by the decisions so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    Open,
    In,
    Out,
}

/// The items not yet reached whose decision real-time order already forces: their ranges, per
/// subset of accounts, which the bounds leave out (a forced-in item's change is already taken
/// from the lack).
struct Forced {
    low: Vec<i128>,
    high: Vec<i128>,
    /// Scratch for one item's changes.
    changes: Vec<i128>,
}

/// What entering a position found.
enum Entered {
    /// Every item is decided and the nets are the read's.
    Found,
    Dead,
    /// The counts to try at the position, the next one last, and the state's memo key.
    Options(Vec<u32>, Option<MemoKey>),
}

/// A state of the search, packed: its position, what the nets lack (as `i64`), and the marks
/// of the items from there on (two bits each).
type MemoKey = Vec<u64>;

/// The `i`th term (from 1) of the Luby sequence 1, 1, 2, 1, 1, 2, 4, 1, ...: restart limits
/// that waste at most a logarithmic factor over the best fixed limit (Luby, Sinclair and
/// Zuckerman, 1993).
fn luby(i: u64) -> u64 {
    let mut i = i;
    loop {
        // The smallest k with i <= 2^k - 1.
        let k = 64 - i.leading_zeros();
        if i == (1 << k) - 1 {
            return 1 << (k - 1);
        }
        i -= (1 << (k - 1)) - 1;
    }
}

/// How a position was decided, to undo it.
#[derive(Clone, Copy)]
struct Decision {
    count: u32,
    /// Whether real-time order had forced it before the search reached it.
    forced: bool,
    /// Where the marks it set start on the trail.
    trail: usize,
}

/// A position on the search's stack: the counts left to try, and the one being tried.
struct Frame {
    pos: usize,
    options: Vec<u32>,
    /// The state's memo key, remembered once every choice has failed.
    key: Option<MemoKey>,
    decision: Option<Decision>,
}

/// The depth-first search of one read.
struct Search<'a> {
    cut: &'a Cut<'a>,
    /// Whether real-time order binds (false only to explain an anomaly).
    ordered: bool,
    bounds: Bounds,
    budget: u64,
    steps: u64,
    /// States proven dead: every choice from them failed.
    seen: HashSet<MemoKey>,
    /// Whether this dive perturbs the order of the choices, and the generator that does.
    perturb: bool,
    rng: u64,
    /// What the undecided items that are not forced must still add to each account's net.
    lack: Vec<i128>,
    marks: Vec<Mark>,
    forced: Forced,
    /// The marks the decisions set, in order, to undo them: the item, and whether it was
    /// forced ahead of the search (rather than marked as it was decided).
    trail: Vec<(usize, bool)>,
    /// The count of each decided item.
    counts: Vec<u32>,
    sums: Vec<i128>,
}

impl<'a> Search<'a> {
    fn new(cut: &'a Cut<'a>, ordered: bool, budget: u64) -> Self {
        let n = cut.items.len();
        let bounds = Bounds::new(&cut.items, cut.accounts.len());
        let k = bounds.subsets.len();
        Search {
            cut,
            ordered,
            bounds,
            budget,
            steps: 0,
            seen: HashSet::new(),
            perturb: false,
            // Seeded by the read, so that a verdict depends on the history alone.
            rng: cut.read.event,
            lack: cut.target(),
            marks: vec![Mark::Open; n],
            forced: Forced {
                low: vec![0; k],
                high: vec![0; k],
                changes: vec![0; k],
            },
            trail: Vec::new(),
            counts: vec![0; n],
            sums: Vec::new(),
        }
    }

    /// Returns the count of each item of a cut that gives the read's nets, or `None` when
    /// there is none. Dives restart on the Luby schedule, each after the first with the order of
    /// the choices slightly perturbed; the states proven dead carry over, so the last dive,
    /// given all the budget left, completes the search.
    fn run(&mut self) -> Result<Option<Vec<u32>>, Exhausted> {
        let unit = RESTART_STEPS_MIN.max(4 * self.cut.items.len() as u64);
        for restart in 1u64.. {
            self.perturb = restart > 1;
            let limit = self
                .steps
                .saturating_add(luby(restart).saturating_mul(unit));
            if let Some(found) = self.dive(limit)? {
                return Ok(found);
            }
        }
        unreachable!("the dives end the search before their count overflows")
    }

    /// One depth-first dive: `Some` with the answer when it completes, `None` when the steps
    /// reach `limit` first (the state is then as before the dive).
    fn dive(&mut self, limit: u64) -> Result<Option<Option<Vec<u32>>>, Exhausted> {
        let mut stack = match self.enter(0)? {
            Entered::Found => return Ok(Some(Some(self.counts.clone()))),
            Entered::Dead => return Ok(Some(None)),
            Entered::Options(options, key) => vec![Frame {
                pos: 0,
                options,
                key,
                decision: None,
            }],
        };
        while let Some(frame) = stack.last_mut() {
            let pos = frame.pos;
            if let Some(decision) = frame.decision.take() {
                self.undo(pos, decision);
            }
            if self.steps >= limit {
                // Abandon the dive: undo its decisions. The states it left open are not known
                // to be dead.
                stack.pop();
                while let Some(frame) = stack.pop() {
                    let decision = frame.decision.expect("a frame below the top has decided");
                    self.undo(frame.pos, decision);
                }
                return Ok(None);
            }
            let Some(count) = frame.options.pop() else {
                // Every choice failed: the state is dead, whatever path leads to it.
                if let Some(key) = frame.key.take() {
                    if self.seen.len() < MEMO_STATES_PER_READ_MAX {
                        self.seen.insert(key);
                    }
                }
                stack.pop();
                continue;
            };
            let Some(decision) = self.decide(pos, count) else {
                continue;
            };
            frame.decision = Some(decision);
            match self.enter(pos + 1)? {
                Entered::Found => return Ok(Some(Some(self.counts.clone()))),
                Entered::Dead => {}
                Entered::Options(options, key) => stack.push(Frame {
                    pos: pos + 1,
                    options,
                    key,
                    decision: None,
                }),
            }
        }
        Ok(Some(None))
    }

    fn enter(&mut self, pos: usize) -> Result<Entered, Exhausted> {
        self.steps += 1;
        if self.steps > self.budget {
            return Err(Exhausted);
        }
        if !self
            .bounds
            .admit(pos, &self.lack, &self.forced, &mut self.sums)
        {
            return Ok(Entered::Dead);
        }
        let items = &self.cut.items;
        if pos == items.len() {
            // The bounds past the last item are zero: nothing is lacking.
            return Ok(Entered::Found);
        }
        let key = self.memo_key(pos);
        if key.as_ref().is_some_and(|k| self.seen.contains(k)) {
            return Ok(Entered::Dead);
        }
        let item = &items[pos];
        let mut options: Vec<u32> = match self.marks[pos] {
            Mark::Open => (0..=item.count()).collect(),
            // Only acknowledged transfers, one each, are forced in.
            Mark::In => vec![1],
            Mark::Out => vec![0],
        };
        // The likely count first, if any; then the count that leaves the nets closest to the
        // read's (only the item's two accounts change).
        let distance = |count: u32| -> i128 {
            [(item.from_dim, -item.amount), (item.to_dim, item.amount)]
                .into_iter()
                .filter_map(|(dim, delta)| {
                    dim.map(|d| (self.lack[d] - delta * i128::from(count)).abs())
                })
                .sum()
        };
        let unlikely = |count: u32| item.likely.map(|l| l.abs_diff(count));
        options.sort_by_key(|&c| (unlikely(c), distance(c), c));
        if self.perturb && options.len() > 1 && self.random(PERTURB_ONE_IN) == 0 {
            // Another choice first, now and then, to leave a region a misleading first
            // choice led the earlier dives into.
            let other = 1 + self.random(options.len() as u64 - 1) as usize;
            options.swap(0, other);
        }
        options.reverse();
        Ok(Entered::Options(options, key))
    }

    /// A number below `n`, from the search's own deterministic generator.
    fn random(&mut self, n: u64) -> u64 {
        self.rng = self
            .rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.rng >> 33) % n
    }

    /// The state at `pos`, packed; `None` (not remembered) when a lack does not fit an `i64`.
    fn memo_key(&self, pos: usize) -> Option<MemoKey> {
        let marks = self.marks.len() - pos;
        let mut key = Vec::with_capacity(1 + self.lack.len() + marks.div_ceil(32));
        key.push(pos as u64);
        for &lack in &self.lack {
            key.push(i64::try_from(lack).ok()? as u64);
        }
        let start = key.len();
        key.resize(start + marks.div_ceil(32), 0);
        for (i, mark) in self.marks[pos..].iter().enumerate() {
            let bits = match mark {
                Mark::Open => 0,
                Mark::In => 1,
                Mark::Out => 2,
            };
            key[start + i / 32] |= bits << (2 * (i % 32));
        }
        Some(key)
    }

    /// Puts `count` members of the item at `pos` in, and forces what real-time order then
    /// forces on the items not reached; `None` when the order forbids it.
    fn decide(&mut self, pos: usize, count: u32) -> Option<Decision> {
        let trail = self.trail.len();
        self.counts[pos] = count;
        if self.marks[pos] != Mark::Open {
            // Forced ahead: its change is already taken from the lack, and what it would force
            // is forced already (real-time order is transitive). It leaves the bounds' suffix.
            self.shift_forced(pos, -1);
            return Some(Decision {
                count,
                forced: true,
                trail,
            });
        }
        let cut = self.cut;
        let item = &cut.items[pos];
        if self.ordered {
            // In: so are its predecessors. Out: so are its successors.
            let (mark, linked) = if count > 0 {
                (Mark::In, &item.preds)
            } else {
                (Mark::Out, &item.succs)
            };
            self.marks[pos] = mark;
            self.trail.push((pos, false));
            for &i in linked {
                match self.marks[i] {
                    Mark::Open => {
                        // Items already decided are marked, so this one is ahead.
                        assert!(i > pos, "an undecided item lies ahead");
                        self.marks[i] = mark;
                        self.trail.push((i, true));
                        self.force(i, 1);
                    }
                    current if current == mark => {}
                    _ => {
                        self.unmark(trail);
                        return None;
                    }
                }
            }
        }
        self.add(pos, i128::from(count));
        Some(Decision {
            count,
            forced: false,
            trail,
        })
    }

    fn undo(&mut self, pos: usize, decision: Decision) {
        if decision.forced {
            self.shift_forced(pos, 1);
        } else {
            self.add(pos, -i128::from(decision.count));
        }
        self.unmark(decision.trail);
    }

    fn unmark(&mut self, start: usize) {
        while self.trail.len() > start {
            let (i, ahead) = self.trail.pop().expect("longer than start");
            if ahead {
                self.force(i, -1);
            }
            self.marks[i] = Mark::Open;
        }
    }

    /// Forces (`sign` 1) or releases (-1) the item at `i`, marked already: its range leaves
    /// (or rejoins) the bounds, and a forced-in item's change is taken from (or given back to)
    /// the lack.
    fn force(&mut self, i: usize, sign: i128) {
        self.shift_forced(i, sign);
        if self.marks[i] == Mark::In {
            assert_eq!(
                self.cut.items[i].count(),
                1,
                "only single transfers are forced in"
            );
            self.add(i, sign);
        }
    }

    /// Adds (`sign` 1) or removes the item's range to the ranges the bounds leave out.
    fn shift_forced(&mut self, i: usize, sign: i128) {
        let forced = &mut self.forced;
        self.bounds.changes(&self.cut.items[i], &mut forced.changes);
        for (s, &change) in forced.changes.iter().enumerate() {
            forced.low[s] += sign * change.min(0);
            forced.high[s] += sign * change.max(0);
        }
    }

    /// Takes `count` members' change of the item at `pos` from the lack.
    fn add(&mut self, pos: usize, count: i128) {
        let item = &self.cut.items[pos];
        apply(
            &mut self.lack,
            item.from_dim,
            item.to_dim,
            item.amount,
            -count,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::linearizable::LinearizableReads;
    use super::super::test_support::{
        place_bet_op, simulated_run, simulated_run_with_retries, HistoryBuilder,
    };
    use super::*;
    use crate::history::Kind;

    const INITIAL: [(u128, i128); 4] = [(1, 100), (2, 100), (3, 100), (4, 100)];
    /// The nets with neither T1 (10: 1->2, 5) nor T2 (11: 3->4, 7), either one, or both.
    const NEITHER: [(u128, i128); 4] = INITIAL;
    const T1_ONLY: [(u128, i128); 4] = [(1, 95), (2, 105), (3, 100), (4, 100)];
    const T2_ONLY: [(u128, i128); 4] = [(1, 100), (2, 100), (3, 93), (4, 107)];
    const BOTH: [(u128, i128); 4] = [(1, 95), (2, 105), (3, 93), (4, 107)];

    /// T1 is invoked and acknowledged, then T2 is invoked and acknowledged, all while client 9
    /// reads; the read returns `nets` (event 5).
    fn t1_then_t2_during_a_read(nets: &[(u128, i128)]) -> HistoryBuilder {
        let mut h = HistoryBuilder::new(&INITIAL);
        h.invoke_read(9);
        h.transfer(1, 10, 1, 2, 5);
        h.transfer(2, 11, 3, 4, 7);
        h.ok_read(9, nets);
        h
    }

    fn check(h: &HistoryBuilder) -> Verdict {
        ConsistentCut::default().check(&h.build())
    }

    const T2_WITHOUT_T1: &str = "read event 5 is not a consistent cut of the transfers: every set of transfers that gives its balances breaks real-time order, e.g. one with transfer 11 (3->4, amount 7) without transfer 10 (1->2, amount 5), which was acknowledged before 11 was first invoked";

    #[test]
    fn a_read_concurrent_with_both_that_shows_the_later_transfer_only_is_flagged() {
        let mut h = t1_then_t2_during_a_read(&T2_ONLY);
        h.final_reads(&BOTH, &[10, 11]);
        h.probe(true);
        let history = h.build();
        // Every other checker accepts it: per account, the read may sit before T1 (accounts 1
        // and 2) and after T2 (accounts 3 and 4); the total is the initial one.
        for checker in super::super::all() {
            if checker.name() != "consistent_cut" {
                let verdict = checker.check(&history);
                assert!(verdict.valid, "{}: {verdict:?}", checker.name());
            }
        }
        let verdict = ConsistentCut::default().check(&history);
        assert!(!verdict.valid);
        assert_eq!(verdict.anomalies, [T2_WITHOUT_T1]);
        assert_eq!(verdict.stats["reads_checked"], 1);
        assert_eq!(verdict.stats["reads_inconsistent"], 1);
        assert_eq!(verdict.stats["uncertain_per_read_max"], 2);
    }

    #[test]
    fn a_read_invoked_while_the_earlier_transfer_is_in_flight_is_flagged_the_same() {
        let mut h = HistoryBuilder::new(&INITIAL);
        h.invoke_transfer(1, 10, 1, 2, 5);
        h.invoke_read(9);
        h.ok(1, "created");
        h.transfer(2, 11, 3, 4, 7);
        h.ok_read(9, &T2_ONLY);
        assert!(LinearizableReads.check(&h.build()).valid);
        let verdict = check(&h);
        assert!(!verdict.valid);
        assert_eq!(verdict.anomalies, [T2_WITHOUT_T1]);
    }

    #[test]
    fn a_read_invoked_after_both_that_misses_the_earlier_is_flagged_by_both_checkers() {
        let mut h = HistoryBuilder::new(&INITIAL);
        h.transfer(1, 10, 1, 2, 5);
        h.transfer(2, 11, 3, 4, 7);
        h.read(9, &T2_ONLY);
        // Both transfers completed before the read: the per-account search sees a stale read.
        assert!(!LinearizableReads.check(&h.build()).valid);
        let verdict = check(&h);
        assert!(!verdict.valid);
        assert_eq!(
            verdict.anomalies,
            ["read event 5 is not a consistent cut of the transfers: no set of transfers gives its balances, in any order: 2 acknowledged before it was invoked, 0 uncertain; against the nets after the acknowledged ones alone: account 1 read 100 against 95, account 2 read 100 against 105"]
        );
    }

    #[test]
    fn the_same_read_showing_neither_the_first_or_both_transfers_is_accepted() {
        for nets in [NEITHER, T1_ONLY, BOTH] {
            let verdict = check(&t1_then_t2_during_a_read(&nets));
            assert!(verdict.valid, "{nets:?}: {verdict:?}");
            assert_eq!(verdict.stats["reads_checked"], 1);
        }
    }

    #[test]
    fn concurrent_and_unknown_transfers_are_accepted_in_any_legal_order() {
        let mut h = HistoryBuilder::new(&INITIAL);
        // T1 and T2 overlap, so either may take effect first: a read may show T2 alone.
        h.invoke_read(9);
        h.invoke_transfer(1, 10, 1, 2, 5);
        h.invoke_transfer(2, 11, 3, 4, 7);
        h.ok(2, "created");
        h.ok(1, "created");
        h.ok_read(9, &T2_ONLY);
        // A timed-out transfer that took effect, seen by a later read...
        h.invoke_transfer(1, 12, 2, 3, 4);
        h.info(1);
        h.read(9, &[(1, 95), (2, 101), (3, 97), (4, 107)]);
        // ... and one that did not: never seen.
        h.invoke_transfer(1, 13, 4, 1, 50);
        h.info(1);
        h.read(9, &[(1, 95), (2, 101), (3, 97), (4, 107)]);
        // A retry of the first unknown one that finds it applied: it counts once.
        h.invoke_transfer(2, 12, 2, 3, 4);
        h.ok(2, "exists");
        // A failed transfer never counts.
        h.invoke_transfer(2, 14, 1, 4, 30);
        h.fail(2, "exceeds_credits");
        // An unknown transfer invoked after T3 (acknowledged) and seen with it by a read
        // concurrent with both.
        h.invoke_read(9);
        h.transfer(1, 15, 3, 1, 2);
        h.invoke_transfer(2, 16, 4, 2, 1);
        h.info(2);
        h.ok_read(9, &[(1, 97), (2, 102), (3, 95), (4, 106)]);
        let verdict = check(&h);
        assert!(verdict.valid, "{verdict:?}");
        assert_eq!(verdict.stats["reads_checked"], 4);
        assert!(LinearizableReads.check(&h.build()).valid);
    }

    #[test]
    fn an_unknown_transfer_seen_without_one_acknowledged_before_it_was_invoked_is_flagged() {
        let mut h = HistoryBuilder::new(&INITIAL);
        h.invoke_read(9);
        h.transfer(1, 10, 1, 2, 5);
        h.invoke_transfer(2, 11, 3, 4, 7);
        h.info(2);
        h.ok_read(9, &T2_ONLY);
        assert!(LinearizableReads.check(&h.build()).valid);
        let verdict = check(&h);
        assert!(!verdict.valid);
        assert_eq!(verdict.anomalies, [T2_WITHOUT_T1]);
    }

    #[test]
    fn an_unknown_transfer_seen_twice_is_flagged() {
        let mut h = HistoryBuilder::new(&INITIAL);
        h.invoke_transfer(1, 12, 1, 2, 5);
        h.info(1);
        h.invoke_transfer(1, 12, 1, 2, 5);
        h.info(1);
        // Both attempts of one id take effect at most once in total.
        h.read(9, &[(1, 90), (2, 110), (3, 100), (4, 100)]);
        let verdict = check(&h);
        assert!(!verdict.valid);
        assert!(
            verdict.anomalies[0].contains("no set of transfers gives its balances"),
            "{verdict:?}"
        );
    }

    #[test]
    fn an_unknown_transfer_the_final_reads_lack_cannot_explain_a_read() {
        let run = |held: &[u128]| {
            let mut h = HistoryBuilder::new(&INITIAL);
            h.invoke_transfer(1, 12, 1, 2, 5);
            h.info(1);
            h.read(9, &T1_ONLY);
            h.final_reads(&T1_ONLY, held);
            check(&h)
        };
        let verdict = run(&[12]);
        assert!(verdict.valid, "{verdict:?}");
        let verdict = run(&[]);
        assert!(!verdict.valid);
        assert_eq!(
            verdict.anomalies,
            ["read event 3 is not a consistent cut of the transfers: no set of transfers gives its balances, in any order: 0 acknowledged before it was invoked, 0 uncertain; against the nets after the acknowledged ones alone: account 1 read 95 against 100, account 2 read 105 against 100"]
        );
        assert_eq!(verdict.stats["final_reads_used"], true);
    }

    #[test]
    fn harness_events_and_accounts_a_read_lacks_are_left_out() {
        let mut h =
            HistoryBuilder::new(&[(1, 100), (2, 100), (3, 100), (4, 100), (5, 100), (6, 100)]);
        h.fault("partition", true);
        h.harness(
            Kind::Invoke,
            Op::Hold {
                id: 1 << 100,
                timeout_s: 5,
                result: None,
            },
        );
        // Accounts 5 and 6 are not read: 20 is left out, 21 counts on account 1 only.
        h.transfer(1, 20, 5, 6, 40);
        h.transfer(1, 21, 1, 5, 3);
        h.harness(
            Kind::Ok,
            Op::Hold {
                id: 1 << 100,
                timeout_s: 5,
                result: Some("created".into()),
            },
        );
        h.invoke_read(9);
        h.transfer(1, 10, 1, 2, 5);
        h.fault("partition", false);
        h.ok_read(9, &[(1, 97), (2, 100), (3, 100), (4, 100)]);
        h.probe(true);
        h.final_reads(
            &[(1, 92), (2, 105), (3, 100), (4, 100), (5, 63), (6, 140)],
            &[10, 20, 21],
        );
        let verdict = check(&h);
        assert!(verdict.valid, "{verdict:?}");
        assert_eq!(verdict.stats["checked"], true);
        assert_eq!(verdict.stats["reads_checked"], 1);
        assert_eq!(verdict.stats["uncertain_per_read_max"], 1);
    }

    #[test]
    fn histories_with_other_client_operations_are_not_checked() {
        let mut bets = t1_then_t2_during_a_read(&T2_ONLY);
        bets.invoke_op(1, place_bet_op(30, 1, 3001, 1, 10, 20_000));
        bets.ok(1, "created");
        let mut holds = t1_then_t2_during_a_read(&T2_ONLY);
        holds.invoke_op(
            1,
            Op::Hold {
                id: 31,
                timeout_s: 5,
                result: None,
            },
        );
        for h in [bets, holds] {
            let verdict = check(&h);
            assert!(verdict.valid, "{verdict:?}");
            assert_eq!(verdict.stats["checked"], false);
            assert!(verdict.stats["reason"].is_string(), "{verdict:?}");
        }
    }

    #[test]
    fn the_search_budget_running_out_is_reported_as_unknown() {
        let h = t1_then_t2_during_a_read(&BOTH);
        let verdict = ConsistentCut::with_step_budget(1).check(&h.build());
        assert!(!verdict.valid);
        assert_eq!(
            verdict.anomalies,
            ["unknown: search budget exhausted for read event 5 (2 steps over 2 uncertain transfers)"]
        );
        assert_eq!(verdict.stats["reads_exhausted"], 1);
        assert!(check(&h).valid);
    }

    fn assert_accepted_well_within_budget(history: &History) -> Verdict {
        let verdict = ConsistentCut::default().check(history);
        assert!(verdict.valid, "{verdict:?}");
        let stats = &verdict.stats;
        assert!(
            stats["reads_checked"].as_u64().expect("reads") > 100,
            "{stats}"
        );
        let steps = stats["steps_per_read_max"].as_u64().expect("steps");
        assert!(steps < SEARCH_STEPS_PER_READ_MAX / 4, "{stats}");
        verdict
    }

    #[test]
    fn a_simulated_run_with_final_reads_or_not_is_accepted_within_budget() {
        for with_final_reads in [false, true] {
            let history = simulated_run(7, 1100, 4, 50, with_final_reads);
            let verdict = assert_accepted_well_within_budget(&history);
            assert_eq!(verdict.stats["final_reads_used"], with_final_reads);
        }
    }

    #[test]
    fn a_simulated_run_of_realistic_size_without_final_reads_is_accepted_within_budget() {
        // 3000 operations, 8 accounts, 10 clients, amounts of 1 to 5 like the bank workload;
        // without final reads, every unknown transfer invoked before a read is uncertain for it.
        let history = simulated_run(1, 3000, 8, 5, false);
        let verdict = assert_accepted_well_within_budget(&history);
        let uncertain = verdict.stats["uncertain_per_read_max"]
            .as_u64()
            .expect("uncertain");
        assert!(uncertain > 400, "{}", verdict.stats);
    }

    #[test]
    fn a_simulated_run_with_retries_like_the_idempotency_workload_is_accepted_within_budget() {
        // Resubmissions acknowledged long after their first attempt make transfers concurrent
        // with many reads, each bound by real-time order to those acknowledged before it.
        for with_final_reads in [false, true] {
            let history = simulated_run_with_retries(3, 3000, 8, 5, with_final_reads);
            let retried = views::transfers(&history)
                .values()
                .filter(|t| t.attempts.count > 1 && t.attempts.acknowledged())
                .count();
            assert!(retried > 100, "{retried} transfers acknowledged on a retry");
            assert_accepted_well_within_budget(&history);
        }
    }

    #[test]
    fn reads_of_more_accounts_than_the_subset_bounds_cover_are_checked_account_by_account() {
        // 12 accounts: beyond CUT_ACCOUNTS_MAX, the bounds cover single accounts only.
        for with_final_reads in [false, true] {
            let history = simulated_run(5, 1000, 12, 5, with_final_reads);
            assert_accepted_well_within_budget(&history);
        }
    }

    #[test]
    fn restarts_follow_the_luby_sequence() {
        let terms: Vec<u64> = (1..=15).map(luby).collect();
        assert_eq!(terms, [1, 1, 2, 1, 1, 2, 4, 1, 1, 2, 1, 1, 2, 4, 8]);
    }

    #[test]
    fn a_simulated_run_with_one_stale_read_is_flagged() {
        let mut history = simulated_run(11, 3000, 8, 5, true);
        // The last read returns what the first one did: the transfers acknowledged in between
        // are missing, and no set of transfers makes up for them.
        let reads: Vec<usize> = history
            .events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.kind == Kind::Ok && matches!(e.op, Op::ReadAll { .. }))
            .map(|(i, _)| i)
            .collect();
        let (first, last) = (reads[0], reads[reads.len() - 1]);
        history.events[last].op = history.events[first].op.clone();
        let verdict = ConsistentCut::default().check(&history);
        assert!(!verdict.valid);
        assert_eq!(verdict.stats["reads_inconsistent"], 1, "{verdict:?}");
        assert!(
            verdict.anomalies[0].starts_with(&format!(
                "read event {last} is not a consistent cut of the transfers: no set of transfers gives its balances"
            )),
            "{verdict:?}"
        );
    }
}
