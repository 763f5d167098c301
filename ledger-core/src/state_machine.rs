//! `apply`: the deterministic state machine every replica runs on every committed entry.
//!
//! Data flow of one entry: [`apply_entry`] hashes the entry's commands for the audit chain,
//! opens an `Engine` over the store (reading [`Meta`]), expires pending transfers whose
//! timeout has passed by cluster time, runs each event of each command through its validator
//! (`create_account.rs`, `create_transfer.rs`, `bets.rs`), and finally writes the new [`Meta`]
//! (last timestamp, last log index, the running state digest and the head of the audit chain)
//! and the entry's [`AuditRecord`].
//!
//! Every write goes through the engine, which keeps an undo log (so a failed event or linked
//! chain leaves no trace) and the running digest. Nothing here reads a clock or draws a random
//! number: the leader stamped the time into [`ApplyCtx`].

use crate::account::Account;
use crate::bet::{Bet, Market, Settlement};
use crate::command::{ApplyCtx, Command, CommandRejection, CommandResults, EVENTS_PER_BATCH_MAX};
use crate::digest::{chain_next, entry_hash, RecordHasher};
use crate::result::{AccountResult, TransferResult};
use crate::store::{AccountEntry, AuditRecord, EntryKind, Key, Meta, ObjectKind, Store, Value};
use crate::transfer::{PendingStatus, Transfer};

/// Applies one command to the state and returns one result per event.
///
/// Deterministic: the same store contents, command and context give the same results and the
/// same resulting state on every node. `ctx.log_index` must grow from one call to the next.
pub fn apply<S: Store>(store: &mut S, command: &Command, ctx: ApplyCtx) -> CommandResults {
    apply_entry(store, std::slice::from_ref(command), ctx)
        .pop()
        .expect("one result per command")
}

/// Applies the commands of one log entry in order (the server coalesces concurrent client
/// requests into one entry: group commit) and returns the results of each.
///
/// The entry extends the audit chain by one link, over the hash of its commands and the state
/// it leaves, recorded under `Key::Audit(ctx.log_index)`.
pub fn apply_entry<S: Store>(
    store: &mut S,
    commands: &[Command],
    ctx: ApplyCtx,
) -> Vec<CommandResults> {
    apply_entry_reporting(store, commands, ctx).0
}

/// [`apply_entry`], also returning whether pending transfers past their timeout remain to be
/// expired (more than [`crate::EXPIRIES_PER_ENTRY_MAX`] were due): the leader then proposes
/// an entry without commands to carry on (the expiry pulse).
pub fn apply_entry_reporting<S: Store>(
    store: &mut S,
    commands: &[Command],
    ctx: ApplyCtx,
) -> (Vec<CommandResults>, bool) {
    let entry_hash = entry_hash(commands);
    let mut engine = Engine::begin(store, ctx);
    let more_due = engine.expire_pending();
    let results = commands
        .iter()
        .map(|command| engine.run_command(command))
        .collect();
    engine.finish(ctx, entry_hash);
    (results, more_due)
}

/// Returns the state machine's bookkeeping, or the initial one for an empty store.
pub fn read_meta(store: &(impl Store + ?Sized)) -> Meta {
    match store.get(&Key::Meta) {
        Some(Value::Meta(meta)) => meta,
        None => Meta::default(),
        Some(other) => panic!("meta key holds {other:?}"),
    }
}

/// A position in the undo log to roll back to.
#[derive(Clone, Copy)]
pub(crate) struct Savepoint {
    undo_len: usize,
    digest: u128,
}

/// The state machine's working set for one command: typed access, undo log, digest, time.
pub(crate) struct Engine<'s, S: Store> {
    store: &'s mut S,
    undo: Vec<(Key, Option<Value>)>,
    hasher: RecordHasher,
    meta: Meta,
    /// The next timestamp to assign; every object, entry and expiry gets its own.
    cursor: u64,
    /// True while a bet operation moves money: only then may a bet's hold be resolved.
    pub(crate) in_bet_operation: bool,
}

impl<'s, S: Store> Engine<'s, S> {
    fn begin(store: &'s mut S, ctx: ApplyCtx) -> Self {
        let meta = read_meta(store);
        assert!(
            ctx.log_index > meta.last_log_index,
            "log index {} applied after {}",
            ctx.log_index,
            meta.last_log_index
        );
        // Cluster time never goes backwards, even when a new leader's clock is behind.
        let cursor = ctx.timestamp.max(meta.last_timestamp + 1);
        Self {
            store,
            undo: Vec::new(),
            hasher: RecordHasher::default(),
            meta,
            cursor,
            in_bet_operation: false,
        }
    }

    fn run_command(&mut self, command: &Command) -> CommandResults {
        if command.len() > EVENTS_PER_BATCH_MAX {
            return CommandResults::Rejected(CommandRejection::TooManyEvents);
        }
        match command {
            Command::CreateAccounts(accounts) => {
                CommandResults::CreateAccounts(self.create_accounts(accounts))
            }
            Command::CreateTransfers(transfers) => {
                CommandResults::CreateTransfers(self.create_transfers(transfers))
            }
            Command::CreateMarkets(markets) => {
                CommandResults::CreateMarkets(self.run_events(markets, Self::create_market))
            }
            Command::PlaceBets(bets) => {
                CommandResults::PlaceBets(self.run_events(bets, Self::place_bet))
            }
            Command::SettleMarkets(settlements) => {
                CommandResults::SettleMarkets(self.run_events(settlements, Self::settle))
            }
            Command::BetActions(actions) => {
                CommandResults::BetActions(self.run_events(actions, Self::bet_action))
            }
        }
    }

    /// Writes the bookkeeping of the entry: the new [`Meta`] and the entry's audit record.
    /// Both go straight to the store, outside the undo log and the digest, which cover only
    /// the ledger's own records.
    fn finish(mut self, ctx: ApplyCtx, entry_hash: [u8; 32]) {
        self.meta.last_timestamp = self.cursor - 1;
        self.meta.last_log_index = ctx.log_index;
        self.meta.chain = chain_next(
            self.meta.chain,
            ctx.log_index,
            self.meta.last_timestamp,
            self.meta.digest,
            entry_hash,
        );
        self.store.put(Key::Meta, Value::Meta(self.meta));
        self.store.put(
            Key::Audit(ctx.log_index),
            Value::Audit(AuditRecord {
                link: self.meta.chain,
                entry_hash,
                digest: self.meta.digest,
                timestamp: self.meta.last_timestamp,
            }),
        );
    }

    /// Returns the next timestamp to be assigned (the current cluster time).
    pub(crate) fn now(&self) -> u64 {
        self.cursor
    }

    pub(crate) fn next_timestamp(&mut self) -> u64 {
        let timestamp = self.cursor;
        // u64 nanoseconds last until the year 2554; running out is a broken invariant.
        self.cursor = self.cursor.checked_add(1).expect("cluster time overflow");
        timestamp
    }

    // ---- raw access, undo and digest ----

    pub(crate) fn get(&self, key: &Key) -> Option<Value> {
        self.store.get(key)
    }

    pub(crate) fn scan(
        &self,
        start: &Key,
        end: &Key,
        reverse: bool,
        limit: usize,
    ) -> Vec<(Key, Value)> {
        self.store.scan(start, end, reverse, limit)
    }

    pub(crate) fn put(&mut self, key: Key, value: Value) {
        let old = self.store.get(&key);
        if let Some(old) = &old {
            self.meta.digest = self.meta.digest.wrapping_sub(self.hasher.hash(&key, old));
        }
        self.write(key, value, old);
    }

    /// Writes a record whose key cannot exist yet, without reading the old value for the
    /// digest: an account-entry key holds the timestamp of its event, and timestamps are never
    /// given out twice. On RocksDB each read of an absent key checks the bloom filter of every
    /// memtable and level; these were two of a transfer's point reads.
    pub(crate) fn put_fresh(&mut self, key: Key, value: Value) {
        // Checked in ledger-core's own tests only: on RocksDB the check is the very read this
        // function exists to save, and release builds keep their assertions.
        #[cfg(test)]
        assert!(self.store.get(&key).is_none(), "fresh key {key:?} exists");
        self.write(key, value, None);
    }

    /// Stores `value` over `old` (already taken out of the digest).
    fn write(&mut self, key: Key, value: Value, old: Option<Value>) {
        self.meta.digest = self
            .meta
            .digest
            .wrapping_add(self.hasher.hash(&key, &value));
        self.undo.push((key, old));
        self.store.put(key, value);
    }

    pub(crate) fn delete(&mut self, key: &Key) {
        if let Some(old) = self.store.get(key) {
            self.meta.digest = self.meta.digest.wrapping_sub(self.hasher.hash(key, &old));
            self.undo.push((*key, Some(old)));
            self.store.delete(key);
        }
    }

    pub(crate) fn savepoint(&self) -> Savepoint {
        Savepoint {
            undo_len: self.undo.len(),
            digest: self.meta.digest,
        }
    }

    pub(crate) fn rollback(&mut self, savepoint: Savepoint) {
        while self.undo.len() > savepoint.undo_len {
            let (key, old) = self.undo.pop().expect("undo log shorter than savepoint");
            match old {
                Some(value) => self.store.put(key, value),
                None => self.store.delete(&key),
            }
        }
        self.meta.digest = savepoint.digest;
    }

    /// Forgets undo records: called between independent events, which never roll back past
    /// their own start.
    fn release(&mut self) {
        self.undo.clear();
    }

    // ---- typed access ----

    pub(crate) fn account(&self, id: u128) -> Option<Account> {
        match self.get(&Key::Account(id)) {
            Some(Value::Account(a)) => Some(a),
            None => None,
            Some(other) => panic!("account key holds {other:?}"),
        }
    }

    pub(crate) fn put_account(&mut self, account: &Account) {
        assert!(
            account.within_limits(),
            "account flags violated: {account:?}"
        );
        self.put(Key::Account(account.id), Value::Account(*account));
    }

    pub(crate) fn transfer(&self, id: u128) -> Option<Transfer> {
        match self.get(&Key::Transfer(id)) {
            Some(Value::Transfer(t)) => Some(t),
            None => None,
            Some(other) => panic!("transfer key holds {other:?}"),
        }
    }

    pub(crate) fn pending_status(&self, id: u128) -> Option<PendingStatus> {
        match self.get(&Key::Pending(id)) {
            Some(Value::Pending(s)) => Some(s),
            None => None,
            Some(other) => panic!("pending key holds {other:?}"),
        }
    }

    pub(crate) fn market(&self, id: u128) -> Option<Market> {
        match self.get(&Key::Market(id)) {
            Some(Value::Market(m)) => Some(m),
            None => None,
            Some(other) => panic!("market key holds {other:?}"),
        }
    }

    pub(crate) fn bet(&self, id: u128) -> Option<Bet> {
        match self.get(&Key::Bet(id)) {
            Some(Value::Bet(b)) => Some(b),
            None => None,
            Some(other) => panic!("bet key holds {other:?}"),
        }
    }

    pub(crate) fn settlement(&self, id: u128) -> Option<Settlement> {
        match self.get(&Key::Settlement(id)) {
            Some(Value::Settlement(s)) => Some(s),
            None => None,
            Some(other) => panic!("settlement key holds {other:?}"),
        }
    }

    pub(crate) fn liability(&self, market_id: u128, selection_id: u64) -> u128 {
        match self.get(&Key::Liability {
            market_id,
            selection_id,
        }) {
            Some(Value::Liability(amount)) => amount,
            None => 0,
            Some(other) => panic!("liability key holds {other:?}"),
        }
    }

    pub(crate) fn put_liability(&mut self, market_id: u128, selection_id: u64, amount: u128) {
        let key = Key::Liability {
            market_id,
            selection_id,
        };
        if amount == 0 {
            self.delete(&key);
        } else {
            self.put(key, Value::Liability(amount));
        }
    }

    pub(crate) fn failed(&self, kind: ObjectKind, id: u128) -> bool {
        self.get(&Key::Failure { kind, id }).is_some()
    }

    pub(crate) fn record_failure(&mut self, kind: ObjectKind, id: u128, code: u32) {
        self.put(Key::Failure { kind, id }, Value::Failure(code));
    }

    /// Records that `transfer_id` changed `account` (already updated) at `timestamp`.
    pub(crate) fn record_entry(
        &mut self,
        account: &Account,
        transfer_id: u128,
        kind: EntryKind,
        timestamp: u64,
    ) {
        let balances = account
            .flags
            .contains(crate::account::AccountFlags::HISTORY)
            .then(|| account.balances());
        self.put_fresh(
            Key::AccountEntry {
                account_id: account.id,
                timestamp,
            },
            Value::AccountEntry(AccountEntry {
                transfer_id,
                kind,
                balances,
            }),
        );
    }

    // ---- batch drivers ----

    /// Runs independent events: each succeeds or fails alone, and a failed one leaves no trace
    /// except, for a transient failure, the record that its id failed.
    pub(crate) fn run_events<E: EventId, R: EventResult>(
        &mut self,
        events: &[E],
        mut exec: impl FnMut(&mut Self, &E) -> R,
    ) -> Vec<R> {
        let mut results = Vec::with_capacity(events.len());
        for event in events {
            self.release();
            let savepoint = self.savepoint();
            let result = exec(self, event);
            if !result.succeeded() {
                self.rollback(savepoint);
                if let Some((kind, id)) = result.failed_id(event) {
                    self.record_failure(kind, id, result.code());
                }
            }
            results.push(result);
        }
        self.release();
        results
    }

    /// Runs events joined into all-or-nothing chains by their `linked` flag.
    pub(crate) fn run_linked<E: EventId, R: LinkedResult>(
        &mut self,
        events: &[E],
        linked: impl Fn(&E) -> bool,
        mut exec: impl FnMut(&mut Self, &E) -> R,
    ) -> Vec<R> {
        let n = events.len();
        let mut results: Vec<R> = Vec::with_capacity(n);
        let mut start = 0;
        while start < n {
            let mut end = start;
            while end < n && linked(&events[end]) {
                end += 1;
            }
            if end == n {
                // The last event says "linked" but nothing follows: the chain never closes.
                results.extend((start..n - 1).map(|_| R::LINKED_EVENT_FAILED));
                results.push(R::LINKED_EVENT_CHAIN_OPEN);
                break;
            }
            self.release();
            let savepoint = self.savepoint();
            let mut failed = None;
            for (offset, event) in events[start..=end].iter().enumerate() {
                let result = exec(self, event);
                results.push(result);
                if !result.succeeded() {
                    failed = Some(start + offset);
                    break;
                }
            }
            if let Some(index) = failed {
                self.rollback(savepoint);
                let code = results[index];
                results.truncate(start);
                for k in start..=end {
                    results.push(if k == index {
                        code
                    } else {
                        R::LINKED_EVENT_FAILED
                    });
                }
                if let Some((kind, id)) = code.failed_id(&events[index]) {
                    self.record_failure(kind, id, code.code());
                }
            }
            start = end + 1;
        }
        self.release();
        results
    }
}

/// What the batch drivers need to know about a result code.
pub(crate) trait EventResult: Copy {
    /// True for `created`/`exists` (and `applied`): the event holds.
    fn succeeded(self) -> bool;
    fn code(self) -> u32;
    /// The id to remember as failed, when this failure is transient.
    fn failed_id<E: EventId>(self, event: &E) -> Option<(ObjectKind, u128)> {
        if self.is_transient() {
            event.event_id()
        } else {
            None
        }
    }
    fn is_transient(self) -> bool;
}

/// A result code of events that can be linked into chains.
pub(crate) trait LinkedResult: EventResult {
    const LINKED_EVENT_FAILED: Self;
    const LINKED_EVENT_CHAIN_OPEN: Self;
}

/// The id under which an event's transient failure is remembered, if its kind has one.
pub(crate) trait EventId {
    fn event_id(&self) -> Option<(ObjectKind, u128)>;
}

impl LinkedResult for TransferResult {
    const LINKED_EVENT_FAILED: Self = TransferResult::LinkedEventFailed;
    const LINKED_EVENT_CHAIN_OPEN: Self = TransferResult::LinkedEventChainOpen;
}

impl EventResult for TransferResult {
    fn succeeded(self) -> bool {
        matches!(self, TransferResult::Created | TransferResult::Exists)
    }
    fn code(self) -> u32 {
        TransferResult::code(self)
    }
    fn is_transient(self) -> bool {
        self.transient()
    }
}

impl LinkedResult for AccountResult {
    const LINKED_EVENT_FAILED: Self = AccountResult::LinkedEventFailed;
    const LINKED_EVENT_CHAIN_OPEN: Self = AccountResult::LinkedEventChainOpen;
}

impl EventResult for AccountResult {
    fn succeeded(self) -> bool {
        matches!(self, AccountResult::Created | AccountResult::Exists)
    }
    fn code(self) -> u32 {
        AccountResult::code(self)
    }
    fn is_transient(self) -> bool {
        self.transient()
    }
}

impl EventId for Transfer {
    fn event_id(&self) -> Option<(ObjectKind, u128)> {
        Some((ObjectKind::Transfer, self.id))
    }
}

impl EventId for Account {
    fn event_id(&self) -> Option<(ObjectKind, u128)> {
        None
    }
}
