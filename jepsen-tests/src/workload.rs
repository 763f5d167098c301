//! Workloads: what the logical clients do, through [`LedgerClient`].
//!
//! - `bank`: transfers of 1..=5 between a fixed set of accounts that may not go below zero,
//!   and linearizable reads of every balance at once.
//! - `idempotency`: the bank workload, where every transfer whose outcome is unknown is
//!   resubmitted with the same id later (0.5 to 8 s), by another logical client whose first
//!   endpoint is another node; some acknowledged transfers are resubmitted too, as a client
//!   that lost the answer would. After healing, every still-unknown transfer is resubmitted
//!   until it settles.
//! - `bets`: bets placed by players on a sequence of 1,000 markets, each market settled once while
//!   bets keep coming, and reads of every balance. Bets whose outcome is unknown are placed
//!   again later with the same id; some acknowledged bets are placed again, cashed out (for
//!   30-150 % of the stake) or voided by a bet action.
//! - `ledger`: the bank's transfers and reads, and beside them holds (pending transfers, some
//!   with a timeout of 1-4 s) posted in full or in part or voided, linked chains of 2-3
//!   transfers (a quarter of them bound to fail as a whole), balancing transfers asking for
//!   more than there is, and two accounts closed by closing holds and reopened by voiding
//!   them. Half of the writes whose outcome is unknown are resubmitted later with the same ids,
//!   and some acknowledged ones too, as a client that lost the answer would.
//!
//! Each logical client is a [`Process`]; after an `info` outcome it continues as a new process
//! (Jepsen's rule: the old one may still have an operation in flight).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ledger_client::{ClientConfig, Error, LedgerClient};
use ledger_core::{
    Account, AccountFlags, BetAction, BetActionKind, NewBet, NewMarket, Settlement,
    SettlementFlags, Transfer, TransferFlags, TransferResult, EVENTS_PER_BATCH_MAX,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::history::{
    Balance, BetState, Kind, LedgerTransfer, MarketState, Op, PendingState, Process, Recorder,
    StoredTransfer,
};

pub const WORKLOADS: &[&str] = &["bank", "idempotency", "bets", "ledger"];

/// How long one operation may take (retries included) before it is `info`. Shorter than the
/// server's own write timeout, so that faults leave operations whose outcome is unknown.
pub const OP_DEADLINE: Duration = Duration::from_secs(2);
/// How long one attempt may take before the client gives up on it and retries (the same
/// request, so the same ids) on the same or another node, within [`OP_DEADLINE`]: shorter than
/// the deadline, so that the client's own retry path runs under the faults.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(800);
const LEDGER: u32 = 1;
const ACCOUNTS: u128 = 8;
const INITIAL_BALANCE: u128 = 1_000;
const BANK: u128 = 1_000;
const HOUSE: u128 = 2_000;
const HOUSE_FLOAT: u128 = 1_000_000;
const MARKETS: u128 = 1_000;
const MARKET_BASE: u128 = 3_000;
const LIABILITY_LIMIT: u128 = 100_000;
/// The `ledger` workload's accounts that closing holds close and voids reopen.
const CLOSABLE: [u128; 2] = [11, 12];
/// An account that does not exist: a chain with a leg to it fails as a whole.
const MISSING_ACCOUNT: u128 = 99_999;
const PROBE_DEBIT: u128 = 9_001;
const PROBE_CREDIT: u128 = 9_002;
/// The hold prober's accounts, apart from every workload's.
const HOLD_DEBIT: u128 = 9_101;
const HOLD_CREDIT: u128 = 9_102;
/// The hold prober's ids start here (the workloads' come from `Ctx::fresh_id`, far below).
const HOLD_ID_BASE: u128 = 1 << 100;

/// A `ledger` write whose outcome is unknown, to resubmit: (due, what, transfers, attempts so
/// far).
type LedgerRetry = (Instant, String, Vec<LedgerTransfer>, u32);

/// The run's shared state: the clock, the history, the ids in use.
pub struct Ctx {
    pub started: Instant,
    pub recorder: Mutex<Recorder>,
    next_id: AtomicU64,
    /// Transfer and bet ids ever submitted, for the final reads.
    pub transfer_ids: Mutex<Vec<u128>>,
    pub bet_ids: Mutex<Vec<u128>>,
    /// Unknown transfers waiting to be resubmitted: (due, transfer, attempts so far).
    retries: Mutex<VecDeque<(Instant, Transfer, u32)>>,
    /// Acknowledged transfers (some are resubmitted by the idempotency workload).
    acknowledged: Mutex<Vec<Transfer>>,
    /// The market bets go to now.
    market: AtomicUsize,
    /// The `ledger` workload: every transfer id of its writes, the pending ones among them,
    /// the acknowledged holds not yet resolved (closing holds apart), and unknown writes
    /// waiting to be resubmitted.
    pub ledger_ids: Mutex<Vec<u128>>,
    pub pending_ids: Mutex<Vec<u128>>,
    holds: Mutex<Vec<LedgerTransfer>>,
    closings: Mutex<Vec<LedgerTransfer>>,
    ledger_retries: Mutex<VecDeque<LedgerRetry>>,
    /// Bets whose outcome is unknown, waiting to be resubmitted: (due, bet, attempts so far).
    bet_retries: Mutex<VecDeque<(Instant, NewBet, u32)>>,
    /// Acknowledged bets: some resubmitted, some cashed out or voided.
    acknowledged_bets: Mutex<Vec<NewBet>>,
    /// Acknowledged `ledger` writes, some resubmitted as a client that lost the answer would.
    ledger_acknowledged: Mutex<Vec<(String, Vec<LedgerTransfer>)>>,
    ledger_acknowledged_ids: Mutex<std::collections::HashSet<u128>>,
}

impl Ctx {
    pub fn new() -> Ctx {
        Ctx {
            started: Instant::now(),
            recorder: Mutex::new(Recorder::default()),
            next_id: AtomicU64::new(1 << 40),
            transfer_ids: Mutex::new(Vec::new()),
            bet_ids: Mutex::new(Vec::new()),
            retries: Mutex::new(VecDeque::new()),
            acknowledged: Mutex::new(Vec::new()),
            market: AtomicUsize::new(0),
            ledger_ids: Mutex::new(Vec::new()),
            pending_ids: Mutex::new(Vec::new()),
            holds: Mutex::new(Vec::new()),
            closings: Mutex::new(Vec::new()),
            ledger_retries: Mutex::new(VecDeque::new()),
            ledger_acknowledged: Mutex::new(Vec::new()),
            bet_retries: Mutex::new(VecDeque::new()),
            acknowledged_bets: Mutex::new(Vec::new()),
            ledger_acknowledged_ids: Mutex::new(Default::default()),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    pub fn record(&self, process: Process, kind: Kind, op: Op, error: Option<String>) {
        let now = self.now_ns();
        self.recorder
            .lock()
            .expect("history lock")
            .push(now, process, kind, op, error);
    }

    fn fresh_id(&self) -> u128 {
        u128::from(self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

impl Default for Ctx {
    fn default() -> Self {
        Self::new()
    }
}

pub fn workload_accounts(workload: &str) -> Vec<u128> {
    let mut ids: Vec<u128> = (1..=ACCOUNTS).collect();
    if workload == "bets" {
        ids.push(HOUSE);
    }
    if workload == "ledger" {
        ids.extend(CLOSABLE);
    }
    ids
}

/// A client whose first endpoint is node `first` (so logical clients start on different
/// nodes), with the operation deadline.
pub async fn client_for(endpoints: &[String], first: usize) -> Result<LedgerClient, String> {
    let mut rotated = endpoints.to_vec();
    rotated.rotate_left(first % endpoints.len().max(1));
    let mut config = ClientConfig::new(rotated);
    config.deadline = OP_DEADLINE;
    config.attempt_timeout = ATTEMPT_TIMEOUT;
    LedgerClient::with_config(config)
        .await
        .map_err(|e| e.to_string())
}

fn balance_of(a: &Account) -> Balance {
    Balance {
        debits_posted: a.debits_posted,
        credits_posted: a.credits_posted,
        debits_pending: a.debits_pending,
        credits_pending: a.credits_pending,
    }
}

fn account(id: u128, flags: AccountFlags) -> Account {
    Account {
        id,
        ledger: LEDGER,
        code: 1,
        flags,
        ..Account::default()
    }
}

fn transfer(id: u128, from: u128, to: u128, amount: u128) -> Transfer {
    Transfer {
        id,
        debit_account_id: from,
        credit_account_id: to,
        amount,
        ledger: LEDGER,
        code: 1,
        ..Transfer::default()
    }
}

/// Creates and funds the workload's accounts (and markets), and records the initial balances.
pub async fn set_up(ctx: &Ctx, client: &LedgerClient, workload: &str) -> Result<(), String> {
    let client = client.with_deadline(Duration::from_secs(30));
    let mut accounts = vec![
        account(BANK, AccountFlags::default()),
        account(PROBE_DEBIT, AccountFlags::default()),
        account(PROBE_CREDIT, AccountFlags::default()),
        account(HOLD_DEBIT, AccountFlags::default()),
        account(HOLD_CREDIT, AccountFlags::default()),
    ];
    accounts
        .extend((1..=ACCOUNTS).map(|id| account(id, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)));
    if workload == "bets" {
        accounts.push(account(HOUSE, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS));
    }
    if workload == "ledger" {
        accounts
            .extend(CLOSABLE.map(|id| account(id, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)));
    }
    let results = client
        .create_accounts(accounts)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(bad) = results
        .iter()
        .find(|r| !matches!(r, ledger_core::AccountResult::Created))
    {
        return Err(format!("set-up account refused: {bad}"));
    }
    let funded = workload_accounts(workload);
    let mut funding: Vec<Transfer> = funded
        .iter()
        .filter(|id| **id != HOUSE)
        .map(|id| transfer(1_000_000 + id, BANK, *id, INITIAL_BALANCE))
        .collect();
    if workload == "bets" {
        funding.push(transfer(1_000_000 + HOUSE, BANK, HOUSE, HOUSE_FLOAT));
        let markets: Vec<NewMarket> = (1..=MARKETS)
            .map(|i| NewMarket {
                id: MARKET_BASE + i,
                house_account_id: HOUSE,
                liability_limit: LIABILITY_LIMIT,
                user_data_128: 0,
            })
            .collect();
        let results = client
            .create_markets(markets)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(bad) = results
            .iter()
            .find(|r| !matches!(r, ledger_core::MarketResult::Created))
        {
            return Err(format!("set-up market refused: {bad}"));
        }
    }
    let results = client
        .create_transfers(funding)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(bad) = results.iter().find(|r| **r != TransferResult::Created) {
        return Err(format!("set-up transfer refused: {bad}"));
    }
    let ids = workload_accounts(workload);
    let read = client
        .lookup_accounts(&ids)
        .await
        .map_err(|e| e.to_string())?;
    let mut recorder = ctx.recorder.lock().expect("history lock");
    recorder.history.setup.initial = read.iter().map(|a| (a.id, balance_of(a))).collect();
    recorder.history.setup.non_negative = ids;
    Ok(())
}

/// The hold prober, beside the workload when clocks are shifted: every 300 ms it makes a hold
/// (a pending transfer of 1 with a timeout of 2-6 s) between accounts of its own, and posts
/// each acknowledged hold once, at a random moment between a third of its timeout and 2 s
/// past it. The `hold_expiry` checker holds the answers to the harness's own clock: a hold
/// found expired must be at least its timeout old, within the bound of docs/consistency.md.
pub async fn hold_prober(ctx: Arc<Ctx>, client: LedgerClient, seed: u64, until: Instant) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x686f_6c64);
    let client = client.with_deadline(OP_DEADLINE);
    let p = Process::Harness;
    let mut next: u128 = 0;
    let mut posts: Vec<(Instant, u128)> = Vec::new();
    let mut next_hold = Instant::now();
    while Instant::now() < until {
        let now = Instant::now();
        if let Some(i) = posts.iter().position(|(due, _)| *due <= now) {
            let (_, hold) = posts.swap_remove(i);
            next += 1;
            let id = HOLD_ID_BASE + next;
            let value = |result| Op::PostHold { id, hold, result };
            ctx.record(p, Kind::Invoke, value(None), None);
            let post = Transfer {
                flags: ledger_core::TransferFlags::POST_PENDING_TRANSFER,
                pending_id: hold,
                ..transfer(id, HOLD_DEBIT, HOLD_CREDIT, 0)
            };
            let outcome = client
                .create_transfer(post)
                .await
                .map(|r| r.name().to_string());
            let (kind, result, error) = posted(&outcome);
            ctx.record(p, kind, value(result), error);
        } else if now >= next_hold {
            next_hold = now + Duration::from_millis(300);
            next += 1;
            let id = HOLD_ID_BASE + next;
            let timeout_s: u32 = rng.gen_range(2..=6);
            let value = |result| Op::Hold {
                id,
                timeout_s,
                result,
            };
            ctx.record(p, Kind::Invoke, value(None), None);
            let hold = Transfer {
                flags: ledger_core::TransferFlags::PENDING,
                timeout: timeout_s,
                ..transfer(id, HOLD_DEBIT, HOLD_CREDIT, 1)
            };
            let outcome = client
                .create_transfer(hold)
                .await
                .map(|r| r.name().to_string());
            let (kind, result, error) = completion(&outcome);
            ctx.record(p, kind, value(result), error);
            if kind == Kind::Ok {
                let ms = rng
                    .gen_range(u64::from(timeout_s) * 333..=u64::from(timeout_s) * 1_000 + 2_000);
                posts.push((Instant::now() + Duration::from_millis(ms), id));
            }
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The first process id of the per-node readers, far above any worker's.
pub const NODE_READER_PROCESS_BASE: u64 = 1 << 40;

/// Reads every account with a linearizable read sent to one node only, every 100 ms, through
/// a fresh client each time (so that a redirect to the leader is not remembered). A follower
/// must refuse the read or send it to the leader; a follower or a deposed leader that answers
/// from its own state is caught by the read checkers. Workers route reads to the leader they
/// know, so without these readers a stale answer needs a client to be stuck on the node that
/// gives it.
pub async fn node_reader(
    ctx: Arc<Ctx>,
    endpoint: String,
    node: usize,
    ids: Vec<u128>,
    until: Instant,
) {
    let mut process = NODE_READER_PROCESS_BASE + (node as u64) * (1 << 20);
    while Instant::now() < until {
        if let Ok(client) = client_for(std::slice::from_ref(&endpoint), 0).await {
            if read_all(&ctx, &client, process, &ids).await == Kind::Info {
                process += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How a post of a hold ended: `ok` with the result when the cluster answered (created or
/// expired are both answers), otherwise as any operation.
fn posted(outcome: &Result<String, Error>) -> (Kind, Option<String>, Option<String>) {
    match outcome {
        Ok(result) => (Kind::Ok, Some(result.clone()), None),
        Err(_) => completion(outcome),
    }
}

/// How an operation ended, as Jepsen sees it.
fn completion(outcome: &Result<String, Error>) -> (Kind, Option<String>, Option<String>) {
    match outcome {
        Ok(result) if result == "created" || result == "exists" || result == "applied" => {
            (Kind::Ok, Some(result.clone()), None)
        }
        Ok(result) => (Kind::Fail, Some(result.clone()), None),
        Err(e @ Error::OutcomeUnknown { .. }) => (Kind::Info, None, Some(e.to_string())),
        Err(e) => (Kind::Fail, None, Some(e.to_string())),
    }
}

/// One logical client: runs operations until `until`.
pub struct Worker {
    pub index: usize,
    pub concurrency: usize,
    pub workload: String,
    pub client: LedgerClient,
    pub rng: StdRng,
}

impl Worker {
    pub fn new(
        index: usize,
        concurrency: usize,
        workload: &str,
        client: LedgerClient,
        seed: u64,
    ) -> Worker {
        Worker {
            index,
            concurrency,
            workload: workload.to_string(),
            client,
            rng: StdRng::seed_from_u64(seed.wrapping_add(index as u64 * 7919)),
        }
    }

    pub async fn run(mut self, ctx: Arc<Ctx>, until: Instant) {
        let mut process = self.index as u64;
        while Instant::now() < until {
            let kind = match self.workload.as_str() {
                "bets" => self.bets_op(&ctx, process).await,
                "ledger" => self.ledger_op(&ctx, process).await,
                _ => self.bank_op(&ctx, process).await,
            };
            if kind == Kind::Info {
                process += self.concurrency as u64;
            }
            tokio::time::sleep(Duration::from_millis(self.rng.gen_range(0..10))).await;
        }
    }

    async fn bank_op(&mut self, ctx: &Ctx, process: u64) -> Kind {
        let idempotency = self.workload == "idempotency";
        if idempotency {
            let due = {
                let mut retries = ctx.retries.lock().expect("retries lock");
                match retries.front() {
                    Some((at, _, _)) if *at <= Instant::now() => retries.pop_front(),
                    _ => None,
                }
            };
            if let Some((_, t, attempts)) = due {
                return transfer_op(ctx, &self.client, process, t, attempts, true).await;
            }
            if self.rng.gen_bool(0.05) {
                let again = {
                    let acknowledged = ctx.acknowledged.lock().expect("acknowledged lock");
                    acknowledged.choose(&mut self.rng).copied()
                };
                if let Some(t) = again {
                    return transfer_op(ctx, &self.client, process, t, 1, true).await;
                }
            }
        }
        if self.rng.gen_bool(0.2) {
            return read_all(
                ctx,
                &self.client,
                process,
                &workload_accounts(&self.workload),
            )
            .await;
        }
        let from = self.rng.gen_range(1..=ACCOUNTS);
        let mut to = self.rng.gen_range(1..ACCOUNTS);
        if to >= from {
            to += 1;
        }
        let id = ctx.fresh_id();
        ctx.transfer_ids.lock().expect("ids lock").push(id);
        let t = transfer(id, from, to, self.rng.gen_range(1..=5));
        transfer_op(ctx, &self.client, process, t, 0, idempotency).await
    }

    async fn bets_op(&mut self, ctx: &Ctx, process: u64) -> Kind {
        let due = {
            let mut retries = ctx.bet_retries.lock().expect("retries lock");
            match retries.front() {
                Some((at, _, _)) if *at <= Instant::now() => retries.pop_front(),
                _ => None,
            }
        };
        if let Some((_, bet, attempt)) = due {
            return bet_op(ctx, &self.client, process, bet, attempt).await;
        }
        let roll = self.rng.gen_range(0..100);
        if roll < 25 {
            return read_all(ctx, &self.client, process, &workload_accounts("bets")).await;
        }
        if roll >= 90 {
            // Resubmit, cash out or void a bet that was acknowledged.
            // Among the latest, which are mostly on markets still open.
            let bet = {
                let acknowledged = ctx.acknowledged_bets.lock().expect("bets lock");
                let latest = &acknowledged[acknowledged.len().saturating_sub(100)..];
                latest.choose(&mut self.rng).copied()
            };
            let Some(bet) = bet else {
                return Kind::Ok;
            };
            return match roll {
                90..=92 => bet_op(ctx, &self.client, process, bet, 1).await,
                93..=97 => {
                    let amount = (bet.stake * self.rng.gen_range(30..=150) / 100).max(1);
                    let action = BetAction {
                        bet_id: bet.id,
                        kind: BetActionKind::CashOut,
                        amount,
                    };
                    bet_action_op(ctx, &self.client, process, action).await
                }
                _ => {
                    let action = BetAction {
                        bet_id: bet.id,
                        kind: BetActionKind::Void,
                        amount: 0,
                    };
                    bet_action_op(ctx, &self.client, process, action).await
                }
            };
        }
        // After MARKETS settlements (some minutes) bets land on settled markets and fail.
        let current = ctx.market.load(Ordering::Relaxed);
        let market = MARKET_BASE + 1 + current as u128 % MARKETS;
        if roll < 26 {
            // Settle the current market once; bets go to the next one from now on.
            if ctx
                .market
                .compare_exchange(current, current + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
            {
                return Kind::Ok;
            }
            let winner = self.rng.gen_range(1..=3u64);
            let voids = if self.rng.gen_bool(0.2) {
                vec![winner % 3 + 1]
            } else {
                vec![]
            };
            let settlement = Settlement {
                id: market + 100_000,
                market_id: market,
                winning_selection_ids: vec![winner],
                void_selection_ids: voids,
                flags: SettlementFlags(0),
                timestamp: 0,
            };
            return settle_op(ctx, &self.client, process, settlement).await;
        }
        let id = ctx.fresh_id();
        ctx.bet_ids.lock().expect("ids lock").push(id);
        let bet = NewBet {
            id,
            player_account_id: self.rng.gen_range(1..=ACCOUNTS),
            market_id: market,
            selection_id: self.rng.gen_range(1..=3),
            stake: self.rng.gen_range(1..=20),
            odds: *[15_000u64, 20_000, 25_000, 40_000]
                .choose(&mut self.rng)
                .expect("non-empty"),
            code: 2,
            user_data_128: 0,
        };
        bet_op(ctx, &self.client, process, bet, 0).await
    }
}

impl Worker {
    async fn ledger_op(&mut self, ctx: &Ctx, process: u64) -> Kind {
        let due = {
            let mut retries = ctx.ledger_retries.lock().expect("retries lock");
            match retries.front() {
                Some((at, ..)) if *at <= Instant::now() => retries.pop_front(),
                _ => None,
            }
        };
        if let Some((_, what, transfers, attempt)) = due {
            return ledger_write(ctx, &self.client, process, &what, transfers, attempt).await;
        }
        if self.rng.gen_bool(0.03) {
            let again = {
                let acknowledged = ctx.ledger_acknowledged.lock().expect("acknowledged lock");
                acknowledged.choose(&mut self.rng).cloned()
            };
            if let Some((what, transfers)) = again {
                return ledger_write(ctx, &self.client, process, &what, transfers, 1).await;
            }
        }
        let accounts = workload_accounts("ledger");
        let rng = &mut self.rng;
        let pair = |rng: &mut StdRng| {
            let from = *accounts.choose(rng).expect("non-empty");
            let mut to = from;
            while to == from {
                to = *accounts.choose(rng).expect("non-empty");
            }
            (from, to)
        };
        let leg = |id, (from, to): (u128, u128), amount, flags: TransferFlags| LedgerTransfer {
            id,
            from,
            to,
            amount,
            pending_id: 0,
            flags: flags.0,
            timeout_s: 0,
        };
        let roll = rng.gen_range(0..100);
        let (what, transfers) = match roll {
            0..=14 => return read_all(ctx, &self.client, process, &accounts).await,
            15..=29 => {
                let id = ctx.fresh_id();
                ctx.transfer_ids.lock().expect("ids lock").push(id);
                // Read back at the end with the ledger's own, so that the fold counts it.
                ctx.ledger_ids.lock().expect("ids lock").push(id);
                let (from, to) = pair(rng);
                let t = transfer(id, from, to, rng.gen_range(1..=5));
                return transfer_op(ctx, &self.client, process, t, 0, false).await;
            }
            30..=49 => {
                let mut hold = leg(
                    ctx.fresh_id(),
                    pair(rng),
                    rng.gen_range(1..=10),
                    TransferFlags::PENDING,
                );
                if rng.gen_bool(0.5) {
                    hold.timeout_s = rng.gen_range(1..=4);
                }
                ("hold", vec![hold])
            }
            50..=64 => {
                let hold = {
                    let mut holds = ctx.holds.lock().expect("holds lock");
                    let n = holds.len();
                    (n > 0).then(|| holds.swap_remove(rng.gen_range(0..n)))
                };
                let Some(hold) = hold else {
                    return Kind::Ok;
                };
                let post = rng.gen_bool(0.6);
                let (what, flags, amount) = if post {
                    let amount = if rng.gen_bool(0.5) {
                        0
                    } else {
                        rng.gen_range(1..=hold.amount)
                    };
                    ("post", TransferFlags::POST_PENDING_TRANSFER, amount)
                } else {
                    ("void", TransferFlags::VOID_PENDING_TRANSFER, 0)
                };
                let resolve = LedgerTransfer {
                    pending_id: hold.id,
                    ..leg(ctx.fresh_id(), (hold.from, hold.to), amount, flags)
                };
                (what, vec![resolve])
            }
            65..=79 => {
                let legs = rng.gen_range(2..=3);
                let doomed = rng.gen_bool(0.25);
                let mut chain: Vec<LedgerTransfer> = (0..legs)
                    .map(|_| {
                        leg(
                            ctx.fresh_id(),
                            pair(rng),
                            rng.gen_range(1..=5),
                            TransferFlags::LINKED,
                        )
                    })
                    .collect();
                if doomed {
                    let bad = rng.gen_range(0..legs);
                    chain[bad].to = MISSING_ACCOUNT;
                }
                let last = chain.last_mut().expect("two legs or more");
                last.flags = 0;
                ("chain", chain)
            }
            80..=91 => (
                "balancing",
                vec![leg(
                    ctx.fresh_id(),
                    pair(rng),
                    rng.gen_range(50..=2_000),
                    TransferFlags::BALANCING_DEBIT,
                )],
            ),
            _ => {
                let closing = {
                    let mut closings = ctx.closings.lock().expect("closings lock");
                    let n = closings.len();
                    (n > 0 && rng.gen_bool(0.5)).then(|| closings.swap_remove(rng.gen_range(0..n)))
                };
                match closing {
                    Some(closing) => {
                        let reopen = LedgerTransfer {
                            pending_id: closing.id,
                            ..leg(
                                ctx.fresh_id(),
                                (closing.from, closing.to),
                                0,
                                TransferFlags::VOID_PENDING_TRANSFER,
                            )
                        };
                        ("reopen", vec![reopen])
                    }
                    None => {
                        let account = *CLOSABLE.choose(rng).expect("non-empty");
                        let mut close = leg(
                            ctx.fresh_id(),
                            (account, rng.gen_range(1..=ACCOUNTS)),
                            0,
                            TransferFlags::PENDING.union(TransferFlags::CLOSING_DEBIT),
                        );
                        if rng.gen_bool(0.3) {
                            close.timeout_s = rng.gen_range(1..=4);
                        }
                        ("close", vec![close])
                    }
                }
            }
        };
        ledger_write(ctx, &self.client, process, what, transfers, 0).await
    }
}

fn ledger_transfer(t: &LedgerTransfer) -> Transfer {
    Transfer {
        pending_id: t.pending_id,
        timeout: t.timeout_s,
        flags: TransferFlags(t.flags),
        ..transfer(t.id, t.from, t.to, t.amount)
    }
}

/// Submits one `ledger` workload request and records it. On `ok`, acknowledged holds and
/// closing holds become candidates to resolve; half of the unknown outcomes are resubmitted
/// later with the same ids.
async fn ledger_write(
    ctx: &Ctx,
    client: &LedgerClient,
    process: u64,
    what: &str,
    transfers: Vec<LedgerTransfer>,
    attempt: u32,
) -> Kind {
    if attempt == 0 {
        let ids = transfers.iter().map(|t| t.id);
        ctx.ledger_ids.lock().expect("ids lock").extend(ids);
        let pending = transfers
            .iter()
            .filter(|t| TransferFlags(t.flags).contains(TransferFlags::PENDING))
            .map(|t| t.id);
        ctx.pending_ids.lock().expect("ids lock").extend(pending);
    }
    let p = Process::Client(process);
    let value = |results: Vec<String>| Op::LedgerWrite {
        what: what.to_string(),
        transfers: transfers.clone(),
        attempt,
        results,
    };
    ctx.record(p, Kind::Invoke, value(Vec::new()), None);
    let outcome = client
        .create_transfers(transfers.iter().map(ledger_transfer).collect())
        .await;
    let (kind, results, error) = match outcome {
        Ok(results) => {
            let names: Vec<String> = results.iter().map(|r| r.name().to_string()).collect();
            let applied = names.iter().all(|n| n == "created" || n == "exists");
            let kind = if applied { Kind::Ok } else { Kind::Fail };
            (kind, names, None)
        }
        Err(e) => {
            let kind = if e.is_outcome_unknown() {
                Kind::Info
            } else {
                Kind::Fail
            };
            (kind, Vec::new(), Some(e.to_string()))
        }
    };
    ctx.record(p, kind, value(results), error);
    // The first acknowledgement of this write (a resubmission answers `exists`).
    let first = kind == Kind::Ok
        && ctx
            .ledger_acknowledged_ids
            .lock()
            .expect("acknowledged lock")
            .insert(transfers[0].id);
    if first {
        ctx.ledger_acknowledged
            .lock()
            .expect("acknowledged lock")
            .push((what.to_string(), transfers.clone()));
    }
    match kind {
        Kind::Ok if what == "hold" && first => {
            ctx.holds.lock().expect("holds lock").extend(transfers)
        }
        Kind::Ok if what == "close" && first => ctx
            .closings
            .lock()
            .expect("closings lock")
            .extend(transfers),
        Kind::Info if rand::thread_rng().gen_bool(0.5) => {
            let delay = Duration::from_millis(rand::thread_rng().gen_range(500..8_000));
            ctx.ledger_retries.lock().expect("retries lock").push_back((
                Instant::now() + delay,
                what.to_string(),
                transfers,
                attempt + 1,
            ));
        }
        _ => {}
    }
    kind
}

fn transfer_value(t: &Transfer, attempt: u32, result: Option<String>) -> Op {
    Op::Transfer {
        id: t.id,
        from: t.debit_account_id,
        to: t.credit_account_id,
        amount: t.amount,
        attempt,
        result,
    }
}

/// Submits a transfer and records it. With `retry_later`, an unknown outcome is queued for
/// resubmission with the same id.
async fn transfer_op(
    ctx: &Ctx,
    client: &LedgerClient,
    process: u64,
    t: Transfer,
    attempt: u32,
    retry_later: bool,
) -> Kind {
    let p = Process::Client(process);
    ctx.record(p, Kind::Invoke, transfer_value(&t, attempt, None), None);
    let outcome = client
        .create_transfer(t)
        .await
        .map(|r| r.name().to_string());
    let (kind, result, error) = completion(&outcome);
    ctx.record(p, kind, transfer_value(&t, attempt, result), error);
    match kind {
        Kind::Ok => ctx.acknowledged.lock().expect("acknowledged lock").push(t),
        Kind::Info if retry_later => {
            let delay = Duration::from_millis(rand::thread_rng().gen_range(500..8_000));
            ctx.retries.lock().expect("retries lock").push_back((
                Instant::now() + delay,
                t,
                attempt + 1,
            ));
        }
        _ => {}
    }
    kind
}

async fn read_all(ctx: &Ctx, client: &LedgerClient, process: u64, ids: &[u128]) -> Kind {
    let p = Process::Client(process);
    ctx.record(
        p,
        Kind::Invoke,
        Op::ReadAll {
            balances: BTreeMap::new(),
        },
        None,
    );
    match client.lookup_accounts(ids).await {
        Ok(accounts) => {
            let balances = accounts.iter().map(|a| (a.id, balance_of(a))).collect();
            ctx.record(p, Kind::Ok, Op::ReadAll { balances }, None);
            Kind::Ok
        }
        Err(e) => {
            // A read changes nothing: whatever happened, it is simply not a read.
            let kind = if e.is_outcome_unknown() {
                Kind::Info
            } else {
                Kind::Fail
            };
            ctx.record(
                p,
                kind,
                Op::ReadAll {
                    balances: BTreeMap::new(),
                },
                Some(e.to_string()),
            );
            kind
        }
    }
}

fn bet_value(b: &NewBet, attempt: u32, result: Option<String>) -> Op {
    Op::PlaceBet {
        id: b.id,
        player: b.player_account_id,
        market: b.market_id,
        selection: b.selection_id,
        stake: b.stake,
        odds: b.odds,
        attempt,
        result,
    }
}

/// Places a bet (again, with `attempt` > 0) and records it; an unknown outcome is resubmitted
/// later with the same id, and an acknowledged bet may be resubmitted, cashed out or voided.
async fn bet_op(ctx: &Ctx, client: &LedgerClient, process: u64, bet: NewBet, attempt: u32) -> Kind {
    let p = Process::Client(process);
    ctx.record(p, Kind::Invoke, bet_value(&bet, attempt, None), None);
    let outcome = client
        .place_bets(vec![bet])
        .await
        .map(|r| r.first().map(|r| r.name()).unwrap_or("missing").to_string());
    let (kind, result, error) = completion(&outcome);
    let created = result.as_deref() == Some("created");
    ctx.record(p, kind, bet_value(&bet, attempt, result), error);
    match kind {
        Kind::Ok if created || attempt > 0 && outcome.is_ok() => {
            let mut acknowledged = ctx.acknowledged_bets.lock().expect("bets lock");
            if !acknowledged.iter().any(|b| b.id == bet.id) {
                acknowledged.push(bet);
            }
        }
        Kind::Info => {
            let delay = Duration::from_millis(rand::thread_rng().gen_range(500..8_000));
            ctx.bet_retries.lock().expect("retries lock").push_back((
                Instant::now() + delay,
                bet,
                attempt + 1,
            ));
        }
        _ => {}
    }
    kind
}

async fn bet_action_op(ctx: &Ctx, client: &LedgerClient, process: u64, action: BetAction) -> Kind {
    let p = Process::Client(process);
    let value = |result| Op::BetAction {
        bet: action.bet_id,
        kind: match action.kind {
            BetActionKind::Void => "void",
            BetActionKind::CashOut => "cash_out",
        }
        .into(),
        amount: action.amount,
        attempt: 0,
        result,
    };
    ctx.record(p, Kind::Invoke, value(None), None);
    let outcome = client
        .bet_actions(vec![action])
        .await
        .map(|r| r.first().map(|r| r.name()).unwrap_or("missing").to_string());
    let (kind, result, error) = completion(&outcome);
    ctx.record(p, kind, value(result), error);
    kind
}

fn settle_value(s: &Settlement, result: Option<String>) -> Op {
    Op::Settle {
        id: s.id,
        market: s.market_id,
        winners: s.winning_selection_ids.clone(),
        voids: s.void_selection_ids.clone(),
        attempt: 0,
        result,
    }
}

async fn settle_op(ctx: &Ctx, client: &LedgerClient, process: u64, s: Settlement) -> Kind {
    let p = Process::Client(process);
    ctx.record(p, Kind::Invoke, settle_value(&s, None), None);
    let outcome = client
        .settle_markets(vec![s.clone()])
        .await
        .map(|r| r.first().map(|r| r.name()).unwrap_or("missing").to_string());
    let (kind, result, error) = completion(&outcome);
    ctx.record(p, kind, settle_value(&s, result), error);
    kind
}

/// After healing, resubmits every transfer still unknown until each settles (or `until`).
pub async fn settle_unknowns(ctx: &Ctx, client: &LedgerClient, process: u64, until: Instant) {
    loop {
        let next = ctx.retries.lock().expect("retries lock").pop_front();
        let Some((_, t, attempt)) = next else {
            return;
        };
        if Instant::now() > until {
            return;
        }
        let kind = transfer_op(ctx, client, process, t, attempt, true).await;
        if kind == Kind::Info {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// After healing: one new write must succeed. Records `ProbeWrite` ok or fail.
pub async fn probe_write(ctx: &Ctx, client: &LedgerClient, until: Instant) -> bool {
    let id = ctx.fresh_id();
    loop {
        ctx.record(Process::Harness, Kind::Invoke, Op::ProbeWrite, None);
        let outcome = client
            .create_transfer(transfer(id, PROBE_DEBIT, PROBE_CREDIT, 1))
            .await;
        match outcome {
            Ok(TransferResult::Created | TransferResult::Exists) => {
                ctx.record(Process::Harness, Kind::Ok, Op::ProbeWrite, None);
                return true;
            }
            other => {
                let error = format!("{other:?}");
                if Instant::now() > until {
                    ctx.record(Process::Harness, Kind::Fail, Op::ProbeWrite, Some(error));
                    return false;
                }
                ctx.record(Process::Harness, Kind::Info, Op::ProbeWrite, Some(error));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Reads what one node holds (stale reads from that node only) into a `FinalRead`.
#[allow(clippy::too_many_arguments)]
pub async fn final_read(
    ctx: &Ctx,
    workload: &str,
    node: u64,
    endpoint: String,
    applied_index: u64,
    digest: String,
) -> Result<Op, String> {
    let mut config = ClientConfig::new([endpoint]);
    config.deadline = Duration::from_secs(20);
    let client = LedgerClient::with_config(config)
        .await
        .map_err(|e| e.to_string())?
        .stale();
    let e = |e: Error| format!("node {node}: {e}");
    let accounts = client
        .lookup_accounts(&workload_accounts(workload))
        .await
        .map_err(e)?;
    let ids = ctx.transfer_ids.lock().expect("ids lock").clone();
    let mut transfers = Vec::new();
    for chunk in ids.chunks(EVENTS_PER_BATCH_MAX) {
        transfers.extend(
            client
                .lookup_transfers(chunk)
                .await
                .map_err(e)?
                .iter()
                .map(|t| t.id),
        );
    }
    let (mut stored, mut pending, mut closed) = (Vec::new(), Vec::new(), Vec::new());
    if workload == "ledger" {
        let ids = ctx.ledger_ids.lock().expect("ids lock").clone();
        for chunk in ids.chunks(EVENTS_PER_BATCH_MAX) {
            stored.extend(
                client
                    .lookup_transfers(chunk)
                    .await
                    .map_err(e)?
                    .iter()
                    .map(|t| StoredTransfer {
                        transfer: LedgerTransfer {
                            id: t.id,
                            from: t.debit_account_id,
                            to: t.credit_account_id,
                            amount: t.amount,
                            pending_id: t.pending_id,
                            flags: t.flags.0,
                            timeout_s: t.timeout,
                        },
                        timestamp: t.timestamp,
                    }),
            );
        }
        let ids = ctx.pending_ids.lock().expect("ids lock").clone();
        for id in ids {
            if let Some(status) = client.get_pending_status(id).await.map_err(e)? {
                let status = match status {
                    ledger_core::PendingStatus::Pending => "pending",
                    ledger_core::PendingStatus::Posted => "posted",
                    ledger_core::PendingStatus::Voided => "voided",
                    ledger_core::PendingStatus::Expired => "expired",
                };
                pending.push(PendingState {
                    id,
                    status: status.into(),
                });
            }
        }
        closed = accounts
            .iter()
            .filter(|a| a.flags.contains(AccountFlags::CLOSED))
            .map(|a| a.id)
            .collect();
    }
    let mut bets = Vec::new();
    let mut markets = Vec::new();
    if workload == "bets" {
        let ids = ctx.bet_ids.lock().expect("ids lock").clone();
        for chunk in ids.chunks(EVENTS_PER_BATCH_MAX) {
            for b in client.lookup_bets(chunk).await.map_err(e)? {
                // A cash-out is a transfer house -> player of the amount paid, under an id
                // derived from the bet's.
                let cashed_out = if b.status == ledger_core::BetStatus::CashedOut {
                    use ledger_core::bet::{bet_transfer_id, BetTransferKind};
                    let id = bet_transfer_id(b.id, BetTransferKind::CashOut, 0);
                    let found = client.lookup_transfers(&[id]).await.map_err(e)?;
                    found.first().map(|t| t.amount).unwrap_or(0)
                } else {
                    0
                };
                bets.push(BetState {
                    id: b.id,
                    player: b.player_account_id,
                    market: b.market_id,
                    selection: b.selection_id,
                    stake: b.stake,
                    potential_payout: b.potential_payout,
                    status: bet_status(b.status),
                    settlement_id: b.settlement_id,
                    cashed_out,
                });
            }
        }
        let market_ids: Vec<u128> = (1..=MARKETS).map(|i| MARKET_BASE + i).collect();
        let found = client.lookup_markets(&market_ids).await.map_err(e)?;
        let settlement_ids: Vec<u128> = found
            .iter()
            .map(|m| m.settlement_id)
            .filter(|id| *id != 0)
            .collect();
        let settlements = client
            .lookup_settlements(&settlement_ids)
            .await
            .map_err(e)?;
        for m in found {
            let s = settlements.iter().find(|s| s.id == m.settlement_id);
            markets.push(MarketState {
                id: m.id,
                status: match m.status {
                    ledger_core::MarketStatus::Open => "open".into(),
                    ledger_core::MarketStatus::Settled => "settled".into(),
                },
                settlement_id: m.settlement_id,
                winners: s
                    .map(|s| s.winning_selection_ids.clone())
                    .unwrap_or_default(),
                voids: s.map(|s| s.void_selection_ids.clone()).unwrap_or_default(),
            });
        }
    }
    Ok(Op::FinalRead {
        node,
        applied_index,
        digest,
        balances: accounts.iter().map(|a| (a.id, balance_of(a))).collect(),
        transfers,
        bets,
        markets,
        stored,
        pending,
        closed,
    })
}

fn bet_status(status: ledger_core::BetStatus) -> String {
    match status {
        ledger_core::BetStatus::Open => "open",
        ledger_core::BetStatus::Won => "won",
        ledger_core::BetStatus::Lost => "lost",
        ledger_core::BetStatus::Void => "void",
        ledger_core::BetStatus::CashedOut => "cashed_out",
    }
    .into()
}
