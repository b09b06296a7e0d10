//! The KV API through the Rust `etcd-client` crate against a real 3-member cluster:
//! the semantics etcd documents, including options etcdctl 3.4 cannot express.

mod common;

use common::Cluster;
use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_kv_semantics_match_etcd() {
    let c = Cluster::start(3, &[]).await;
    // Talk to a follower on purpose: it must forward writes and serve linearizable reads.
    let leader = c.wait_leader(std::time::Duration::from_secs(10)).await;
    let follower = (leader + 1) % 3;
    let mut kv = c.client(follower).await;

    let r1 = kv.put("k", "v1", None).await.unwrap();
    let rev1 = r1.header().unwrap().revision();
    assert!(rev1 >= 2);
    let r2 = kv
        .put("k", "v2", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert_eq!(r2.prev_key().unwrap().value(), b"v1");
    let got = kv.get("k", None).await.unwrap();
    let kvs = got.kvs();
    assert_eq!(
        (
            kvs[0].create_revision(),
            kvs[0].mod_revision(),
            kvs[0].version()
        ),
        (rev1, rev1 + 1, 2)
    );
    let header = got.header().unwrap();
    assert_ne!(header.cluster_id(), 0);
    assert_ne!(header.member_id(), 0);
    assert!(header.raft_term() >= 1);

    // History.
    let old = kv
        .get("k", Some(GetOptions::new().with_revision(rev1)))
        .await
        .unwrap();
    assert_eq!(old.kvs()[0].value(), b"v1");

    // Prefix, limit/more, count_only, keys_only, sort, revision filters.
    for i in 0..5 {
        kv.put(format!("p/{i}"), format!("{}", 4 - i), None)
            .await
            .unwrap();
    }
    let page = kv
        .get("p/", Some(GetOptions::new().with_prefix().with_limit(2)))
        .await
        .unwrap();
    assert_eq!(page.kvs().len(), 2);
    assert!(page.more());
    assert_eq!(page.count(), 5);
    let counted = kv
        .get(
            "p/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!((counted.count(), counted.kvs().len()), (5, 0));
    let keys = kv
        .get("p/", Some(GetOptions::new().with_prefix().with_keys_only()))
        .await
        .unwrap();
    assert!(keys.kvs().iter().all(|kv| kv.value().is_empty()));
    let sorted = kv
        .get(
            "p/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Value, SortOrder::Ascend),
            ),
        )
        .await
        .unwrap();
    assert_eq!(sorted.kvs()[0].key(), b"p/4");
    let p2_rev = kv.get("p/2", None).await.unwrap().kvs()[0].mod_revision();
    let newer = kv
        .get(
            "p/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_min_mod_revision(p2_rev),
            ),
        )
        .await
        .unwrap();
    assert_eq!(newer.kvs().len(), 3);
    let from = kv
        .get("p/3", Some(GetOptions::new().with_from_key()))
        .await
        .unwrap();
    assert_eq!(from.kvs()[0].key(), b"p/3");
    let serial = kv
        .get("k", Some(GetOptions::new().with_serializable()))
        .await
        .unwrap();
    assert_eq!(serial.kvs()[0].value(), b"v2");

    // Txn: compare-and-swap, both branches, one revision for all its writes.
    let txn = Txn::new()
        .when([Compare::value("k", CompareOp::Equal, "v2")])
        .and_then([
            TxnOp::put("k", "v3", None),
            TxnOp::put("k2", "x", None),
            TxnOp::get("k", None),
        ])
        .or_else([TxnOp::put("lost", "y", None)]);
    let t = kv.txn(txn.clone()).await.unwrap();
    assert!(t.succeeded());
    let after = kv.get("k2", None).await.unwrap();
    let k = kv.get("k", None).await.unwrap();
    assert_eq!(
        after.kvs()[0].mod_revision(),
        k.kvs()[0].mod_revision(),
        "a Txn's writes share one revision"
    );
    let t = kv.txn(txn).await.unwrap();
    assert!(!t.succeeded());
    assert_eq!(kv.get("lost", None).await.unwrap().kvs().len(), 1);
    let cmp_version = Txn::new()
        .when([Compare::version("missing", CompareOp::Equal, 0)])
        .and_then([TxnOp::put("created", "1", None)]);
    assert!(kv.txn(cmp_version).await.unwrap().succeeded());

    // Delete with prev_kv.
    let del = kv
        .delete(
            "p/",
            Some(DeleteOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    assert_eq!(del.deleted(), 5);
    assert_eq!(del.prev_kvs().len(), 5);

    // Compaction: below it reads fail with etcd's error, at it they work.
    let cur = kv
        .get("k", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    kv.compact(cur - 1, None).await.unwrap();
    let err = kv
        .get("k", Some(GetOptions::new().with_revision(cur - 2)))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("required revision has been compacted"),
        "{err}"
    );
    assert!(kv
        .get("k", Some(GetOptions::new().with_revision(cur - 1)))
        .await
        .is_ok());
    let err = kv
        .get("k", Some(GetOptions::new().with_revision(cur + 1000)))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("required revision is a future revision"),
        "{err}"
    );

    // Every member holds the same state at the same revision.
    let rev = kv
        .get("k", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    c.assert_same_hash(rev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_bad_input_gets_etcds_errors_and_changes_nothing() {
    let c = Cluster::start(1, &["--max-txn-ops", "4", "--max-request-bytes", "10000"]).await;
    let mut kv = c.client(0).await;
    let rev = kv
        .put("a", "1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();

    let status = |e: etcd_client::Error| match e {
        etcd_client::Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("not a gRPC status: {other}"),
    };
    let (code, msg) = status(kv.put("", "x", None).await.unwrap_err());
    assert_eq!(
        (code, msg.as_str()),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: key is not provided"
        )
    );
    let (code, msg) = status(kv.put("big", vec![0u8; 20_000], None).await.unwrap_err());
    assert_eq!(
        (code, msg.as_str()),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: request is too large"
        )
    );
    let ops: Vec<TxnOp> = (0..5)
        .map(|i| TxnOp::put(format!("t{i}"), "x", None))
        .collect();
    let (code, msg) = status(kv.txn(Txn::new().and_then(ops)).await.unwrap_err());
    assert_eq!(
        (code, msg.as_str()),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: too many operations in txn request"
        )
    );
    let dup = Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]);
    let (_, msg) = status(kv.txn(dup).await.unwrap_err());
    assert_eq!(msg, "etcdserver: duplicate key given in txn request");
    let (code, msg) = status(
        kv.put("l", "x", Some(PutOptions::new().with_lease(12345)))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, msg.as_str()),
        (
            tonic::Code::NotFound,
            "etcdserver: requested lease not found"
        )
    );
    let (code, msg) = status(
        kv.put("nokey", "", Some(PutOptions::new().with_ignore_value()))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, msg.as_str()),
        (tonic::Code::InvalidArgument, "etcdserver: key not found")
    );
    let (code, msg) = status(kv.member_remove(0xdead).await.unwrap_err());
    assert_eq!(
        (code, msg.as_str()),
        (tonic::Code::NotFound, "etcdserver: member not found")
    );
    let (code, _) = status(kv.compact(rev + 100, None).await.unwrap_err());
    assert_eq!(code, tonic::Code::OutOfRange);

    // None of that wrote anything.
    let now = kv.get("a", None).await.unwrap();
    assert_eq!(now.header().unwrap().revision(), rev);
    assert_eq!(
        kv.get("", Some(GetOptions::new().with_all_keys()))
            .await
            .unwrap()
            .count(),
        1
    );
}
