//! The in-memory [`Store`]: for tests of the core, property tests, benchmarks and simulation.
//! The server never uses it; its state lives in RocksDB.

use std::collections::BTreeMap;
use std::ops::Bound;

use rustc_hash::FxHashMap;

use crate::store::{Key, Store, Table, Value};

/// Point tables in a hash map, range-scanned tables in a B-tree.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    points: FxHashMap<Key, Value>,
    ordered: BTreeMap<Key, Value>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the number of records in all tables.
    pub fn len(&self) -> usize {
        self.points.len() + self.ordered.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &Key) -> Option<Value> {
        if key.table().ordered() {
            self.ordered.get(key).cloned()
        } else {
            self.points.get(key).cloned()
        }
    }

    fn put(&mut self, key: Key, value: Value) {
        assert_eq!(
            key.table(),
            value.table(),
            "value stored under a key of another table"
        );
        if key.table().ordered() {
            self.ordered.insert(key, value);
        } else {
            self.points.insert(key, value);
        }
    }

    fn delete(&mut self, key: &Key) {
        if key.table().ordered() {
            self.ordered.remove(key);
        } else {
            self.points.remove(key);
        }
    }

    fn scan(&self, start: &Key, end: &Key, reverse: bool, limit: usize) -> Vec<(Key, Value)> {
        assert!(start.table().ordered() && start.table() == end.table());
        if start >= end {
            return Vec::new();
        }
        let range = self
            .ordered
            .range((Bound::Included(*start), Bound::Excluded(*end)));
        let clone = |(k, v): (&Key, &Value)| (*k, v.clone());
        if reverse {
            range.rev().take(limit).map(clone).collect()
        } else {
            range.take(limit).map(clone).collect()
        }
    }

    fn for_each(&self, table: Table, f: &mut dyn FnMut(&Key, &Value)) {
        if table.ordered() {
            for (k, v) in self.ordered.iter().filter(|(k, _)| k.table() == table) {
                f(k, v);
            }
        } else {
            for (k, v) in self.points.iter().filter(|(k, _)| k.table() == table) {
                f(k, v);
            }
        }
    }
}
