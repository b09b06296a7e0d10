//! The MVCC key space in RocksDB: reads at any retained revision over a consistent
//! snapshot (`View`), persisting a Txn's changes, revision-ordered history for watchers,
//! physical compaction and HashKV.

use proto::mvccpb::KeyValue;
use rocksdb::{WriteBatch, DB};
use serde::{Deserialize, Serialize};

use super::db::{cf, decode, encode, CF_KV, CF_LEASE, CF_LEASE_KEYS, CF_REV};
use crate::error::{KvError, StorageFault};
use crate::mvcc::keys::{
    decode_revision_key, decode_version_key, escape, revision_key, version_key,
};
use crate::mvcc::{Change, ChangeKind, MvccRead, RangeEnd};

/// The value stored for one version of a key; the key and mod_revision are in the row key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredVersion {
    pub tombstone: bool,
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
    #[serde(with = "crate::bytes_field")]
    pub value: Vec<u8>,
}

/// [`StoredVersion`] borrowing its value, for writing without a copy: it encodes to the same
/// bytes (serde writes a `Vec<u8>` and a `&[u8]` alike, as a sequence).
#[derive(Serialize)]
struct StoredVersionRef<'a> {
    tombstone: bool,
    create_revision: i64,
    version: i64,
    lease: i64,
    #[serde(serialize_with = "crate::bytes_field::serialize")]
    value: &'a [u8],
}

/// The fields of a [`StoredVersion`] before its value: decoding this from a stored row reads
/// the metadata and skips the value (bincode ignores what follows).
#[derive(Deserialize)]
struct StoredVersionMeta {
    tombstone: bool,
    create_revision: i64,
    version: i64,
    lease: i64,
}

impl StoredVersionMeta {
    fn without_value(self) -> StoredVersion {
        StoredVersion {
            tombstone: self.tombstone,
            create_revision: self.create_revision,
            version: self.version,
            lease: self.lease,
            value: Vec::new(),
        }
    }
}

impl StoredVersion {
    /// A delete's row.
    pub fn tombstone() -> Self {
        StoredVersion {
            tombstone: true,
            create_revision: 0,
            version: 0,
            lease: 0,
            value: Vec::new(),
        }
    }

    /// A put's row: everything of `kv` but its key and mod_revision.
    pub fn of(kv: &KeyValue) -> Self {
        StoredVersion {
            tombstone: false,
            create_revision: kv.create_revision,
            version: kv.version,
            lease: kv.lease,
            value: kv.value.clone(),
        }
    }

    pub fn into_kv(self, key: Vec<u8>, mod_revision: i64) -> KeyValue {
        KeyValue {
            key,
            create_revision: self.create_revision,
            mod_revision,
            version: self.version,
            value: self.value,
            lease: self.lease,
        }
    }
}

fn corrupt(what: &str) -> KvError {
    KvError::Storage(StorageFault::new(format!("malformed {what} row")))
}

/// A lease as the state machine keeps it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaseRecord {
    pub ttl: i64,
}

pub fn lease_key(id: i64) -> [u8; 8] {
    (id as u64).to_be_bytes()
}

pub(crate) fn lease_key_row(id: i64, key: &[u8]) -> Vec<u8> {
    let mut row = lease_key(id).to_vec();
    row.extend_from_slice(key);
    row
}

/// A consistent read view of the key space.
pub struct View<'a> {
    db: &'a DB,
    snap: rocksdb::Snapshot<'a>,
}

impl<'a> View<'a> {
    pub fn new(db: &'a DB) -> Self {
        View {
            db,
            snap: db.snapshot(),
        }
    }

    /// Reads the version row at or below `rev` for `key` with an iterator positioned by the
    /// caller; returns (key, revision, version) when the row belongs to `key`.
    fn version_at(
        it: &mut rocksdb::DBRawIteratorWithThreadMode<'_, DB>,
        key: &[u8],
        rev: i64,
    ) -> Result<Option<(i64, StoredVersion)>, KvError> {
        it.seek(version_key(key, rev));
        if !it.valid() {
            it.status()?;
            return Ok(None);
        }
        let (Some(k), Some(v)) = (it.key(), it.value()) else {
            return Ok(None);
        };
        let (found, r) = decode_version_key(k).ok_or_else(|| corrupt("kv"))?;
        if found != key {
            return Ok(None);
        }
        Ok(Some((r, decode(v).map_err(|_| corrupt("kv"))?)))
    }

    fn iter(&self, name: &str) -> rocksdb::DBRawIteratorWithThreadMode<'_, DB> {
        self.snap.raw_iterator_cf(cf(self.db, name))
    }

    /// The keys attached to a lease.
    pub fn lease_keys(&self, id: i64) -> Result<Vec<Vec<u8>>, KvError> {
        let prefix = lease_key(id);
        let mut it = self.iter(CF_LEASE_KEYS);
        it.seek(prefix);
        let mut out = Vec::new();
        while it.valid() {
            let Some(k) = it.key() else { break };
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(k[8..].to_vec());
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    pub fn lease(&self, id: i64) -> Result<Option<LeaseRecord>, KvError> {
        match self.snap.get_cf(cf(self.db, CF_LEASE), lease_key(id))? {
            Some(v) => Ok(Some(decode(&v).map_err(|_| corrupt("lease"))?)),
            None => Ok(None),
        }
    }

    pub fn leases(&self) -> Result<Vec<(i64, LeaseRecord)>, KvError> {
        let mut it = self.iter(CF_LEASE);
        it.seek_to_first();
        let mut out = Vec::new();
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            let id = u64::from_be_bytes(k.try_into().map_err(|_| corrupt("lease"))?) as i64;
            out.push((id, decode(v).map_err(|_| corrupt("lease"))?));
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// Events of revisions `from..=to` in order, stopping at a revision boundary once at
    /// least `max_events` were read (a revision is never split).
    pub fn history(
        &self,
        from: i64,
        to: i64,
        max_events: usize,
    ) -> Result<Vec<HistoryEvent>, KvError> {
        let mut out: Vec<HistoryEvent> = Vec::new();
        let mut revs = self.iter(CF_REV);
        let mut kv = self.iter(CF_KV);
        revs.seek(revision_key(from, 0));
        while revs.valid() {
            let (Some(rk), Some(key)) = (revs.key(), revs.value()) else {
                break;
            };
            let (main, _sub) = decode_revision_key(rk).ok_or_else(|| corrupt("rev"))?;
            if main > to {
                break;
            }
            if out.len() >= max_events && out.last().is_some_and(|e| e.revision != main) {
                break;
            }
            let key = key.to_vec();
            if let Some((r, v)) = Self::version_at(&mut kv, &key, main)? {
                if r == main {
                    let kind = if v.tombstone {
                        ChangeKind::Delete
                    } else {
                        ChangeKind::Put
                    };
                    let this = if v.tombstone {
                        KeyValue {
                            key: key.clone(),
                            mod_revision: main,
                            ..Default::default()
                        }
                    } else {
                        v.into_kv(key.clone(), main)
                    };
                    // The previous version is the next row of the same key, if live.
                    kv.next();
                    let mut prev = None;
                    if kv.valid() {
                        if let (Some(k), Some(pv)) = (kv.key(), kv.value()) {
                            if let Some((pk, prev_rev)) = decode_version_key(k) {
                                let pv: StoredVersion = decode(pv).map_err(|_| corrupt("kv"))?;
                                if pk == key && !pv.tombstone {
                                    prev = Some(pv.into_kv(pk, prev_rev));
                                }
                            }
                        }
                    }
                    out.push(HistoryEvent {
                        revision: main,
                        kind,
                        kv: this,
                        prev,
                        prev_value_omitted: false,
                    });
                }
            }
            revs.next();
        }
        revs.status()?;
        Ok(out)
    }

    /// CRC32 over every change in revisions `compacted..=rev`: what every member holds
    /// identically once it has applied `rev`, whatever its physical compaction progress.
    pub fn hash(&self, compacted: i64, rev: i64) -> Result<u32, KvError> {
        let mut h = crc32fast::Hasher::new();
        let mut from = compacted.max(0);
        loop {
            let batch = self.history(from, rev, 4096)?;
            let Some(last) = batch.last() else { break };
            let next = last.revision + 1;
            for e in &batch {
                h.update(&e.revision.to_be_bytes());
                h.update(&[e.kind as u8]);
                h.update(&e.kv.key);
                h.update(&e.kv.value);
                h.update(&e.kv.create_revision.to_be_bytes());
                h.update(&e.kv.version.to_be_bytes());
                h.update(&e.kv.lease.to_be_bytes());
            }
            from = next;
        }
        Ok(h.finalize())
    }
}

/// One change read back from history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEvent {
    pub revision: i64,
    pub kind: ChangeKind,
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
    /// `prev` lacks its value (see `Change::prev_value_omitted`).
    pub prev_value_omitted: bool,
}

impl MvccRead for View<'_> {
    fn get(&self, key: &[u8], rev: i64) -> Result<Option<KeyValue>, KvError> {
        let mut it = self.iter(CF_KV);
        Ok(match Self::version_at(&mut it, key, rev)? {
            Some((r, v)) if !v.tombstone => Some(v.into_kv(key.to_vec(), r)),
            _ => None,
        })
    }

    fn scan(
        &self,
        start: &[u8],
        end: &RangeEnd,
        rev: i64,
        visit: &mut dyn FnMut(KeyValue) -> bool,
    ) -> Result<(), KvError> {
        self.scan_versions(start, end, rev, true, visit)
    }

    fn scan_keys(
        &self,
        start: &[u8],
        end: &RangeEnd,
        rev: i64,
        visit: &mut dyn FnMut(KeyValue) -> bool,
    ) -> Result<(), KvError> {
        self.scan_versions(start, end, rev, false, visit)
    }

    fn lease_exists(&self, id: i64) -> Result<bool, KvError> {
        Ok(self.lease(id)?.is_some())
    }
}

impl View<'_> {
    /// `scan`, decoding the values only when `values` is set.
    fn scan_versions(
        &self,
        start: &[u8],
        end: &RangeEnd,
        rev: i64,
        values: bool,
        visit: &mut dyn FnMut(KeyValue) -> bool,
    ) -> Result<(), KvError> {
        let mut it = self.iter(CF_KV);
        it.seek(escape(start));
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            let (key, r) = decode_version_key(k).ok_or_else(|| corrupt("kv"))?;
            if !end.contains(start, &key) {
                break;
            }
            if r > rev {
                // Newer than the read revision: jump to this key's newest version <= rev.
                // If it has none, the seek lands on the next key, handled as usual.
                it.seek(version_key(&key, rev));
                continue;
            }
            let stored: StoredVersion = if values {
                decode(v).map_err(|_| corrupt("kv"))?
            } else {
                // The leading fields only: bincode stops before the value.
                decode::<StoredVersionMeta>(v)
                    .map_err(|_| corrupt("kv"))?
                    .without_value()
            };
            // The row key without its revision: what every older version of `key` starts with.
            let escaped = k[..k.len().saturating_sub(8)].to_vec();
            if !stored.tombstone && !visit(stored.into_kv(key, r)) {
                return Ok(());
            }
            skip_older_versions(&mut it, &escaped);
        }
        it.status()?;
        Ok(())
    }
}

/// Moves `it` from a version of a key (escaped as `escaped`) past that key's older versions.
/// Most keys have one or a few versions, so stepping is tried first: a seek costs several
/// times a step. A key with many versions gets the seek.
fn skip_older_versions(it: &mut rocksdb::DBRawIteratorWithThreadMode<'_, DB>, escaped: &[u8]) {
    const STEPS_BEFORE_SEEK: usize = 4;
    for _ in 0..STEPS_BEFORE_SEEK {
        it.next();
        match it.key() {
            Some(k) if k.len() == escaped.len() + 8 && k.starts_with(escaped) => continue,
            _ => return,
        }
    }
    let mut next = escaped.to_vec();
    next.extend_from_slice(&[0xFF; 8]);
    it.seek(next);
}

/// About the bytes `write_changes` adds to a batch for `changes` (a little more), capped at
/// 1 GiB: what to reserve up front.
pub fn batch_bytes(changes: &[Change]) -> usize {
    const ROW_OVERHEAD: usize = 64;
    let total = changes.iter().fold(0usize, |n, c| {
        let key = c.kv.key.len();
        // The escaped key (at most twice as long, plus its end), the revision, the version
        // record with its value; the revision row and a lease row, each with the plain key.
        n.saturating_add(key.saturating_mul(4))
            .saturating_add(c.kv.value.len())
            .saturating_add(2 * ROW_OVERHEAD)
    });
    total.min(1 << 30)
}

/// Adds a Txn's changes at `rev` to `batch`: the versions, the revision index and the
/// lease attachments.
pub fn write_changes(db: &DB, batch: &mut WriteBatch, changes: &[Change], rev: i64) {
    let (kv_cf, rev_cf, lk_cf) = (cf(db, CF_KV), cf(db, CF_REV), cf(db, CF_LEASE_KEYS));
    for (sub, c) in changes.iter().enumerate() {
        let stored = StoredVersionRef {
            tombstone: c.kind == ChangeKind::Delete,
            create_revision: c.kv.create_revision,
            version: c.kv.version,
            lease: c.kv.lease,
            value: &c.kv.value,
        };
        batch.put_cf(kv_cf, version_key(&c.kv.key, rev), encode(&stored));
        batch.put_cf(rev_cf, revision_key(rev, sub as i64), &c.kv.key);
        let old_lease = c.prev.as_ref().map_or(0, |p| p.lease);
        let new_lease = if c.kind == ChangeKind::Put {
            c.kv.lease
        } else {
            0
        };
        if old_lease != new_lease {
            if old_lease != 0 {
                batch.delete_cf(lk_cf, lease_key_row(old_lease, &c.kv.key));
            }
            if new_lease != 0 {
                batch.put_cf(lk_cf, lease_key_row(new_lease, &c.kv.key), []);
            }
        }
    }
}

pub fn put_lease(db: &DB, batch: &mut WriteBatch, id: i64, rec: LeaseRecord) {
    batch.put_cf(cf(db, CF_LEASE), lease_key(id), encode(&rec));
}

pub fn delete_lease(db: &DB, batch: &mut WriteBatch, id: i64) {
    batch.delete_cf(cf(db, CF_LEASE), lease_key(id));
}

/// Test hook (fault injection): rewrites the value of `key`'s newest version in the data
/// directory of a stopped member, keeping its revisions, as silent corruption of the disk
/// would; returns that version's revision, `None` when the key has no version.
#[doc(hidden)]
pub fn corrupt_value_for_tests(
    data_dir: &std::path::Path,
    key: &[u8],
    value: &[u8],
) -> Result<Option<i64>, String> {
    let db = super::db::DataDir::new(data_dir)
        .open_db()
        .map_err(|e| e.to_string())?;
    let mut it = db.raw_iterator_cf(cf(&db, CF_KV));
    let found = View::version_at(&mut it, key, i64::MAX).map_err(|e| e.to_string())?;
    drop(it);
    let Some((rev, mut stored)) = found else {
        return Ok(None);
    };
    stored.value = value.to_vec();
    db.put_cf(cf(&db, CF_KV), version_key(key, rev), encode(&stored))
        .and_then(|_| db.flush_wal(true))
        .map_err(|e| e.to_string())?;
    Ok(Some(rev))
}

/// Removes what compaction at `rev` makes unreachable: every version older than the newest
/// version at or below `rev` (and that one too if it is a tombstone older than `rev`), and
/// the revision index below `rev`. Runs in batches; safe to repeat after a crash.
pub fn compact_physically(db: &DB, rev: i64) -> Result<u64, KvError> {
    let kv_cf = cf(db, CF_KV);
    let mut removed = 0u64;
    let mut batch = WriteBatch::default();
    let mut it = db.raw_iterator_cf(kv_cf);
    it.seek_to_first();
    // The key whose newest version <= rev has been seen (older ones are garbage).
    let mut kept_for: Option<Vec<u8>> = None;
    while it.valid() {
        let Some(k) = it.key() else { break };
        let (key, r) = decode_version_key(k).ok_or_else(|| corrupt("kv"))?;
        if r <= rev {
            if kept_for.as_deref() == Some(key.as_slice()) {
                batch.delete_cf(kv_cf, k);
                removed += 1;
            } else {
                let tombstone = it
                    .value()
                    .map(|v| {
                        decode::<StoredVersion>(v)
                            .map(|s| s.tombstone)
                            .unwrap_or(false)
                    })
                    .unwrap_or(false);
                if tombstone && r < rev {
                    batch.delete_cf(kv_cf, k);
                    removed += 1;
                }
                kept_for = Some(key);
            }
        }
        if batch.len() >= 10_000 {
            db.write(std::mem::take(&mut batch))?;
        }
        it.next();
    }
    it.status()?;
    batch.delete_range_cf(cf(db, CF_REV), revision_key(0, 0), revision_key(rev, 0));
    db.write(batch)?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_version_encodes_as_the_owned_one() {
        let owned = StoredVersion {
            tombstone: false,
            create_revision: 7,
            version: 3,
            lease: -2,
            value: vec![0, 1, 255, 128],
        };
        let borrowed = StoredVersionRef {
            tombstone: owned.tombstone,
            create_revision: owned.create_revision,
            version: owned.version,
            lease: owned.lease,
            value: &owned.value,
        };
        assert_eq!(encode(&owned), encode(&borrowed));
        // The metadata decodes from the row alone, the value skipped.
        let meta: StoredVersionMeta = decode(&encode(&owned)).unwrap();
        let lean = meta.without_value();
        assert_eq!(
            (
                lean.create_revision,
                lean.version,
                lean.lease,
                lean.value.len()
            ),
            (7, 3, -2, 0)
        );
    }
}
