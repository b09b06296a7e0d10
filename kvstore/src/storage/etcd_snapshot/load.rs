//! Reading an etcd snapshot into the state machine's column families.

use std::fs::File;
use std::path::Path;

use prost::Message;
use rocksdb::{WriteBatch, DB};
use sha2::{Digest, Sha256};

use super::auth::{password_of, perm_kind};
use super::{damaged, parse_rev, LeasePb};
use crate::auth::perms::Perm;
use crate::auth::store::{AuthState, Role, User};
use crate::mvcc::keys::{decode_version_key, revision_key, version_key};
use crate::mvcc::{Revisions, INITIAL_REVISION};
use crate::storage::bolt::read::Reader;
use crate::storage::bolt::BoltError;
use crate::storage::db::{cf, decode, encode, CF_KV, CF_LEASE, CF_LEASE_KEYS, CF_META, CF_REV};
use crate::storage::mvcc_store::{lease_key, lease_key_row, LeaseRecord, StoredVersion};
use crate::storage::snapshot::SnapshotError;
use crate::storage::state_machine::{KEY_AUTH, KEY_REVS};

/// What `load` brought over.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Rows of the file.
    pub rows: u64,
    pub revisions: Revisions,
    /// Users whose password was an etcd (bcrypt) hash: they have none now.
    pub users_without_password: Vec<String>,
}

/// Whether the file at `path` is a bolt database (etcd's format) rather than a
/// `FLOTSNAP` one: the meta page's magic at offset 16.
pub fn is_bolt(path: &Path) -> Result<bool, SnapshotError> {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 4];
    let f = File::open(path)?;
    Ok(f.read_exact_at(&mut b, 16).is_ok() && u32::from_le_bytes(b) == 0xED0C_DAED)
}

/// The length of the bolt data in `path` after checking the SHA-256 that ends a snapshot
/// (`etcdctl snapshot restore`'s check: a file of `512n + 32` bytes carries one). A file
/// without one (a copy of a live `member/snap/db`) is refused unless `skip_hash_check`.
pub fn verify(path: &Path, skip_hash_check: bool) -> Result<u64, SnapshotError> {
    use std::io::Read;
    let len = std::fs::metadata(path)?.len();
    if len % 512 != 32 {
        if skip_hash_check {
            return Ok(len);
        }
        return Err(SnapshotError::Bolt(
            "snapshot missing hash but --skip-hash-check=false".into(),
        ));
    }
    let data = len - 32;
    let mut f = std::io::BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut sha = Sha256::new();
    let mut left = data;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        f.read_exact(&mut buf[..n])?;
        sha.update(&buf[..n]);
        left -= n as u64;
    }
    let mut trailer = [0u8; 32];
    f.read_exact(&mut trailer)?;
    if sha.finalize().as_slice() != trailer {
        return Err(SnapshotError::Bolt(
            "the snapshot's SHA-256 does not match its data".into(),
        ));
    }
    Ok(data)
}

/// Replaces the state machine's column families with an etcd snapshot's data (checked
/// by `verify` first).
pub fn load(db: &DB, path: &Path, skip_hash_check: bool) -> Result<Loaded, SnapshotError> {
    let data = verify(path, skip_hash_check)?;
    let reader = Reader::open(File::open(path)?, data)?;
    for name in crate::storage::db::STATE_CFS {
        crate::storage::snapshot::clear_cf(db, name)?;
    }
    let mut out = Loaded::default();
    let mut batch = WriteBatch::default();
    let (mut last_main, mut compacted) = (INITIAL_REVISION, 0i64);
    let mut auth = AuthState::default();
    reader.for_each(|bucket, k, v| {
        out.rows += 1;
        let bad = |what: &'static str| {
            BoltError::Invalid(format!(
                "{what} in bucket {}",
                String::from_utf8_lossy(bucket)
            ))
        };
        match bucket {
            b"key" => {
                let (main, sub, tombstone) =
                    parse_rev(k).ok_or_else(|| bad("a bad revision key"))?;
                let kv = proto::mvccpb::KeyValue::decode(v).map_err(|_| bad("a bad KeyValue"))?;
                if kv.key.is_empty() {
                    return Err(bad("a KeyValue without its key"));
                }
                let stored = if tombstone {
                    StoredVersion::tombstone()
                } else {
                    StoredVersion::of(&kv)
                };
                batch.put_cf(cf(db, CF_KV), version_key(&kv.key, main), encode(&stored));
                batch.put_cf(cf(db, CF_REV), revision_key(main, sub), &kv.key);
                last_main = last_main.max(main);
            }
            b"lease" => {
                let id = i64::from_be_bytes(k.try_into().map_err(|_| bad("a bad lease id"))?);
                let pb = LeasePb::decode(v).map_err(|_| bad("a bad Lease"))?;
                batch.put_cf(
                    cf(db, CF_LEASE),
                    lease_key(id),
                    encode(&LeaseRecord { ttl: pb.ttl }),
                );
            }
            b"meta" if k == b"finishedCompactRev" => {
                compacted = parse_rev(v)
                    .ok_or_else(|| bad("a bad compaction revision"))?
                    .0;
            }
            b"auth" if k == b"authEnabled" => auth.enabled = v.first() == Some(&1),
            b"auth" if k == b"authRevision" => {
                auth.revision =
                    u64::from_be_bytes(v.try_into().map_err(|_| bad("a bad revision"))?);
            }
            b"authUsers" => {
                let pb = proto::authpb::User::decode(v).map_err(|_| bad("a bad User"))?;
                let name = String::from_utf8(pb.name).map_err(|_| bad("a user name not UTF-8"))?;
                let password = password_of(&pb.password);
                if password.is_none() && !pb.password.is_empty() {
                    out.users_without_password.push(name.clone());
                }
                let mut roles = pb.roles;
                roles.sort();
                roles.dedup();
                auth.users.insert(name, User { password, roles });
            }
            b"authRoles" => {
                let pb = proto::authpb::Role::decode(v).map_err(|_| bad("a bad Role"))?;
                let name = String::from_utf8(pb.name).map_err(|_| bad("a role name not UTF-8"))?;
                let mut perms = pb
                    .key_permission
                    .into_iter()
                    .map(|p| {
                        Some(Perm {
                            kind: perm_kind(p.perm_type)?,
                            key: p.key,
                            range_end: p.range_end,
                        })
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("a bad permission type"))?;
                perms.sort_by(|a, b| (&a.key, &a.range_end).cmp(&(&b.key, &b.range_end)));
                perms.dedup_by(|a, b| (&a.key, &a.range_end) == (&b.key, &b.range_end));
                auth.roles.insert(name, Role { perms });
            }
            _ => {}
        }
        if batch.size_in_bytes() > 4 << 20 {
            db.write(std::mem::take(&mut batch))
                .map_err(|e| BoltError::Store(e.to_string()))?;
        }
        Ok(())
    })?;
    out.revisions = Revisions {
        current: last_main.max(compacted),
        compacted,
    };
    batch.put_cf(cf(db, CF_META), KEY_REVS, encode(&out.revisions));
    batch.put_cf(cf(db, CF_META), KEY_AUTH, encode(&auth));
    db.write(batch)?;
    attach_leases(db)?;
    Ok(out)
}

/// Attaches each key whose newest version is live and leased to its lease, when the lease
/// exists (etcd leaves a key of a missing lease unattached too).
fn attach_leases(db: &DB) -> Result<(), SnapshotError> {
    let mut it = db.raw_iterator_cf(cf(db, CF_KV));
    it.seek_to_first();
    let mut batch = WriteBatch::default();
    let mut last: Option<Vec<u8>> = None;
    while it.valid() {
        let (Some(k), Some(v)) = (it.key(), it.value()) else {
            break;
        };
        let (key, _) = decode_version_key(k).ok_or(damaged("a version key"))?;
        if last.as_deref() != Some(key.as_slice()) {
            let stored: StoredVersion = decode(v).map_err(|_| damaged("a version row"))?;
            if !stored.tombstone
                && stored.lease != 0
                && db
                    .get_cf(cf(db, CF_LEASE), lease_key(stored.lease))?
                    .is_some()
            {
                batch.put_cf(cf(db, CF_LEASE_KEYS), lease_key_row(stored.lease, &key), []);
                if batch.size_in_bytes() > 4 << 20 {
                    db.write(std::mem::take(&mut batch))?;
                }
            }
            last = Some(key);
        }
        it.next();
    }
    it.status()?;
    db.write(batch)?;
    Ok(())
}
