//! Snapshots of the state machine: building one from a point-in-time copy of the database,
//! installing one received from the leader, and the current one on disk. A snapshot's data
//! file is named by its ID, and `snapshot.meta` names the current one: replacing the meta
//! file switches snapshots atomically.
//!
//! An install marks the database (`KEY_INSTALLING`) before replacing the first row and
//! clears the mark with the new applied position, so an interrupted install is found at the
//! next open; readers are kept out (`install_lock`) until the in-memory state is reloaded.

use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::RaftSnapshotBuilder;
use rocksdb::{WriteBatch, WriteOptions};
use tracing::info;

use super::super::db::{cf, decode, encode, sync_dir, CF_META};
use super::super::snapshot;
use super::{
    sm_err, StateMachine, Store, KEY_APPLIED, KEY_COMPACTED_PHYSICALLY, KEY_INSTALLING,
    KEY_MEMBERSHIP,
};
use crate::raft::types::{
    LogId, Snapshot, SnapshotMeta, SnapshotRecord, StoredMembership, TypeConfig,
};
use crate::watch::hub::HubMsg;

pub struct SnapshotBuilder {
    store: Arc<Store>,
    snap_dir: PathBuf,
}

fn data_path(dir: &std::path::Path, id: &str) -> PathBuf {
    dir.join(format!("snapshot-{id}.data"))
}
fn meta_path(dir: &std::path::Path) -> PathBuf {
    dir.join("snapshot.meta")
}
/// Where a snapshot being received from the leader is written (`raft::snapshot_transfer`).
pub fn incoming_path(dir: &std::path::Path) -> PathBuf {
    dir.join("incoming.tmp")
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = tokio::fs::File;

    async fn build_snapshot(&mut self) -> Result<Snapshot, std::io::Error> {
        let store = self.store.clone();
        let dir = self.snap_dir.clone();
        let (record, file) = tokio::task::spawn_blocking(
            move || -> Result<(SnapshotRecord, std::fs::File), std::io::Error> {
                let db = &store.db;
                let snap = store.consistent_snapshot();
                let get = |k: &[u8]| {
                    snap.get_cf(cf(db, CF_META), k)
                        .map_err(|e| sm_err("reading for a snapshot", e))
                };
                let applied: Option<LogId> = match get(KEY_APPLIED)? {
                    Some(v) => decode(&v).map_err(|e| sm_err("reading for a snapshot", e))?,
                    None => None,
                };
                let membership: StoredMembership = match get(KEY_MEMBERSHIP)? {
                    Some(v) => decode(&v).map_err(|e| sm_err("reading for a snapshot", e))?,
                    None => StoredMembership::default(),
                };
                let tmp = dir.join("building.tmp");
                let rows = snapshot::write(db, &snap, &tmp)
                    .map_err(|e| sm_err("writing a snapshot", e))?;
                let record = SnapshotRecord::new(SnapshotMeta {
                    last_log_id: applied,
                    last_membership: membership,
                });
                let current = publish_snapshot(&store, &dir, &tmp, &record)
                    .map_err(|e| sm_err("publishing a snapshot", e))?;
                info!(snapshot = %record.snapshot_id, rows, "snapshot built");
                Ok(current)
            },
        )
        .await
        .map_err(|e| sm_err("building a snapshot", e))??;
        Ok(Snapshot {
            meta: record.meta(),
            snapshot: tokio::fs::File::from_std(file),
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
    meta: &SnapshotRecord,
) -> std::io::Result<(SnapshotRecord, std::fs::File)> {
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
    super::super::db::write_synced(&tmp, &encode(meta))?;
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
fn open_current(dir: &std::path::Path) -> std::io::Result<Option<(SnapshotRecord, std::fs::File)>> {
    let meta: SnapshotRecord = match std::fs::read(meta_path(dir)) {
        Ok(b) => decode(&b).map_err(std::io::Error::other)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let file = std::fs::File::open(data_path(dir, &meta.snapshot_id))?;
    Ok(Some((meta, file)))
}

impl StateMachine {
    pub(super) fn snapshot_builder(&self) -> SnapshotBuilder {
        SnapshotBuilder {
            store: self.store.clone(),
            snap_dir: self.snap_dir.clone(),
        }
    }

    /// Replaces the whole state with a received snapshot and makes it the current one.
    pub(super) async fn install(
        &self,
        meta: &SnapshotMeta,
        snapshot: tokio::fs::File,
    ) -> Result<(), std::io::Error> {
        // The data is whatever the handle holds (normally `incoming.tmp`, but openraft may
        // hand over any snapshot file): copy it to a file of our own first.
        let mut file = snapshot.into_std().await;
        let store = self.store.clone();
        let dir = self.snap_dir.clone();
        let meta = SnapshotRecord::new(meta.clone());
        tokio::task::spawn_blocking(move || -> Result<(), std::io::Error> {
            let incoming = dir.join("received.tmp");
            {
                use std::io::{Seek, SeekFrom};
                file.seek(SeekFrom::Start(0)).map_err(|e| sm_err("reading a received snapshot", e))?;
                let mut out = std::fs::File::create(&incoming).map_err(|e| sm_err("copying a received snapshot", e))?;
                std::io::copy(&mut file, &mut out).map_err(|e| sm_err("copying a received snapshot", e))?;
                out.sync_all().map_err(|e| sm_err("copying a received snapshot", e))?;
            }
            drop(file);
            let db = &store.db;
            snapshot::verify(&incoming).map_err(|e| sm_err("checking a received snapshot", e))?;
            let mut sync = WriteOptions::default();
            sync.set_sync(true);
            // No reader sees the database between the first row replaced and the reload.
            let installing = store.install_lock.write().unwrap_or_else(|p| p.into_inner());
            let mut mark = WriteBatch::default();
            mark.put_cf(cf(db, CF_META), KEY_INSTALLING, []);
            db.write_opt(mark, &sync).map_err(|e| sm_err("installing a snapshot", e))?;
            let rows = snapshot::load(db, &incoming).map_err(|e| sm_err("installing a snapshot", e))?;
            let mut done = WriteBatch::default();
            done.put_cf(cf(db, CF_META), KEY_APPLIED, encode(&meta.last_log_id));
            done.put_cf(cf(db, CF_META), KEY_MEMBERSHIP, encode(&meta.last_membership));
            done.delete_cf(cf(db, CF_META), KEY_INSTALLING);
            db.write_opt(done, &sync).map_err(|e| sm_err("installing a snapshot", e))?;
            publish_snapshot(&store, &dir, &incoming, &meta).map_err(|e| sm_err("publishing a snapshot", e))?;
            let _ = std::fs::remove_file(incoming_path(&dir));
            store.reload().map_err(|e| sm_err("reloading after a snapshot", e))?;
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
        .map_err(|e| sm_err("installing a snapshot", e))??;
        self.store.hub.publish(HubMsg::Reset);
        Ok(())
    }

    pub(super) async fn current_snapshot(&self) -> Result<Option<Snapshot>, std::io::Error> {
        let store = self.store.clone();
        let dir = self.snap_dir.clone();
        let current = tokio::task::spawn_blocking(move || {
            let _serial = store.snap_lock.lock().unwrap_or_else(|p| p.into_inner());
            open_current(&dir)
        })
        .await
        .map_err(|e| sm_err("opening the current snapshot", e))?
        .map_err(|e| sm_err("opening the current snapshot", e))?;
        Ok(current.map(|(record, file)| Snapshot {
            meta: record.meta(),
            snapshot: tokio::fs::File::from_std(file),
        }))
    }
}
