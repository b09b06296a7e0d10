//! Maintenance and membership with real processes: the NOSPACE alarm, learners and
//! promotion, and seeding a new cluster from a snapshot.

mod common;

use std::time::Duration;

use common::{wait_for, Cluster};
use etcd_client::{AlarmAction, AlarmOptions, AlarmType, GetOptions, MemberAddOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_quota_raises_nospace_and_disarm_after_compaction_restores_writes() {
    let c = Cluster::start(1, &["--quota-backend-bytes", "1048576"]).await;
    let mut kv = c.client(0).await;
    let big = vec![b'q'; 100_000];
    let mut refused = None;
    for i in 0..100 {
        match kv.put(format!("big/{i}"), big.clone(), None).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e.to_string());
                break;
            }
        }
    }
    let refused = refused.expect("writes past the quota are refused");
    assert!(
        refused.contains("etcdserver: mvcc: database space exceeded"),
        "{refused}"
    );
    let alarms = kv
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .unwrap();
    assert_eq!(alarms.alarms().len(), 1);
    assert_eq!(alarms.alarms()[0].alarm(), AlarmType::Nospace);

    // Reads and deletes still work; small writes do not.
    assert!(kv.get("big/0", None).await.unwrap().kvs().len() == 1);
    let err = kv.put("small", "x", None).await.unwrap_err();
    assert!(err.to_string().contains("database space exceeded"));
    let del = kv
        .delete(
            "big/",
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    let rev = del.header().unwrap().revision();
    // `physical`: answered once the versions are gone from the database (the defragment
    // then has something to reclaim).
    kv.compact(
        rev,
        Some(etcd_client::CompactionOptions::new().with_physical()),
    )
    .await
    .unwrap();
    kv.defragment().await.unwrap();
    let member = kv.status().await.unwrap().header().unwrap().member_id();
    let mut opts = AlarmOptions::new();
    opts.with_member(member);
    kv.alarm(AlarmAction::Deactivate, AlarmType::Nospace, Some(opts))
        .await
        .unwrap();
    wait_for(Duration::from_secs(10), "writes accepted again", || {
        let mut kv = kv.clone();
        async move { kv.put("small", "x", None).await.ok() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_learner_joins_then_is_promoted() {
    let mut c = Cluster::start(3, &[]).await;
    let mut kv = c.any_client().await;
    for i in 0..20 {
        kv.put(format!("x/{i}"), "v", None).await.unwrap();
    }
    let slot = c.add_member_slot("n4");
    let added = kv
        .member_add(
            [c.members[slot].peer_url()],
            Some(MemberAddOptions::new().with_is_learner()),
        )
        .await
        .unwrap();
    let id = added.member().unwrap().id();
    assert!(added.member().unwrap().is_learner());
    // Promoting a learner that never started is refused as etcd refuses it.
    let err = kv.member_promote(id).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("can only promote a learner member which is in sync with leader"),
        "{err}"
    );
    c.spawn(slot, "existing");
    let mut m4 = c.client(slot).await;
    wait_for(Duration::from_secs(20), "learner to catch up", || {
        let mut m4 = m4.clone();
        async move {
            let r = m4
                .get(
                    "x/",
                    Some(
                        GetOptions::new()
                            .with_prefix()
                            .with_serializable()
                            .with_count_only(),
                    ),
                )
                .await
                .ok()?;
            (r.count() == 20).then_some(())
        }
    })
    .await;
    wait_for(Duration::from_secs(10), "promotion", || {
        let mut kv = kv.clone();
        async move { kv.member_promote(id).await.ok() }
    })
    .await;
    // MemberList is serializable by default, as etcd's: the member that answers may apply
    // the promotion a moment after the leader acknowledged it.
    wait_for(
        Duration::from_secs(10),
        "four voters in the member list",
        || {
            let mut kv = kv.clone();
            async move {
                let list = kv.member_list().await.ok()?;
                (list.members().len() == 4 && list.members().iter().all(|m| !m.is_learner()))
                    .then_some(())
            }
        },
    )
    .await;
    // The promoted member serves linearizable reads.
    assert_eq!(m4.get("x/0", None).await.unwrap().kvs().len(), 1);
    let err = kv.member_promote(id).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("can only promote a learner member"),
        "{err}"
    );
    // A removed member is told so and stops, as an etcd member does.
    kv.member_remove(id).await.unwrap();
    let child = c.members[slot].child.as_mut().unwrap();
    let status = common::wait_for_exit(child, Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    c.members[slot].child = None;
    let log = std::fs::read_to_string(&c.members[slot].log).unwrap();
    assert!(
        log.contains("removed from the cluster; shutting down"),
        "{log}"
    );
    wait_for(Duration::from_secs(10), "three members in the list", || {
        let mut kv = kv.clone();
        async move { (kv.member_list().await.ok()?.members().len() == 3).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_snapshot_seeds_a_new_cluster() {
    let c = Cluster::start(1, &[]).await;
    let mut kv = c.client(0).await;
    for i in 0..50 {
        kv.put(format!("r/{i:02}"), format!("{i}"), None)
            .await
            .unwrap();
    }
    let rev = kv
        .get("r/49", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let snap = c.dir.path().join("snap.db");
    common::etcdctl_ok(
        &c.endpoints(),
        &["snapshot", "save", snap.to_str().unwrap()],
    );

    // A new single-member cluster restored from the file.
    let (r, _) = Cluster::restored_from(&snap).await;
    let i = 0;
    // The restored member publishes its name through the log once it leads.
    r.wait_published().await;
    let mut rk = r.client(i).await;
    let all = rk
        .get("r/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(all.kvs().len(), 50);
    assert_eq!(
        all.header().unwrap().revision(),
        rev,
        "revisions carry over"
    );
    let list = rk.member_list().await.unwrap();
    assert_eq!(list.members().len(), 1);
    assert_eq!(list.members()[0].name(), "restored");
    rk.put("r/new", "1", None).await.unwrap();
}

/// Reads a Maintenance.Snapshot stream to its end; checks etcd's framing (data a whole
/// number of 512 bytes, `remaining_bytes` counting down to 0, a SHA-256 trailer) and
/// returns the data without the trailer.
/// `head` is what was already read from the stream, and `head_remaining` the
/// `remaining_bytes` of the last message read (`u64::MAX` for none).
async fn read_snapshot(
    s: &mut etcd_client::SnapshotStreaming,
    head: Vec<u8>,
    head_remaining: u64,
    scratch: &std::path::Path,
) -> Vec<u8> {
    let mut all = head;
    let mut last_remaining = head_remaining;
    for _ in 0..10_000 {
        let msg = tokio::time::timeout(Duration::from_secs(20), s.message())
            .await
            .expect("a snapshot message within 20s")
            .expect("snapshot stream ok");
        let Some(msg) = msg else {
            assert_eq!(all.len() % 512, 32, "etcdctl's trailer rule");
            let (body, sha) = all.split_at(all.len() - 32);
            assert_eq!(sha256(body, scratch), hex(sha), "SHA-256 trailer");
            assert_eq!(last_remaining, 0);
            all.truncate(all.len() - 32);
            return all;
        };
        assert!(msg.remaining_bytes() <= last_remaining, "counts down");
        last_remaining = msg.remaining_bytes();
        all.extend_from_slice(msg.blob());
    }
    panic!("snapshot stream did not end");
}

/// The SHA-256 of `data` in hex, by coreutils' sha256sum (the tests have no hash crate).
fn sha256(data: &[u8], scratch: &std::path::Path) -> String {
    std::fs::write(scratch, data).unwrap();
    let out = std::process::Command::new("sha256sum")
        .arg(scratch)
        .output()
        .expect("sha256sum");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn client_copies(c: &Cluster, i: usize) -> Vec<String> {
    std::fs::read_dir(c.members[i].data_dir.join("snap"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("client-"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_snapshots_stream_without_a_disk_copy_and_at_most_two_at_once() {
    let mut c = Cluster::start(1, &[]).await;
    let mut kv = c.client(0).await;
    // Far more than a stream buffers (a few MiB queued plus HTTP/2 windows), so a stream
    // nobody reads stays open and holds its slot.
    let value = vec![b's'; 1 << 20];
    for i in 0..24 {
        kv.put(format!("s/{i:02}"), value.clone(), None)
            .await
            .unwrap();
    }
    let mut a = c.client(0).await;
    let mut first = a.snapshot().await.unwrap();
    let mut b = c.client(0).await;
    let mut second = b.snapshot().await.unwrap();
    let mut heads = Vec::new();
    for s in [&mut first, &mut second] {
        let msg = tokio::time::timeout(Duration::from_secs(20), s.message())
            .await
            .expect("first message")
            .unwrap()
            .unwrap();
        assert!(!msg.blob().is_empty() && msg.remaining_bytes() > 0);
        heads.push((msg.blob().to_vec(), msg.remaining_bytes()));
    }
    let (head, head_remaining) = heads.swap_remove(0);
    assert!(client_copies(&c, 0).is_empty(), "no copy on disk");

    // A third at once is refused with RESOURCE_EXHAUSTED.
    let mut third = c.client(0).await;
    let err = match third.snapshot().await {
        Err(e) => e,
        Ok(_) => panic!("a third snapshot at once must be refused"),
    };
    match &err {
        etcd_client::Error::GRpcStatus(s) => {
            assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
            assert!(
                s.message().contains("too many snapshots in progress"),
                "{s:?}"
            );
        }
        other => panic!("unexpected error {other}"),
    }

    // A client that goes away frees its slot.
    drop(second);
    drop(b);
    let mut again = wait_for(Duration::from_secs(20), "a free snapshot slot", || {
        let mut third = third.clone();
        async move { third.snapshot().await.ok() }
    })
    .await;
    let scratch = c.dir.path().join("sha-input");
    let one = read_snapshot(&mut first, head, head_remaining, &scratch).await;
    let two = read_snapshot(&mut again, Vec::new(), u64::MAX, &scratch).await;
    assert!(one.len() > 24 << 20 && two.len() > 24 << 20);
    // etcd's format: a bolt file, its meta page's magic at offset 16.
    assert_eq!(one[16..20], [0xed, 0xda, 0x0c, 0xed]);
    assert!(client_copies(&c, 0).is_empty());

    // A copy an earlier build left behind is removed at start-up.
    let stale = c.members[0].data_dir.join("snap").join("client-42.tmp");
    c.terminate(0);
    std::fs::write(&stale, b"left over").unwrap();
    c.spawn(0, "new");
    c.wait_leader(Duration::from_secs(20)).await;
    assert!(!stale.exists(), "stale snapshot copy removed at start-up");
}
