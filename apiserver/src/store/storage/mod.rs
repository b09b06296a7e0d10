//! The storage interface under the registry: what the registry's reads and writes need
//! of a key-value store, in two primitives, with the etcd v3 implementation (`etcd.rs`)
//! and an in-memory one (`memory.rs`) that the registry's unit tests run on.
//!
//! Contract (both implementations):
//! - Every successful write creates exactly one new revision; a key's `mod_revision` is
//!   the revision of the write that last changed it, its `create_revision` that of the
//!   write that created it (unchanged by later puts).
//! - `range` with revision 0 is linearizable: it sees every write acknowledged before it
//!   started. With a past revision it sees the store as of that revision, or fails with
//!   [`StorageError::Compacted`].
//! - `txn` is atomic: if every guard holds, all its ops apply in one revision; otherwise
//!   none does, and the keys in `on_failure` are read in the same atomic step.
//! - A failure other than a refused guard says nothing about whether a write happened
//!   (`Timeout`, `Unavailable`): callers report it, they never repeat a write blindly.

mod etcd;
mod memory;

pub use crate::etcd::EtcdError as StorageError;
pub use memory::Memory;

/// One stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// The result of a range: the keys in order, whether more were left out by the limit, and
/// the revision it was read at.
#[derive(Debug, Clone, Default)]
pub struct Range {
    pub kvs: Vec<Kv>,
    pub more: bool,
    /// How many keys the range holds, the limit aside.
    pub count: i64,
    pub revision: i64,
}

/// A condition a write depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// The key does not exist.
    Absent(String),
    /// The key was last changed at exactly this revision.
    ModRevision(String, i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(String, Vec<u8>),
    Delete(String),
}

/// A guarded write.
#[derive(Debug, Clone, Default)]
pub struct Txn {
    pub guards: Vec<Guard>,
    pub ops: Vec<Op>,
    /// Keys read when a guard does not hold (to tell which one failed).
    pub on_failure: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct TxnResult {
    pub succeeded: bool,
    /// The store's revision after the write (or at the failed attempt).
    pub revision: i64,
    /// For each key of `on_failure`: whether it exists.
    pub found: Vec<bool>,
}

#[async_trait::async_trait]
pub trait Storage: Send + Sync {
    /// The keys in `[start, end)` as of `revision` (0: now), at most `limit` (0: all).
    async fn range(
        &self,
        start: &[u8],
        end: &[u8],
        revision: i64,
        limit: i64,
    ) -> Result<Range, StorageError>;

    /// Applies `txn` atomically (see the module contract).
    async fn txn(&self, txn: Txn) -> Result<TxnResult, StorageError>;

    /// One key, read linearizably.
    async fn get(&self, key: &str) -> Result<Option<Kv>, StorageError> {
        let mut end = key.as_bytes().to_vec();
        end.push(0);
        Ok(self
            .range(key.as_bytes(), &end, 0, 1)
            .await?
            .kvs
            .into_iter()
            .next())
    }
}
