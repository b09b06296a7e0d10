//! Range, following etcd's rules: `count` is every live key in the range (before the
//! revision filters), `limit` applies after filtering and sorting, `more` says the limit cut
//! something off.

use std::collections::BTreeMap;

use proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};

use super::{KeyValue, MvccRead, RangeEnd, Revisions};
use crate::error::KvError;

/// Writes made earlier in the same Txn: `None` marks a deleted key.
pub type Overlay = BTreeMap<Vec<u8>, Option<KeyValue>>;

/// Executes `req` against `store`. `overlay`, when given, holds the Txn's own earlier writes
/// and is only consulted for reads at the current revision.
pub fn execute<R: MvccRead + ?Sized>(
    store: &R,
    revs: Revisions,
    req: &RangeRequest,
    overlay: Option<&Overlay>,
) -> Result<RangeResponse, KvError> {
    let rev = revs.check_read(req.revision)?;
    // etcd reads a Txn's own writes only at the implicit (latest) revision.
    let overlay = overlay.filter(|ov| req.revision <= 0 && !ov.is_empty());
    let header = Some(ResponseHeader {
        revision: revs.current,
        ..Default::default()
    });
    let end = RangeEnd::from_request(&req.range_end);
    if let RangeEnd::Until(e) = &end {
        if e.as_slice() <= req.key.as_slice() {
            return Ok(RangeResponse {
                header,
                ..Default::default()
            });
        }
    }

    let order = SortOrder::try_from(req.sort_order).map_err(|_| KvError::InvalidSortOption)?;
    let target = SortTarget::try_from(req.sort_target).map_err(|_| KvError::InvalidSortOption)?;
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    // Sorting or filtering needs every key; otherwise one past the limit tells `more`.
    let fetch = if order != SortOrder::None || filtered || req.limit <= 0 {
        usize::MAX
    } else {
        (req.limit as usize).saturating_add(1)
    };

    let mut count: i64 = 0;
    let mut kvs = Vec::new();
    {
        let mut take = |kv: KeyValue| {
            count += 1;
            if !req.count_only && kvs.len() < fetch {
                kvs.push(kv);
            }
        };
        let values = !req.keys_only;
        match overlay {
            None => visit_range(store, &req.key, &end, rev, values, &mut take)?,
            Some(ov) => visit_merged(store, ov, &req.key, &end, rev, values, &mut take)?,
        }
    }

    if req.count_only {
        return Ok(RangeResponse {
            header,
            count,
            ..Default::default()
        });
    }
    if filtered {
        kvs.retain(|kv| {
            (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
                && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
        });
    }
    sort(&mut kvs, order, target);
    let mut more = false;
    if req.limit > 0 && kvs.len() > req.limit as usize {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse {
        header,
        kvs,
        more,
        count,
    })
}

/// Visits the range in the store; without `values`, versions may come without their values.
fn visit_range<R: MvccRead + ?Sized>(
    store: &R,
    key: &[u8],
    end: &RangeEnd,
    rev: i64,
    values: bool,
    take: &mut dyn FnMut(KeyValue),
) -> Result<(), KvError> {
    let mut visit = |kv| {
        take(kv);
        true
    };
    match end {
        RangeEnd::Single => {
            if let Some(kv) = store.get(key, rev)? {
                take(kv);
            }
            Ok(())
        }
        _ if values => store.scan(key, end, rev, &mut visit),
        _ => store.scan_keys(key, end, rev, &mut visit),
    }
}

/// Visits the range with the Txn's own writes laid over the store, in key order.
fn visit_merged<R: MvccRead + ?Sized>(
    store: &R,
    overlay: &Overlay,
    key: &[u8],
    end: &RangeEnd,
    rev: i64,
    values: bool,
    take: &mut dyn FnMut(KeyValue),
) -> Result<(), KvError> {
    let pending: Vec<(&Vec<u8>, &Option<KeyValue>)> = overlay
        .iter()
        .filter(|(k, _)| end.contains(key, k))
        .collect();
    let mut next = 0;
    visit_range(store, key, end, rev, values, &mut |kv| {
        while next < pending.len() && pending[next].0.as_slice() < kv.key.as_slice() {
            if let Some(p) = pending[next].1 {
                take(p.clone());
            }
            next += 1;
        }
        if next < pending.len() && pending[next].0.as_slice() == kv.key.as_slice() {
            if let Some(p) = pending[next].1 {
                take(p.clone());
            }
            next += 1;
        } else {
            take(kv);
        }
    })?;
    for (_, p) in &pending[next..] {
        if let Some(p) = p {
            take(p.clone());
        }
    }
    Ok(())
}

fn sort(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    // etcd: a target other than KEY with no order means ascending; KEY ascending is the
    // natural order already.
    let order = match (order, target) {
        (SortOrder::None, SortTarget::Key) => return,
        (SortOrder::None, _) => SortOrder::Ascend,
        (SortOrder::Ascend, SortTarget::Key) => return,
        (o, _) => o,
    };
    let cmp = |a: &KeyValue, b: &KeyValue| match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    };
    match order {
        SortOrder::Descend => kvs.sort_by(|a, b| cmp(b, a)),
        _ => kvs.sort_by(cmp),
    }
}
