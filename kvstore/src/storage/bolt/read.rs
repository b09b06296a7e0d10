//! Reading a bbolt file page by page (`pread`), trusting nothing in it: the newer valid
//! meta page names the root; the root bucket's tree is walked for the top-level buckets,
//! and each bucket's tree (or inline page) for its rows, in key order. Free pages and the
//! freelist are never read (etcd's files hold stale data in free pages). Every offset is
//! bounded by the pages in use, a page reached twice is an error (a cycle or a shared
//! subtree), trees are at most `MAX_DEPTH` deep, and keys must ascend within a bucket.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;

use super::{BoltError, Meta, BRANCH, BUCKET_LEAF, ELEMENT, HEADER, LEAF, META};

const MAX_DEPTH: usize = 64;

fn invalid(msg: impl Into<String>) -> BoltError {
    BoltError::Invalid(msg.into())
}

fn u16_at(b: &[u8], i: usize) -> Result<u16, BoltError> {
    b.get(i..i + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| invalid("truncated page"))
}

fn u32_at(b: &[u8], i: usize) -> Result<u32, BoltError> {
    b.get(i..i + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| invalid("truncated page"))
}

fn u64_at(b: &[u8], i: usize) -> Result<u64, BoltError> {
    let s = b.get(i..i + 8).ok_or_else(|| invalid("truncated page"))?;
    let mut w = [0u8; 8];
    w.copy_from_slice(s);
    Ok(u64::from_le_bytes(w))
}

/// One open file: its meta and where its data ends (a snapshot's trailer lies beyond).
pub struct Reader {
    file: File,
    page_size: usize,
    meta: Meta,
}

/// What a leaf or branch page holds.
enum Node {
    Leaf(Vec<(u32, Vec<u8>, Vec<u8>)>),
    Branch(Vec<u64>),
}

/// The elements of a leaf or branch page `p` (header included).
fn parse(p: &[u8]) -> Result<Node, BoltError> {
    let flags = u16_at(p, 8)?;
    let count = usize::from(u16_at(p, 10)?);
    let field = |start: u64, len: u64| -> Result<Vec<u8>, BoltError> {
        let end = start
            .checked_add(len)
            .ok_or_else(|| invalid("bad offset"))?;
        let (s, e) = (
            usize::try_from(start).map_err(|_| invalid("bad offset"))?,
            usize::try_from(end).map_err(|_| invalid("bad offset"))?,
        );
        p.get(s..e)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| invalid("an element points past its page"))
    };
    match flags {
        LEAF => {
            let mut rows = Vec::with_capacity(count);
            for i in 0..count {
                let at = HEADER + i * ELEMENT;
                let (fl, pos, ks, vs) = (
                    u32_at(p, at)?,
                    u32_at(p, at + 4)?,
                    u32_at(p, at + 8)?,
                    u32_at(p, at + 12)?,
                );
                let kstart = at as u64 + u64::from(pos);
                let key = field(kstart, u64::from(ks))?;
                let value = field(kstart + u64::from(ks), u64::from(vs))?;
                rows.push((fl, key, value));
            }
            Ok(Node::Leaf(rows))
        }
        BRANCH => {
            let mut kids = Vec::with_capacity(count);
            for i in 0..count {
                let at = HEADER + i * ELEMENT;
                kids.push(u64_at(p, at + 8)?);
            }
            Ok(Node::Branch(kids))
        }
        f => Err(invalid(format!("page of type {f:#x} inside a bucket"))),
    }
}

impl Reader {
    /// Opens a bolt file whose data are the first `len` bytes of `file` (a snapshot's
    /// trailer follows them).
    pub fn open(file: File, len: u64) -> Result<Reader, BoltError> {
        let mut first = [0u8; HEADER + 64];
        file.read_exact_at(&mut first, 0)
            .map_err(|_| invalid("shorter than a meta page"))?;
        let page_size = u32_at(&first, HEADER + 8)? as usize;
        if !(1024..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(invalid(format!("page size {page_size}")));
        }
        let mut metas = Vec::new();
        let mut errors = Vec::new();
        for id in 0..2u64 {
            let mut b = [0u8; HEADER + 64];
            let meta = file
                .read_exact_at(&mut b, id * page_size as u64)
                .map_err(|e| e.to_string())
                .and_then(|()| match u16_at(&b, 8) {
                    Ok(META) => Meta::decode(&b[HEADER..]),
                    _ => Err("not a meta page".into()),
                });
            match meta {
                Ok(m) => metas.push(m),
                Err(e) => errors.push(format!("meta {id}: {e}")),
            }
        }
        let meta = metas
            .into_iter()
            .filter(|m| m.page_size as usize == page_size)
            .max_by_key(|m| m.txid)
            .ok_or_else(|| invalid(errors.join("; ")))?;
        let data = meta
            .pages
            .checked_mul(page_size as u64)
            .ok_or_else(|| invalid("page count overflows"))?;
        if data > len || meta.pages < 2 || meta.root < 2 || meta.root >= meta.pages {
            return Err(invalid(format!(
                "meta names {} pages of {page_size} bytes (root {}) in {len} bytes",
                meta.pages, meta.root
            )));
        }
        Ok(Reader {
            file,
            page_size,
            meta,
        })
    }

    pub fn meta(&self) -> Meta {
        self.meta
    }

    /// Page `id` with its overflow.
    fn page(&self, id: u64) -> Result<Vec<u8>, BoltError> {
        if id < 2 || id >= self.meta.pages {
            return Err(invalid(format!("page {id} out of bounds")));
        }
        let ps = self.page_size as u64;
        let mut head = [0u8; HEADER];
        self.file.read_exact_at(&mut head, id * ps)?;
        if u64_at(&head, 0)? != id {
            return Err(invalid(format!(
                "page {id} names itself {}",
                u64_at(&head, 0)?
            )));
        }
        let overflow = u64::from(u32_at(&head, 12)?);
        let end = id
            .checked_add(1)
            .and_then(|n| n.checked_add(overflow))
            .filter(|e| *e <= self.meta.pages)
            .ok_or_else(|| invalid(format!("page {id} overflows past the data")))?;
        let mut buf = vec![0u8; ((end - id) * ps) as usize];
        self.file.read_exact_at(&mut buf, id * ps)?;
        Ok(buf)
    }

    /// Every row of every top-level bucket, buckets in name order, rows in key order:
    /// `row(bucket, key, value)`. Nested buckets are skipped (etcd has none).
    pub fn for_each(
        &self,
        mut row: impl FnMut(&[u8], &[u8], &[u8]) -> Result<(), BoltError>,
    ) -> Result<(), BoltError> {
        let mut seen = HashSet::new();
        let mut buckets = Vec::new();
        self.walk(self.meta.root, 0, &mut seen, &mut |fl, k, v| {
            if fl & BUCKET_LEAF == 0 {
                return Err(invalid("a plain value at the top level"));
            }
            buckets.push((k, v));
            Ok(())
        })?;
        for (name, header) in buckets {
            let root = u64_at(&header, 0)?;
            let mut last: Option<Vec<u8>> = None;
            let mut each = |fl: u32, k: Vec<u8>, v: Vec<u8>| {
                if last.as_ref().is_some_and(|l| *l >= k) {
                    return Err(invalid(format!(
                        "bucket {}: keys out of order",
                        String::from_utf8_lossy(&name)
                    )));
                }
                if fl & BUCKET_LEAF == 0 {
                    row(&name, &k, &v)?;
                }
                last = Some(k);
                Ok(())
            };
            if root == 0 {
                // Inline: a leaf page after the 16-byte header.
                let page = header.get(16..).ok_or_else(|| invalid("short bucket"))?;
                match parse(page)? {
                    Node::Leaf(rows) => {
                        for (fl, k, v) in rows {
                            each(fl, k, v)?;
                        }
                    }
                    Node::Branch(_) => return Err(invalid("an inline bucket with a branch")),
                }
            } else {
                self.walk(root, 0, &mut seen, &mut each)?;
            }
        }
        Ok(())
    }

    fn walk(
        &self,
        id: u64,
        depth: usize,
        seen: &mut HashSet<u64>,
        each: &mut dyn FnMut(u32, Vec<u8>, Vec<u8>) -> Result<(), BoltError>,
    ) -> Result<(), BoltError> {
        if depth > MAX_DEPTH {
            return Err(invalid("tree deeper than 64 levels"));
        }
        if !seen.insert(id) {
            return Err(invalid(format!("page {id}: multiple references")));
        }
        match parse(&self.page(id)?)? {
            Node::Leaf(rows) => {
                for (fl, k, v) in rows {
                    each(fl, k, v)?;
                }
            }
            Node::Branch(kids) => {
                for kid in kids {
                    self.walk(kid, depth + 1, seen, each)?;
                }
            }
        }
        Ok(())
    }
}
