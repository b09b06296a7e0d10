//! Snapshots in etcd's format: the state machine as the bbolt file etcd keeps (`bolt`),
//! with etcd's buckets, so that `etcdctl snapshot status` and `snapshot restore` take a
//! Flotilla backup and `flotilla snapshot-restore` takes etcd's (the way a Kubernetes
//! cluster's data moves over, revisions and all). Format notes:
//! `docs/research/etcd-snapshot-format.md` §3.
//!
//! Written (`plan` then `write_data_to`, two passes over one RocksDB snapshot):
//! - `key`: etcd's history rows, `be64(main) '_' be64(sub)` (`'t'` appended for a delete)
//!   to a `mvccpb.KeyValue`. What survives a compaction at C is what etcd keeps: each
//!   key's newest version at or below C unless it is a delete, then every change after
//!   C. The rows at or below C are ordered by revision in memory (one key per live key
//!   untouched since C); their sub-revisions are their order within the revision (the
//!   originals are gone with the compacted revision index, and nothing reads them).
//! - `meta`: `consistent_index` (the applied log index), `finishedCompactRev` and
//!   `scheduledCompactRev` (C) once something was compacted.
//! - `lease`: `leasepb.Lease{ID, TTL}`; `auth`, `authUsers`, `authRoles`: authpb records.
//!   A password hash is PBKDF2 here and bcrypt in etcd: it is written as
//!   `pbkdf2-sha256$<rounds>$<salt hex>$<hash hex>`, which etcd cannot verify (the user
//!   logs in by certificate or gets a new password) and Flotilla reads back.
//! - `cluster`: `clusterVersion`; `alarm`, `members`, `members_removed` empty (restore
//!   rewrites membership; alarms do not travel).
//!
//! Read (`load`): the same buckets into the column families. Users whose password is an
//! etcd bcrypt hash come over without a password (certificate only) and are named in the
//! result, for the operator to reset. Rows the importer does not know are ignored.

use std::io::Write;

use prost::Message;
use rocksdb::DB;

mod auth;
mod load;

pub use load::{is_bolt, load, verify, Loaded};

use super::bolt::write::{Emitter, Layout, Planner};
use super::bolt::BoltError;
use super::db::{cf, decode, CF_KV, CF_LEASE, CF_META, CF_REV};
use super::mvcc_store::{LeaseRecord, StoredVersion};
use super::snapshot::SnapshotError;
use super::state_machine::{KEY_APPLIED, KEY_AUTH, KEY_REVS};
use crate::auth::store::AuthState;
use crate::mvcc::keys::{decode_revision_key, decode_version_key, revision_key, version_key};
use crate::mvcc::{Revisions, INITIAL_REVISION};
use crate::raft::types::LogId;

/// etcd's buckets, in the order bbolt keeps them.
const BUCKETS: [&str; 10] = [
    "alarm",
    "auth",
    "authRoles",
    "authUsers",
    "cluster",
    "key",
    "lease",
    "members",
    "members_removed",
    "meta",
];

/// `leasepb.Lease`.
#[derive(Clone, PartialEq, Message)]
pub(super) struct LeasePb {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

impl From<BoltError> for SnapshotError {
    fn from(e: BoltError) -> Self {
        match e {
            BoltError::Io(e) => SnapshotError::Io(e),
            other => SnapshotError::Bolt(other.to_string()),
        }
    }
}

pub(super) fn damaged(what: &'static str) -> SnapshotError {
    SnapshotError::Damaged(what)
}

/// etcd's revision key.
fn rev_bytes(main: i64, sub: i64, tombstone: bool) -> Vec<u8> {
    let mut k = Vec::with_capacity(18);
    k.extend_from_slice(&(main as u64).to_be_bytes());
    k.push(b'_');
    k.extend_from_slice(&(sub as u64).to_be_bytes());
    if tombstone {
        k.push(b't');
    }
    k
}

/// The writer's first pass: the file's layout and the rows it keeps from before the
/// compaction, in revision order (what the second pass needs again).
pub struct Prepared {
    pub plan: super::bolt::write::Plan,
    kept: Vec<(i64, Vec<u8>)>,
}

impl Prepared {
    /// The file's length: the bolt data, then its SHA-256.
    pub fn bytes(&self) -> u64 {
        self.plan.bytes().saturating_add(32)
    }
}

struct Source<'a> {
    db: &'a DB,
    snap: &'a rocksdb::Snapshot<'a>,
    revs: Revisions,
}

impl Source<'_> {
    fn meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, SnapshotError> {
        match self.snap.get_cf(cf(self.db, CF_META), key)? {
            None => Ok(None),
            Some(v) => decode(&v).map(Some).map_err(|_| damaged("a meta row")),
        }
    }

    /// Each key's newest version at or below the compaction, if live, by revision.
    fn kept(&self) -> Result<Vec<(i64, Vec<u8>)>, SnapshotError> {
        let c = self.revs.compacted;
        let mut out = Vec::new();
        if c <= INITIAL_REVISION {
            return Ok(out);
        }
        let mut it = self.snap.raw_iterator_cf(cf(self.db, CF_KV));
        it.seek_to_first();
        let mut done: Option<Vec<u8>> = None;
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            let (key, r) = decode_version_key(k).ok_or(damaged("a version key"))?;
            // Versions come newest first within a key.
            if r <= c && done.as_deref() != Some(key.as_slice()) {
                let stored: StoredVersion = decode(v).map_err(|_| damaged("a version row"))?;
                if !stored.tombstone {
                    out.push((r, key.clone()));
                }
                done = Some(key);
            }
            it.next();
        }
        it.status()?;
        out.sort();
        Ok(out)
    }

    fn bucket(
        &self,
        name: &str,
        kept: &[(i64, Vec<u8>)],
        row: &mut dyn FnMut(&[u8], &[u8]) -> Result<(), SnapshotError>,
    ) -> Result<(), SnapshotError> {
        match name {
            "key" => self.key_rows(kept, row),
            "meta" => {
                let applied: Option<LogId> = self.meta::<Option<LogId>>(KEY_APPLIED)?.flatten();
                let index = applied.map_or(0, |l| l.index);
                row(b"consistent_index", &index.to_be_bytes())?;
                let c = self.revs.compacted;
                if c > INITIAL_REVISION {
                    row(b"finishedCompactRev", &rev_bytes(c, 0, false))?;
                    row(b"scheduledCompactRev", &rev_bytes(c, 0, false))?;
                }
                Ok(())
            }
            "lease" => {
                let mut it = self.snap.raw_iterator_cf(cf(self.db, CF_LEASE));
                it.seek_to_first();
                while it.valid() {
                    let (Some(k), Some(v)) = (it.key(), it.value()) else {
                        break;
                    };
                    let id = i64::from_be_bytes(k.try_into().map_err(|_| damaged("a lease id"))?);
                    let rec: LeaseRecord = decode(v).map_err(|_| damaged("a lease row"))?;
                    let pb = LeasePb {
                        id,
                        ttl: rec.ttl,
                        remaining_ttl: 0,
                    };
                    row(k, &pb.encode_to_vec())?;
                    it.next();
                }
                it.status()?;
                Ok(())
            }
            "auth" | "authUsers" | "authRoles" => {
                let auth: AuthState = self.meta(KEY_AUTH)?.unwrap_or_default();
                auth::rows(name, &auth, row)
            }
            "cluster" => row(b"clusterVersion", b"3.5.0"),
            _ => Ok(()),
        }
    }

    fn key_rows(
        &self,
        kept: &[(i64, Vec<u8>)],
        row: &mut dyn FnMut(&[u8], &[u8]) -> Result<(), SnapshotError>,
    ) -> Result<(), SnapshotError> {
        // (main, sub, key) rows whose versions are read together (one MultiGet per batch,
        // several times faster than a point read each).
        let mut batch: Vec<(i64, i64, Vec<u8>)> = Vec::with_capacity(BATCH);
        let (mut last, mut sub) = (i64::MIN, 0i64);
        for (main, key) in kept {
            if *main != last {
                (last, sub) = (*main, 0);
            }
            batch.push((*main, sub, key.clone()));
            sub += 1;
            if batch.len() == BATCH {
                self.emit(&mut batch, row)?;
            }
        }
        self.emit(&mut batch, row)?;
        let mut it = self.snap.raw_iterator_cf(cf(self.db, CF_REV));
        it.seek(revision_key(
            self.revs.compacted.max(0).saturating_add(1),
            0,
        ));
        while it.valid() {
            let (Some(rk), Some(key)) = (it.key(), it.value()) else {
                break;
            };
            let (main, sub) = decode_revision_key(rk).ok_or(damaged("a revision key"))?;
            batch.push((main, sub, key.to_vec()));
            if batch.len() == BATCH {
                self.emit(&mut batch, row)?;
            }
            it.next();
        }
        it.status()?;
        self.emit(&mut batch, row)
    }

    /// The rows of `batch` (emptied) with their versions.
    fn emit(
        &self,
        batch: &mut Vec<(i64, i64, Vec<u8>)>,
        row: &mut dyn FnMut(&[u8], &[u8]) -> Result<(), SnapshotError>,
    ) -> Result<(), SnapshotError> {
        let kv = cf(self.db, CF_KV);
        let keys: Vec<Vec<u8>> = batch.iter().map(|(m, _, k)| version_key(k, *m)).collect();
        let got = self.snap.multi_get_cf(keys.iter().map(|k| (&kv, k)));
        for ((main, sub, key), v) in batch.drain(..).zip(got) {
            let v = v?.ok_or(damaged("a revision without its version"))?;
            let v: StoredVersion = decode(&v).map_err(|_| damaged("a version row"))?;
            let tombstone = v.tombstone;
            let value = if tombstone {
                proto::mvccpb::KeyValue {
                    key,
                    ..Default::default()
                }
            } else {
                v.into_kv(key, main)
            };
            row(&rev_bytes(main, sub, tombstone), &value.encode_to_vec())?;
        }
        Ok(())
    }
}

/// Versions read per MultiGet.
const BATCH: usize = 1024;

fn source<'a>(db: &'a DB, snap: &'a rocksdb::Snapshot<'a>) -> Result<Source<'a>, SnapshotError> {
    let mut s = Source {
        db,
        snap,
        revs: Revisions::default(),
    };
    s.revs = s.meta(KEY_REVS)?.unwrap_or(Revisions {
        current: INITIAL_REVISION,
        compacted: 0,
    });
    Ok(s)
}

/// The first pass: where every page of the file falls.
pub fn plan(db: &DB, snap: &rocksdb::Snapshot<'_>) -> Result<Prepared, SnapshotError> {
    let src = source(db, snap)?;
    let kept = src.kept()?;
    let mut layout = Layout::default();
    for name in BUCKETS {
        let mut p = Planner::default();
        src.bucket(name, &kept, &mut |k, v| Ok(p.push(k, v.len())?))?;
        layout.bucket(name.as_bytes(), p)?;
    }
    Ok(Prepared {
        plan: layout.finish()?,
        kept,
    })
}

/// The second pass: the bolt file `prepared` planned, from the same snapshot. Returns
/// `out` (not flushed).
pub fn write_data_to<W: Write>(
    db: &DB,
    snap: &rocksdb::Snapshot<'_>,
    prepared: &Prepared,
    mut out: W,
) -> Result<W, SnapshotError> {
    let src = source(db, snap)?;
    let mut e = Emitter::start(&prepared.plan, &mut out)?;
    for name in BUCKETS {
        src.bucket(name, &prepared.kept, &mut |k, v| Ok(e.push(k, v)?))?;
        e.end_bucket()?;
    }
    e.finish()?;
    Ok(out)
}

/// `be64(main) '_' be64(sub)`, `'t'` after it for a delete.
pub(super) fn parse_rev(k: &[u8]) -> Option<(i64, i64, bool)> {
    let tombstone = match k.len() {
        17 => false,
        18 if k[17] == b't' => true,
        _ => return None,
    };
    if k[8] != b'_' {
        return None;
    }
    let main = i64::try_from(u64::from_be_bytes(k[..8].try_into().ok()?)).ok()?;
    let sub = i64::try_from(u64::from_be_bytes(k[9..17].try_into().ok()?)).ok()?;
    Some((main, sub, tombstone))
}
