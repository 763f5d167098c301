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

use ledger_core::codec::{decode_key, decode_value, encode_key, encode_value, key_bytes};
use ledger_core::{Key, Store, Table, Value};
use rocksdb::{IteratorMode, ReadOptions, Snapshot, WriteBatch, DB};

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
    overlay: HashMap<Key, Option<Value>>,
    error: RefCell<Option<StateStoreError>>,
}

impl<'a> StateView<'a> {
    /// A view of the latest committed state.
    pub fn new(db: &'a DB) -> Self {
        Self {
            db,
            snapshot: None,
            overlay: HashMap::new(),
            error: RefCell::new(None),
        }
    }

    /// A read-only view pinned to a RocksDB snapshot: every read sees the same point in time.
    pub fn at_snapshot(db: &'a DB, snapshot: &'a Snapshot<'a>) -> Self {
        Self {
            snapshot: Some(snapshot),
            ..Self::new(db)
        }
    }

    /// Returns the first failure met, if any; a failed view must not be committed.
    pub fn error(&self) -> Option<StateStoreError> {
        self.error.borrow().clone()
    }

    /// Turns the writes into a batch (to which the caller adds its own bookkeeping).
    pub fn into_write_batch(self) -> Result<WriteBatch, StateStoreError> {
        if let Some(error) = self.error.into_inner() {
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
        let mut batch = WriteBatch::default();
        let mut value_buf = Vec::with_capacity(192);
        for (table, key, value) in records {
            let cf = cf(self.db, table)?;
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
        let cf = match cf(self.db, table) {
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
pub fn cf(db: &DB, table: Table) -> Result<&rocksdb::ColumnFamily, StateStoreError> {
    db.cf_handle(table.name()).ok_or_else(|| StateStoreError {
        table: table.name(),
        reason: "column family missing".into(),
    })
}

impl Store for StateView<'_> {
    fn get(&self, key: &Key) -> Option<Value> {
        if let Some(value) = self.overlay.get(key) {
            return value.clone();
        }
        let table = key.table();
        let cf = match cf(self.db, table) {
            Ok(cf) => cf,
            Err(e) => {
                self.fail(table, e.reason);
                return None;
            }
        };
        match self
            .db
            .get_pinned_cf_opt(cf, key_bytes(key), &self.read_options())
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
