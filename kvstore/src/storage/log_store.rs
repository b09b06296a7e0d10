//! The Raft log and vote in RocksDB (openraft's `RaftLogStorage`).
//!
//! Durability contract: the vote is synced before `save_vote` returns; appended entries are
//! written (readable) before `append` returns and openraft is told they are flushed only
//! after a WAL sync that covers them. The sync runs on its own thread and serves every append
//! that arrived while the previous sync ran: one fsync for many entries (group commit).
//!
//! A write or sync that fails stops the member (`fatal::storage_fault`), as etcd panics on
//! a WAL write error: the entries or vote it was meant to keep may or may not be on disk,
//! and a member that went on would acknowledge what it may not have or keep serving a log
//! it can no longer extend. Read failures go back to openraft, which stops Raft on them;
//! the member then stops too (`server::watch_leadership`).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;
use std::sync::Arc;

use std::io;

use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;
use rocksdb::{WriteBatch, WriteOptions, DB};

use super::db::{cf, decode, encode, CF_LOG, CF_RAFT};
use crate::raft::types::{Entry, LogId, TypeConfig, Vote};
use crate::raft::wire::MAX_PEER_FRAME_BYTES;

const KEY_VOTE: &[u8] = b"vote";
const KEY_PURGED: &[u8] = b"last_purged";
const KEY_COMMITTED: &[u8] = b"committed";

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn read_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("reading the raft log: {e}"))
}

/// A failed write of the log or the vote: the member stops.
fn write_failed(what: &str, e: impl std::fmt::Display) -> ! {
    crate::fatal::storage_fault(format_args!("raft log: {what}: {e}"))
}

#[derive(Clone)]
pub struct LogReader {
    db: Arc<DB>,
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        read_entries(&self.db, range, usize::MAX)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        get_meta(&self.db, KEY_VOTE)
    }

    /// What replication sends in one AppendEntries: entries from `start` while they fit a
    /// peer message (at least one, which the request size limit keeps below it).
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, io::Error> {
        read_entries(&self.db, start..end, APPEND_BUDGET_BYTES)
    }
}

/// The encoded entries one AppendEntries carries at most (when there is more than one),
/// leaving room in a peer message for the request's other fields.
const APPEND_BUDGET_BYTES: usize = MAX_PEER_FRAME_BYTES - 64 * 1024;

/// The entries of `range` in order, stopping before the one that would take their encoded
/// size over `budget` (the first is always taken).
fn read_entries(
    db: &DB,
    range: impl RangeBounds<u64>,
    budget: usize,
) -> Result<Vec<Entry>, io::Error> {
    let start = match range.start_bound() {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let mut it = db.raw_iterator_cf(cf(db, CF_LOG));
    it.seek(index_key(start));
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while it.valid() {
        let (Some(k), Some(v)) = (it.key(), it.value()) else {
            break;
        };
        let index = u64::from_be_bytes(
            k.try_into()
                .map_err(|_| read_err(std::io::Error::other("bad log key")))?,
        );
        if !range.contains(&index) {
            break;
        }
        bytes = bytes.saturating_add(v.len());
        if !out.is_empty() && bytes > budget {
            break;
        }
        out.push(decode::<Entry>(v).map_err(read_err)?);
        it.next();
    }
    it.status().map_err(read_err)?;
    Ok(out)
}

/// Requests for the sync thread.
type FlushRequest = IOFlushed<TypeConfig>;

pub struct LogStore {
    db: Arc<DB>,
    flusher: mpsc::Sender<FlushRequest>,
    sync_thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LogStore {
    /// Stops the sync thread, so the database is closed when the last handle goes and not
    /// during process exit.
    fn drop(&mut self) {
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.flusher, tx));
        if let Some(t) = self.sync_thread.take() {
            let _ = t.join();
        }
    }
}

impl LogStore {
    pub fn new(db: Arc<DB>) -> Self {
        let (tx, rx) = mpsc::channel::<FlushRequest>();
        let sync_db = db.clone();
        let sync_thread = std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || group_commit(sync_db, rx))
            .unwrap_or_else(|e| panic!("cannot start the log sync thread: {e}"));
        LogStore {
            db,
            flusher: tx,
            sync_thread: Some(sync_thread),
        }
    }
}

fn get_meta<T: serde::de::DeserializeOwned>(db: &DB, key: &[u8]) -> Result<Option<T>, io::Error> {
    match db.get_cf(cf(db, CF_RAFT), key).map_err(read_err)? {
        Some(v) => Ok(Some(decode(&v).map_err(read_err)?)),
        None => Ok(None),
    }
}

/// The sync loop: wait for one request, take every request queued behind it, sync the WAL
/// once, then answer them all.
fn group_commit(db: Arc<DB>, rx: mpsc::Receiver<FlushRequest>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let began = std::time::Instant::now();
        let result = db.flush_wal(true);
        crate::metrics::global().wal_fsync(began.elapsed());
        tracing::trace!(
            elapsed_us = began.elapsed().as_micros() as u64,
            batch = batch.len(),
            "log sync"
        );
        if let Err(e) = result {
            write_failed("syncing the write-ahead log", e);
        }
        for cb in batch {
            cb.io_completed(Ok(()));
        }
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = get_meta(&self.db, KEY_PURGED)?;
        let mut it = self.db.raw_iterator_cf(cf(&self.db, CF_LOG));
        it.seek_to_last();
        let last_log_id = match it.value() {
            Some(v) => Some(decode::<Entry>(v).map_err(read_err)?.log_id),
            None => last_purged_log_id,
        };
        it.status().map_err(read_err)?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            db: self.db.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        let mut batch = WriteBatch::default();
        batch.put_cf(cf(&self.db, CF_RAFT), KEY_VOTE, encode(vote));
        if let Err(e) = self.db.write_opt(batch, &opts) {
            write_failed("saving the vote", e);
        }
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not synced: losing it only means re-learning the commit index from the leader.
        if let Err(e) = self
            .db
            .put_cf(cf(&self.db, CF_RAFT), KEY_COMMITTED, encode(&committed))
        {
            write_failed("saving the commit index", e);
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(get_meta::<Option<LogId>>(&self.db, KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let log = cf(&self.db, CF_LOG);
        let mut batch = WriteBatch::default();
        for e in entries {
            batch.put_cf(log, index_key(e.log_id.index), encode(&e));
        }
        // Unsynced write: readable now, durable at the next WAL sync.
        let mut opts = WriteOptions::default();
        opts.set_sync(false);
        if let Err(e) = self.db.write_opt(batch, &opts) {
            write_failed("appending entries", e);
        }
        if self.flusher.send(callback).is_err() {
            write_failed("appending entries", "the log sync thread stopped");
        }
        Ok(())
    }

    /// Deletes the entries after `last` (all of them if `None`).
    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        let from = last.map_or(0, |l| l.index.saturating_add(1));
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf(&self.db, CF_LOG), index_key(from), index_key(u64::MAX));
        batch.delete_cf(cf(&self.db, CF_LOG), index_key(u64::MAX));
        if let Err(e) = self.db.write(batch) {
            write_failed("truncating", e);
        }
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // The state the purged entries produced must be on disk before they go.
        if let Err(e) = self.db.flush_wal(true) {
            write_failed("syncing the write-ahead log before a purge", e);
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(cf(&self.db, CF_RAFT), KEY_PURGED, encode(&log_id));
        batch.delete_range_cf(
            cf(&self.db, CF_LOG),
            index_key(0),
            index_key(log_id.index.saturating_add(1)),
        );
        if let Err(e) = self.db.write(batch) {
            write_failed("purging", e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::db::{DataDir, ALL_CFS};

    /// A log store over a database opened read-only, where every write fails as on a
    /// failed disk.
    fn failing_store(dir: &std::path::Path) -> LogStore {
        drop(DataDir::new(dir).open_db().unwrap());
        let db =
            DB::open_cf_for_read_only(&rocksdb::Options::default(), dir.join("db"), ALL_CFS, false)
                .unwrap();
        LogStore::new(Arc::new(db))
    }

    #[tokio::test]
    #[should_panic(expected = "storage fault, stopping this member")]
    async fn a_vote_that_cannot_be_written_stops_the_member() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = failing_store(dir.path());
        let _ = store.save_vote(&Vote::new(2, 1)).await;
    }

    #[tokio::test]
    #[should_panic(expected = "raft log: truncating")]
    async fn a_truncation_that_cannot_be_written_stops_the_member() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = failing_store(dir.path());
        let log_id = LogId::new(crate::raft::types::leader(1, 1), 5);
        let _ = store.truncate_after(Some(log_id)).await;
    }
}
