//! Watch guarantees with real processes: ordered, unique, resumable from any retained
//! revision, atomic per revision, compaction cancels with compact_revision, progress.

mod common;

use std::time::Duration;

use common::Cluster;
use etcd_client::{EventType, WatchFilterType, WatchOptions, WatchResponse, WatchStream};

async fn next(stream: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("watch response within 10s")
        .expect("watch stream ok")
        .expect("watch stream open")
}

/// Collects (revision, key) of events until `n` were seen.
async fn collect(stream: &mut WatchStream, n: usize) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        let resp = next(stream).await;
        assert!(
            !resp.canceled(),
            "unexpected cancel: {}",
            resp.cancel_reason()
        );
        for e in resp.events() {
            let kv = e.kv().unwrap();
            out.push((
                kv.mod_revision(),
                String::from_utf8_lossy(kv.key()).into_owned(),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_resumed_watch_misses_nothing_and_repeats_nothing() {
    let c = Cluster::start(3, &[]).await;
    let mut kv = c.any_client().await;
    let first = kv
        .put("w/0", "0", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();

    // A watcher on a follower sees part of the stream, then its connection goes away.
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let mut w = c.client((leader + 1) % 3).await;
    let mut stream = w
        .watch(
            "w/",
            Some(WatchOptions::new().with_prefix().with_start_revision(first)),
        )
        .await
        .unwrap();
    assert!(next(&mut stream).await.created());
    for i in 1..40 {
        kv.put(format!("w/{i}"), format!("{i}"), None)
            .await
            .unwrap();
    }
    let seen = collect(&mut stream, 20).await;
    drop(stream);
    drop(w);
    let last = seen.last().unwrap().0;
    for i in 40..60 {
        kv.put(format!("w/{i}"), format!("{i}"), None)
            .await
            .unwrap();
    }

    // Reconnect to another member from last + 1.
    let mut w2 = c.client((leader + 2) % 3).await;
    let mut s2 = w2
        .watch(
            "w/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(last + 1),
            ),
        )
        .await
        .unwrap();
    assert!(next(&mut s2).await.created());
    let rest = collect(&mut s2, 60 - seen.len()).await;
    let all: Vec<(i64, String)> = seen.into_iter().chain(rest).collect();
    let keys: Vec<String> = all.iter().map(|(_, k)| k.clone()).collect();
    let want: Vec<String> = (0..60).map(|i| format!("w/{i}")).collect();
    assert_eq!(keys, want, "every event exactly once, in order");
    assert!(
        all.windows(2).all(|w| w[0].0 < w[1].0),
        "revisions strictly increase"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_txn_events_arrive_together_with_prev_kv_and_filters() {
    let c = Cluster::start(1, &[]).await;
    let mut kv = c.client(0).await;
    kv.put("a/1", "old", None).await.unwrap();
    let mut w = c.client(0).await;
    let mut s = w
        .watch(
            "a/",
            Some(WatchOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    assert!(next(&mut s).await.created());
    let txn = etcd_client::Txn::new().and_then([
        etcd_client::TxnOp::put("a/1", "new", None),
        etcd_client::TxnOp::put("a/2", "x", None),
        etcd_client::TxnOp::delete("a/3", None),
    ]);
    kv.txn(txn).await.unwrap();
    let resp = next(&mut s).await;
    assert_eq!(
        resp.events().len(),
        2,
        "one revision's events in one response"
    );
    let e0 = &resp.events()[0];
    assert_eq!(e0.prev_kv().unwrap().value(), b"old");

    let mut nodel = w
        .watch(
            "a/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_filters([WatchFilterType::NoDelete]),
            ),
        )
        .await
        .unwrap();
    assert!(next(&mut nodel).await.created());
    kv.delete("a/1", None).await.unwrap();
    kv.put("a/9", "9", None).await.unwrap();
    let resp = next(&mut nodel).await;
    assert!(resp
        .events()
        .iter()
        .all(|e| e.event_type() == EventType::Put));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_compacted_start_cancels_with_compact_revision_and_progress_is_reported() {
    let c = Cluster::start(1, &[]).await;
    let mut kv = c.client(0).await;
    for i in 0..10 {
        kv.put("c", format!("{i}"), None).await.unwrap();
    }
    let rev = kv
        .get("c", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    kv.compact(rev - 2, None).await.unwrap();
    let mut w = c.client(0).await;
    let mut s = w
        .watch("c", Some(WatchOptions::new().with_start_revision(rev - 5)))
        .await
        .unwrap();
    let mut resp = next(&mut s).await;
    if resp.created() && !resp.canceled() {
        resp = next(&mut s).await;
    }
    assert!(resp.canceled());
    assert_eq!(resp.compact_revision(), rev - 2);

    // A progress request answers with a revision up to which everything was delivered.
    let mut s = w.watch("c", None).await.unwrap();
    assert!(next(&mut s).await.created());
    s.request_progress().await.unwrap();
    let p = next(&mut s).await;
    assert!(p.events().is_empty());
    assert_eq!(p.header().unwrap().revision(), rev);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_many_watchers_and_a_stalled_one_do_not_block_writes() {
    let c = Cluster::start(1, &[]).await;
    let mut kv = c.client(0).await;
    let mut w = c.client(0).await;
    // 500 watchers on one stream, 1 stalled stream that never reads.
    let mut stream = w.watch("m/0", None).await.unwrap();
    assert!(next(&mut stream).await.created());
    for i in 1..500 {
        stream.watch(format!("m/{i}"), None).await.unwrap();
    }
    let mut stalled_client = c.client(0).await;
    let _stalled_stream = stalled_client
        .watch("m/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    let big = vec![b'v'; 2000];
    for round in 0..6 {
        for i in (0..500).step_by(50) {
            kv.put(format!("m/{i}"), big.clone(), None).await.unwrap();
        }
        let _ = round;
    }
    // The live stream saw every write to its keys, in order.
    let mut got = 0;
    while got < 60 {
        let resp = next(&mut stream).await;
        got += resp.events().len();
    }
    assert_eq!(got, 60);
}
