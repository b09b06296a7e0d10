//! Unit tests of the MVCC core over the in-memory store.

use proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use proto::etcdserverpb::request_op::Request;
use proto::etcdserverpb::response_op::Response;
use proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

use super::memory::MemStore;
use super::txn::{self, delete_as_txn, put_as_txn};
use super::{range, validate, ChangeKind, KeyValue, Revisions};
use crate::error::KvError;

fn put(s: &mut MemStore, k: &str, v: &str) -> i64 {
    let out = txn::execute(
        s,
        s.revs,
        &put_as_txn(PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        }),
    )
    .unwrap();
    s.commit(&out);
    out.revision
}

fn get(s: &MemStore, req: RangeRequest) -> Result<proto::etcdserverpb::RangeResponse, KvError> {
    range::execute(s, s.revs, &req, None)
}

fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        })),
    }
}

fn op_range(k: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(RangeRequest {
            key: k.into(),
            ..Default::default()
        })),
    }
}

fn op_del(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
            key: k.into(),
            range_end: end.into(),
            ..Default::default()
        })),
    }
}

fn cmp_value(k: &str, result: CompareResult, v: &str) -> Compare {
    Compare {
        key: k.into(),
        result: result as i32,
        target: CompareTarget::Value as i32,
        target_union: Some(TargetUnion::Value(v.into())),
        ..Default::default()
    }
}

#[test]
fn revisions_versions_and_create_revision_follow_etcd() {
    let mut s = MemStore::new();
    assert_eq!(
        put(&mut s, "a", "1"),
        2,
        "the first write of an empty store is revision 2"
    );
    assert_eq!(put(&mut s, "a", "2"), 3);
    let kv = &get(
        &s,
        RangeRequest {
            key: "a".into(),
            ..Default::default()
        },
    )
    .unwrap()
    .kvs[0];
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));

    let out = txn::execute(
        &s,
        s.revs,
        &delete_as_txn(DeleteRangeRequest {
            key: "a".into(),
            ..Default::default()
        }),
    )
    .unwrap();
    assert_eq!(out.changes[0].kind, ChangeKind::Delete);
    s.commit(&out);
    put(&mut s, "a", "3");
    let kv = &get(
        &s,
        RangeRequest {
            key: "a".into(),
            ..Default::default()
        },
    )
    .unwrap()
    .kvs[0];
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (5, 5, 1),
        "a new generation after delete"
    );

    // Reads in the past see the old versions.
    let old = get(
        &s,
        RangeRequest {
            key: "a".into(),
            revision: 2,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(old.kvs[0].value, b"1");
    let gone = get(
        &s,
        RangeRequest {
            key: "a".into(),
            revision: 4,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(gone.kvs.is_empty());
    assert_eq!(gone.header.unwrap().revision, 5);
}

#[test]
fn reads_outside_history_fail_with_etcds_errors() {
    let mut s = MemStore::new();
    put(&mut s, "a", "1");
    let err = get(
        &s,
        RangeRequest {
            key: "a".into(),
            revision: 99,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(err, KvError::FutureRevision);
    assert_eq!(
        err.to_string(),
        "etcdserver: mvcc: required revision is a future revision"
    );
    s.revs.compacted = 2;
    assert!(get(
        &s,
        RangeRequest {
            key: "a".into(),
            revision: 2,
            ..Default::default()
        }
    )
    .is_ok());
    let err = get(
        &s,
        RangeRequest {
            key: "a".into(),
            revision: 1,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "etcdserver: mvcc: required revision has been compacted"
    );
}

#[test]
fn range_prefix_limit_count_sort_and_filters() {
    let mut s = MemStore::new();
    for (k, v) in [("p/c", "1"), ("p/a", "3"), ("p/b", "2"), ("q", "0")] {
        put(&mut s, k, v);
    }
    let all = get(
        &s,
        RangeRequest {
            key: "p/".into(),
            range_end: "p0".into(),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(keys(&all.kvs), ["p/a", "p/b", "p/c"]);
    assert_eq!((all.count, all.more), (3, false));

    let lim = get(
        &s,
        RangeRequest {
            key: "p/".into(),
            range_end: "p0".into(),
            limit: 2,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(keys(&lim.kvs), ["p/a", "p/b"]);
    assert_eq!((lim.count, lim.more), (3, true));

    let from = get(
        &s,
        RangeRequest {
            key: "p/b".into(),
            range_end: vec![0],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(keys(&from.kvs), ["p/b", "p/c", "q"]);

    let by_value = get(
        &s,
        RangeRequest {
            key: "p/".into(),
            range_end: "p0".into(),
            sort_target: SortTarget::Value as i32,
            sort_order: SortOrder::Descend as i32,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(keys(&by_value.kvs), ["p/a", "p/b", "p/c"]);
    let by_mod = get(
        &s,
        RangeRequest {
            key: "p/".into(),
            range_end: "p0".into(),
            sort_target: SortTarget::Mod as i32,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        keys(&by_mod.kvs),
        ["p/c", "p/a", "p/b"],
        "target without order sorts ascending"
    );

    let counted = get(
        &s,
        RangeRequest {
            key: "p/".into(),
            range_end: "p0".into(),
            count_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((counted.count, counted.kvs.len()), (3, 0));

    let ko = get(
        &s,
        RangeRequest {
            key: "p/a".into(),
            keys_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(ko.kvs[0].value.is_empty());
    assert_eq!(ko.kvs[0].version, 1);

    let newer = get(
        &s,
        RangeRequest {
            key: "p/".into(),
            range_end: "p0".into(),
            min_mod_revision: 3,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(keys(&newer.kvs), ["p/a", "p/b"]);
    assert_eq!(
        newer.count, 3,
        "count is taken before the revision filters, as in etcd"
    );

    let backwards = get(
        &s,
        RangeRequest {
            key: "p/c".into(),
            range_end: "p/a".into(),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(backwards.kvs.is_empty());
}

#[test]
fn txn_compares_choose_a_branch_and_share_one_revision() {
    let mut s = MemStore::new();
    put(&mut s, "x", "1");
    let t = TxnRequest {
        compare: vec![cmp_value("x", CompareResult::Equal, "1")],
        success: vec![op_put("x", "2"), op_put("y", "2"), op_range("x")],
        failure: vec![op_put("z", "9")],
    };
    let out = txn::execute(&s, s.revs, &t).unwrap();
    assert!(out.response.succeeded);
    assert_eq!(out.revision, 3);
    assert!(out.changes.iter().all(|c| c.kv.mod_revision == 3));
    let Some(Response::ResponseRange(r)) = &out.response.responses[2].response else {
        panic!()
    };
    assert_eq!(r.kvs[0].value, b"2", "a range sees the Txn's earlier put");
    s.commit(&out);

    let out = txn::execute(&s, s.revs, &t).unwrap();
    assert!(!out.response.succeeded);
    assert_eq!(
        keys(&out.changes.iter().map(|c| c.kv.clone()).collect::<Vec<_>>()),
        ["z"]
    );

    // Missing key: VALUE compares are false, others compare against zero.
    let missing = Compare {
        key: "nope".into(),
        target: CompareTarget::Version as i32,
        result: CompareResult::Equal as i32,
        target_union: Some(TargetUnion::Version(0)),
        ..Default::default()
    };
    let out = txn::execute(
        &s,
        s.revs,
        &TxnRequest {
            compare: vec![missing],
            ..Default::default()
        },
    )
    .unwrap();
    assert!(out.response.succeeded);
    assert_eq!(
        out.revision, s.revs.current,
        "a Txn that writes nothing keeps the revision"
    );
    let out = txn::execute(
        &s,
        s.revs,
        &TxnRequest {
            compare: vec![cmp_value("nope", CompareResult::NotEqual, "a")],
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!out.response.succeeded);
}

#[test]
fn nested_txn_compares_see_the_state_before_the_txn() {
    let mut s = MemStore::new();
    put(&mut s, "a", "1");
    let inner = TxnRequest {
        compare: vec![cmp_value("a", CompareResult::Equal, "1")],
        success: vec![op_put("b", "yes")],
        failure: vec![op_put("b", "no")],
    };
    let outer = TxnRequest {
        success: vec![
            op_put("a", "2"),
            RequestOp {
                request: Some(Request::RequestTxn(inner)),
            },
        ],
        ..Default::default()
    };
    validate::txn(&outer, 128).unwrap();
    let out = txn::execute(&s, s.revs, &outer).unwrap();
    let b = out.changes.iter().find(|c| c.kv.key == b"b").unwrap();
    assert_eq!(b.kv.value, b"yes");
}

/// The overlay is skipped only for the Txn's very last op: a write inside a nested Txn, or
/// a delete, is still seen by the ops after it.
#[test]
fn later_ops_see_writes_made_in_nested_txns_and_deletes() {
    let mut s = MemStore::new();
    put(&mut s, "gone", "1");
    let inner = TxnRequest {
        success: vec![op_put("b", "inner")],
        ..Default::default()
    };
    let outer = TxnRequest {
        success: vec![
            RequestOp {
                request: Some(Request::RequestTxn(inner)),
            },
            op_del("gone", ""),
            op_range("b"),
            op_range("gone"),
        ],
        ..Default::default()
    };
    validate::txn(&outer, 128).unwrap();
    let out = txn::execute(&s, s.revs, &outer).unwrap();
    let Some(Response::ResponseRange(b)) = &out.response.responses[2].response else {
        panic!()
    };
    assert_eq!(keys(&b.kvs), ["b"], "the nested Txn's put is seen");
    assert_eq!(b.kvs[0].value, b"inner");
    let Some(Response::ResponseRange(gone)) = &out.response.responses[3].response else {
        panic!()
    };
    assert!(gone.kvs.is_empty(), "the earlier delete is seen");
    assert_eq!(out.changes.len(), 2);
}

#[test]
fn failing_op_leaves_no_change() {
    let mut s = MemStore::new();
    let t = TxnRequest {
        success: vec![
            op_put("a", "1"),
            RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: "b".into(),
                    lease: 7,
                    ..Default::default()
                })),
            },
        ],
        ..Default::default()
    };
    assert_eq!(
        txn::execute(&s, s.revs, &t).unwrap_err(),
        KvError::LeaseNotFound
    );
    s.leases.insert(7);
    let out = txn::execute(&s, s.revs, &t).unwrap();
    assert_eq!(out.changes.len(), 2);
    let ign = PutRequest {
        key: "missing".into(),
        ignore_value: true,
        ..Default::default()
    };
    assert_eq!(
        txn::execute(&s, s.revs, &put_as_txn(ign)).unwrap_err(),
        KvError::KeyNotFound
    );
}

#[test]
fn delete_range_reports_prev_kvs_and_count() {
    let mut s = MemStore::new();
    for k in ["d/1", "d/2", "e"] {
        put(&mut s, k, "v");
    }
    let out = txn::execute(
        &s,
        s.revs,
        &delete_as_txn(DeleteRangeRequest {
            key: "d/".into(),
            range_end: "d0".into(),
            prev_kv: true,
        }),
    )
    .unwrap();
    let Some(Response::ResponseDeleteRange(d)) = &out.response.responses[0].response else {
        panic!()
    };
    assert_eq!(d.deleted, 2);
    assert_eq!(keys(&d.prev_kvs), ["d/1", "d/2"]);
    assert_eq!(out.changes.len(), 2);
    assert!(out
        .changes
        .iter()
        .all(|c| !c.prev_value_omitted && c.prev.as_ref().unwrap().value == b"v"));
    // Without prev_kv the values are left out of the changes, the rest of each victim not.
    let lean = txn::execute(
        &s,
        s.revs,
        &delete_as_txn(DeleteRangeRequest {
            key: "d/".into(),
            range_end: "d0".into(),
            prev_kv: false,
        }),
    )
    .unwrap();
    assert_eq!(lean.changes.len(), 2);
    for c in &lean.changes {
        let p = c.prev.as_ref().unwrap();
        assert!(c.prev_value_omitted && p.value.is_empty() && p.key.is_empty());
        assert!(c.kv.key.starts_with(b"d/"), "the key is the change's");
        assert!(p.mod_revision > 1 && p.version == 1);
    }
    s.commit(&out);
    let none = txn::execute(
        &s,
        s.revs,
        &delete_as_txn(DeleteRangeRequest {
            key: "d/1".into(),
            ..Default::default()
        }),
    )
    .unwrap();
    assert!(none.changes.is_empty());
}

#[test]
fn validation_matches_etcd() {
    let dup = TxnRequest {
        success: vec![op_put("a", "1"), op_put("a", "2")],
        ..Default::default()
    };
    assert_eq!(validate::txn(&dup, 128).unwrap_err(), KvError::DuplicateKey);
    let put_in_deleted = TxnRequest {
        success: vec![op_del("a", "c"), op_put("b", "2")],
        ..Default::default()
    };
    assert_eq!(
        validate::txn(&put_in_deleted, 128).unwrap_err(),
        KvError::DuplicateKey
    );
    let branches = TxnRequest {
        success: vec![RequestOp {
            request: Some(Request::RequestTxn(TxnRequest {
                success: vec![op_put("k", "1")],
                failure: vec![op_put("k", "2")],
                ..Default::default()
            })),
        }],
        ..Default::default()
    };
    assert!(
        validate::txn(&branches, 128).is_ok(),
        "then and else exclude each other"
    );
    let separate = TxnRequest {
        success: vec![op_put("a", "1")],
        failure: vec![op_put("a", "2")],
        ..Default::default()
    };
    assert!(validate::txn(&separate, 128).is_ok());
    let many = TxnRequest {
        success: (0..3).map(|i| op_put(&i.to_string(), "")).collect(),
        ..Default::default()
    };
    assert_eq!(validate::txn(&many, 2).unwrap_err(), KvError::TooManyOps);
    assert_eq!(
        validate::put(&PutRequest::default()).unwrap_err(),
        KvError::EmptyKey
    );
    let bad_sort = RangeRequest {
        key: "a".into(),
        sort_order: 9,
        ..Default::default()
    };
    assert_eq!(
        validate::range(&bad_sort).unwrap_err(),
        KvError::InvalidSortOption
    );
}

#[test]
fn revisions_check_read() {
    let r = Revisions {
        current: 10,
        compacted: 5,
    };
    assert_eq!(r.check_read(0), Ok(10));
    assert_eq!(r.check_read(5), Ok(5));
    assert!(r.check_read(4).is_err());
    assert!(r.check_read(11).is_err());
}

fn nested(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestTxn(TxnRequest {
            success,
            failure,
            ..Default::default()
        })),
    }
}

#[test]
fn nested_txns_share_the_op_budget_and_sibling_put_then_delete_is_refused() {
    // etcd: a nested Txn gets max_ops minus its parent's op count.
    let inner = nested(
        (0..3).map(|i| op_put(&format!("n{i}"), "")).collect(),
        vec![],
    );
    let outer = TxnRequest {
        success: vec![inner, op_put("x", "")],
        ..Default::default()
    };
    assert_eq!(validate::txn(&outer, 4).unwrap_err(), KvError::TooManyOps);
    assert!(validate::txn(&outer, 5).is_ok());

    let sibling = TxnRequest {
        success: vec![
            nested(vec![op_put("k", "1")], vec![]),
            nested(vec![op_del("k", "")], vec![]),
        ],
        ..Default::default()
    };
    assert_eq!(
        validate::txn(&sibling, 128).unwrap_err(),
        KvError::DuplicateKey
    );
    let exclusive = TxnRequest {
        success: vec![nested(vec![op_put("k", "1")], vec![op_del("k", "")])],
        ..Default::default()
    };
    assert!(
        validate::txn(&exclusive, 128).is_ok(),
        "then and else never both run"
    );
}

#[test]
fn unknown_compare_values_and_explicit_revision_reads_follow_etcd() {
    let mut s = MemStore::new();
    put(&mut s, "k", "old");
    let weird = Compare {
        key: "k".into(),
        result: 42,
        target: CompareTarget::Value as i32,
        target_union: Some(TargetUnion::Value("zzz".into())),
        ..Default::default()
    };
    let out = txn::execute(
        &s,
        s.revs,
        &TxnRequest {
            compare: vec![weird],
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        out.response.succeeded,
        "an unknown result holds, as in etcd"
    );

    // A Range at an explicit revision inside a write Txn does not see the Txn's own writes.
    let cur = s.revs.current;
    let t = TxnRequest {
        success: vec![
            op_put("k", "new"),
            RequestOp {
                request: Some(Request::RequestRange(RangeRequest {
                    key: "k".into(),
                    revision: cur,
                    ..Default::default()
                })),
            },
            op_range("k"),
        ],
        ..Default::default()
    };
    let out = txn::execute(&s, s.revs, &t).unwrap();
    let Some(Response::ResponseRange(at_rev)) = &out.response.responses[1].response else {
        panic!()
    };
    let Some(Response::ResponseRange(latest)) = &out.response.responses[2].response else {
        panic!()
    };
    assert_eq!(at_rev.kvs[0].value, b"old");
    assert_eq!(latest.kvs[0].value, b"new");
}
