//! Writing a bbolt file in two passes over the same data, so that its length is known
//! before its first byte goes out and nothing is buffered but one page: pass one
//! ([`Layout`]) learns from each bucket's keys and value sizes where every page falls;
//! pass two ([`Emitter`]) writes the pages in id order, feeding the same rows again.
//!
//! The layout: meta pages 0 and 1, an empty freelist page 2, then each top-level bucket
//! in name order (its leaves, then its branch levels bottom up), then the root bucket's
//! tree, whose leaf elements hold each bucket's root page. Leaves are packed greedily to
//! one page; an element larger than a page gets a leaf of its own that overflows. No
//! bucket is inline (bbolt reads either form). Every page below the high-water mark is
//! reachable or the freelist, as bbolt's consistency check requires.

use std::io::Write;

use super::{
    header, BoltError, Meta, BRANCH, BUCKET_LEAF, ELEMENT, FREELIST, HEADER, LEAF, MAX_ELEMENTS,
    MAX_KEY, META, PAGE_SIZE,
};

/// Pages a node of `bytes` takes, less one: its header's overflow.
fn overflow(bytes: usize) -> Result<u32, BoltError> {
    u32::try_from(bytes.div_ceil(PAGE_SIZE).saturating_sub(1))
        .map_err(|_| BoltError::Invalid("a node larger than 2^32 pages".into()))
}

fn check_key(key: &[u8]) -> Result<(), BoltError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(BoltError::KeySize(key.len()));
    }
    Ok(())
}

/// One leaf or branch page of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PagePlan {
    pgid: u64,
    count: usize,
    /// Header plus elements plus data.
    bytes: usize,
    first: Vec<u8>,
}

/// Pass one over one bucket: feed every key in order with its value's size.
#[derive(Debug, Default)]
pub struct Planner {
    leaves: Vec<PagePlan>,
    last: Option<Vec<u8>>,
}

impl Planner {
    pub fn push(&mut self, key: &[u8], value_len: usize) -> Result<(), BoltError> {
        check_key(key)?;
        if self.last.as_deref().is_some_and(|l| l >= key) {
            return Err(BoltError::Invalid("keys out of order".into()));
        }
        let size = ELEMENT
            .checked_add(key.len())
            .and_then(|s| s.checked_add(value_len))
            .ok_or_else(|| BoltError::Invalid("value too large".into()))?;
        let fits = self
            .leaves
            .last()
            .is_some_and(|l| l.count < MAX_ELEMENTS && l.count > 0 && l.bytes + size <= PAGE_SIZE);
        if !fits {
            self.leaves.push(PagePlan {
                pgid: 0,
                count: 0,
                bytes: HEADER,
                first: key.to_vec(),
            });
        }
        if let Some(l) = self.leaves.last_mut() {
            l.count += 1;
            l.bytes += size;
        }
        self.last = Some(key.to_vec());
        Ok(())
    }
}

/// Where one bucket's pages fall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreePlan {
    leaves: Vec<PagePlan>,
    /// Branch levels, bottom up; each page's elements are the next `count` pages of the
    /// level below.
    levels: Vec<Vec<PagePlan>>,
    pub root: u64,
}

impl TreePlan {
    /// Gives the planned pages ids from `next` on, leaves first, then each branch level.
    fn allocate(planner: Planner, next: &mut u64) -> Result<TreePlan, BoltError> {
        let mut leaves = planner.leaves;
        if leaves.is_empty() {
            // An empty bucket: one leaf with nothing in it.
            leaves.push(PagePlan {
                pgid: 0,
                count: 0,
                bytes: HEADER,
                first: Vec::new(),
            });
        }
        let mut take = |bytes: usize| -> Result<u64, BoltError> {
            let id = *next;
            *next = next
                .checked_add(1 + u64::from(overflow(bytes)?))
                .ok_or_else(|| BoltError::Invalid("too many pages".into()))?;
            Ok(id)
        };
        for l in &mut leaves {
            l.pgid = take(l.bytes)?;
        }
        let mut levels: Vec<Vec<PagePlan>> = Vec::new();
        loop {
            let below = levels.last().unwrap_or(&leaves);
            if below.len() <= 1 {
                break;
            }
            let mut level: Vec<PagePlan> = Vec::new();
            for child in below {
                let size = ELEMENT + child.first.len();
                let fits = level
                    .last()
                    .is_some_and(|p| p.count < MAX_ELEMENTS && p.bytes + size <= PAGE_SIZE);
                if !fits {
                    level.push(PagePlan {
                        pgid: 0,
                        count: 0,
                        bytes: HEADER,
                        first: child.first.clone(),
                    });
                }
                if let Some(p) = level.last_mut() {
                    p.count += 1;
                    p.bytes += size;
                }
            }
            for p in &mut level {
                p.pgid = take(p.bytes)?;
            }
            levels.push(level);
        }
        let root = levels.last().unwrap_or(&leaves)[0].pgid;
        Ok(TreePlan {
            leaves,
            levels,
            root,
        })
    }
}

/// Pass one over the whole file: the buckets in name order.
#[derive(Debug)]
pub struct Layout {
    next: u64,
    buckets: Vec<(Vec<u8>, TreePlan)>,
}

impl Default for Layout {
    fn default() -> Self {
        // Two meta pages and the freelist.
        Layout {
            next: 3,
            buckets: Vec::new(),
        }
    }
}

/// Where every page of a file falls: what pass two follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    buckets: Vec<(Vec<u8>, TreePlan)>,
    root: TreePlan,
    pages: u64,
}

impl Plan {
    /// The file's length in bytes.
    pub fn bytes(&self) -> u64 {
        self.pages.saturating_mul(PAGE_SIZE as u64)
    }

    pub fn pages(&self) -> u64 {
        self.pages
    }
}

/// A bucket's value in the root bucket: its root page and sequence 0.
fn bucket_header(root: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&root.to_le_bytes());
    v
}

impl Layout {
    /// The next bucket (names ascending), planned from its rows.
    pub fn bucket(&mut self, name: &[u8], rows: Planner) -> Result<(), BoltError> {
        check_key(name)?;
        if self
            .buckets
            .last()
            .is_some_and(|(n, _)| n.as_slice() >= name)
        {
            return Err(BoltError::Invalid("buckets out of order".into()));
        }
        let plan = TreePlan::allocate(rows, &mut self.next)?;
        self.buckets.push((name.to_vec(), plan));
        Ok(())
    }

    pub fn finish(mut self) -> Result<Plan, BoltError> {
        let mut root = Planner::default();
        for (name, _) in &self.buckets {
            root.push(name, 16)?;
        }
        let root = TreePlan::allocate(root, &mut self.next)?;
        Ok(Plan {
            buckets: self.buckets,
            root,
            pages: self.next,
        })
    }
}

/// Pass two: writes `plan`'s pages to `out` in order as the same rows come again.
pub struct Emitter<'p, W: Write> {
    plan: &'p Plan,
    out: W,
    /// The bucket being written and its next leaf.
    bucket: usize,
    leaf: usize,
    rows: Vec<(u32, Vec<u8>, Vec<u8>)>,
    written: u64,
}

impl<'p, W: Write> Emitter<'p, W> {
    /// Writes the meta pages (transaction ids 2 and 1, as a bbolt snapshot's two copies)
    /// and the empty freelist.
    pub fn start(plan: &'p Plan, mut out: W) -> Result<Self, BoltError> {
        let mut written = 0;
        for (id, txid) in [(0u64, 2u64), (1, 1)] {
            let meta = Meta {
                page_size: PAGE_SIZE as u32,
                root: plan.root.root,
                freelist: 2,
                pages: plan.pages,
                txid,
            };
            let mut page = vec![0u8; PAGE_SIZE];
            page[..HEADER].copy_from_slice(&header(id, META, 0, 0));
            page[HEADER..HEADER + 64].copy_from_slice(&meta.encode());
            out.write_all(&page)?;
            written += 1;
        }
        let mut page = vec![0u8; PAGE_SIZE];
        page[..HEADER].copy_from_slice(&header(2, FREELIST, 0, 0));
        out.write_all(&page)?;
        written += 1;
        Ok(Emitter {
            plan,
            out,
            bucket: 0,
            leaf: 0,
            rows: Vec::new(),
            written,
        })
    }

    fn tree(&self) -> Result<&'p TreePlan, BoltError> {
        self.plan
            .buckets
            .get(self.bucket)
            .map(|(_, t)| t)
            .ok_or(BoltError::Changed("more buckets than planned"))
    }

    /// The current bucket's next row.
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<(), BoltError> {
        let tree = self.tree()?;
        self.push_to(tree, 0, key, value)
    }

    fn push_to(
        &mut self,
        tree: &'p TreePlan,
        flags: u32,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), BoltError> {
        let leaf = tree
            .leaves
            .get(self.leaf)
            .ok_or(BoltError::Changed("more rows than planned"))?;
        if self.rows.is_empty() && leaf.first != key {
            return Err(BoltError::Changed("a page starts with another key"));
        }
        self.rows.push((flags, key.to_vec(), value.to_vec()));
        if self.rows.len() == leaf.count {
            let rows = std::mem::take(&mut self.rows);
            self.write_leaf(leaf, &rows)?;
            self.leaf += 1;
        }
        Ok(())
    }

    /// Ends the current bucket: its branch pages.
    pub fn end_bucket(&mut self) -> Result<(), BoltError> {
        let tree = self.tree()?;
        self.end_tree(tree)?;
        self.bucket += 1;
        Ok(())
    }

    fn end_tree(&mut self, tree: &'p TreePlan) -> Result<(), BoltError> {
        if tree.leaves.len() == 1 && tree.leaves[0].count == 0 && self.leaf == 0 {
            self.write_leaf(&tree.leaves[0], &[])?;
            self.leaf = 1;
        }
        if self.leaf != tree.leaves.len() || !self.rows.is_empty() {
            return Err(BoltError::Changed("fewer rows than planned"));
        }
        let mut below = &tree.leaves;
        for level in &tree.levels {
            let mut children = below.iter();
            for page in level {
                let kids: Vec<&PagePlan> = children.by_ref().take(page.count).collect();
                self.write_branch(page, &kids)?;
            }
            below = level;
        }
        self.leaf = 0;
        Ok(())
    }

    /// Writes the root bucket and returns the output and the bytes written.
    pub fn finish(mut self) -> Result<(W, u64), BoltError> {
        if self.bucket != self.plan.buckets.len() {
            return Err(BoltError::Changed("fewer buckets than planned"));
        }
        let root = &self.plan.root;
        for (name, tree) in &self.plan.buckets {
            self.push_to(root, BUCKET_LEAF, name, &bucket_header(tree.root))?;
        }
        self.end_tree(root)?;
        if self.written != self.plan.pages {
            return Err(BoltError::Changed("the page count differs from the plan"));
        }
        Ok((self.out, self.written * PAGE_SIZE as u64))
    }

    fn write_page(&mut self, plan: &PagePlan, mut page: Vec<u8>) -> Result<(), BoltError> {
        if page.len() != plan.bytes {
            return Err(BoltError::Changed("a page's size differs from the plan"));
        }
        if self.written != plan.pgid {
            return Err(BoltError::Changed("pages out of order"));
        }
        let pages = 1 + u64::from(overflow(page.len())?);
        page.resize(pages as usize * PAGE_SIZE, 0);
        self.out.write_all(&page)?;
        self.written += pages;
        Ok(())
    }

    fn write_leaf(
        &mut self,
        plan: &PagePlan,
        rows: &[(u32, Vec<u8>, Vec<u8>)],
    ) -> Result<(), BoltError> {
        let count = rows.len();
        let bytes = rows
            .iter()
            .fold(HEADER, |n, (_, k, v)| n + ELEMENT + k.len() + v.len());
        let mut page = Vec::with_capacity(bytes);
        page.extend_from_slice(&header(plan.pgid, LEAF, count as u16, overflow(bytes)?));
        let mut data = 0usize;
        for (i, (flags, k, v)) in rows.iter().enumerate() {
            // The key's offset from this element's own header.
            let pos = ELEMENT * (count - i) + data;
            let pos =
                u32::try_from(pos).map_err(|_| BoltError::Invalid("page too large".into()))?;
            page.extend_from_slice(&flags.to_le_bytes());
            page.extend_from_slice(&pos.to_le_bytes());
            page.extend_from_slice(&(k.len() as u32).to_le_bytes());
            let vlen = u32::try_from(v.len())
                .map_err(|_| BoltError::Invalid("value larger than 4 GiB".into()))?;
            page.extend_from_slice(&vlen.to_le_bytes());
            data += k.len() + v.len();
        }
        for (_, k, v) in rows {
            page.extend_from_slice(k);
            page.extend_from_slice(v);
        }
        self.write_page(plan, page)
    }

    fn write_branch(&mut self, plan: &PagePlan, kids: &[&PagePlan]) -> Result<(), BoltError> {
        if kids.len() != plan.count {
            return Err(BoltError::Changed("a branch lost children"));
        }
        let count = kids.len();
        let mut page = Vec::with_capacity(plan.bytes);
        page.extend_from_slice(&header(
            plan.pgid,
            BRANCH,
            count as u16,
            overflow(plan.bytes)?,
        ));
        let mut data = 0usize;
        for (i, kid) in kids.iter().enumerate() {
            let pos = u32::try_from(ELEMENT * (count - i) + data)
                .map_err(|_| BoltError::Invalid("page too large".into()))?;
            page.extend_from_slice(&pos.to_le_bytes());
            page.extend_from_slice(&(kid.first.len() as u32).to_le_bytes());
            page.extend_from_slice(&kid.pgid.to_le_bytes());
            data += kid.first.len();
        }
        for kid in kids {
            page.extend_from_slice(&kid.first);
        }
        self.write_page(plan, page)
    }
}
