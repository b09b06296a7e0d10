//! Seeding a new cluster's member from a snapshot file (what Maintenance.Snapshot streams),
//! like `etcdctl snapshot restore`: the keys, their history since the last compaction and the
//! leases, users and roles (with auth enabled or not) are kept, as etcd keeps them;
//! everything about the old cluster (membership, member names, alarms, applied log
//! position) is dropped, and the member starts a new cluster.

use std::path::Path;

use rocksdb::WriteBatch;

use super::db::{cf, DataDir, DataDirError, Identity, CF_META};
use super::snapshot::{self, SnapshotError};
use super::state_machine::{
    KEY_ALARMS, KEY_APPLIED, KEY_INSTALLING, KEY_MEMBERSHIP, KEY_PARTIAL, MEMBER_PREFIX,
};
use crate::config::{self, KvConfig};

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("data directory {0} already exists and is not empty; restore needs a new one")]
    Exists(String),
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("snapshot {file}: {cause}")]
    Snapshot { file: String, cause: SnapshotError },
    #[error("writing the restored state: {0}")]
    Rocks(#[from] rocksdb::Error),
}

pub fn restore(file: &Path, cfg: &KvConfig) -> Result<u64, RestoreError> {
    let dir = DataDir::new(&cfg.data_dir);
    if dir.identity()?.is_some() {
        return Err(RestoreError::Exists(cfg.data_dir.display().to_string()));
    }
    let snap_err = |cause| RestoreError::Snapshot {
        file: file.display().to_string(),
        cause,
    };
    snapshot::verify(file).map_err(snap_err)?;
    let db = dir.open_db()?;
    let rows = snapshot::load(&db, file).map_err(snap_err)?;
    let meta = cf(&db, CF_META);
    let mut batch = WriteBatch::default();
    for key in [
        KEY_APPLIED,
        KEY_MEMBERSHIP,
        KEY_ALARMS,
        KEY_INSTALLING,
        KEY_PARTIAL,
    ] {
        batch.delete_cf(meta, key);
    }
    let mut end = MEMBER_PREFIX.to_vec();
    end.push(0xFF);
    batch.delete_range_cf(meta, MEMBER_PREFIX, &end);
    db.write(batch)?;
    db.flush_wal(true)?;
    drop(db);
    let ids: Vec<u64> = cfg
        .initial_cluster
        .iter()
        .map(|(_, urls)| config::member_id(urls, &cfg.token))
        .collect();
    dir.write_identity(&Identity {
        format: super::db::FORMAT.into(),
        name: cfg.name.clone(),
        member_id: config::member_id(&cfg.advertise_peer_urls, &cfg.token),
        cluster_id: config::cluster_id(&ids, &cfg.token),
    })?;
    Ok(rows)
}
