//! Readings of a history that several checkers share: the attempts of each write id (transfer,
//! bet, settlement) and how they ended, and the final reads as plain structs.
//!
//! A write id may be submitted several times (retries: same id, increasing `attempt`). The id
//! was applied when any attempt is `ok`; it was definitely not applied when every attempt is
//! `fail`; otherwise (some `info` or unanswered attempt, no `ok`) its outcome is unknown.

use std::collections::BTreeMap;

use crate::history::{Balance, BetState, History, Kind, MarketState, Op, Pair, Process};

/// How the attempts of one write id ended.
#[derive(Clone, Debug, Default)]
pub(crate) struct Attempts {
    /// Invocations of this id.
    pub count: u32,
    /// When the first attempt was invoked (ns) and its event index.
    pub first_invoke_ns: u64,
    pub first_invoke_event: u64,
    /// Event indices of the `ok` completions.
    pub ok_events: Vec<u64>,
    /// Event indices of the `ok` completions whose result is `created`: each says that this
    /// attempt, and no earlier one, applied the write.
    pub created_events: Vec<u64>,
    /// The earliest `ok` completion (ns).
    pub first_ok_ns: Option<u64>,
    /// Attempts that ended `fail`.
    pub fails: u32,
}

impl Attempts {
    fn record(&mut self, pair: &Pair<'_>, result: Option<&str>) {
        if self.count == 0 {
            self.first_invoke_ns = pair.invoke.time_ns;
            self.first_invoke_event = pair.invoke.index;
        }
        self.count += 1;
        match (pair.outcome(), pair.complete) {
            (Kind::Ok, Some(complete)) => {
                self.ok_events.push(complete.index);
                if result == Some("created") {
                    self.created_events.push(complete.index);
                }
                let end = complete.time_ns;
                self.first_ok_ns = Some(self.first_ok_ns.map_or(end, |t| t.min(end)));
            }
            (Kind::Fail, _) => self.fails += 1,
            _ => {}
        }
    }

    /// At least one attempt was acknowledged: the write was applied.
    pub fn acknowledged(&self) -> bool {
        !self.ok_events.is_empty()
    }

    /// Every attempt failed: the write was not applied.
    pub fn definitely_failed(&self) -> bool {
        self.count > 0 && self.fails == self.count
    }
}

/// A transfer id as submitted (fields of its first attempt) and how its attempts ended.
#[derive(Clone, Debug)]
pub(crate) struct TransferWrite {
    pub from: u128,
    pub to: u128,
    pub amount: u128,
    pub attempts: Attempts,
}

/// A bet id as submitted (fields of its first attempt) and how its attempts ended.
#[derive(Clone, Debug)]
pub(crate) struct BetWrite {
    pub player: u128,
    pub market: u128,
    pub selection: u64,
    pub stake: u128,
    pub odds: u64,
    pub attempts: Attempts,
}

/// A settlement id as submitted (fields of its first attempt) and how its attempts ended.
#[derive(Clone, Debug)]
pub(crate) struct SettleWrite {
    pub market: u128,
    pub winners: Vec<u64>,
    pub voids: Vec<u64>,
    pub attempts: Attempts,
}

/// The result name an `ok`/`fail` completion carries, if any.
fn result_of<'a>(pair: &Pair<'a>) -> Option<&'a str> {
    match pair.complete.map(|c| &c.op) {
        Some(Op::Transfer { result, .. })
        | Some(Op::PlaceBet { result, .. })
        | Some(Op::Settle { result, .. }) => result.as_deref(),
        _ => None,
    }
}

/// Every transfer id of the history, with its attempts.
pub(crate) fn transfers(history: &History) -> BTreeMap<u128, TransferWrite> {
    let mut writes: BTreeMap<u128, TransferWrite> = BTreeMap::new();
    for pair in history.pairs() {
        if let Op::Transfer {
            id,
            from,
            to,
            amount,
            ..
        } = pair.invoke.op
        {
            writes
                .entry(id)
                .or_insert_with(|| TransferWrite {
                    from,
                    to,
                    amount,
                    attempts: Attempts::default(),
                })
                .attempts
                .record(&pair, result_of(&pair));
        }
    }
    writes
}

/// Every bet id of the history, with its attempts.
pub(crate) fn bets(history: &History) -> BTreeMap<u128, BetWrite> {
    let mut writes: BTreeMap<u128, BetWrite> = BTreeMap::new();
    for pair in history.pairs() {
        if let Op::PlaceBet {
            id,
            player,
            market,
            selection,
            stake,
            odds,
            ..
        } = pair.invoke.op
        {
            writes
                .entry(id)
                .or_insert_with(|| BetWrite {
                    player,
                    market,
                    selection,
                    stake,
                    odds,
                    attempts: Attempts::default(),
                })
                .attempts
                .record(&pair, result_of(&pair));
        }
    }
    writes
}

/// Every settlement id of the history, with its attempts.
pub(crate) fn settles(history: &History) -> BTreeMap<u128, SettleWrite> {
    let mut writes: BTreeMap<u128, SettleWrite> = BTreeMap::new();
    for pair in history.pairs() {
        if let Op::Settle {
            id,
            market,
            winners,
            voids,
            ..
        } = &pair.invoke.op
        {
            writes
                .entry(*id)
                .or_insert_with(|| SettleWrite {
                    market: *market,
                    winners: winners.clone(),
                    voids: voids.clone(),
                    attempts: Attempts::default(),
                })
                .attempts
                .record(&pair, result_of(&pair));
        }
    }
    writes
}

/// Returns true when the run placed or settled bets, or read bets or markets at the end: then
/// balances also move by bet operations, which are not transfers of the history.
pub(crate) fn has_bets(history: &History) -> bool {
    history.events.iter().any(|e| match &e.op {
        Op::PlaceBet { .. } | Op::Settle { .. } | Op::BetAction { .. } => true,
        Op::FinalRead { bets, markets, .. } => !bets.is_empty() || !markets.is_empty(),
        _ => false,
    })
}

/// Returns true when the run made `ledger` workload writes (holds, posts, voids, chains,
/// balancing and closing transfers): then balances also move in ways a plain transfer's
/// `+amount`/`-amount` does not describe (pending amounts, partial posts, expiries).
pub(crate) fn has_ledger_writes(history: &History) -> bool {
    history
        .events
        .iter()
        .any(|e| matches!(e.op, Op::LedgerWrite { .. }))
}

/// One node's final read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FinalRead<'a> {
    /// The event's index in the history.
    pub event: u64,
    pub node: u64,
    pub applied_index: u64,
    pub digest: &'a str,
    pub balances: &'a BTreeMap<u128, Balance>,
    pub transfers: &'a [u128],
    pub bets: &'a [BetState],
    pub markets: &'a [MarketState],
}

/// The `ok` final reads of the harness, in history order.
pub(crate) fn final_reads(history: &History) -> Vec<FinalRead<'_>> {
    history
        .final_reads()
        .into_iter()
        .filter(|e| e.process == Process::Harness)
        .filter_map(|e| match &e.op {
            Op::FinalRead {
                node,
                applied_index,
                digest,
                balances,
                transfers,
                bets,
                markets,
                ..
            } => Some(FinalRead {
                event: e.index,
                node: *node,
                applied_index: *applied_index,
                digest,
                balances,
                transfers,
                bets,
                markets,
            }),
            _ => None,
        })
        .collect()
}

/// An `ok` balance read: when it was invoked and completed, and what it returned.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BalanceRead<'a> {
    pub event: u64,
    pub invoke_ns: u64,
    pub complete_ns: u64,
    pub balances: &'a BTreeMap<u128, Balance>,
}

/// Every `ok` `ReadAll` of the clients, in invocation order.
pub(crate) fn balance_reads(history: &History) -> Vec<BalanceRead<'_>> {
    history
        .pairs()
        .into_iter()
        .filter_map(|pair| match (pair.outcome(), pair.complete) {
            (Kind::Ok, Some(complete)) => match &complete.op {
                Op::ReadAll { balances } => Some(BalanceRead {
                    event: complete.index,
                    invoke_ns: pair.invoke.time_ns,
                    complete_ns: complete.time_ns,
                    balances,
                }),
                _ => None,
            },
            _ => None,
        })
        .collect()
}
