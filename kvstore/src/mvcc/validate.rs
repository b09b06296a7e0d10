//! Checks etcd makes on a request before proposing it, so a malformed request never
//! reaches the log. Each returns etcd's error for the first problem found.

use proto::etcdserverpb::request_op::Request;
use proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};

use std::collections::BTreeSet;

use super::RangeEnd;
use crate::error::KvError;

pub fn range(r: &RangeRequest) -> Result<(), KvError> {
    if r.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    if !(0..=2).contains(&r.sort_order) || !(0..=4).contains(&r.sort_target) {
        return Err(KvError::InvalidSortOption);
    }
    Ok(())
}

pub fn put(r: &PutRequest) -> Result<(), KvError> {
    if r.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(KvError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(KvError::LeaseProvided);
    }
    Ok(())
}

pub fn delete(r: &DeleteRangeRequest) -> Result<(), KvError> {
    if r.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    Ok(())
}

pub fn txn(r: &TxnRequest, max_ops: usize) -> Result<(), KvError> {
    // Nested Txns share the budget as in etcd; on top of that the whole request may hold at
    // most 8 x max_ops operations, which bounds validation and apply work (etcd bounds it only
    // by the request size).
    let mut total = 0;
    check_txn(r, max_ops, &mut total, max_ops.saturating_mul(8))?;
    intervals(&r.success)?;
    intervals(&r.failure)?;
    Ok(())
}

fn check_txn(r: &TxnRequest, max_ops: usize, total: &mut usize, cap: usize) -> Result<(), KvError> {
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len());
    *total += r.compare.len() + r.success.len() + r.failure.len();
    if opc > max_ops || *total > cap {
        return Err(KvError::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(KvError::EmptyKey);
    }
    for op in r.success.iter().chain(&r.failure) {
        match &op.request {
            Some(Request::RequestRange(x)) => range(x)?,
            Some(Request::RequestPut(x)) => put(x)?,
            Some(Request::RequestDeleteRange(x)) => delete(x)?,
            Some(Request::RequestTxn(x)) => check_txn(x, max_ops - opc, total, cap)?,
            None => return Err(KvError::KeyNotFound),
        }
    }
    Ok(())
}

/// A deleted interval: `[start, end)` in etcd's range_end conventions.
#[derive(Clone)]
struct Interval {
    start: Vec<u8>,
    end: RangeEnd,
}

impl Interval {
    fn contains(&self, k: &[u8]) -> bool {
        self.end.contains(&self.start, k)
    }
}

/// etcd's duplicate-key rule: within one branch no key is put twice, and no key put is also
/// inside a deleted range, counting nested Txns (whose then/else branches exclude each other).
/// One rule is stricter than etcd's: a key put by one nested Txn may not be deleted by a
/// later sibling (etcd allows it and keeps both changes at one revision; the history here
/// keeps one version per key and revision).
fn intervals(ops: &[RequestOp]) -> Result<(BTreeSet<Vec<u8>>, Vec<Interval>), KvError> {
    let mut dels: Vec<Interval> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(Interval {
                start: d.key.clone(),
                end: RangeEnd::from_request(&d.range_end),
            }),
            _ => None,
        })
        .collect();
    let mut puts: BTreeSet<Vec<u8>> = BTreeSet::new();
    let deleted = |dels: &[Interval], k: &[u8]| dels.iter().any(|d| d.contains(k));
    // Per nested Txn: the keys either of its branches may put, for the later-sibling check.
    let mut nested_puts: Vec<BTreeSet<Vec<u8>>> = Vec::new();
    for op in ops {
        let Some(Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = intervals(&t.success)?;
        let (puts_else, dels_else) = intervals(&t.failure)?;
        if nested_puts.iter().any(|earlier| {
            earlier
                .iter()
                .any(|k| deleted(&dels_then, k) || deleted(&dels_else, k))
        }) {
            return Err(KvError::DuplicateKey);
        }
        for k in &puts_then {
            if puts.contains(k) || deleted(&dels, k) {
                return Err(KvError::DuplicateKey);
            }
        }
        for k in &puts_else {
            if (puts.contains(k) && !puts_then.contains(k)) || deleted(&dels, k) {
                return Err(KvError::DuplicateKey);
            }
        }
        let mine: BTreeSet<Vec<u8>> = puts_then.union(&puts_else).cloned().collect();
        puts.extend(mine.iter().cloned());
        nested_puts.push(mine);
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if !puts.insert(p.key.clone()) || deleted(&dels, &p.key) {
            return Err(KvError::DuplicateKey);
        }
    }
    Ok((puts, dels))
}
