//! The history of a run: every operation the logical clients invoked and how it completed, the
//! nemesis's fault windows, and the final reads of every node. Written as JSON lines
//! (`history.jsonl`), one [`Event`] per line, in the order they happened.
//!
//! Jepsen's rules for completions:
//! - `ok`: the operation happened (a write was applied, a read returned these values);
//! - `fail`: it definitely did not happen (a result code that rejects it, a definite refusal);
//! - `info`: unknown. A timeout or a lost connection is `info`, never `fail`: the write may
//!   have been applied, and a checker must allow both.
//!
//! 128-bit numbers are written as decimal strings (`serde_json` writes `u128` as a number,
//! which most JSON tools cannot read exactly); balances are signed nets as strings too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Who did it: a logical client, or the nemesis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Process {
    Client(u64),
    Nemesis,
    /// The harness itself: set-up and final reads.
    Harness,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// An account's balances as read: what a checker needs of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    #[serde(with = "text")]
    pub debits_posted: u128,
    #[serde(with = "text")]
    pub credits_posted: u128,
    #[serde(with = "text")]
    pub debits_pending: u128,
    #[serde(with = "text")]
    pub credits_pending: u128,
}

impl Balance {
    /// Credits minus debits, posted only.
    pub fn net(&self) -> i128 {
        self.credits_posted as i128 - self.debits_posted as i128
    }
}

/// A bet as read at the end: enough to check its settlement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BetState {
    #[serde(with = "text")]
    pub id: u128,
    #[serde(with = "text")]
    pub player: u128,
    #[serde(with = "text")]
    pub market: u128,
    pub selection: u64,
    #[serde(with = "text")]
    pub stake: u128,
    #[serde(with = "text")]
    pub potential_payout: u128,
    /// open, won, lost, void, cashed_out
    pub status: String,
    #[serde(with = "text")]
    pub settlement_id: u128,
    /// What the house paid the player when the bet was cashed out (0 otherwise).
    #[serde(default, with = "text")]
    pub cashed_out: u128,
}

/// A market's settlement as read at the end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketState {
    #[serde(with = "text")]
    pub id: u128,
    /// open or settled
    pub status: String,
    #[serde(with = "text")]
    pub settlement_id: u128,
    pub winners: Vec<u64>,
    pub voids: Vec<u64>,
}

/// One transfer of a `ledger` workload write, as submitted (`flags` are ledger-core's
/// `TransferFlags` bits: pending, post, void, linked, balancing, closing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerTransfer {
    #[serde(with = "text")]
    pub id: u128,
    #[serde(with = "text")]
    pub from: u128,
    #[serde(with = "text")]
    pub to: u128,
    #[serde(with = "text")]
    pub amount: u128,
    #[serde(with = "text")]
    pub pending_id: u128,
    pub flags: u16,
    pub timeout_s: u32,
}

/// A transfer as a node stores it at the end: the fields of [`LedgerTransfer`] as applied
/// (a post or void names the pending transfer's accounts and the amount it moved or
/// released; a balancing transfer the amount it moved) and the cluster timestamp.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTransfer {
    #[serde(flatten)]
    pub transfer: LedgerTransfer,
    pub timestamp: u64,
}

/// What became of a pending transfer, as a node says at the end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingState {
    #[serde(with = "text")]
    pub id: u128,
    /// pending, posted, voided, expired
    pub status: String,
}

/// What an operation did, and with what values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Op {
    /// Move `amount` from `from` to `to` under the client-chosen `id`. `attempt` counts the
    /// submissions of this id (the idempotency workload resubmits unknown ones, sometimes
    /// through another node).
    Transfer {
        #[serde(with = "text")]
        id: u128,
        #[serde(with = "text")]
        from: u128,
        #[serde(with = "text")]
        to: u128,
        #[serde(with = "text")]
        amount: u128,
        #[serde(default)]
        attempt: u32,
        /// The result code name on `ok` / `fail` (`created`, `exists`, `exceeds_credits`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<String>,
    },
    /// One linearizable read of every account of the workload, at once. Empty on invoke.
    ReadAll {
        #[serde(default, with = "text_map")]
        balances: BTreeMap<u128, Balance>,
    },
    PlaceBet {
        #[serde(with = "text")]
        id: u128,
        #[serde(with = "text")]
        player: u128,
        #[serde(with = "text")]
        market: u128,
        selection: u64,
        #[serde(with = "text")]
        stake: u128,
        odds: u64,
        #[serde(default)]
        attempt: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<String>,
    },
    Settle {
        #[serde(with = "text")]
        id: u128,
        #[serde(with = "text")]
        market: u128,
        winners: Vec<u64>,
        voids: Vec<u64>,
        #[serde(default)]
        attempt: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<String>,
    },
    /// A bet action: `void` (the stake released) or `cash_out` (the stake posted to the house,
    /// which pays `amount` to the player now). Repeating it answers `exists`.
    BetAction {
        #[serde(with = "text")]
        bet: u128,
        kind: String,
        #[serde(with = "text")]
        amount: u128,
        #[serde(default)]
        attempt: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<String>,
    },
    /// A fault starts or ends. `name` is the nemesis (`kill`, `partition`, ...), `detail`
    /// what exactly (`node 2`, `{1,2} | {3}`).
    Fault {
        name: String,
        start: bool,
        detail: String,
    },
    /// After healing: what one node holds. `transfers` are the ids of the workload's
    /// transfers found on that node (read from that node only, stale read).
    FinalRead {
        node: u64,
        applied_index: u64,
        /// The state digest, hex.
        digest: String,
        #[serde(with = "text_map")]
        balances: BTreeMap<u128, Balance>,
        #[serde(with = "text_vec")]
        transfers: Vec<u128>,
        #[serde(default)]
        bets: Vec<BetState>,
        #[serde(default)]
        markets: Vec<MarketState>,
        /// The `ledger` workload: every transfer of its writes that this node stores, the
        /// status of every pending transfer it stores, and the accounts it has closed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        stored: Vec<StoredTransfer>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pending: Vec<PendingState>,
        #[serde(default, skip_serializing_if = "Vec::is_empty", with = "text_vec")]
        closed: Vec<u128>,
    },
    /// The `ledger` workload: one request of transfers, all or nothing when linked. `what` is
    /// hold, post, void, chain, balancing, close or reopen; `results` has one result code
    /// name per transfer on `ok` / `fail`.
    LedgerWrite {
        what: String,
        transfers: Vec<LedgerTransfer>,
        #[serde(default)]
        attempt: u32,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        results: Vec<String>,
    },
    /// After healing: a new write through the cluster succeeded (`ok`) or not (`fail`).
    ProbeWrite,
    /// The hold prober (with the `clock` nemesis): a pending transfer of 1 between two
    /// accounts of its own, which expires `timeout_s` seconds after it is applied.
    Hold {
        #[serde(with = "text")]
        id: u128,
        timeout_s: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<String>,
    },
    /// The hold prober posts hold `hold`: `created` if it had not expired,
    /// `pending_transfer_expired` if it had (by cluster time).
    PostHold {
        #[serde(with = "text")]
        id: u128,
        #[serde(with = "text")]
        hold: u128,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<String>,
    },
}

/// One line of the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the history, from 0.
    pub index: u64,
    /// Nanoseconds since the run started (monotonic clock).
    pub time_ns: u64,
    pub process: Process,
    #[serde(rename = "type")]
    pub kind: Kind,
    #[serde(flatten)]
    pub op: Op,
    /// Why it failed or is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The whole-run facts the checkers need besides the events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setup {
    /// The accounts of the workload and their balances before the first operation.
    #[serde(with = "text_map")]
    pub initial: BTreeMap<u128, Balance>,
    /// Accounts that may not go below zero net (`debits_must_not_exceed_credits`).
    #[serde(with = "text_vec")]
    pub non_negative: Vec<u128>,
    /// The nodes of the cluster at the end.
    pub nodes: Vec<u64>,
}

/// A history: the set-up and the events, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub setup: Setup,
    pub events: Vec<Event>,
}

/// An invocation paired with its completion (`None`: never completed, treated as `info`).
#[derive(Clone, Debug)]
pub struct Pair<'a> {
    pub invoke: &'a Event,
    pub complete: Option<&'a Event>,
}

impl<'a> Pair<'a> {
    /// The kind the operation ended with; an operation that never completed is `info`.
    pub fn outcome(&self) -> Kind {
        self.complete.map(|c| c.kind).unwrap_or(Kind::Info)
    }

    /// The completion's op when there is one, else the invocation's.
    pub fn op(&self) -> &'a Op {
        self.complete.map(|c| &c.op).unwrap_or(&self.invoke.op)
    }

    /// When the operation ended; `u64::MAX` when it is unknown (it may take effect any time
    /// after its invocation).
    pub fn end_ns(&self) -> u64 {
        match self.complete {
            Some(c) if c.kind != Kind::Info => c.time_ns,
            _ => u64::MAX,
        }
    }
}

impl History {
    /// Pairs every client invocation with the next completion of the same process.
    pub fn pairs(&self) -> Vec<Pair<'_>> {
        let mut open: BTreeMap<Process, usize> = BTreeMap::new();
        let mut pairs: Vec<Pair<'_>> = Vec::new();
        for event in &self.events {
            if !matches!(event.process, Process::Client(_)) {
                continue;
            }
            match event.kind {
                Kind::Invoke => {
                    open.insert(event.process, pairs.len());
                    pairs.push(Pair {
                        invoke: event,
                        complete: None,
                    });
                }
                _ => {
                    if let Some(i) = open.remove(&event.process) {
                        pairs[i].complete = Some(event);
                    }
                }
            }
        }
        pairs
    }

    /// The final reads, one per node.
    pub fn final_reads(&self) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|e| matches!(e.op, Op::FinalRead { .. }) && e.kind == Kind::Ok)
            .collect()
    }

    /// Writes the history as JSON lines: the set-up first, then one event per line.
    pub fn to_jsonl(&self) -> String {
        let mut out = serde_json::to_string(&serde_json::json!({ "setup": self.setup }))
            .expect("setup serializes");
        out.push('\n');
        for event in &self.events {
            out.push_str(&serde_json::to_string(event).expect("event serializes"));
            out.push('\n');
        }
        out
    }

    /// Reads what [`History::to_jsonl`] wrote.
    pub fn from_jsonl(text: &str) -> Result<Self, String> {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        #[derive(Deserialize)]
        struct First {
            setup: Setup,
        }
        let first = lines.next().ok_or("empty history")?;
        let setup = serde_json::from_str::<First>(first)
            .map_err(|e| format!("line 1: {e}"))?
            .setup;
        let events = lines
            .enumerate()
            .map(|(i, line)| serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 2)))
            .collect::<Result<_, _>>()?;
        Ok(History { setup, events })
    }
}

/// Builds histories: numbers events and stamps them.
#[derive(Debug, Default)]
pub struct Recorder {
    pub history: History,
}

impl Recorder {
    pub fn push(
        &mut self,
        time_ns: u64,
        process: Process,
        kind: Kind,
        op: Op,
        error: Option<String>,
    ) {
        let index = self.history.events.len() as u64;
        self.history.events.push(Event {
            index,
            time_ns,
            process,
            kind,
            op,
            error,
        });
    }
}

/// `u128` as a decimal string.
pub mod text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `Vec<u128>` as decimal strings.
pub mod text_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(values: &[u128], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(values.iter().map(|v| v.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u128>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| t.parse().map_err(serde::de::Error::custom))
            .collect()
    }
}

/// `BTreeMap<u128, T>` with decimal-string keys.
pub mod text_map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize>(
        map: &BTreeMap<u128, T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(map.iter().map(|(k, v)| (k.to_string(), v)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<BTreeMap<u128, T>, D::Error> {
        BTreeMap::<String, T>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| Ok((k.parse().map_err(serde::de::Error::custom)?, v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_survives_json_lines_with_128_bit_numbers() {
        let mut recorder = Recorder::default();
        recorder
            .history
            .setup
            .initial
            .insert(u128::MAX - 1, Balance::default());
        recorder.push(
            1,
            Process::Client(3),
            Kind::Invoke,
            Op::Transfer {
                id: u128::MAX - 7,
                from: 1,
                to: 2,
                amount: 5,
                attempt: 0,
                result: None,
            },
            None,
        );
        recorder.push(
            2,
            Process::Client(3),
            Kind::Info,
            Op::Transfer {
                id: u128::MAX - 7,
                from: 1,
                to: 2,
                amount: 5,
                attempt: 0,
                result: None,
            },
            Some("timeout".into()),
        );
        let text = recorder.history.to_jsonl();
        assert!(text.contains("\"type\":\"info\""), "{text}");
        assert!(text.contains("\"f\":\"transfer\""), "{text}");
        let back = History::from_jsonl(&text).unwrap();
        assert_eq!(back, recorder.history);
        let pairs = back.pairs();
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].outcome(), Kind::Info);
        assert_eq!(pairs[0].end_ns(), u64::MAX);
    }
}
