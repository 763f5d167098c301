//! ledger-core's [`Store`] on RocksDB: one column family per [`Table`].
//!
//! A [`StateView`] reads through an overlay of the writes made since it was opened, so the
//! state machine reads its own writes while applying a run of entries, and nothing reaches
//! RocksDB until [`StateView::into_write_batch`] turns the overlay into one `WriteBatch`, which
//! the caller writes together with the applied log id (see `raft/state_machine.rs`). Reads may
//! be pinned to a RocksDB snapshot for a consistent query.
//!
//! A read that fails (I/O error, or bytes that do not decode) is recorded and the view is
//! poisoned: the caller must refuse to commit it. Nothing damaged is ever written back.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashMap;

use foldhash::fast::RandomState;

use ledger_core::codec::{decode_key, decode_value, encode_key, encode_value, key_bytes};
use ledger_core::{Account, Key, Store, Table, Value};
use rocksdb::{ColumnFamily, IteratorMode, ReadOptions, Snapshot, WriteBatch, DB};

/// Room reserved in a write batch per record: above a transfer's (the largest common record),
/// so a batch is allocated once.
const BATCH_BYTES_PER_RECORD: usize = 192;

/// Accounts as last committed, which the state machine keeps across applies: every transfer
/// reads two accounts, and most transfers touch accounts that recent ones touched. Only the
/// state machine's own writes change accounts, and it updates this after each write succeeds
/// and empties it when a snapshot replaces the state.
pub type AccountCache = HashMap<u128, Account, RandomState>;

/// A read or decode failure met by a view.
#[derive(Clone, Debug, thiserror::Error)]
#[error("state store {table}: {reason}")]
pub struct StateStoreError {
    pub table: &'static str,
    pub reason: String,
}

/// A view of the state: RocksDB (optionally at a snapshot) plus uncommitted writes.
pub struct StateView<'a> {
    db: &'a DB,
    snapshot: Option<&'a Snapshot<'a>>,
    /// Writes since the view was opened. Both maps hash with foldhash, seeded per process: far
    /// cheaper than SipHash (11% of a full batch's apply) and still not open to ids chosen to
    /// collide.
    overlay: HashMap<Key, Option<Value>, RandomState>,
    /// Committed records already read (absent ones as `None`). The committed state does not
    /// change under a view, and the state machine reads most keys more than once: it checks
    /// that an id is free, reads an account, then reads both again for the digest as it writes
    /// them. Each repeat was a RocksDB point read.
    reads: RefCell<HashMap<Key, Option<Value>, RandomState>>,
    /// Options of every point read, made once (each is a C++ allocation).
    point_read: ReadOptions,
    /// Committed accounts known without reading RocksDB (the state machine's cache).
    accounts: Option<&'a AccountCache>,
    /// The column family of each table, by `Table as usize - 1`, looked up once (each lookup
    /// is by name).
    families: [Option<&'a ColumnFamily>; Table::ALL.len()],
    error: RefCell<Option<StateStoreError>>,
}

impl<'a> StateView<'a> {
    /// A view of the latest committed state.
    pub fn new(db: &'a DB) -> Self {
        Self {
            db,
            snapshot: None,
            overlay: HashMap::default(),
            reads: RefCell::default(),
            point_read: ReadOptions::default(),
            accounts: None,
            families: Table::ALL.map(|table| db.cf_handle(table.name())),
            error: RefCell::new(None),
        }
    }

    /// A view that expects to write about `records` records: its maps are sized once instead of
    /// growing (and moving every record) while a full entry is applied.
    pub fn with_capacity(db: &'a DB, records: usize) -> Self {
        let mut view = Self::new(db);
        view.overlay.reserve(records);
        view.reads.get_mut().reserve(records);
        view
    }

    /// An apply's view ([`Self::with_capacity`]) that answers reads of the committed accounts
    /// in `accounts` from there.
    pub fn with_account_cache(db: &'a DB, records: usize, accounts: &'a AccountCache) -> Self {
        let mut view = Self::with_capacity(db, records);
        view.accounts = Some(accounts);
        view
    }

    /// Every account this view read or wrote, as it stands once the view's batch is committed
    /// (`None`: deleted). The state machine adds them to its cache after the write succeeds.
    pub fn touched_accounts(&self) -> Vec<(u128, Option<Account>)> {
        let read = self.reads.borrow();
        let committed = read.iter().filter_map(|(key, value)| match (key, value) {
            (Key::Account(id), Some(Value::Account(a))) if !self.overlay.contains_key(key) => {
                Some((*id, Some(*a)))
            }
            _ => None,
        });
        let written = self
            .overlay
            .iter()
            .filter_map(|(key, value)| match (key, value) {
                (Key::Account(id), Some(Value::Account(a))) => Some((*id, Some(*a))),
                (Key::Account(id), None) => Some((*id, None)),
                _ => None,
            });
        committed.chain(written).collect()
    }

    /// A read-only view pinned to a RocksDB snapshot: every read sees the same point in time.
    pub fn at_snapshot(db: &'a DB, snapshot: &'a Snapshot<'a>) -> Self {
        let mut view = Self::new(db);
        view.snapshot = Some(snapshot);
        view.point_read = view.read_options();
        view
    }

    /// Returns the first failure met, if any; a failed view must not be committed.
    pub fn error(&self) -> Option<StateStoreError> {
        self.error.borrow().clone()
    }

    /// Turns the writes into a batch (to which the caller adds its own bookkeeping).
    pub fn into_write_batch(self) -> Result<WriteBatch, StateStoreError> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        // In each column family's key order: RocksDB inserts a batch into the memtable skip
        // lists one record after another, and an insert next to the previous one reuses its
        // search path, where a random one walks the list from the top (a third of the leader's
        // CPU at batch 8,189, docs/benchmarks.md).
        let mut records: Vec<(Table, Vec<u8>, Option<&Value>)> = self
            .overlay
            .iter()
            .map(|(key, value)| {
                let mut key_bytes = Vec::with_capacity(32);
                encode_key(key, &mut key_bytes);
                (key.table(), key_bytes, value.as_ref())
            })
            .collect();
        records.sort_unstable_by(|a, b| (a.0 as u8, &a.1).cmp(&(b.0 as u8, &b.1)));
        // Sized up front: growing a batch of a full entry (megabytes) doubled and copied it
        // again and again.
        let mut batch = WriteBatch::with_capacity_bytes(records.len() * BATCH_BYTES_PER_RECORD);
        let mut value_buf = Vec::with_capacity(192);
        for (table, key, value) in records {
            let cf = self.family(table)?;
            match value {
                Some(value) => {
                    value_buf.clear();
                    encode_value(value, &mut value_buf);
                    batch.put_cf(cf, &key, &value_buf);
                }
                None => batch.delete_cf(cf, &key),
            }
        }
        Ok(batch)
    }

    /// One point read of RocksDB; a failure poisons the view and reads as absent.
    fn read_committed(&self, key: &Key) -> Option<Value> {
        if let (Key::Account(id), Some(accounts)) = (key, self.accounts) {
            if let Some(account) = accounts.get(id) {
                return Some(Value::Account(*account));
            }
        }
        let table = key.table();
        let cf = match self.family(table) {
            Ok(cf) => cf,
            Err(e) => {
                self.fail(table, e.reason);
                return None;
            }
        };
        match self
            .db
            .get_pinned_cf_opt(cf, key_bytes(key), &self.point_read)
        {
            Ok(Some(bytes)) => match decode_value(table, &bytes) {
                Ok(value) => Some(value),
                Err(e) => {
                    self.fail(table, e.to_string());
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                self.fail(table, e.to_string());
                None
            }
        }
    }

    /// The column family of `table`.
    fn family(&self, table: Table) -> Result<&'a ColumnFamily, StateStoreError> {
        self.families[table as usize - 1].ok_or_else(|| missing_family(table))
    }

    fn fail(&self, table: Table, reason: String) {
        tracing::error!(table = table.name(), %reason, "state store read failed");
        let mut error = self.error.borrow_mut();
        if error.is_none() {
            *error = Some(StateStoreError {
                table: table.name(),
                reason,
            });
        }
    }

    fn read_options(&self) -> ReadOptions {
        let mut options = ReadOptions::default();
        if let Some(snapshot) = self.snapshot {
            options.set_snapshot(snapshot);
        }
        options
    }

    /// Reads committed records of `table` in `[start, end)` (encoded bounds), in order.
    fn committed_range(
        &self,
        table: Table,
        start: Option<Vec<u8>>,
        end: Option<Vec<u8>>,
        reverse: bool,
        mut visit: impl FnMut(Key, Value) -> bool,
    ) {
        let cf = match self.family(table) {
            Ok(cf) => cf,
            Err(e) => return self.fail(table, e.reason),
        };
        let mut options = self.read_options();
        if let Some(start) = start {
            options.set_iterate_lower_bound(start);
        }
        if let Some(end) = end {
            options.set_iterate_upper_bound(end);
        }
        let mode = if reverse {
            IteratorMode::End
        } else {
            IteratorMode::Start
        };
        for item in self.db.iterator_cf_opt(cf, options, mode) {
            let (k, v) = match item {
                Ok(kv) => kv,
                Err(e) => return self.fail(table, e.to_string()),
            };
            let key = match decode_key(table, &k) {
                Ok(key) => key,
                Err(e) => return self.fail(table, e.to_string()),
            };
            let value = match decode_value(table, &v) {
                Ok(value) => value,
                Err(e) => return self.fail(table, e.to_string()),
            };
            if !visit(key, value) {
                return;
            }
        }
    }
}

/// Returns the column family of a table.
pub fn cf(db: &DB, table: Table) -> Result<&ColumnFamily, StateStoreError> {
    db.cf_handle(table.name())
        .ok_or_else(|| missing_family(table))
}

fn missing_family(table: Table) -> StateStoreError {
    StateStoreError {
        table: table.name(),
        reason: "column family missing".into(),
    }
}

impl Store for StateView<'_> {
    fn get(&self, key: &Key) -> Option<Value> {
        if let Some(value) = self.overlay.get(key) {
            return value.clone();
        }
        if let Some(value) = self.reads.borrow().get(key) {
            return value.clone();
        }
        let value = self.read_committed(key);
        self.reads.borrow_mut().insert(*key, value.clone());
        value
    }

    fn put(&mut self, key: Key, value: Value) {
        assert_eq!(
            key.table(),
            value.table(),
            "value stored under a key of another table"
        );
        self.overlay.insert(key, Some(value));
    }

    fn delete(&mut self, key: &Key) {
        self.overlay.insert(*key, None);
    }

    fn scan(&self, start: &Key, end: &Key, reverse: bool, limit: usize) -> Vec<(Key, Value)> {
        let table = start.table();
        assert!(table.ordered() && table == end.table());
        if start >= end || limit == 0 {
            return Vec::new();
        }
        // Committed records not shadowed by the overlay, then the overlay's live records in
        // range: two disjoint sorted lists, merged.
        let mut committed = Vec::new();
        self.committed_range(
            table,
            Some(key_bytes(start)),
            Some(key_bytes(end)),
            reverse,
            |key, value| {
                if !self.overlay.contains_key(&key) {
                    committed.push((key, value));
                }
                committed.len() < limit
            },
        );
        let mut fresh: Vec<(Key, Value)> = self
            .overlay
            .iter()
            .filter(|(key, value)| value.is_some() && *key >= start && *key < end)
            .map(|(key, value)| (*key, value.clone().expect("filtered on Some")))
            .collect();
        if fresh.is_empty() {
            return committed;
        }
        fresh.sort_by_key(|a| a.0);
        if reverse {
            fresh.reverse();
        }
        let order = |a: &Key, b: &Key| if reverse { b.cmp(a) } else { a.cmp(b) };
        let mut merged = Vec::with_capacity(limit.min(committed.len() + fresh.len()));
        let (mut i, mut j) = (0, 0);
        while merged.len() < limit && (i < committed.len() || j < fresh.len()) {
            let take_committed = match (committed.get(i), fresh.get(j)) {
                (Some(c), Some(f)) => order(&c.0, &f.0) == Ordering::Less,
                (Some(_), None) => true,
                _ => false,
            };
            if take_committed {
                merged.push(committed[i].clone());
                i += 1;
            } else {
                merged.push(fresh[j].clone());
                j += 1;
            }
        }
        merged
    }

    fn for_each(&self, table: Table, f: &mut dyn FnMut(&Key, &Value)) {
        // The meta column family also holds the Raft bookkeeping, which is not a `Key`: only
        // the core's own record is visited.
        if table == Table::Meta {
            if let Some(value) = self.get(&Key::Meta) {
                f(&Key::Meta, &value);
            }
            return;
        }
        self.committed_range(table, None, None, false, |key, value| {
            if !self.overlay.contains_key(&key) {
                f(&key, &value);
            }
            true
        });
        for (key, value) in &self.overlay {
            if let (true, Some(value)) = (key.table() == table, value) {
                f(key, value);
            }
        }
    }
}
