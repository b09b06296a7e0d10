//! etcd's multi-version key space as pure functions over a read view.
//!
//! Nothing here does I/O of its own: [`MvccRead`] is the only way in, implemented over a
//! RocksDB snapshot in `storage::mvcc_store` and over a `BTreeMap` in the tests. Executing a
//! request yields the response and the list of [`Change`]s it makes; the caller persists the
//! changes and turns them into watch events.
//!
//! - `keys`: byte layout of versions and revisions in the store.
//! - `validate`: request checks done before a request is proposed (etcd's gRPC-layer checks).
//! - `range`: Range, with etcd's count/limit/sort/filter rules.
//! - `compare`: Txn compares.
//! - `txn`: Put, DeleteRange and Txn (Put and DeleteRange are single-op Txns).

pub mod compare;
pub mod keys;
#[cfg(test)]
pub(crate) mod memory;
pub mod range;
pub mod txn;
pub mod validate;

pub use keys::RangeEnd;
pub use proto::mvccpb::KeyValue;

use crate::error::KvError;

/// The two revisions that bound what can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Revisions {
    /// The revision of the last applied write (`INITIAL_REVISION` for an empty store).
    pub current: i64,
    /// Reads below this revision fail with `Compacted`.
    pub compacted: i64,
}

/// An empty store is at revision 1, as in etcd, so the first write gets revision 2.
pub const INITIAL_REVISION: i64 = 1;

impl Revisions {
    /// Resolves a requested read revision (`<= 0` means current) and checks it is readable.
    pub fn check_read(&self, requested: i64) -> Result<i64, KvError> {
        let rev = if requested <= 0 {
            self.current
        } else {
            requested
        };
        if rev > self.current {
            return Err(KvError::FutureRevision);
        }
        if rev < self.compacted {
            return Err(KvError::Compacted {
                compact_revision: self.compacted,
            });
        }
        Ok(rev)
    }
}

/// Read access to the key space at any retained revision.
pub trait MvccRead {
    /// The live version of `key` at `rev`: `None` when it never existed or was deleted.
    fn get(&self, key: &[u8], rev: i64) -> Result<Option<KeyValue>, KvError>;

    /// Visits the live keys of `[start, end)` at `rev` in ascending key order until `visit`
    /// returns false.
    fn scan(
        &self,
        start: &[u8],
        end: &RangeEnd,
        rev: i64,
        visit: &mut dyn FnMut(KeyValue) -> bool,
    ) -> Result<(), KvError>;

    /// As `scan`, but the visited versions may come without their values (empty): for
    /// callers that need only keys and metadata, such as DeleteRange, which then never
    /// reads or copies the values it deletes.
    fn scan_keys(
        &self,
        start: &[u8],
        end: &RangeEnd,
        rev: i64,
        visit: &mut dyn FnMut(KeyValue) -> bool,
    ) -> Result<(), KvError> {
        self.scan(start, end, rev, &mut |mut kv| {
            kv.value = Vec::new();
            visit(kv)
        })
    }

    /// Whether a lease with this ID is currently granted.
    fn lease_exists(&self, id: i64) -> Result<bool, KvError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ChangeKind {
    Put,
    Delete,
}

/// One key changed by a write. For a delete, `kv` holds only the key and the revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub kind: ChangeKind,
    pub kv: KeyValue,
    /// The version this change replaced, if it was live. A DeleteRange that was not asked
    /// for its previous values leaves their values and keys out (`prev_value_omitted`; the
    /// key is `kv.key`): a watcher that wants them reads them back, as etcd's watch server
    /// does.
    pub prev: Option<KeyValue>,
    pub prev_value_omitted: bool,
}

impl Change {
    /// The watch event for this change; `prev_kv` is attached by the watcher if asked for.
    pub fn event_type(&self) -> proto::mvccpb::event::EventType {
        match self.kind {
            ChangeKind::Put => proto::mvccpb::event::EventType::Put,
            ChangeKind::Delete => proto::mvccpb::event::EventType::Delete,
        }
    }
}
#[cfg(test)]
mod tests;
