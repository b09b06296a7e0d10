//! Multi-member behaviour with real processes: leader crash, restart from the same data
//! directory, a member wiped and replaced through a snapshot, clean shutdown.

mod common;

use std::time::Duration;

use common::{wait_for, Cluster};
use etcd_client::GetOptions;

/// Reads `key` from member `i` without a round trip to the leader.
async fn local_value(c: &Cluster, i: usize, key: &str) -> Option<Vec<u8>> {
    let mut m = common::connect_once(&c.members[i].endpoint()).await?;
    let r = m
        .get(key, Some(GetOptions::new().with_serializable()))
        .await
        .ok()?;
    r.kvs().first().map(|kv| kv.value().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_leader_sigkill_loses_no_acknowledged_write() {
    let mut c = Cluster::start(3, &[]).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let mut kv = c.any_client().await;
    let mut acked = Vec::new();
    for i in 0..50 {
        kv.put(format!("before/{i:03}"), format!("{i}"), None)
            .await
            .unwrap();
        acked.push(format!("before/{i:03}"));
    }
    c.kill(leader);
    let new_leader = c.wait_leader(Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader);
    let mut kv = c.client(new_leader).await;
    for i in 0..50 {
        kv.put(format!("after/{i:03}"), format!("{i}"), None)
            .await
            .unwrap();
    }
    let before = kv
        .get("before/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(
        before.kvs().len(),
        acked.len(),
        "every write acknowledged before the kill is readable"
    );

    // The killed member comes back with its data and catches up.
    c.spawn(leader, "new");
    wait_for(
        Duration::from_secs(20),
        "restarted member to catch up",
        || local_value(&c, leader, "after/049"),
    )
    .await;
    let rev = kv
        .get("after/049", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    c.assert_same_hash(rev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_wiped_member_is_replaced_and_catches_up_through_a_snapshot() {
    let mut c = Cluster::start(3, &["--snapshot-count", "20"]).await;
    let mut kv = c.any_client().await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let victim = (leader + 1) % 3;
    let victim_id = {
        let mut m = c.client(victim).await;
        m.status().await.unwrap().header().unwrap().member_id()
    };
    c.kill(victim);
    let mut kv_leader = c.client(leader).await;
    kv_leader.member_remove(victim_id).await.unwrap();
    std::fs::remove_dir_all(&c.members[victim].data_dir).unwrap();

    // Enough writes that the log behind the snapshot is purged.
    for i in 0..200 {
        kv_leader
            .put(format!("k/{i:03}"), vec![b'x'; 100], None)
            .await
            .unwrap();
    }
    let added = kv_leader
        .member_add([c.members[victim].peer_url()], None)
        .await
        .unwrap();
    let new_id = added.member().unwrap().id();
    assert_ne!(new_id, victim_id, "a re-added member gets a new ID");
    c.spawn(victim, "existing");
    wait_for(Duration::from_secs(30), "replacement to catch up", || {
        local_value(&c, victim, "k/199")
    })
    .await;
    let log = std::fs::read_to_string(&c.members[victim].log).unwrap();
    assert!(
        log.contains("snapshot installed"),
        "the replacement caught up through a snapshot:\n{log}"
    );

    let rev = kv
        .get("k/199", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let mut rep = c.client(victim).await;
    let count = rep
        .get(
            "k/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_count_only()
                    .with_serializable(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(count.count(), 200);
    c.assert_same_hash(rev).await;
    let members = kv_leader.member_list().await.unwrap();
    assert_eq!(members.members().len(), 3);
    let names: Vec<String> = wait_for(
        Duration::from_secs(10),
        "replacement to publish its name",
        || {
            let mut kv = kv_leader.clone();
            async move {
                let names: Vec<String> = kv
                    .member_list()
                    .await
                    .ok()?
                    .members()
                    .iter()
                    .map(|m| m.name().to_string())
                    .collect();
                names.iter().all(|n| !n.is_empty()).then_some(names)
            }
        },
    )
    .await;
    assert!(names.contains(&c.members[victim].name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_sigterm_is_a_clean_shutdown_and_data_survives() {
    let mut c = Cluster::start(1, &[]).await;
    let mut kv = c.client(0).await;
    kv.put("durable", "yes", None).await.unwrap();
    let status = c.terminate(0).expect("exit status");
    assert!(status.success(), "SIGTERM exit: {status:?}");
    assert!(c.log_tail(0, 5).contains("stopped"));
    c.spawn(0, "new");
    c.wait_leader(Duration::from_secs(10)).await;
    let mut kv = c.client(0).await;
    assert_eq!(
        kv.get("durable", None).await.unwrap().kvs()[0].value(),
        b"yes"
    );
}

/// Starts a single member on `data` and returns its stderr once it exited (it must fail).
fn start_and_fail(data: &std::path::Path) -> String {
    let (port, peer) = (common::free_port(), common::free_port());
    let out = std::process::Command::new(common::BIN)
        .args(["kvstore", "--name", "x", "--data-dir"])
        .arg(data)
        .args(["--listen-client-urls", &format!("http://127.0.0.1:{port}")])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_foreign_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("member")).unwrap();
    std::fs::write(data.join("member").join("wal"), b"not ours").unwrap();
    let err = start_and_fail(&data);
    assert!(err.contains("not a Flotilla kvstore directory"), "{err}");

    // A damaged identity file is refused too.
    let data2 = dir.path().join("data2");
    std::fs::create_dir_all(&data2).unwrap();
    std::fs::write(data2.join("member.json"), b"{garbage").unwrap();
    assert!(start_and_fail(&data2).contains("damaged member.json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_corrupted_database_is_refused_with_a_clear_message() {
    let mut c = Cluster::start(1, &[]).await;
    let mut kv = c.client(0).await;
    kv.put("k", "v", None).await.unwrap();
    assert!(c.terminate(0).unwrap().success());
    let db = c.members[0].data_dir.join("db");
    // Damage the manifest pointer RocksDB starts from.
    std::fs::write(db.join("CURRENT"), b"MANIFEST-999999\n").unwrap();
    c.spawn(0, "new");
    let child = c.members[0].child.as_mut().unwrap();
    let status = common::wait_for_exit(child, Duration::from_secs(20));
    assert!(!status.success());
    let log = std::fs::read_to_string(&c.members[0].log).unwrap();
    assert!(log.contains("RocksDB refused to open it"), "{log}");
    c.members[0].child = None;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_a_paused_leader_never_serves_a_stale_linearizable_read() {
    let c = Cluster::start(3, &[]).await;
    let old = c.wait_leader(Duration::from_secs(10)).await;
    let mut kv = c.client(old).await;
    kv.put("k", "v1", None).await.unwrap();
    // Open the connection to the old leader before pausing it.
    let mut stale = c.client(old).await;
    stale.get("k", None).await.unwrap();
    let old_id = stale.status().await.unwrap().header().unwrap().member_id();
    let pid = c.members[old].child.as_ref().unwrap().id() as i32;
    common::send_signal(pid, "STOP");
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let new = wait_for(
        Duration::from_secs(20),
        "a new leader among the others",
        || async {
            for &i in &others {
                let mut m = common::connect_once(&c.members[i].endpoint()).await?;
                let st = m.status().await.ok()?;
                if st.leader() != 0
                    && st.leader() != old_id
                    && st.header()?.member_id() == st.leader()
                {
                    return Some(i);
                }
            }
            None
        },
    )
    .await;
    let mut kv_new = c.client(new).await;
    kv_new.put("k", "v2", None).await.unwrap();
    common::send_signal(pid, "CONT");
    // The old leader still believes it leads for a moment; a linearizable read must not
    // show v1 (it may fail, or wait and show v2).
    match stale.get("k", None).await {
        Ok(r) => assert_eq!(
            r.kvs()[0].value(),
            b"v2",
            "stale read from a deposed leader"
        ),
        Err(e) => eprintln!("read refused: {e}"),
    }
}

/// The member ID of member `i` (from its own status).
async fn member_id(c: &Cluster, i: usize) -> u64 {
    let mut m = c.client(i).await;
    m.status().await.unwrap().header().unwrap().member_id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_etcdctl_move_leader_hands_leadership_to_the_member_named() {
    let c = Cluster::start(3, &[]).await;
    let old = c.wait_leader(Duration::from_secs(10)).await;
    let mut kv = c.client(old).await;
    kv.put("before", "1", None).await.unwrap();
    let to = (0..3).find(|&i| i != old).unwrap();
    let to_id = member_id(&c, to).await;
    let leader_ep = vec![c.members[old].endpoint()];
    let out = common::etcdctl_ok(&leader_ep, &["move-leader", &format!("{to_id:x}")]);
    assert!(
        out.contains("Leadership transferred"),
        "etcdctl's report: {out}"
    );
    let new = c.wait_leader(Duration::from_secs(10)).await;
    assert_eq!(new, to, "the member named leads");
    let mut kv = c.any_client().await;
    kv.put("after", "2", None).await.unwrap();
    assert_eq!(kv.get("before", None).await.unwrap().kvs()[0].value(), b"1");

    // etcd's refusals: to a member that does not exist, and on a member that does not lead.
    let out = common::etcdctl(&[c.members[new].endpoint()], &["move-leader", "abcdef"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad leader transferee"), "{err}");
    let follower = (0..3).find(|&i| i != new).unwrap();
    let mut on_follower = c.client(follower).await;
    let err = on_follower
        .move_leader(member_id(&c, new).await)
        .await
        .expect_err("only the leader moves leadership")
        .to_string();
    assert!(err.contains("not leader"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t80_a_leader_cut_off_from_its_quorum_steps_down_and_its_clients_get_an_error() {
    let c = Cluster::start(3, &[]).await;
    let old = c.wait_leader(Duration::from_secs(10)).await;
    let mut kv = c.client(old).await;
    kv.put("k", "v1", None).await.unwrap();
    let others: Vec<i32> = (0..3)
        .filter(|&i| i != old)
        .map(|i| c.members[i].child.as_ref().unwrap().id() as i32)
        .collect();
    for &pid in &others {
        common::send_signal(pid, "STOP");
    }
    let cut = std::time::Instant::now();
    // A put already in flight when the quorum goes is answered once the leader knows it
    // is cut off, not at the request timeout: its outcome is unknown, and etcd says so.
    let in_flight = {
        let mut kv = kv.clone();
        tokio::spawn(async move {
            let put = kv.put("k", "in-flight", None).await;
            (put.map(|_| ()).map_err(|e| e.to_string()), cut.elapsed())
        })
    };
    // Election timeout 500 ms: openraft's leader lease runs out 500 ms after the last
    // quorum acknowledgement, and the member then reports no leader.
    let mut status = c.client(old).await;
    let stepped_down = wait_for(
        Duration::from_secs(10),
        "the cut-off leader to step down",
        || {
            let mut status = status.clone();
            async move {
                let st = status.status().await.ok()?;
                (st.leader() == 0).then(|| cut.elapsed())
            }
        },
    )
    .await;
    let asked = std::time::Instant::now();
    let put = kv.put("k", "v2", None).await;
    let answered = asked.elapsed();
    let (in_flight, in_flight_answered) = in_flight.await.unwrap();
    for &pid in &others {
        common::send_signal(pid, "CONT");
    }
    eprintln!("stepped down after {stepped_down:?}; a put was answered in {answered:?}: {put:?}");
    eprintln!(
        "the put in flight at the cut was answered after {in_flight_answered:?}: {in_flight:?}"
    );
    let err = in_flight.expect_err("no quorum, no acknowledgement");
    assert!(
        err.contains("possibly due to previous leader failure"),
        "{err}"
    );
    assert!(
        in_flight_answered < Duration::from_secs(3),
        "answered once the leader knew it was cut off, not at the request timeout: {in_flight_answered:?}"
    );
    let err = put.expect_err("no quorum, no write").to_string();
    assert!(err.contains("no leader"), "{err}");
    // Without a step-down the put would wait out the request timeout (5 s + 2 x 500 ms).
    assert!(
        answered < Duration::from_secs(2),
        "answered at once: {answered:?}"
    );
    let _ = status.status().await;
    assert!(c.log_tail(old, 200).contains("lost its quorum"));
    // Healed, the cluster goes on, with v2 never written.
    c.wait_leader(Duration::from_secs(20)).await;
    let mut kv = c.any_client().await;
    let after = kv.get("k", None).await.unwrap().kvs()[0].value().to_vec();
    // The in-flight put may or may not have been committed (the old leader may still
    // have replicated it before the cut); v2 never was.
    assert!(after == b"v1" || after == b"in-flight", "{after:?}");
    kv.put("k", "v3", None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90_a_rolling_restart_under_load_fails_only_requests_in_flight_on_the_stopped_member() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    let mut c = Cluster::start(3, &[]).await;
    c.wait_leader(Duration::from_secs(10)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    // Completion times of acknowledged puts, to find the longest gap between two.
    let done = Arc::new(Mutex::new(Vec::<std::time::Instant>::new()));
    let endpoints = c.endpoints();
    let mut load = Vec::new();
    for w in 0..64 {
        // Each client talks to one member, as a client pinned by a load balancer would.
        let ep = endpoints[w % endpoints.len()].clone();
        let (stop, ok, failed, done) = (stop.clone(), ok.clone(), failed.clone(), done.clone());
        load.push(tokio::spawn(async move {
            let mut kv = common::connect(&[ep]).await;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 100_000 {
                n += 1;
                match kv.put(format!("load/{w}"), n.to_string(), None).await {
                    Ok(_) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        done.lock().unwrap().push(std::time::Instant::now());
                    }
                    Err(e) => {
                        failed.lock().unwrap().push(e.to_string());
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    wait_for(
        Duration::from_secs(10),
        "the load to be acknowledged",
        || {
            let ok = ok.clone();
            async move { (ok.load(Ordering::Relaxed) > 100).then_some(()) }
        },
    )
    .await;
    let mut terms = Vec::new();
    for i in 0..3 {
        let status = c.terminate(i).expect("exit status");
        assert!(status.success(), "member {i} exits cleanly: {status:?}");
        c.spawn(i, "new");
        c.wait_leader(Duration::from_secs(20)).await;
        let mut m = c.client(i).await;
        terms.push(m.status().await.unwrap().raft_term());
        // The restarted member catches up before the next one goes: it has applied what
        // the cluster had committed once it was back.
        let mut any = c.any_client().await;
        let target = any.status().await.unwrap().raft_index();
        wait_for(
            Duration::from_secs(20),
            "the restarted member to catch up",
            || {
                let mut m = m.clone();
                async move {
                    let st = m.status().await.ok()?;
                    (st.raft_applied_index() >= target).then_some(())
                }
            },
        )
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let failed = failed.lock().unwrap().clone();
    let mut done = done.lock().unwrap().clone();
    done.sort();
    let stall = done
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    eprintln!(
        "rolling restart: {} puts acknowledged, {} failed, longest gap {stall:?}, terms {terms:?}: {:?}",
        ok.load(Ordering::Relaxed),
        failed.len(),
        failed.iter().take(5).collect::<Vec<_>>()
    );
    // A member stopping fails what its own clients had in flight on it (22 clients each
    // restart, one request each) and what they send until it is back; nothing else.
    assert!(ok.load(Ordering::Relaxed) > 1000);
    assert!(
        failed
            .iter()
            .all(|e| !e.contains("timed out") && !e.contains("no leader")),
        "no request waited out an election: {failed:?}"
    );
    assert!(
        stall < Duration::from_secs(2),
        "no election-length stall: {stall:?}"
    );
}

/// The fixture `kvstore/testdata/datadir-openraft-0.9.tar.gz`: a one-member data directory
/// written by the build before openraft 0.10 (commit 3033d5c), as its README says: 300 keys
/// `fixture/000`..`fixture/299` with values `v000`.., key `fixture/leased` on a lease of
/// 3600 s, a compaction at revision 100, and `--snapshot-count 100`, so the directory holds
/// a snapshot, its metadata file and the log after it (`kvstore/testdata/README.md`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t100_a_data_directory_written_by_the_previous_release_opens_and_serves_its_keys() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("kvstore/testdata/datadir-openraft-0.9.tar.gz");
    let mut c = Cluster {
        dir: tempfile::tempdir().unwrap(),
        members: Vec::new(),
        args: vec!["--snapshot-count".into(), "100".into()],
        tls: None,
    };
    let i = c.add_member_slot("old");
    std::fs::create_dir_all(&c.members[i].data_dir).unwrap();
    let out = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(&c.members[i].data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    c.spawn(i, "new");
    c.wait_leader(Duration::from_secs(20)).await;
    let check = |c: &Cluster| {
        let ep = c.endpoints();
        async move {
            let mut kv = common::connect(&ep).await;
            let all = kv
                .get("fixture/", Some(GetOptions::new().with_prefix()))
                .await
                .unwrap();
            assert_eq!(all.kvs().len(), 301, "300 keys and the leased one");
            assert_eq!(all.kvs()[7].value(), b"v007");
            let leased = kv.get("fixture/leased", None).await.unwrap();
            let lease = leased.kvs()[0].lease();
            assert_ne!(lease, 0, "the key keeps its lease");
            let leases = kv.leases().await.unwrap();
            assert!(leases.leases().iter().any(|l| l.id() == lease));
            // History below the compaction is gone, above it is there.
            assert!(kv
                .get("fixture/000", Some(GetOptions::new().with_revision(50)))
                .await
                .is_err());
            let old = kv
                .get("fixture/150", Some(GetOptions::new().with_revision(200)))
                .await
                .unwrap();
            assert_eq!(old.kvs()[0].value(), b"v150");
            all.header().unwrap().revision()
        }
    };
    let rev = check(&c).await;
    let mut kv = c.any_client().await;
    let w = kv.put("after-upgrade", "1", None).await.unwrap();
    assert_eq!(w.header().unwrap().revision(), rev + 1);
    // And again after a clean restart on the new build.
    assert!(c.terminate(i).unwrap().success());
    c.spawn(i, "new");
    c.wait_leader(Duration::from_secs(20)).await;
    assert_eq!(check(&c).await, rev + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t110_a_lone_member_keeps_leading_while_idle() {
    let c = Cluster::start(1, &[]).await;
    let mut kv = c.client(0).await;
    kv.put("a", "1", None).await.unwrap();
    // Idle for three election timeouts (500 ms): no one acknowledges anything to a sole
    // voter, and it needs no one; it must not take itself for a leader cut off.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kv.put("a", "2", None).await.unwrap();
    let st = kv.status().await.unwrap();
    assert_eq!(st.leader(), st.header().unwrap().member_id());
}
