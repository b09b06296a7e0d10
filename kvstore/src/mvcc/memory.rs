//! An in-memory `MvccRead` for the core's unit tests: every version of every key in a
//! `BTreeMap`, with the same "newest version at or below a revision" rule as the store.

use std::collections::{BTreeMap, BTreeSet};

use super::txn::TxnOutcome;
use super::{ChangeKind, KeyValue, MvccRead, RangeEnd, Revisions, INITIAL_REVISION};
use crate::error::KvError;

#[derive(Default)]
pub struct MemStore {
    /// key -> (revision -> version; `None` is a tombstone)
    versions: BTreeMap<Vec<u8>, BTreeMap<i64, Option<KeyValue>>>,
    pub leases: BTreeSet<i64>,
    pub revs: Revisions,
}

impl MemStore {
    pub fn new() -> Self {
        MemStore {
            revs: Revisions {
                current: INITIAL_REVISION,
                compacted: 0,
            },
            ..Default::default()
        }
    }

    /// Persists a Txn's changes, as the real store does after executing one.
    pub fn commit(&mut self, outcome: &TxnOutcome) {
        for c in &outcome.changes {
            let v = match c.kind {
                ChangeKind::Put => Some(c.kv.clone()),
                ChangeKind::Delete => None,
            };
            self.versions
                .entry(c.kv.key.clone())
                .or_default()
                .insert(c.kv.mod_revision, v);
        }
        self.revs.current = outcome.revision;
    }

    fn at(&self, key: &[u8], rev: i64) -> Option<KeyValue> {
        self.versions
            .get(key)?
            .range(..=rev)
            .next_back()
            .and_then(|(_, v)| v.clone())
    }
}

impl MvccRead for MemStore {
    fn get(&self, key: &[u8], rev: i64) -> Result<Option<KeyValue>, KvError> {
        Ok(self.at(key, rev))
    }

    fn scan(
        &self,
        start: &[u8],
        end: &RangeEnd,
        rev: i64,
        visit: &mut dyn FnMut(KeyValue) -> bool,
    ) -> Result<(), KvError> {
        for k in self.versions.keys().filter(|k| end.contains(start, k)) {
            if let Some(kv) = self.at(k, rev) {
                if !visit(kv) {
                    break;
                }
            }
        }
        Ok(())
    }

    fn lease_exists(&self, id: i64) -> Result<bool, KvError> {
        Ok(self.leases.contains(&id))
    }
}
