//! Builds histories for the checkers' tests: hand-made ones ([`HistoryBuilder`]) and simulated
//! runs against a correct store ([`simulated_run`]). The clock advances 10 ns per event, so
//! the order of the builder calls is the real-time order: two operations are concurrent
//! exactly when one is invoked between the other's invocation and completion.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

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
        stored: Vec::new(),
        pending: Vec::new(),
        closed: Vec::new(),
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
        cashed_out: 0,
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
            | Op::Settle { result: r, .. }
            | Op::BetAction { result: r, .. } => *r = result.map(str::to_string),
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

/// A deterministic generator for the simulated run.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// Simulates a run against a correct (linearizable) store: each operation takes effect
/// at one point between its invocation and completion; a quarter of the transfers time
/// out, and half of those took effect anyway.
pub fn simulated_run(
    seed: u64,
    operations: usize,
    accounts: u128,
    max_amount: u64,
    with_final_reads: bool,
) -> History {
    simulate(
        seed,
        operations,
        accounts,
        max_amount,
        with_final_reads,
        false,
    )
}

/// [`simulated_run`] where, as in the idempotency workload, idle clients resubmit transfers
/// that timed out (same id, next attempt) 50 to 250 operations later: a resubmission applies
/// the transfer unless an earlier attempt did (`exists`), and may time out again.
pub fn simulated_run_with_retries(
    seed: u64,
    operations: usize,
    accounts: u128,
    max_amount: u64,
    with_final_reads: bool,
) -> History {
    simulate(
        seed,
        operations,
        accounts,
        max_amount,
        with_final_reads,
        true,
    )
}

fn simulate(
    seed: u64,
    operations: usize,
    accounts: u128,
    max_amount: u64,
    with_final_reads: bool,
    retries: bool,
) -> History {
    const CLIENTS: u64 = 10;
    let initial: Vec<(u128, i128)> = (1..=accounts).map(|a| (a, 1000)).collect();
    let mut h = HistoryBuilder::new(&initial);
    let mut rng = Lcg(seed);
    let mut state: BTreeMap<u128, i128> = initial.iter().copied().collect();
    let mut applied: BTreeSet<u128> = BTreeSet::new();
    // Transfers that timed out, waiting to be resubmitted, in order; each with the operation
    // count from which it is due.
    let mut waiting: VecDeque<(usize, (u128, u128, u128, u128))> = VecDeque::new();
    // Per client: None when idle, else (took effect yet, what it saw or did).
    #[derive(Clone)]
    enum Open {
        Transfer {
            id: u128,
            from: u128,
            to: u128,
            amount: u128,
            effect: bool,
            fate: u64,
            /// This attempt applied it.
            created: bool,
        },
        Read {
            seen: Option<Vec<(u128, i128)>>,
        },
    }
    let mut open: Vec<Option<Open>> = vec![None; CLIENTS as usize];
    let mut invoked = 0;
    let mut next_id = 1u128;
    while invoked < operations || open.iter().any(Option::is_some) {
        let c = rng.below(CLIENTS) as usize;
        match open[c].clone() {
            None if invoked < operations => {
                invoked += 1;
                if waiting.front().is_some_and(|(due, _)| *due <= invoked) {
                    let (_, (id, from, to, amount)) = waiting.pop_front().expect("waiting");
                    h.invoke_transfer(c as u64, id, from, to, amount);
                    open[c] = Some(Open::Transfer {
                        id,
                        from,
                        to,
                        amount,
                        effect: false,
                        fate: rng.below(8),
                        created: false,
                    });
                } else if rng.below(4) == 0 {
                    h.invoke_read(c as u64);
                    open[c] = Some(Open::Read { seen: None });
                } else {
                    let from = rng.below(accounts as u64) as u128 + 1;
                    let offset = rng.below(accounts as u64 - 1) as u128 + 1;
                    let to = (from - 1 + offset) % accounts + 1;
                    let amount = u128::from(rng.below(max_amount) + 1);
                    let id = next_id;
                    next_id += 1;
                    h.invoke_transfer(c as u64, id, from, to, amount);
                    // 0..=5: ok, 6: info applied, 7: info not applied.
                    let fate = rng.below(8);
                    open[c] = Some(Open::Transfer {
                        id,
                        from,
                        to,
                        amount,
                        effect: false,
                        fate,
                        created: false,
                    });
                }
            }
            None => {}
            Some(Open::Read { seen: None }) => {
                open[c] = Some(Open::Read {
                    seen: Some(state.iter().map(|(a, n)| (*a, *n)).collect()),
                });
            }
            Some(Open::Read { seen: Some(nets) }) => {
                h.ok_read(c as u64, &nets);
                open[c] = None;
            }
            Some(Open::Transfer {
                id,
                from,
                to,
                amount,
                effect: false,
                fate,
                ..
            }) => {
                // Applied at most once, whatever the attempts.
                let created = fate != 7 && applied.insert(id);
                if created {
                    *state.get_mut(&from).expect("account") -= amount as i128;
                    *state.get_mut(&to).expect("account") += amount as i128;
                }
                open[c] = Some(Open::Transfer {
                    id,
                    from,
                    to,
                    amount,
                    effect: true,
                    fate,
                    created,
                });
            }
            Some(Open::Transfer {
                id,
                from,
                to,
                amount,
                fate,
                created,
                ..
            }) => {
                if fate >= 6 {
                    h.info(c as u64);
                    if retries {
                        let due = invoked + 50 + rng.below(200) as usize;
                        waiting.push_back((due, (id, from, to, amount)));
                    }
                } else {
                    h.ok(c as u64, if created { "created" } else { "exists" });
                }
                open[c] = None;
            }
        }
    }
    if with_final_reads {
        let nets: Vec<(u128, i128)> = state.into_iter().collect();
        let applied: Vec<u128> = applied.into_iter().collect();
        h.final_reads(&nets, &applied);
    }
    h.build()
}
