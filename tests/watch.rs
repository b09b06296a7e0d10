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

    // A DeleteRange that did not ask for prev_kv still gives a prev_kv watcher each deleted
    // value (the member reads them back for it, as etcd does), after a single delete and a
    // put that may arrive in the same response.
    kv.delete("a/", Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        for e in next(&mut s).await.events() {
            let kv = e.kv().unwrap();
            let prev = e.prev_kv().map(|p| p.value().to_vec());
            seen.push((e.event_type(), kv.key().to_vec(), prev));
        }
    }
    assert_eq!(
        seen,
        vec![
            (EventType::Delete, b"a/1".to_vec(), Some(b"new".to_vec())),
            (EventType::Put, b"a/9".to_vec(), None),
            (EventType::Delete, b"a/2".to_vec(), Some(b"x".to_vec())),
            (EventType::Delete, b"a/9".to_vec(), Some(b"9".to_vec())),
        ]
    );
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
async fn t40_a_stalled_stream_blocks_nobody_and_later_gets_everything() {
    // A tiny broadcast buffer, so the stalled stream lags and must recover from history.
    let c = Cluster::start(1, &["--experimental-watch-broadcast-capacity", "16"]).await;
    let mut kv = c.client(0).await;
    let mut w = c.client(0).await;
    // 500 watchers on one stream.
    let mut live = w.watch("m/0", None).await.unwrap();
    assert!(next(&mut live).await.created());
    for i in 1..500 {
        live.watch(format!("m/{i}"), None).await.unwrap();
    }
    for _ in 1..500 {
        assert!(next(&mut live).await.created());
    }
    // Another stream that does not read while the writes happen.
    let mut stalled_client = c.client(0).await;
    let mut stalled = stalled_client
        .watch("m/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    assert!(next(&mut stalled).await.created());

    let writers: Vec<_> = (0..4)
        .map(|t| {
            let mut kv = kv.clone();
            tokio::spawn(async move {
                for i in 0..250 {
                    kv.put(format!("m/{}", (t * 250 + i) % 500), vec![b'v'; 4000], None)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for wr in writers {
        wr.await.unwrap();
    }
    let last = kv
        .get("m/0", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    // The live stream saw each of its watchers' writes; the stalled one, read now, sees every
    // revision exactly once and in order although it fell far behind the broadcast.
    let mut live_events = 0;
    while live_events < 1000 {
        live_events += next(&mut live).await.events().len();
    }
    let got = collect(&mut stalled, 1000).await;
    assert_eq!(got.len(), 1000);
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "strictly increasing revisions"
    );
    assert_eq!(got.last().unwrap().0, last);
    let log = std::fs::read_to_string(&c.members[0].log).unwrap();
    assert!(
        log.contains("watch stream fell behind"),
        "the stalled stream took the history path"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_progress_notify_reports_revisions_already_delivered() {
    let c = Cluster::start(
        1,
        &["--experimental-watch-progress-notify-interval", "300ms"],
    )
    .await;
    let mut kv = c.client(0).await;
    let mut w = c.client(0).await;
    let mut s = w
        .watch(
            "pn/",
            Some(WatchOptions::new().with_prefix().with_progress_notify()),
        )
        .await
        .unwrap();
    assert!(next(&mut s).await.created());
    kv.put("pn/a", "1", None).await.unwrap();
    let rev = kv
        .put("other", "x", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let mut saw_event = false;
    loop {
        let r = next(&mut s).await;
        if !r.events().is_empty() {
            saw_event = true;
            continue;
        }
        // An empty response is a progress notification: only after the event, and at a
        // revision that covers what was written.
        assert!(saw_event, "progress before the event it covers");
        if r.header().unwrap().revision() >= rev {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_a_full_stream_refuses_creates_until_a_cancel_makes_room() {
    let c = Cluster::start(1, &["--max-watchers-per-stream", "3"]).await;
    let mut kv = c.client(0).await;
    let mut stream = kv.watch("a", None).await.unwrap();
    let first = next(&mut stream).await;
    assert!(first.created() && !first.canceled());
    for key in ["b", "c"] {
        stream.watch(key, None).await.unwrap();
        let r = next(&mut stream).await;
        assert!(r.created() && !r.canceled(), "{}", r.cancel_reason());
    }
    // The fourth is answered as etcd answers a failed create: ID -1, created and
    // canceled, with the reason.
    stream.watch("d", None).await.unwrap();
    let refused = next(&mut stream).await;
    assert!(refused.created() && refused.canceled());
    assert_eq!(refused.watch_id(), -1);
    assert!(
        refused.cancel_reason().contains("too many watchers")
            && refused
                .cancel_reason()
                .contains("--max-watchers-per-stream"),
        "{}",
        refused.cancel_reason()
    );
    // Another stream has its own room.
    let mut other = kv.watch("d", None).await.unwrap();
    assert!(!next(&mut other).await.canceled());

    // A cancel makes room for one more on the first stream.
    let b = first.watch_id() + 1;
    stream.cancel(b).await.unwrap();
    let canceled = next(&mut stream).await;
    assert!(canceled.canceled() && canceled.watch_id() == b);
    stream.watch("e", None).await.unwrap();
    let e = next(&mut stream).await;
    assert!(e.created() && !e.canceled(), "{}", e.cancel_reason());
    stream.watch("f", None).await.unwrap();
    assert!(next(&mut stream).await.canceled(), "full again");

    // The watchers that exist still deliver.
    kv.put("e", "1", None).await.unwrap();
    kv.put("a", "1", None).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let r = next(&mut stream).await;
        assert!(!r.canceled(), "{}", r.cancel_reason());
        for ev in r.events() {
            seen.push((r.watch_id(), ev.kv().unwrap().key().to_vec()));
        }
    }
    assert_eq!(
        seen,
        vec![
            (e.watch_id(), b"e".to_vec()),
            (first.watch_id(), b"a".to_vec())
        ]
    );
}
