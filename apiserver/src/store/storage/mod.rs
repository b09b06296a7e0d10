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
//! - `watch` from revision `from` reports every change of its range with a revision of
//!   `from` or later, each once, in revision order, all changes of one revision in one
//!   message; `Progress(r)` promises that nothing up to `r` is left to report. When the
//!   history it needs is gone it says `Compacted` and ends. A watch follows one replica
//!   (an etcd member); a replica that lags may deliver late but never out of order.
//! - `current_revision` is linearizable, as `range` with revision 0.

mod encrypted;
mod etcd;
mod memory;

pub use crate::etcd::EtcdError as StorageError;
pub use encrypted::Encrypted;
pub use memory::Memory;

/// One stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// Stored in a form that is not the one written now (encryption at rest: an older
    /// key or provider); an update is to rewrite it even when the object is unchanged.
    pub stale: bool,
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

/// One change a watch reports. A delete carries the key and the revision of the delete
/// in `kv` (no value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub deleted: bool,
    pub kv: Kv,
    /// The key as it was before the change, when the watch asked for it.
    pub prev: Option<Kv>,
}

/// What a watch stream says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMessage {
    /// Changes, in revision order.
    Events(Vec<Event>),
    /// Everything up to this revision has been reported.
    Progress(i64),
    /// The history from the watch's start is compacted up to this revision; the stream ends.
    Compacted(i64),
    /// The store ended the watch for another reason; the stream ends.
    Canceled(String),
}

/// What to watch.
#[derive(Debug, Clone, Default)]
pub struct WatchSpec {
    pub start: Vec<u8>,
    /// The end of the range, exclusive (empty: the single key `start`).
    pub end: Vec<u8>,
    /// The first revision to report.
    pub from: i64,
    /// Report each change's previous value.
    pub prev_kv: bool,
    /// Send `Progress` now and then without being asked.
    pub progress_notify: bool,
    /// The replica to follow, taken modulo [`Storage::replicas`].
    pub replica: usize,
}

/// An open watch.
#[async_trait::async_trait]
pub trait WatchStream: Send {
    /// The next message; `None` when the stream has ended (the replica failed, or after
    /// `Compacted` or `Canceled`). Cancel-safe: a message is never lost by dropping the
    /// future before it completes.
    async fn next(&mut self) -> Option<WatchMessage>;
    /// Asks for a `Progress` as soon as the replica is up to date.
    async fn request_progress(&mut self);
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

    /// The store's current revision, read linearizably.
    async fn current_revision(&self) -> Result<i64, StorageError>;

    /// Opens a watch (see the module contract).
    async fn watch(&self, spec: WatchSpec) -> Result<Box<dyn WatchStream>, StorageError>;

    /// How many replicas a watch can follow.
    fn replicas(&self) -> usize {
        1
    }
    /// The replica reads go to now (the one a new watch should try first).
    fn preferred_replica(&self) -> usize {
        0
    }
    /// A replica's name for logs.
    fn replica_name(&self, _i: usize) -> String {
        "local".into()
    }

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
