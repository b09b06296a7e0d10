//! Seeding a new cluster's member from a snapshot file, like `etcdctl snapshot restore`:
//! etcd's format (what Maintenance.Snapshot streams, and what etcd's own
//! `etcdctl snapshot save` writes: `etcd_snapshot`) or the older `FLOTSNAP` file
//! (`snapshot`). The keys, their history since the last compaction and the
//! leases, users and roles (with auth enabled or not) are kept, as etcd keeps them;
//! everything about the old cluster (membership, member names, alarms, applied log
//! position) is dropped, and the member starts a new cluster.

use std::path::Path;

use rocksdb::WriteBatch;

use super::db::{cf, DataDir, DataDirError, Identity, CF_META};
use super::etcd_snapshot;
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

/// What a restore brought over.
#[derive(Debug, Default)]
pub struct Restored {
    pub rows: u64,
    /// Users whose password was an etcd (bcrypt) hash: they have none now, and log in
    /// with a client certificate until given one.
    pub users_without_password: Vec<String>,
}

/// Restores `file` into `cfg`'s new data directory. An etcd-format file must end in its
/// SHA-256 unless `skip_hash_check` (a copy of a live `member/snap/db`).
pub fn restore(
    file: &Path,
    cfg: &KvConfig,
    skip_hash_check: bool,
) -> Result<Restored, RestoreError> {
    let dir = DataDir::new(&cfg.data_dir);
    if dir.identity()?.is_some() {
        return Err(RestoreError::Exists(cfg.data_dir.display().to_string()));
    }
    let snap_err = |cause| RestoreError::Snapshot {
        file: file.display().to_string(),
        cause,
    };
    let bolt = etcd_snapshot::is_bolt(file).map_err(snap_err)?;
    if bolt {
        etcd_snapshot::verify(file, skip_hash_check).map_err(snap_err)?;
    } else {
        snapshot::verify(file).map_err(snap_err)?;
    }
    let db = dir.open_db()?;
    let restored = if bolt {
        let loaded = etcd_snapshot::load(&db, file, skip_hash_check).map_err(snap_err)?;
        Restored {
            rows: loaded.rows,
            users_without_password: loaded.users_without_password,
        }
    } else {
        Restored {
            rows: snapshot::load(&db, file).map_err(snap_err)?,
            users_without_password: Vec::new(),
        }
    };
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
    Ok(restored)
}
