//! Storage faults with real processes: a member whose disk fills stops (fail-stop) while
//! the others go on, and catches up once space is freed; a member whose data was altered
//! on disk is caught by the start-up corruption check and by the leader's periodic check
//! (etcd's `--experimental-initial-corrupt-check` and `--experimental-corrupt-check-time`).
//!
//! The disk-full test mounts a tmpfs (the tests run as root); the mount is undone by a
//! guard on every path.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{wait_for, Cluster};
use etcd_client::{AlarmAction, AlarmType, Client, GetOptions};

/// The exit status of a member stopped by a storage fault (`kvstore::fatal`).
const STORAGE_FAULT_EXIT: i32 = kvstore::fatal::STORAGE_FAULT_EXIT_CODE;

/// A tmpfs mounted at a directory of the test's own, lazily unmounted when dropped (a
/// member may still hold files in it; the memory goes with the last of them).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size_mib: u64) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m,mode=0700")])
            .arg("tmpfs")
            .arg(dir)
            .output()
            .expect("mount(8)");
        assert!(
            out.status.success(),
            "mounting a tmpfs at {} (this test runs as root): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }

    fn resize(&self, size_mib: u64) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size_mib}m")])
            .arg(&self.dir)
            .output()
            .expect("mount(8)");
        assert!(
            out.status.success(),
            "remounting {}: {}",
            self.dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Reserves `n` member slots (ports, data directories) without starting them.
fn slots(n: usize, args: &[&str]) -> Cluster {
    let mut c = Cluster {
        dir: tempfile::tempdir().expect("tempdir"),
        members: Vec::new(),
        args: args.iter().map(|s| s.to_string()).collect(),
        tls: None,
    };
    for i in 0..n {
        c.add_member_slot(&format!("n{}", i + 1));
    }
    c
}

/// `len` bytes that do not compress (an xorshift stream seeded by `seed`).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Reads `key` from member `i` without a round trip to the leader.
async fn local_value(c: &Cluster, i: usize, key: &str) -> Option<Vec<u8>> {
    let mut m = common::connect_once(&c.members[i].endpoint()).await?;
    let r = m
        .get(key, Some(GetOptions::new().with_serializable()))
        .await
        .ok()?;
    r.kvs().first().map(|kv| kv.value().to_vec())
}

async fn member_ids(c: &Cluster) -> Vec<u64> {
    let mut ids = Vec::new();
    for i in 0..c.members.len() {
        let mut m = c.client(i).await;
        let st = m.status().await.expect("status");
        ids.push(st.header().expect("header").member_id());
    }
    ids
}

async fn alarms(client: &mut Client) -> Option<Vec<(u64, AlarmType)>> {
    let r = client
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .ok()?;
    Some(
        r.alarms()
            .iter()
            .map(|a| (a.member_id(), a.alarm()))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_a_member_whose_disk_fills_stops_and_catches_up_once_space_is_freed() {
    const DISK_MIB: u64 = 32;
    const VALUE: usize = 256 << 10;
    let mut c = slots(
        3,
        &[
            "--experimental-initial-corrupt-check",
            "--experimental-corrupt-check-time",
            "1s",
        ],
    );
    let full = 2;
    let disk = Tmpfs::mount(&c.members[full].data_dir.clone(), DISK_MIB);
    for i in 0..3 {
        c.spawn(i, "new");
    }
    c.wait_leader(Duration::from_secs(20)).await;
    c.wait_published().await;

    // Write through the two members on a real disk until the third cannot keep up.
    let healthy: Vec<String> = (0..3)
        .filter(|&i| i != full)
        .map(|i| c.members[i].endpoint())
        .collect();
    let mut kv = common::connect(&healthy).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let max_writes = 4 * (DISK_MIB << 20) as usize / VALUE;
    let mut written = 0usize;
    let mut failed = 0usize;
    let status = loop {
        let child = c.members[full].child.as_mut().expect("running");
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        assert!(
            written < max_writes && Instant::now() < deadline,
            "the member on a {DISK_MIB} MiB disk still runs after {written} writes of {VALUE} bytes:\n{}",
            c.log_tail(full, 40)
        );
        // A write may fail while the full member was the leader and a new one is elected.
        match kv
            .put(
                format!("fill/{written:05}"),
                noise(written as u64, VALUE),
                None,
            )
            .await
        {
            Ok(_) => written += 1,
            Err(e) => {
                failed += 1;
                assert!(failed < 50, "writes keep failing: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    c.members[full].child = None;
    let log = std::fs::read_to_string(&c.members[full].log).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(STORAGE_FAULT_EXIT),
        "the member stops through the fail-stop path; log:\n{}",
        c.log_tail(full, 40)
    );
    assert!(
        log.contains("storage fault, stopping this member")
            && log.contains("No space left on device"),
        "the member says why it stopped:\n{}",
        c.log_tail(full, 40)
    );

    // The other two go on: a leader among them, writes and linearizable reads.
    c.wait_leader(Duration::from_secs(20)).await;
    for i in 0..10 {
        kv.put(format!("after/{i}"), format!("{i}"), None)
            .await
            .expect("the two healthy members accept writes");
    }
    let r = kv.get("after/9", None).await.expect("linearizable read");
    assert_eq!(r.kvs()[0].value(), b"9");

    // Space comes back; the member restarts from its directory (passing the start-up
    // corruption check against its peers), catches up, and holds the same data.
    disk.resize(512);
    c.spawn(full, "new");
    let marker = kv.put("after/marker", "m", None).await.expect("write");
    let rev = marker.header().expect("header").revision();
    wait_for(
        Duration::from_secs(60),
        "the restarted member to catch up",
        || local_value(&c, full, "after/marker"),
    )
    .await;
    c.assert_same_hash(rev).await;
    let mut m = c.client(full).await;
    let count = m
        .get(
            "fill/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_count_only()
                    .with_serializable(),
            ),
        )
        .await
        .expect("count");
    // A write that failed ambiguously (its leader stopped) may still have been applied.
    let count = count.count() as usize;
    assert!(
        (written..=written + 1).contains(&count),
        "{count} keys, {written} writes acknowledged"
    );
    // No false alarm from the periodic check through all of it.
    assert_eq!(alarms(&mut kv).await, Some(vec![]));
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_a_member_whose_data_was_altered_is_caught_at_start_and_by_the_leader() {
    let mut c = Cluster::start(
        3,
        &[
            "--experimental-initial-corrupt-check",
            "--experimental-corrupt-check-time",
            "1s",
        ],
    )
    .await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let victim = (leader + 1) % 3;
    let ids = member_ids(&c).await;
    let mut kv = c.client(leader).await;
    for i in 0..20 {
        kv.put(format!("k/{i:02}"), format!("v{i}"), None)
            .await
            .expect("put");
    }
    wait_for(
        Duration::from_secs(20),
        "the victim to apply every write",
        || local_value(&c, victim, "k/19"),
    )
    .await;
    let stopped = c.terminate(victim).expect("was running");
    assert!(stopped.success(), "clean stop: {stopped:?}");
    let altered = kvstore::storage::mvcc_store::corrupt_value_for_tests(
        &c.members[victim].data_dir,
        b"k/07",
        b"rotten",
    )
    .expect("alter the stopped member's data");
    assert!(altered.is_some());

    // With the start-up check, the altered member refuses to start and names a peer.
    c.spawn(victim, "new");
    let status = common::wait_for_exit(
        c.members[victim].child.as_mut().expect("spawned"),
        Duration::from_secs(60),
    );
    c.members[victim].child = None;
    let log = std::fs::read_to_string(&c.members[victim].log).unwrap_or_default();
    assert!(!status.success(), "refused to start: {status:?}\n{log}");
    let named = (0..3)
        .filter(|&i| i != victim)
        .any(|i| log.contains(&format!("peer {:x} has hash", ids[i])));
    assert!(
        log.contains(&format!(
            "{:x} found data inconsistency with peers",
            ids[victim]
        )) && named,
        "the refusal names the member and a mismatching peer:\n{}",
        c.log_tail(victim, 20)
    );

    // Without it, the member starts, and the leader's periodic check raises CORRUPT for it.
    c.args = vec!["--experimental-corrupt-check-time".into(), "1s".into()];
    c.spawn(victim, "new");
    let mut m = c.client(leader).await;
    let raised = wait_for(Duration::from_secs(30), "the CORRUPT alarm", || {
        let mut m = m.clone();
        async move { alarms(&mut m).await.filter(|a| !a.is_empty()) }
    })
    .await;
    assert_eq!(raised, vec![(ids[victim], AlarmType::Corrupt)]);

    // As etcd: writes are refused cluster-wide, reads still served.
    let e = m.put("k/new", "x", None).await.expect_err("refused");
    assert!(e.to_string().contains("etcdserver: corrupt cluster"), "{e}");
    let r = m.get("k/00", None).await.expect("reads still work");
    assert_eq!(r.kvs()[0].value(), b"v0");
    let eps = vec![c.members[leader].endpoint()];
    let want = format!("memberID:{} alarm:CORRUPT", ids[victim]);
    let list = common::etcdctl_ok(&eps, &["alarm", "list"]);
    assert!(list.contains(&want), "etcdctl alarm list: {list}");
    let status = common::etcdctl_ok(&eps, &["endpoint", "status"]);
    assert!(status.contains(&want), "etcdctl endpoint status: {status}");
}
