//! The one RocksDB database a member keeps: the Raft log, the vote and the state machine in
//! column families that share a write-ahead log, so one WAL sync makes everything written
//! before it durable (group commit).
//!
//! The data directory also holds `member.json` (who this member is: a foreign or damaged
//! directory is refused before anything joins a cluster) and `snap/` (Raft snapshots).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};
use serde::{Deserialize, Serialize};

/// Raft log entries: be64(index) -> entry.
pub const CF_LOG: &str = "log";
/// Raft's own state: vote, last purged log id.
pub const CF_RAFT: &str = "raft";
/// MVCC versions, see `mvcc::keys`.
pub const CF_KV: &str = "kv";
/// Revision order: be64(main) be64(sub) -> key.
pub const CF_REV: &str = "rev";
/// Leases: be64(id) -> lease record.
pub const CF_LEASE: &str = "lease";
/// Keys attached to leases: be64(id) ++ key -> ().
pub const CF_LEASE_KEYS: &str = "lease_keys";
/// State-machine metadata: applied log id, membership, revisions, alarms, member names.
pub const CF_META: &str = "meta";

/// The state machine's column families: what a snapshot carries.
pub const STATE_CFS: [&str; 5] = [CF_KV, CF_REV, CF_LEASE, CF_LEASE_KEYS, CF_META];
pub(crate) const ALL_CFS: [&str; 7] = [
    CF_LOG,
    CF_RAFT,
    CF_KV,
    CF_REV,
    CF_LEASE,
    CF_LEASE_KEYS,
    CF_META,
];

pub const FORMAT: &str = "flotilla-kvstore/1";

/// Who this data directory belongs to, written when it is first initialised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub format: String,
    pub name: String,
    pub member_id: u64,
    pub cluster_id: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data directory {dir}: {cause}")]
    Io { dir: PathBuf, cause: std::io::Error },
    #[error("data directory {dir} is not a Flotilla kvstore directory (it holds {found}); refusing to start: point --data-dir at an empty or Flotilla directory")]
    Foreign { dir: PathBuf, found: String },
    #[error("data directory {dir} has a damaged member.json ({cause}); refusing to start")]
    BadIdentity { dir: PathBuf, cause: String },
    #[error(
        "data directory {dir} holds format {found}, this build reads {FORMAT}; refusing to start"
    )]
    Format { dir: PathBuf, found: String },
    #[error("data directory {dir}: RocksDB refused to open it ({cause}); refusing to start")]
    Rocks { dir: PathBuf, cause: String },
}

/// Creates `dir` and its missing parents readable by this user only (0700), as etcd
/// creates its data directory; an existing directory is left as it is.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn new(root: &Path) -> Self {
        DataDir {
            root: root.to_path_buf(),
        }
    }

    fn identity_path(&self) -> PathBuf {
        self.root.join("member.json")
    }

    pub fn snap_dir(&self) -> PathBuf {
        self.root.join("snap")
    }

    fn db_path(&self) -> PathBuf {
        self.root.join("db")
    }

    fn io(&self, cause: std::io::Error) -> DataDirError {
        DataDirError::Io {
            dir: self.root.clone(),
            cause,
        }
    }

    /// The identity stored here, `None` for an empty or missing directory, an error for a
    /// directory that is not ours or is damaged.
    pub fn identity(&self) -> Result<Option<Identity>, DataDirError> {
        match std::fs::read(self.identity_path()) {
            Ok(bytes) => {
                let id: Identity =
                    serde_json::from_slice(&bytes).map_err(|e| DataDirError::BadIdentity {
                        dir: self.root.clone(),
                        cause: e.to_string(),
                    })?;
                if id.format != FORMAT {
                    return Err(DataDirError::Format {
                        dir: self.root.clone(),
                        found: id.format,
                    });
                }
                Ok(Some(id))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let entries: Vec<String> = match std::fs::read_dir(&self.root) {
                    Ok(rd) => rd
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => return Err(self.io(e)),
                };
                if entries.is_empty() {
                    Ok(None)
                } else {
                    let mut found = entries;
                    found.sort();
                    found.truncate(5);
                    Err(DataDirError::Foreign {
                        dir: self.root.clone(),
                        found: found.join(", "),
                    })
                }
            }
            Err(e) => Err(self.io(e)),
        }
    }

    /// Records the identity; the file is written and synced before it is renamed into place.
    pub fn write_identity(&self, id: &Identity) -> Result<(), DataDirError> {
        private_dir(&self.root).map_err(|e| self.io(e))?;
        let tmp = self.root.join("member.json.tmp");
        let bytes = serde_json::to_vec_pretty(id).map_err(|e| self.io(std::io::Error::other(e)))?;
        write_synced(&tmp, &bytes).map_err(|e| self.io(e))?;
        std::fs::rename(&tmp, self.identity_path()).map_err(|e| self.io(e))?;
        sync_dir(&self.root).map_err(|e| self.io(e))
    }

    pub fn open_db(&self) -> Result<Arc<DB>, DataDirError> {
        private_dir(&self.snap_dir()).map_err(|e| self.io(e))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_bytes_per_sync(1 << 20);
        opts.set_keep_log_file_num(3);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut cf = Options::default();
            cf.set_compression_type(rocksdb::DBCompressionType::Lz4);
            if *name == CF_LOG {
                // The log is written once and deleted from the front; keep memtables small.
                cf.set_write_buffer_size(32 << 20);
            }
            ColumnFamilyDescriptor::new(*name, cf)
        });
        DB::open_cf_descriptors(&opts, self.db_path(), cfs)
            .map(Arc::new)
            .map_err(|e| DataDirError::Rocks {
                dir: self.root.clone(),
                cause: e.to_string(),
            })
    }
}

pub fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

pub fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    // Every CF in ALL_CFS is created when the database is opened.
    db.cf_handle(name)
        .unwrap_or_else(|| unreachable!("column family {name} is always created"))
}

/// Approximate bytes the state machine takes on disk and in memtables (the Raft log is not
/// counted, as etcd counts its bolt database and not its WAL).
pub fn db_size(db: &DB) -> u64 {
    STATE_CFS
        .iter()
        .map(|name| {
            let h = cf(db, name);
            let sst = db
                .property_int_value_cf(h, "rocksdb.total-sst-files-size")
                .ok()
                .flatten()
                .unwrap_or(0);
            let mem = db
                .property_int_value_cf(h, "rocksdb.size-all-mem-tables")
                .ok()
                .flatten()
                .unwrap_or(0);
            sst + mem
        })
        .sum()
}

/// bincode with the standard configuration, for every value this crate stores or sends.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Encoding plain data into a Vec cannot fail.
    bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap_or_default()
}

pub fn decode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<T, bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard()).map(|(v, _)| v)
}
