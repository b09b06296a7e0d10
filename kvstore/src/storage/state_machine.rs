//! The replicated state machine (openraft's `RaftStateMachine`) over RocksDB, and `Store`,
//! the handle the gRPC services read through.
//!
//! Each log entry is applied in one RocksDB write batch that also records the entry's log id,
//! so after a crash the state is exactly "every entry up to the recorded id". Those writes
//! are not synced themselves: the log entries are, and the WAL they share is synced in order.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, RwLock};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, StorageIOError};
use proto::etcdserverpb::request_op::Request;
use proto::etcdserverpb::{DeleteRangeRequest, RequestOp, TxnRequest};
use rocksdb::{WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::db::{cf, db_size, decode, encode, sync_dir, CF_META};
use super::mvcc_store::{self, compact_physically, HistoryEvent, LeaseRecord, View};
use super::snapshot;
use crate::error::KvError;
use crate::lessor::Lessor;
use crate::mvcc::{txn, Revisions, INITIAL_REVISION};
use crate::raft::types::{
    Applied, Command, Entry, LogId, Output, Pb, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};
use crate::watch::hub::{HubMsg, RevisionEvents, WatchHub};

pub(crate) const KEY_APPLIED: &[u8] = b"applied";
pub(crate) const KEY_MEMBERSHIP: &[u8] = b"membership";
const KEY_REVS: &[u8] = b"revisions";
pub(crate) const KEY_ALARMS: &[u8] = b"alarms";
const KEY_COMPACTED_PHYSICALLY: &[u8] = b"compacted_physically";
/// (log index, command index) of the last command applied from a batch entry not yet
/// complete.
pub(crate) const KEY_PARTIAL: &[u8] = b"partial_batch";
pub(crate) const KEY_INSTALLING: &[u8] = b"installing_snapshot";
pub(crate) const MEMBER_PREFIX: &[u8] = b"member/";

/// etcd's alarm types.
pub const ALARM_NOSPACE: i32 = 1;

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
}

/// What one write batch applies.
enum Step {
    Blank,
    Membership(openraft::Membership<crate::raft::types::NodeId, crate::raft::types::Member>),
    Command(Command),
}

enum Progress {
    Done,
    Partial(usize),
}

/// Work to do once an entry's batch is written and the in-memory state updated.
type AfterApply = Option<Box<dyn FnOnce(&Store)>>;

/// The shared read side of the state machine.
pub struct Store {
    pub db: Arc<DB>,
    state: RwLock<SmState>,
    pub hub: WatchHub,
    pub lessor: Lessor,
    compactor: mpsc::Sender<i64>,
    compactor_thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Serialises making a snapshot current (see `publish_snapshot`).
    snap_lock: std::sync::Mutex<()>,
    /// Held for writing while a snapshot is being loaded, so no point-in-time copy of the
    /// database is taken half-way through (see `consistent_snapshot`).
    install_lock: RwLock<()>,
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

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageIOError::new(
        ErrorSubject::StateMachine,
        verb,
        openraft::AnyError::error(e.to_string()),
    )
    .into()
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
            compactor: tx,
            compactor_thread: std::sync::Mutex::new(None),
            snap_lock: std::sync::Mutex::new(()),
            install_lock: RwLock::new(()),
        });
        store.reload()?;
        let bg = db.clone();
        let handle = std::thread::Builder::new()
            .name("mvcc-compactor".into())
            .spawn(move || compactor_loop(bg, rx))
            .map_err(KvError::internal)?;
        *store
            .compactor_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(handle);
        let st = store.state();
        let physical: i64 = store.meta(KEY_COMPACTED_PHYSICALLY)?.unwrap_or(0);
        if st.revs.compacted > physical {
            let _ = store.compactor.send(st.revs.compacted);
        }
        Ok(store)
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, KvError> {
        match self.db.get_cf(cf(&self.db, CF_META), key)? {
            Some(v) => decode(&v)
                .map(Some)
                .map_err(|e| KvError::Internal(format!("storage: meta: {e}"))),
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
                    .map_err(|_| KvError::internal("bad member row"))?,
            );
            members.insert(id, decode(v).map_err(KvError::internal)?);
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
        db_size(&self.db)
    }

    /// Applies one entry; returns its result and the events it produced, in order.
    fn apply_entry(&self, entry: Entry) -> Result<(Applied, Vec<RevisionEvents>), KvError> {
        let mut events = Vec::new();
        let applied = match entry.payload {
            EntryPayload::Normal(Command::Batch(cmds)) if !cmds.is_empty() => {
                // A crash in the middle of a batch leaves `KEY_PARTIAL` naming the last
                // command applied; re-applying the entry skips those.
                let done: Option<(u64, usize)> = self.meta(KEY_PARTIAL)?;
                let skip = match done {
                    Some((index, sub)) if index == entry.log_id.index => sub + 1,
                    _ => 0,
                };
                let last = cmds.len() - 1;
                let mut results = Vec::with_capacity(cmds.len());
                for (i, cmd) in cmds.into_iter().enumerate() {
                    if i < skip {
                        let revision = self.revisions().current;
                        results.push(Applied {
                            revision,
                            output: Err(KvError::internal("applied before a restart")),
                        });
                        continue;
                    }
                    let progress = if i == last {
                        Progress::Done
                    } else {
                        Progress::Partial(i)
                    };
                    let (a, ev) = self.apply_step(entry.log_id, Step::Command(cmd), progress)?;
                    events.extend(ev);
                    results.push(a);
                }
                let revision = self.revisions().current;
                Applied {
                    revision,
                    output: Ok(Output::Batch(results)),
                }
            }
            EntryPayload::Normal(cmd) => {
                let (a, ev) = self.apply_step(entry.log_id, Step::Command(cmd), Progress::Done)?;
                events.extend(ev);
                a
            }
            EntryPayload::Blank => {
                self.apply_step(entry.log_id, Step::Blank, Progress::Done)?
                    .0
            }
            EntryPayload::Membership(m) => {
                self.apply_step(entry.log_id, Step::Membership(m), Progress::Done)?
                    .0
            }
        };
        Ok((applied, events))
    }

    /// Applies one step in one write batch. `Progress::Done` completes the entry (records it
    /// as applied); `Partial(i)` records that command `i` of a batch entry is applied.
    fn apply_step(
        &self,
        log_id: LogId,
        step: Step,
        progress: Progress,
    ) -> Result<(Applied, Option<RevisionEvents>), KvError> {
        let mut st = self.state();
        let mut batch = WriteBatch::default();
        let meta = cf(&self.db, CF_META);
        let mut events = None;
        let mut after: AfterApply = None;
        let output = match step {
            Step::Blank => Ok(Output::Done),
            Step::Membership(m) => {
                st.membership = StoredMembership::new(Some(log_id), m);
                batch.put_cf(meta, KEY_MEMBERSHIP, encode(&st.membership));
                info!(log_index = log_id.index, membership = ?st.membership.membership(), "membership changed");
                Ok(Output::Done)
            }
            Step::Command(cmd) => {
                self.apply_command(cmd, &mut st, &mut batch, &mut events, &mut after)
            }
        };
        match progress {
            Progress::Done => {
                st.applied = Some(log_id);
                batch.put_cf(meta, KEY_APPLIED, encode(&st.applied));
                batch.delete_cf(meta, KEY_PARTIAL);
            }
            Progress::Partial(i) => batch.put_cf(meta, KEY_PARTIAL, encode(&(log_id.index, i))),
        }
        batch.put_cf(meta, KEY_REVS, encode(&st.revs));
        self.db.write(batch)?;
        let revision = st.revs.current;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = st;
        if let Some(f) = after {
            f(self);
        }
        Ok((Applied { revision, output }, events))
    }

    fn apply_command(
        &self,
        cmd: Command,
        st: &mut SmState,
        batch: &mut WriteBatch,
        events: &mut Option<RevisionEvents>,
        after: &mut AfterApply,
    ) -> Result<Output, KvError> {
        let nospace = st.alarms.iter().any(|(_, a)| *a == ALARM_NOSPACE);
        match cmd {
            Command::Txn(Pb(t)) => {
                if nospace && txn_has_put(&t) {
                    return Err(KvError::NoSpace);
                }
                let outcome = txn::execute(&self.view(), st.revs, &t)?;
                self.record_changes(st, batch, events, &outcome);
                Ok(Output::Txn(Pb(outcome.response)))
            }
            Command::Compact { revision } => {
                if revision <= st.revs.compacted {
                    return Err(KvError::Compacted {
                        compact_revision: st.revs.compacted,
                    });
                }
                if revision > st.revs.current {
                    return Err(KvError::FutureRevision);
                }
                st.revs.compacted = revision;
                let tx = self.compactor.clone();
                *after = Some(Box::new(move |_| {
                    let _ = tx.send(revision);
                }));
                info!(revision, "compacted");
                Ok(Output::Done)
            }
            Command::LeaseGrant { id, ttl } => {
                if nospace {
                    return Err(KvError::NoSpace);
                }
                if self.view().lease(id)?.is_some() {
                    return Err(KvError::LeaseExists);
                }
                mvcc_store::put_lease(&self.db, batch, id, LeaseRecord { ttl });
                *after = Some(Box::new(move |s| s.lessor.granted(id, ttl)));
                Ok(Output::LeaseGranted { id, ttl })
            }
            Command::LeaseRevoke { id } => {
                let view = self.view();
                if view.lease(id)?.is_none() {
                    return Err(KvError::LeaseNotFound);
                }
                let keys = view.lease_keys(id)?;
                let t = TxnRequest {
                    success: keys
                        .into_iter()
                        .map(|key| RequestOp {
                            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                                key,
                                ..Default::default()
                            })),
                        })
                        .collect(),
                    ..Default::default()
                };
                let outcome = txn::execute(&view, st.revs, &t)?;
                drop(view);
                self.record_changes(st, batch, events, &outcome);
                mvcc_store::delete_lease(&self.db, batch, id);
                *after = Some(Box::new(move |s| s.lessor.revoked(id)));
                Ok(Output::Done)
            }
            Command::Alarm {
                action,
                member_id,
                alarm,
            } => {
                match action {
                    1 if !st.alarms.contains(&(member_id, alarm)) => {
                        warn!(member = %format!("{member_id:x}"), alarm, "alarm raised");
                        st.alarms.push((member_id, alarm));
                    }
                    2 => {
                        let before = st.alarms.len();
                        st.alarms
                            .retain(|a| !(a.0 == member_id && (alarm == 0 || a.1 == alarm)));
                        if st.alarms.len() != before {
                            info!(member = %format!("{member_id:x}"), alarm, "alarm cleared");
                        }
                    }
                    _ => {}
                }
                batch.put_cf(cf(&self.db, CF_META), KEY_ALARMS, encode(&st.alarms));
                Ok(Output::Alarms(st.alarms.clone()))
            }
            Command::Batch(_) => Err(KvError::internal("a batch inside a batch")),
            Command::PublishMember {
                id,
                name,
                client_urls,
            } => {
                let attrs = MemberAttrs { name, client_urls };
                let mut key = MEMBER_PREFIX.to_vec();
                key.extend_from_slice(&id.to_be_bytes());
                batch.put_cf(cf(&self.db, CF_META), key, encode(&attrs));
                info!(member = %format!("{id:x}"), name = %attrs.name, "member published");
                st.members.insert(id, attrs);
                Ok(Output::Done)
            }
        }
    }

    fn record_changes(
        &self,
        st: &mut SmState,
        batch: &mut WriteBatch,
        events: &mut Option<RevisionEvents>,
        outcome: &txn::TxnOutcome,
    ) {
        if outcome.changes.is_empty() {
            return;
        }
        mvcc_store::write_changes(&self.db, batch, &outcome.changes, outcome.revision);
        st.revs.current = outcome.revision;
        *events = Some(RevisionEvents {
            revision: outcome.revision,
            events: outcome
                .changes
                .iter()
                .map(|c| HistoryEvent {
                    revision: outcome.revision,
                    kind: c.kind,
                    kv: c.kv.clone(),
                    prev: c.prev.clone(),
                })
                .collect(),
        });
    }
}

fn txn_has_put(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| match &op.request {
            Some(Request::RequestPut(_)) => true,
            Some(Request::RequestTxn(inner)) => txn_has_put(inner),
            _ => false,
        })
}

fn compactor_loop(db: Arc<DB>, rx: mpsc::Receiver<i64>) {
    while let Ok(mut rev) = rx.recv() {
        while let Ok(newer) = rx.try_recv() {
            rev = rev.max(newer);
        }
        match compact_physically(&db, rev) {
            Ok(removed) => {
                let _ = db.put_cf(cf(&db, CF_META), KEY_COMPACTED_PHYSICALLY, encode(&rev));
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

pub struct SnapshotBuilder {
    store: Arc<Store>,
    snap_dir: PathBuf,
}

/// A snapshot's data file is named by its ID, and `snapshot.meta` names the current one:
/// replacing the meta file switches snapshots atomically.
fn data_path(dir: &std::path::Path, id: &str) -> PathBuf {
    dir.join(format!("snapshot-{id}.data"))
}
fn meta_path(dir: &std::path::Path) -> PathBuf {
    dir.join("snapshot.meta")
}
fn incoming_path(dir: &std::path::Path) -> PathBuf {
    dir.join("incoming.tmp")
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let store = self.store.clone();
        let dir = self.snap_dir.clone();
        let (meta, file) = tokio::task::spawn_blocking(
            move || -> Result<(SnapshotMeta, std::fs::File), StorageError> {
                let db = &store.db;
                let snap = store.consistent_snapshot();
                let get = |k: &[u8]| {
                    snap.get_cf(cf(db, CF_META), k)
                        .map_err(|e| sm_err(ErrorVerb::Read, e))
                };
                let applied: Option<LogId> = match get(KEY_APPLIED)? {
                    Some(v) => decode(&v).map_err(|e| sm_err(ErrorVerb::Read, e))?,
                    None => None,
                };
                let membership: StoredMembership = match get(KEY_MEMBERSHIP)? {
                    Some(v) => decode(&v).map_err(|e| sm_err(ErrorVerb::Read, e))?,
                    None => StoredMembership::default(),
                };
                let tmp = dir.join("building.tmp");
                let rows =
                    snapshot::write(db, &snap, &tmp).map_err(|e| sm_err(ErrorVerb::Write, e))?;
                let id = match applied {
                    Some(l) => {
                        format!("{}-{}-{}", l.leader_id.term, l.index, rand::random::<u32>())
                    }
                    None => format!("0-0-{}", rand::random::<u32>()),
                };
                let meta = SnapshotMeta {
                    last_log_id: applied,
                    last_membership: membership,
                    snapshot_id: id,
                };
                let current = publish_snapshot(&store, &dir, &tmp, &meta)
                    .map_err(|e| sm_err(ErrorVerb::Write, e))?;
                info!(snapshot = %meta.snapshot_id, rows, "snapshot built");
                Ok(current)
            },
        )
        .await
        .map_err(|e| sm_err(ErrorVerb::Write, e))??;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        })
    }
}

/// Makes a complete snapshot file the current snapshot, unless a newer one already is
/// (a build and an install may finish in either order), and returns the current snapshot
/// opened: a data file is only removed under the same lock, so the handle stays valid.
fn publish_snapshot(
    store: &Store,
    dir: &std::path::Path,
    data: &std::path::Path,
    meta: &SnapshotMeta,
) -> std::io::Result<(SnapshotMeta, std::fs::File)> {
    let _serial = store.snap_lock.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((current, file)) = open_current(dir)? {
        if current.last_log_id > meta.last_log_id {
            std::fs::remove_file(data)?;
            return Ok((current, file));
        }
    }
    let path = data_path(dir, &meta.snapshot_id);
    std::fs::rename(data, &path)?;
    let tmp = dir.join("meta.tmp");
    super::db::write_synced(&tmp, &encode(meta))?;
    std::fs::rename(&tmp, meta_path(dir))?;
    sync_dir(dir)?;
    let file = std::fs::File::open(&path)?;
    let keep = format!("snapshot-{}.data", meta.snapshot_id);
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("snapshot-") && name.ends_with(".data") && name != keep {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok((meta.clone(), file))
}

/// The current snapshot's metadata and data, opened; call with `snap_lock` held.
fn open_current(dir: &std::path::Path) -> std::io::Result<Option<(SnapshotMeta, std::fs::File)>> {
    let meta: SnapshotMeta = match std::fs::read(meta_path(dir)) {
        Ok(b) => decode(&b).map_err(std::io::Error::other)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let file = std::fs::File::open(data_path(dir, &meta.snapshot_id))?;
    Ok(Some((meta, file)))
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let st = self.store.state();
        Ok((st.applied, st.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut out = Vec::new();
        for entry in entries {
            let (applied, events) = self
                .store
                .apply_entry(entry)
                .map_err(|e| sm_err(ErrorVerb::Write, e))?;
            for ev in events {
                self.store.hub.publish(HubMsg::Events(Arc::new(ev)));
            }
            out.push(applied);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: self.store.clone(),
            snap_dir: self.snap_dir.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        // Read and write: openraft writes the chunks, `install_snapshot` reads them back.
        let f = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(incoming_path(&self.snap_dir))
            .await
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        Ok(Box::new(f))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        // The data is whatever the handle holds (normally `incoming.tmp`, but openraft may
        // hand over any snapshot file): copy it to a file of our own first.
        let mut file = snapshot.into_std().await;
        let store = self.store.clone();
        let dir = self.snap_dir.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || -> Result<(), StorageError> {
            let incoming = dir.join("received.tmp");
            {
                use std::io::{Seek, SeekFrom};
                file.seek(SeekFrom::Start(0)).map_err(|e| sm_err(ErrorVerb::Read, e))?;
                let mut out = std::fs::File::create(&incoming).map_err(|e| sm_err(ErrorVerb::Write, e))?;
                std::io::copy(&mut file, &mut out).map_err(|e| sm_err(ErrorVerb::Write, e))?;
                out.sync_all().map_err(|e| sm_err(ErrorVerb::Write, e))?;
            }
            drop(file);
            let db = &store.db;
            snapshot::verify(&incoming).map_err(|e| sm_err(ErrorVerb::Read, e))?;
            let mut sync = WriteOptions::default();
            sync.set_sync(true);
            // No reader sees the database between the first row replaced and the reload.
            let installing = store.install_lock.write().unwrap_or_else(|p| p.into_inner());
            let mut mark = WriteBatch::default();
            mark.put_cf(cf(db, CF_META), KEY_INSTALLING, []);
            db.write_opt(mark, &sync).map_err(|e| sm_err(ErrorVerb::Write, e))?;
            let rows = snapshot::load(db, &incoming).map_err(|e| sm_err(ErrorVerb::Write, e))?;
            let mut done = WriteBatch::default();
            done.put_cf(cf(db, CF_META), KEY_APPLIED, encode(&meta.last_log_id));
            done.put_cf(cf(db, CF_META), KEY_MEMBERSHIP, encode(&meta.last_membership));
            done.delete_cf(cf(db, CF_META), KEY_INSTALLING);
            db.write_opt(done, &sync).map_err(|e| sm_err(ErrorVerb::Write, e))?;
            publish_snapshot(&store, &dir, &incoming, &meta).map_err(|e| sm_err(ErrorVerb::Write, e))?;
            let _ = std::fs::remove_file(incoming_path(&dir));
            store.reload().map_err(|e| sm_err(ErrorVerb::Read, e))?;
            drop(installing);
            let st = store.state();
            let physical: i64 = store.meta(KEY_COMPACTED_PHYSICALLY).ok().flatten().unwrap_or(0);
            if st.revs.compacted > physical {
                let _ = store.compactor.send(st.revs.compacted);
            }
            info!(snapshot = %meta.snapshot_id, rows, revision = st.revs.current, "snapshot installed");
            Ok(())
        })
        .await
        .map_err(|e| sm_err(ErrorVerb::Write, e))??;
        self.store.hub.publish(HubMsg::Reset);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let store = self.store.clone();
        let dir = self.snap_dir.clone();
        let current = tokio::task::spawn_blocking(move || {
            let _serial = store.snap_lock.lock().unwrap_or_else(|p| p.into_inner());
            open_current(&dir)
        })
        .await
        .map_err(|e| sm_err(ErrorVerb::Read, e))?
        .map_err(|e| sm_err(ErrorVerb::Read, e))?;
        Ok(current.map(|(meta, file)| Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        }))
    }
}
