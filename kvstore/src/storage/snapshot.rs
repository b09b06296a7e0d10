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
//! Maintenance.Snapshot streams to a client.

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
    let mut w = CrcWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        crc: crc32fast::Hasher::new(),
    };
    w.write_all(MAGIC)?;
    let mut rows = 0u64;
    for (i, name) in STATE_CFS.iter().enumerate() {
        let mut it = snap.raw_iterator_cf(cf(db, name));
        it.seek_to_first();
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            w.write_all(&[i as u8])?;
            w.write_all(&(k.len() as u32).to_le_bytes())?;
            w.write_all(k)?;
            w.write_all(&(v.len() as u32).to_le_bytes())?;
            w.write_all(v)?;
            rows += 1;
            it.next();
        }
        it.status()?;
    }
    w.write_all(&[END])?;
    let crc = w.crc.clone().finalize();
    let mut inner = w.inner;
    inner.write_all(&crc.to_le_bytes())?;
    let file = inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(rows)
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

fn clear_cf(db: &DB, name: &str) -> Result<(), SnapshotError> {
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
