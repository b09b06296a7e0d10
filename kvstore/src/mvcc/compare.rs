//! Txn compares, as etcd evaluates them: every live key of the compare's range must satisfy
//! it; a range with no live key compares as a zero `KeyValue`, except that a VALUE compare on
//! a missing key is always false.

use std::cmp::Ordering;

use proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use proto::etcdserverpb::Compare;

use super::{KeyValue, MvccRead, RangeEnd};
use crate::error::KvError;

pub fn holds<R: MvccRead + ?Sized>(store: &R, rev: i64, c: &Compare) -> Result<bool, KvError> {
    // An unknown target compares as equal, as in etcd's compareKV.
    let target = CompareTarget::try_from(c.target).ok();
    let end = RangeEnd::from_request(&c.range_end);
    let mut kvs = Vec::new();
    match &end {
        RangeEnd::Single => kvs.extend(store.get(&c.key, rev)?),
        RangeEnd::Until(e) if e.as_slice() <= c.key.as_slice() => {}
        _ => store.scan(&c.key, &end, rev, &mut |kv| {
            kvs.push(kv);
            true
        })?,
    }
    if kvs.is_empty() {
        if target == Some(CompareTarget::Value) {
            return Ok(false);
        }
        return Ok(compare_kv(c, target, &KeyValue::default()));
    }
    Ok(kvs.iter().all(|kv| compare_kv(c, target, kv)))
}

fn compare_kv(c: &Compare, target: Option<CompareTarget>, kv: &KeyValue) -> bool {
    // Like etcd's generated getters: a union holding another variant reads as zero.
    let int = |f: fn(&TargetUnion) -> Option<i64>| c.target_union.as_ref().and_then(f).unwrap_or(0);
    let Some(target) = target else {
        return result_holds(c.result, Ordering::Equal);
    };
    let ord = match target {
        CompareTarget::Version => kv.version.cmp(&int(|u| match u {
            TargetUnion::Version(v) => Some(*v),
            _ => None,
        })),
        CompareTarget::Create => kv.create_revision.cmp(&int(|u| match u {
            TargetUnion::CreateRevision(v) => Some(*v),
            _ => None,
        })),
        CompareTarget::Mod => kv.mod_revision.cmp(&int(|u| match u {
            TargetUnion::ModRevision(v) => Some(*v),
            _ => None,
        })),
        CompareTarget::Lease => kv.lease.cmp(&int(|u| match u {
            TargetUnion::Lease(v) => Some(*v),
            _ => None,
        })),
        CompareTarget::Value => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
    };
    result_holds(c.result, ord)
}

/// An unknown result holds, as in etcd.
fn result_holds(result: i32, ord: Ordering) -> bool {
    match CompareResult::try_from(result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Err(_) => true,
    }
}
