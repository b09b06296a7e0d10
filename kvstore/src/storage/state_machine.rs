//! The replicated state machine (openraft's `RaftStateMachine`) over RocksDB, and `Store`,
//! the handle the gRPC services read through.
//!
//! Layout: this file holds `Store` (the in-memory state loaded from the database, the reads,
//! the background compactor) and `StateMachine`, openraft's view of it; `apply.rs` applies
//! committed entries (and states what a crash leaves); `snapshots.rs` builds, installs and
//! serves snapshots.

mod apply;
#[cfg(test)]
mod auth_tests;
mod snapshots;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, RwLock};

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use rocksdb::DB;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::db::{cf, db_size, decode, encode, CF_META};
use super::mvcc_store::{compact_physically, View};
use crate::auth::token::Tokens;
use crate::auth::{AuthState, Need};
use crate::error::{KvError, StorageFault};
use crate::lessor::Lessor;
use crate::mvcc::{Revisions, INITIAL_REVISION};
use crate::raft::types::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use crate::watch::hub::{HubMsg, WatchHub};

pub use self::snapshots::{incoming_path, SnapshotBuilder};

pub(crate) const KEY_APPLIED: &[u8] = b"applied";
pub(crate) const KEY_MEMBERSHIP: &[u8] = b"membership";
pub(crate) const KEY_REVS: &[u8] = b"revisions";
pub(crate) const KEY_ALARMS: &[u8] = b"alarms";
/// The whole auth store (`auth::AuthState`) in one row: it is small and changes rarely.
pub(crate) const KEY_AUTH: &[u8] = b"auth";
const KEY_COMPACTED_PHYSICALLY: &[u8] = b"compacted_physically";
/// (log index, command index) of the last command applied from a batch entry not yet
/// complete.
pub(crate) const KEY_PARTIAL: &[u8] = b"partial_batch";
pub(crate) const KEY_INSTALLING: &[u8] = b"installing_snapshot";
pub(crate) const MEMBER_PREFIX: &[u8] = b"member/";

/// etcd's alarm types (`etcdserverpb.AlarmType`).
pub const ALARM_NOSPACE: i32 = 1;
/// Raised by the corruption check (`server::corrupt`); while it is active the cluster
/// refuses writes (see `apply`).
pub const ALARM_CORRUPT: i32 = 2;

/// A member's self-published attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAttrs {
    pub name: String,
    pub client_urls: Vec<String>,
}

/// What the state machine keeps in memory (all of it also on disk).
#[derive(Debug, Clone, Default)]
pub struct SmState {
    pub revs: Revisions,
    pub applied: Option<LogId>,
    pub membership: StoredMembership,
    pub alarms: Vec<(u64, i32)>,
    pub members: BTreeMap<u64, MemberAttrs>,
    /// Shared: cloning the state for every applied command must not copy every user.
    pub auth: Arc<AuthState>,
}

/// The shared read side of the state machine.
pub struct Store {
    pub db: Arc<DB>,
    state: RwLock<SmState>,
    pub hub: WatchHub,
    pub lessor: Lessor,
    /// Simple tokens issued by applied Authenticate entries (memory only).
    pub tokens: Tokens,
    compactor: mpsc::Sender<i64>,
    compactor_thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Serialises making a snapshot current (see `snapshots::publish_snapshot`).
    snap_lock: std::sync::Mutex<()>,
    /// Held for writing while a snapshot is being loaded, so no point-in-time copy of the
    /// database is taken half-way through (see `consistent_snapshot`).
    install_lock: RwLock<()>,
    /// The database size as last measured, and when: see `db_size_recent`.
    size_seen: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
    /// The revision up to which compaction has been done physically (rows removed).
    compacted_physically: tokio::sync::watch::Sender<i64>,
}

impl Drop for Store {
    /// Stops the compactor, so the database is closed when the last handle goes.
    fn drop(&mut self) {
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.compactor, tx));
        if let Some(t) = self
            .compactor_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = t.join();
        }
    }
}

/// A failure of the state machine's storage, for openraft: `what` it was doing and why.
fn sm_err(what: &str, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("state machine: {what}: {e}"))
}

impl Store {
    /// Loads the in-memory state from the database and starts the compactor.
    pub fn open(db: Arc<DB>, watch_capacity: usize) -> Result<Arc<Self>, KvError> {
        if db.get_cf(cf(&db, CF_META), KEY_INSTALLING)?.is_some() {
            return Err(KvError::Internal(
                "a snapshot install was interrupted and the state machine is incomplete; \
                 remove this member, wipe its data directory and add it again"
                    .into(),
            ));
        }
        let (tx, rx) = mpsc::channel::<i64>();
        let store = Arc::new(Store {
            db: db.clone(),
            state: RwLock::new(SmState::default()),
            hub: WatchHub::new(watch_capacity),
            lessor: Lessor::default(),
            tokens: Tokens::default(),
            compactor: tx,
            compactor_thread: std::sync::Mutex::new(None),
            snap_lock: std::sync::Mutex::new(()),
            install_lock: RwLock::new(()),
            size_seen: std::sync::Mutex::new(None),
            compacted_physically: tokio::sync::watch::Sender::new(0),
        });
        store.reload()?;
        let physical: i64 = store.meta(KEY_COMPACTED_PHYSICALLY)?.unwrap_or(0);
        store.compacted_physically.send_replace(physical);
        let (bg, done) = (db.clone(), store.compacted_physically.clone());
        let handle = std::thread::Builder::new()
            .name("mvcc-compactor".into())
            .spawn(move || compactor_loop(bg, rx, done))
            .map_err(KvError::internal)?;
        *store
            .compactor_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(handle);
        let st = store.state();
        if st.revs.compacted > physical {
            let _ = store.compactor.send(st.revs.compacted);
        }
        Ok(store)
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, KvError> {
        match self.db.get_cf(cf(&self.db, CF_META), key)? {
            Some(v) => decode(&v)
                .map(Some)
                .map_err(|e| StorageFault::new(format!("malformed meta row: {e}")).into()),
            None => Ok(None),
        }
    }

    /// Re-reads every in-memory field from the database.
    fn reload(&self) -> Result<(), KvError> {
        let mut members = BTreeMap::new();
        let mut it = self.db.raw_iterator_cf(cf(&self.db, CF_META));
        it.seek(MEMBER_PREFIX);
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            if !k.starts_with(MEMBER_PREFIX) {
                break;
            }
            let id = u64::from_be_bytes(
                k[MEMBER_PREFIX.len()..]
                    .try_into()
                    .map_err(|_| StorageFault::new("malformed member row"))?,
            );
            members.insert(
                id,
                decode(v).map_err(|e| StorageFault::new(format!("malformed member row: {e}")))?,
            );
            it.next();
        }
        drop(it);
        let st = SmState {
            revs: self.meta(KEY_REVS)?.unwrap_or(Revisions {
                current: INITIAL_REVISION,
                compacted: 0,
            }),
            applied: self.meta::<Option<LogId>>(KEY_APPLIED)?.flatten(),
            membership: self.meta(KEY_MEMBERSHIP)?.unwrap_or_default(),
            alarms: self.meta(KEY_ALARMS)?.unwrap_or_default(),
            members,
            auth: Arc::new(self.meta(KEY_AUTH)?.unwrap_or_default()),
        };
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = st;
        let leases = View::new(&self.db).leases()?;
        self.lessor
            .reset(leases.into_iter().map(|(id, r)| (id, r.ttl)));
        Ok(())
    }

    pub fn state(&self) -> SmState {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn revisions(&self) -> Revisions {
        self.state.read().unwrap_or_else(|p| p.into_inner()).revs
    }

    pub fn applied_index(&self) -> u64 {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .applied
            .map_or(0, |l| l.index)
    }

    /// The auth store as applied here.
    pub fn auth(&self) -> Arc<AuthState> {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .auth
            .clone()
    }

    /// Checks `needs` for `user` against the auth store as applied here, reading the keys
    /// of a lease from the current state when a need names one.
    pub fn check_auth(&self, user: Option<&str>, needs: &[Need<'_>]) -> Result<(), KvError> {
        let auth = self.auth();
        if !auth.enabled {
            return Ok(());
        }
        // A view only for a need that names a lease: most checks read no key.
        auth.check(user, needs, &mut |id| self.read_view().0.lease_keys(id))
    }

    pub fn has_alarm(&self, alarm: i32) -> bool {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .alarms
            .iter()
            .any(|(_, a)| *a == alarm)
    }

    pub fn view(&self) -> View<'_> {
        View::new(&self.db)
    }

    /// A read view and the revisions it is valid for, taken together: the view holds every
    /// revision up to `current`, and nothing at or above `compacted` has been removed from it.
    pub fn read_view(&self) -> (View<'_>, Revisions) {
        let _no_install = self.install_lock.read().unwrap_or_else(|p| p.into_inner());
        let g = self.state.read().unwrap_or_else(|p| p.into_inner());
        let view = View::new(&self.db);
        (view, g.revs)
    }

    /// A point-in-time view of the whole database that is never taken in the middle of a
    /// snapshot install.
    pub fn consistent_snapshot(&self) -> rocksdb::Snapshot<'_> {
        let _no_install = self.install_lock.read().unwrap_or_else(|p| p.into_inner());
        self.db.snapshot()
    }

    pub fn db_size(&self) -> u64 {
        let size = db_size(&self.db);
        *self.size_seen.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((std::time::Instant::now(), size));
        size
    }

    /// Waits until compaction at `revision` is done physically on this member (etcd's
    /// `physical` compaction flag); false if `within` passed first.
    pub async fn wait_compacted_physically(
        &self,
        revision: i64,
        within: std::time::Duration,
    ) -> bool {
        let mut rx = self.compacted_physically.subscribe();
        let reached = tokio::time::timeout(within, rx.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok());
        reached
    }

    /// The database size measured at most `SIZE_FRESHNESS` ago: what the quota check of
    /// every write reads. Measuring takes two RocksDB properties per column family, each
    /// under the database's mutex that writes also take, too much to do per write (etcd
    /// reads its file size from a counter).
    pub fn db_size_recent(&self) -> u64 {
        const SIZE_FRESHNESS: std::time::Duration = std::time::Duration::from_millis(100);
        let seen = *self.size_seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen {
            Some((at, size)) if at.elapsed() < SIZE_FRESHNESS => size,
            _ => self.db_size(),
        }
    }
}

fn compactor_loop(db: Arc<DB>, rx: mpsc::Receiver<i64>, done: tokio::sync::watch::Sender<i64>) {
    while let Ok(mut rev) = rx.recv() {
        while let Ok(newer) = rx.try_recv() {
            rev = rev.max(newer);
        }
        match compact_physically(&db, rev) {
            Ok(removed) => {
                let _ = db.put_cf(cf(&db, CF_META), KEY_COMPACTED_PHYSICALLY, encode(&rev));
                done.send_if_modified(|r| {
                    let newer = rev > *r;
                    *r = (*r).max(rev);
                    newer
                });
                info!(
                    revision = rev,
                    removed_versions = removed,
                    "compaction finished"
                );
            }
            Err(e) => {
                warn!(revision = rev, error = %e, "compaction failed; it will run again at the next compaction or restart")
            }
        }
    }
}

/// openraft's view of the state machine.
pub struct StateMachine {
    pub store: Arc<Store>,
    snap_dir: PathBuf,
}

impl StateMachine {
    pub fn new(store: Arc<Store>, snap_dir: PathBuf) -> Self {
        StateMachine { store, snap_dir }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = tokio::fs::File;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), std::io::Error> {
        let st = self.store.state();
        Ok((st.applied, st.membership))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), std::io::Error>
    where
        S: Stream<Item = Result<EntryResponder<TypeConfig>, std::io::Error>>
            + Unpin
            + openraft::OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id;
            // A storage fault leaves the entry unapplied; going on would make this replica
            // diverge from the others, so the member stops.
            let (applied, events) = match self.store.apply_entry(entry) {
                Ok(r) => r,
                Err(fault) => crate::fatal::storage_fault(format_args!(
                    "applying log entry {log_id}: {fault}"
                )),
            };
            for ev in events {
                self.store.hub.publish(HubMsg::Events(Arc::new(ev)));
            }
            if let Some(r) = responder {
                r.send(applied);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_builder()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: tokio::fs::File,
    ) -> Result<(), std::io::Error> {
        self.install(meta, snapshot).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, std::io::Error> {
        self.current_snapshot().await
    }
}
