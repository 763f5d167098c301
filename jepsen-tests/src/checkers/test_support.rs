//! Builds hand-made histories for the checkers' tests. The clock advances 10 ns per event, so
//! the order of the builder calls is the real-time order: two operations are concurrent
//! exactly when one is invoked between the other's invocation and completion.

use std::collections::BTreeMap;

use crate::history::{Balance, BetState, History, Kind, Op, Process, Recorder};

/// A balance with the given net, posted only.
pub fn balance(net: i128) -> Balance {
    if net >= 0 {
        Balance {
            credits_posted: net.unsigned_abs(),
            ..Balance::default()
        }
    } else {
        Balance {
            debits_posted: net.unsigned_abs(),
            ..Balance::default()
        }
    }
}

/// Balances with the given nets, posted only.
pub fn balances(nets: &[(u128, i128)]) -> BTreeMap<u128, Balance> {
    nets.iter().map(|&(id, net)| (id, balance(net))).collect()
}

/// A final read of `node` with the given nets and transfer ids, applied index 100, digest
/// `"d"`, no bets.
pub fn final_read_op(node: u64, nets: &[(u128, i128)], transfers: &[u128]) -> Op {
    Op::FinalRead {
        node,
        applied_index: 100,
        digest: "d".into(),
        balances: balances(nets),
        transfers: transfers.to_vec(),
        bets: Vec::new(),
        markets: Vec::new(),
    }
}

/// A bet placement as invoked.
pub fn place_bet_op(
    id: u128,
    player: u128,
    market: u128,
    selection: u64,
    stake: u128,
    odds: u64,
) -> Op {
    Op::PlaceBet {
        id,
        player,
        market,
        selection,
        stake,
        odds,
        attempt: 0,
        result: None,
    }
}

/// A settlement as invoked.
pub fn settle_op(id: u128, market: u128, winners: &[u64], voids: &[u64]) -> Op {
    Op::Settle {
        id,
        market,
        winners: winners.to_vec(),
        voids: voids.to_vec(),
        attempt: 0,
        result: None,
    }
}

/// A bet as read at the end.
pub fn bet_state(id: u128, player: u128, market: u128, selection: u64, stake: u128) -> BetState {
    BetState {
        id,
        player,
        market,
        selection,
        stake,
        potential_payout: stake * 2,
        status: "open".into(),
        settlement_id: 0,
    }
}

pub struct HistoryBuilder {
    recorder: Recorder,
    time_ns: u64,
    /// The invoked, not yet completed operation of each client.
    open: BTreeMap<u64, Op>,
    /// Attempts so far per write id, to number retries.
    attempts: BTreeMap<u128, u32>,
}

impl HistoryBuilder {
    /// A history over accounts with the given initial nets, on nodes 1, 2 and 3.
    pub fn new(initial: &[(u128, i128)]) -> Self {
        let mut recorder = Recorder::default();
        recorder.history.setup.initial = balances(initial);
        recorder.history.setup.nodes = vec![1, 2, 3];
        HistoryBuilder {
            recorder,
            time_ns: 0,
            open: BTreeMap::new(),
            attempts: BTreeMap::new(),
        }
    }

    pub fn non_negative(&mut self, accounts: &[u128]) -> &mut Self {
        self.recorder.history.setup.non_negative = accounts.to_vec();
        self
    }

    fn push(&mut self, process: Process, kind: Kind, op: Op, error: Option<String>) {
        self.time_ns += 10;
        self.recorder.push(self.time_ns, process, kind, op, error);
    }

    fn next_attempt(&mut self, id: u128) -> u32 {
        let attempt = self.attempts.entry(id).or_insert(0);
        *attempt += 1;
        *attempt - 1
    }

    /// Invokes `op` for `client`, numbering its attempt when it is a write.
    pub fn invoke_op(&mut self, client: u64, mut op: Op) {
        match &mut op {
            Op::Transfer { id, attempt, .. }
            | Op::PlaceBet { id, attempt, .. }
            | Op::Settle { id, attempt, .. } => *attempt = self.next_attempt(*id),
            _ => {}
        }
        assert!(
            self.open.insert(client, op.clone()).is_none(),
            "client {client} already has an operation open"
        );
        self.push(Process::Client(client), Kind::Invoke, op, None);
    }

    pub fn invoke_transfer(&mut self, client: u64, id: u128, from: u128, to: u128, amount: u128) {
        self.invoke_op(
            client,
            Op::Transfer {
                id,
                from,
                to,
                amount,
                attempt: 0,
                result: None,
            },
        );
    }

    pub fn invoke_read(&mut self, client: u64) {
        self.invoke_op(
            client,
            Op::ReadAll {
                balances: BTreeMap::new(),
            },
        );
    }

    fn complete(&mut self, client: u64, kind: Kind, result: Option<&str>, error: Option<String>) {
        let mut op = self
            .open
            .remove(&client)
            .unwrap_or_else(|| panic!("client {client} has no operation open"));
        match &mut op {
            Op::Transfer { result: r, .. }
            | Op::PlaceBet { result: r, .. }
            | Op::Settle { result: r, .. } => *r = result.map(str::to_string),
            _ => {}
        }
        self.push(Process::Client(client), kind, op, error);
    }

    /// Completes the client's open write as `ok` with this result (`created`, `exists`).
    pub fn ok(&mut self, client: u64, result: &str) {
        self.complete(client, Kind::Ok, Some(result), None);
    }

    /// Completes the client's open write as `fail` with this result.
    pub fn fail(&mut self, client: u64, result: &str) {
        self.complete(client, Kind::Fail, Some(result), None);
    }

    /// Completes the client's open operation as `info` (a timeout).
    pub fn info(&mut self, client: u64) {
        self.complete(client, Kind::Info, None, Some("timeout".into()));
    }

    /// Completes the client's open read as `ok` with these nets.
    pub fn ok_read(&mut self, client: u64, nets: &[(u128, i128)]) {
        let open = self.open.remove(&client);
        assert!(
            matches!(open, Some(Op::ReadAll { .. })),
            "client {client} has no read open"
        );
        self.push(
            Process::Client(client),
            Kind::Ok,
            Op::ReadAll {
                balances: balances(nets),
            },
            None,
        );
    }

    /// A transfer invoked and acknowledged (`created`) before anything else happens.
    pub fn transfer(&mut self, client: u64, id: u128, from: u128, to: u128, amount: u128) {
        self.invoke_transfer(client, id, from, to, amount);
        self.ok(client, "created");
    }

    /// A read invoked and answered before anything else happens.
    pub fn read(&mut self, client: u64, nets: &[(u128, i128)]) {
        self.invoke_read(client);
        self.ok_read(client, nets);
    }

    /// An `ok` event of the harness (a final read, a probe write).
    pub fn harness_ok(&mut self, op: Op) {
        self.push(Process::Harness, Kind::Ok, op, None);
    }

    pub fn final_read(&mut self, node: u64, nets: &[(u128, i128)], transfers: &[u128]) {
        self.harness_ok(final_read_op(node, nets, transfers));
    }

    /// The same final read on every node of the set-up.
    pub fn final_reads(&mut self, nets: &[(u128, i128)], transfers: &[u128]) {
        for node in self.recorder.history.setup.nodes.clone() {
            self.final_read(node, nets, transfers);
        }
    }

    pub fn probe(&mut self, ok: bool) {
        let kind = if ok { Kind::Ok } else { Kind::Fail };
        self.push(Process::Harness, kind, Op::ProbeWrite, None);
    }

    /// An event of the harness itself (the hold prober's operations).
    pub fn harness(&mut self, kind: Kind, op: Op) {
        self.push(Process::Harness, kind, op, None);
    }

    /// The nemesis starts (`start`) or stops a fault named `name`.
    pub fn fault(&mut self, name: &str, start: bool) {
        self.push(
            Process::Nemesis,
            Kind::Info,
            Op::Fault {
                name: name.into(),
                start,
                detail: String::new(),
            },
            None,
        );
    }

    pub fn build(&self) -> History {
        self.recorder.history.clone()
    }
}
