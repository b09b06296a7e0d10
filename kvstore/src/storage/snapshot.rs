//! The snapshot file: every row of the state machine's column families, read from one
//! consistent RocksDB snapshot, then a CRC32 of everything before it.
//!
//! ```text
//! "FLOTSNAP" u8(version=1)
//! { u8(cf index) u32le(key len) key u32le(value len) value }*
//! u8(0xFF) u32le(crc32 of all preceding bytes)
//! ```
//!
//! The same file is what Raft ships to a lagging member, in chunks, and what
//! Maintenance.Snapshot streams to a client (`server::snapshot_stream`, which produces
//! it with `write_to` straight into the response stream, its length known beforehand
//! from `encoded_len`, and never writes it to disk).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use rocksdb::{WriteBatch, DB};

use super::db::{cf, STATE_CFS};

const MAGIC: &[u8; 9] = b"FLOTSNAP\x01";
const END: u8 = 0xFF;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("snapshot storage: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("snapshot is damaged: {0}")]
    Damaged(&'static str),
    #[error("etcd snapshot: {0}")]
    Bolt(String),
}

struct CrcWriter<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the state machine as seen by `snap` to `path` and syncs it.
pub fn write(db: &DB, snap: &rocksdb::Snapshot<'_>, path: &Path) -> Result<u64, SnapshotError> {
    let file = File::create(path)?;
    let (rows, inner) = write_to(db, snap, BufWriter::with_capacity(1 << 20, file))?;
    let file = inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(rows)
}

/// Writes the state machine as seen by `snap` to `out` in the file's format; returns the
/// number of rows and `out` (not flushed).
pub fn write_to<W: Write>(
    db: &DB,
    snap: &rocksdb::Snapshot<'_>,
    out: W,
) -> Result<(u64, W), SnapshotError> {
    let mut w = CrcWriter {
        inner: out,
        crc: crc32fast::Hasher::new(),
    };
    w.write_all(MAGIC)?;
    let mut rows = 0u64;
    for_each_row(db, snap, |i, k, v| {
        w.write_all(&[i])?;
        w.write_all(&field_len(k)?.to_le_bytes())?;
        w.write_all(k)?;
        w.write_all(&field_len(v)?.to_le_bytes())?;
        w.write_all(v)?;
        rows += 1;
        Ok(())
    })?;
    w.write_all(&[END])?;
    let crc = w.crc.clone().finalize();
    let mut inner = w.inner;
    inner.write_all(&crc.to_le_bytes())?;
    Ok((rows, inner))
}

/// The exact length in bytes of what `write_to` produces for `snap`, found by walking
/// the same rows without copying them.
pub fn encoded_len(db: &DB, snap: &rocksdb::Snapshot<'_>) -> Result<u64, SnapshotError> {
    // Magic, then the end marker and the CRC.
    let mut len = (MAGIC.len() + 1 + 4) as u64;
    for_each_row(db, snap, |_, k, v| {
        // Tag, two lengths, the key and the value.
        let row = 1 + 4 + 4 + field_len(k)? as u64 + field_len(v)? as u64;
        len = len
            .checked_add(row)
            .ok_or(SnapshotError::Damaged("snapshot larger than 2^64 bytes"))?;
        Ok(())
    })?;
    Ok(len)
}

/// Every row of the state machine's column families in `snap`, with its family's index.
fn for_each_row(
    db: &DB,
    snap: &rocksdb::Snapshot<'_>,
    mut row: impl FnMut(u8, &[u8], &[u8]) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    for (i, name) in STATE_CFS.iter().enumerate() {
        let tag = u8::try_from(i).map_err(|_| SnapshotError::Damaged("too many families"))?;
        let mut it = snap.raw_iterator_cf(cf(db, name));
        it.seek_to_first();
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            row(tag, k, v)?;
            it.next();
        }
        it.status()?;
    }
    Ok(())
}

/// A key or value length as the file stores it (a row longer than 4 GiB cannot be).
fn field_len(field: &[u8]) -> Result<u32, SnapshotError> {
    u32::try_from(field.len()).map_err(|_| SnapshotError::Damaged("row too large"))
}

/// Checks the file's framing and checksum without loading it.
pub fn verify(path: &Path) -> Result<(), SnapshotError> {
    read_rows(path, |_, _, _| Ok(()))
}

/// Replaces the state machine's column families with the file's rows.
pub fn load(db: &DB, path: &Path) -> Result<u64, SnapshotError> {
    verify(path)?;
    for name in STATE_CFS {
        clear_cf(db, name)?;
    }
    let mut batch = WriteBatch::default();
    let mut rows = 0u64;
    read_rows(path, |i, k, v| {
        batch.put_cf(cf(db, STATE_CFS[i]), k, v);
        rows += 1;
        if batch.size_in_bytes() > 4 << 20 {
            db.write(std::mem::take(&mut batch))?;
        }
        Ok(())
    })?;
    db.write(batch)?;
    Ok(rows)
}

pub(crate) fn clear_cf(db: &DB, name: &str) -> Result<(), SnapshotError> {
    let h = cf(db, name);
    let mut it = db.raw_iterator_cf(h);
    it.seek_to_first();
    let Some(first) = it.key().map(|k| k.to_vec()) else {
        return Ok(());
    };
    it.seek_to_last();
    let Some(last) = it.key().map(|k| k.to_vec()) else {
        return Ok(());
    };
    let mut batch = WriteBatch::default();
    batch.delete_range_cf(h, &first, &last);
    batch.delete_cf(h, &last);
    db.write(batch)?;
    Ok(())
}

fn read_rows(
    path: &Path,
    mut row: impl FnMut(usize, &[u8], &[u8]) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    let file = File::open(path)?;
    // No field is longer than the file: a length that says otherwise is refused before a
    // buffer is sized by it (a snapshot arrives from a peer).
    let meta = file.metadata()?;
    let size = if meta.is_file() { meta.len() } else { u64::MAX };
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut crc = crc32fast::Hasher::new();
    let mut magic = [0u8; 9];
    r.read_exact(&mut magic)
        .map_err(|_| SnapshotError::Damaged("too short"))?;
    if &magic != MAGIC {
        return Err(SnapshotError::Damaged("not a Flotilla snapshot"));
    }
    crc.update(&magic);
    let (mut key, mut value) = (Vec::new(), Vec::new());
    loop {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag)
            .map_err(|_| SnapshotError::Damaged("truncated"))?;
        crc.update(&tag);
        if tag[0] == END {
            break;
        }
        let i = tag[0] as usize;
        if i >= STATE_CFS.len() {
            return Err(SnapshotError::Damaged("unknown column family"));
        }
        read_field(&mut r, &mut crc, &mut key, size)?;
        read_field(&mut r, &mut crc, &mut value, size)?;
        row(i, &key, &value)?;
    }
    let mut want = [0u8; 4];
    r.read_exact(&mut want)
        .map_err(|_| SnapshotError::Damaged("missing checksum"))?;
    if crc.finalize() != u32::from_le_bytes(want) {
        return Err(SnapshotError::Damaged("checksum mismatch"));
    }
    Ok(())
}

fn read_field(
    r: &mut impl Read,
    crc: &mut crc32fast::Hasher,
    buf: &mut Vec<u8>,
    file_size: u64,
) -> Result<(), SnapshotError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)
        .map_err(|_| SnapshotError::Damaged("truncated"))?;
    crc.update(&len);
    let len = u32::from_le_bytes(len) as usize;
    if len > 1 << 30 || len as u64 > file_size {
        return Err(SnapshotError::Damaged("row too large"));
    }
    buf.resize(len, 0);
    r.read_exact(buf)
        .map_err(|_| SnapshotError::Damaged("truncated"))?;
    crc.update(buf);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::db::{DataDir, CF_KV, CF_META};
    use super::*;

    #[test]
    fn encoded_len_is_what_write_to_produces_and_the_bytes_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = DataDir::new(dir.path()).open_db().unwrap();
        for i in 0..300u32 {
            let value = vec![b'v'; (i % 17) as usize];
            db.put_cf(cf(&db, CF_KV), format!("k{i:04}"), &value)
                .unwrap();
        }
        db.put_cf(cf(&db, CF_META), b"m", b"").unwrap();
        let snap = db.snapshot();
        let len = encoded_len(&db, &snap).unwrap();
        let (rows, bytes) = write_to(&db, &snap, Vec::new()).unwrap();
        assert_eq!(rows, 301);
        assert_eq!(len, bytes.len() as u64);
        // The same bytes as the file `write` makes, which `load` accepts.
        let file = dir.path().join("s.snap");
        assert_eq!(write(&db, &snap, &file).unwrap(), 301);
        assert_eq!(std::fs::read(&file).unwrap(), bytes);
        let other = tempfile::tempdir().unwrap();
        let fresh = DataDir::new(other.path()).open_db().unwrap();
        assert_eq!(load(&fresh, &file).unwrap(), 301);
        assert_eq!(
            fresh.get_cf(cf(&fresh, CF_KV), b"k0299").unwrap(),
            Some(vec![b'v'; 299 % 17])
        );
    }
}
