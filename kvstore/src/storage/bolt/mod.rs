//! bbolt's file format (version 2), the database etcd keeps its state in and streams as
//! its snapshot: enough of it to write a file that etcd's tools open (`write.rs`) and to
//! read one etcd wrote (`read.rs`). Pure over byte buffers and `Read`/`Write`; the format
//! is described in `docs/research/etcd-snapshot-format.md` (§2).
//!
//! - A file is pages of `PAGE_SIZE` bytes (what etcd uses on amd64; a reader takes the
//!   size from the meta page). Pages 0 and 1 are meta pages; the one with the higher
//!   transaction id and a valid checksum names the root bucket's page and how many pages
//!   are in use.
//! - Every page starts with a 16-byte header: id, flags (branch, leaf, meta, freelist),
//!   element count and how many more pages it spans (`overflow`): a leaf holding a large
//!   value is one page run long.
//! - A bucket is a B+tree of leaf and branch pages; the root bucket's leaf elements are
//!   the top-level buckets, each value a 16-byte header whose first word is the bucket's
//!   root page (0 for an inline bucket: a leaf page inside the value itself).
//!
//! All integers of the format are little-endian.

pub mod read;
pub mod write;

pub const PAGE_SIZE: usize = 4096;
pub(crate) const HEADER: usize = 16;
pub(crate) const ELEMENT: usize = 16;
pub(crate) const BRANCH: u16 = 0x01;
pub(crate) const LEAF: u16 = 0x02;
pub(crate) const META: u16 = 0x04;
pub(crate) const FREELIST: u16 = 0x10;
/// A leaf element whose value is a nested bucket.
pub const BUCKET_LEAF: u32 = 0x01;
pub(crate) const MAGIC: u32 = 0xED0C_DAED;
pub(crate) const VERSION: u32 = 2;
/// `meta.freelist` when no freelist page was written.
pub const NO_FREELIST: u64 = u64::MAX;
/// bbolt's largest key.
pub const MAX_KEY: usize = 32_768;
/// Elements in one page: the header's count is a u16, and 0xFFFF has a meaning of its own
/// in freelist pages.
pub(crate) const MAX_ELEMENTS: usize = 0xFFFE;

#[derive(Debug, thiserror::Error)]
pub enum BoltError {
    #[error("bolt i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a valid bolt database: {0}")]
    Invalid(String),
    /// What a reader's callback failed to do with the data read (not the file's fault).
    #[error("storing the data read: {0}")]
    Store(String),
    #[error("bolt key of {0} bytes: keys are 1 to 32768 bytes")]
    KeySize(usize),
    #[error("the data changed between the two passes over it: {0}")]
    Changed(&'static str),
}

/// FNV-1a, 64 bits: the meta page's checksum.
pub(crate) fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The meta fields this crate reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub page_size: u32,
    /// The root bucket's root page.
    pub root: u64,
    pub freelist: u64,
    /// Pages in use: the first page id past the data.
    pub pages: u64,
    pub txid: u64,
}

impl Meta {
    /// The meta body (after the page header): 64 bytes, the last 8 the checksum of the
    /// first 56.
    pub(crate) fn encode(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&VERSION.to_le_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        // flags (4 bytes) 0, then the root bucket's header: root page and sequence 0.
        b[16..24].copy_from_slice(&self.root.to_le_bytes());
        b[32..40].copy_from_slice(&self.freelist.to_le_bytes());
        b[40..48].copy_from_slice(&self.pages.to_le_bytes());
        b[48..56].copy_from_slice(&self.txid.to_le_bytes());
        let sum = fnv1a64(&b[..56]);
        b[56..64].copy_from_slice(&sum.to_le_bytes());
        b
    }

    /// The meta of a body written by `encode`, when its magic, version and checksum hold.
    pub(crate) fn decode(b: &[u8]) -> Result<Meta, String> {
        let b: &[u8; 64] = b
            .get(..64)
            .and_then(|s| s.try_into().ok())
            .ok_or("short meta page")?;
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        if u32_at(0) != MAGIC {
            return Err("bad magic".into());
        }
        if u32_at(4) != VERSION {
            return Err(format!("format version {}, want 2", u32_at(4)));
        }
        if u64_at(56) != fnv1a64(&b[..56]) {
            return Err("meta checksum mismatch".into());
        }
        Ok(Meta {
            page_size: u32_at(8),
            root: u64_at(16),
            freelist: u64_at(32),
            pages: u64_at(40),
            txid: u64_at(48),
        })
    }
}

/// A page header.
pub(crate) fn header(id: u64, flags: u16, count: u16, overflow: u32) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[0..8].copy_from_slice(&id.to_le_bytes());
    h[8..10].copy_from_slice(&flags.to_le_bytes());
    h[10..12].copy_from_slice(&count.to_le_bytes());
    h[12..16].copy_from_slice(&overflow.to_le_bytes());
    h
}

#[cfg(test)]
mod tests;
