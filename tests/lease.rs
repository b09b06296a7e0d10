//! Leases with real processes: expiry deletes every attached key in one revision, keep-alive
//! holds a lease, time-to-live reports keys, a leader change never expires a lease early.

mod common;

use std::time::{Duration, Instant};

use common::{wait_for, Cluster};
use etcd_client::{LeaseTimeToLiveOptions, PutOptions, WatchOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_expiry_deletes_all_keys_in_one_revision() {
    let c = Cluster::start(3, &[]).await;
    let mut kv = c.any_client().await;
    let lease = kv.lease_grant(2, None).await.unwrap();
    assert_eq!(lease.ttl(), 2);
    for i in 0..5 {
        kv.put(
            format!("l/{i}"),
            "x",
            Some(PutOptions::new().with_lease(lease.id())),
        )
        .await
        .unwrap();
    }
    let ttl = kv
        .lease_time_to_live(lease.id(), Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(ttl.keys().len(), 5);
    assert!(ttl.ttl() > 0 && ttl.ttl() <= 2);
    let mut s = kv
        .watch("l/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    assert!(s.message().await.unwrap().unwrap().created());
    let resp = tokio::time::timeout(Duration::from_secs(15), s.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        resp.events().len(),
        5,
        "all keys of the lease go in one revision"
    );
    let rev = resp.events()[0].kv().unwrap().mod_revision();
    assert!(resp
        .events()
        .iter()
        .all(|e| e.kv().unwrap().mod_revision() == rev));
    let gone = kv.lease_time_to_live(lease.id(), None).await.unwrap();
    assert_eq!(gone.ttl(), -1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_keep_alive_holds_a_lease_across_a_leader_change() {
    let mut c = Cluster::start(3, &[]).await;
    let mut kv = c.any_client().await;
    let lease = kv.lease_grant(4, None).await.unwrap();
    kv.put("held", "x", Some(PutOptions::new().with_lease(lease.id())))
        .await
        .unwrap();
    let (mut keeper, mut responses) = kv.lease_keep_alive(lease.id()).await.unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(6) {
        keeper.keep_alive().await.unwrap();
        let r = responses.message().await.unwrap().unwrap();
        assert_eq!(r.ttl(), 4);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(kv.get("held", None).await.unwrap().kvs().len(), 1);

    // Kill the leader: the new leader restarts the lease at its full TTL.
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    c.kill(leader);
    c.wait_leader(Duration::from_secs(10)).await;
    let mut kv = c.any_client().await;
    let ttl = kv.lease_time_to_live(lease.id(), None).await.unwrap();
    assert!(
        ttl.ttl() >= 3,
        "not shortened by the leader change: {}",
        ttl.ttl()
    );
    assert_eq!(kv.get("held", None).await.unwrap().kvs().len(), 1);
    kv.lease_revoke(lease.id()).await.unwrap();
    wait_for(
        Duration::from_secs(5),
        "revoked lease's key deleted",
        || {
            let mut kv = kv.clone();
            async move {
                kv.get("held", None)
                    .await
                    .ok()?
                    .kvs()
                    .is_empty()
                    .then_some(())
            }
        },
    )
    .await;
    let leases = kv.leases().await.unwrap();
    assert!(leases.leases().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_a_mass_expiry_is_revoked_in_rate_limited_batches_and_misses_none() {
    // More leases than one expiry tick revokes (500 per 500 ms, etcd's leaseRevokeRate),
    // all due at once.
    let c = Cluster::start(1, &[]).await;
    let kv = c.client(0).await;
    let n = 1200;
    for chunk in (0..n).collect::<Vec<usize>>().chunks(100) {
        let grants = chunk.iter().map(|&i| {
            let mut kv = kv.clone();
            async move {
                let lease = kv.lease_grant(2, None).await.unwrap();
                kv.put(
                    format!("mass/{i:04}"),
                    "x",
                    Some(PutOptions::new().with_lease(lease.id())),
                )
                .await
                .unwrap();
            }
        });
        futures::future::join_all(grants).await;
    }
    let count = |kv: etcd_client::Client| async move {
        let mut kv = kv;
        let opts = etcd_client::GetOptions::new()
            .with_prefix()
            .with_count_only();
        kv.get("mass/", Some(opts)).await.ok().map(|r| r.count())
    };
    assert_eq!(count(kv.clone()).await, Some(n as i64));
    wait_for(
        Duration::from_secs(30),
        "every expired lease revoked",
        || {
            let kv = kv.clone();
            async move { (count(kv).await? == 0).then_some(()) }
        },
    )
    .await;
    let mut kv = kv;
    assert!(kv.leases().await.unwrap().leases().is_empty());
    let log = std::fs::read_to_string(&c.members[0].log).unwrap();
    let batches: Vec<usize> = log
        .lines()
        .filter(|l| l.contains("revoking expired leases"))
        .filter_map(|l| {
            let rest = l.split("leases=").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect();
    assert!(batches.len() >= 3, "{batches:?}");
    assert!(batches.iter().all(|&b| b <= 500), "{batches:?}");
}
