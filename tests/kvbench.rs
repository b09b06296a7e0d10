//! `flotilla bench kv`, the etcd v3 load generator, drives both a kvstore cluster and a real
//! etcd cluster through every workload (a few operations each) and reports what it did:
//! every operation counted, none failed, the servers' peak RSS read.

mod common;

use std::process::Command;

use common::k8s::EtcdCluster;
use common::{Cluster, BIN};

const WORKLOADS: &[&[&str]] = &[
    &[
        "--workload",
        "put",
        "--clients",
        "4",
        "--conns",
        "2",
        "--total",
        "200",
    ],
    &[
        "--workload",
        "put",
        "--clients",
        "4",
        "--target",
        "all",
        "--total",
        "100",
    ],
    &[
        "--workload",
        "range",
        "--clients",
        "4",
        "--key-space",
        "100",
        "--total",
        "200",
    ],
    &[
        "--workload",
        "range",
        "--serializable",
        "--target",
        "all",
        "--clients",
        "3",
        "--conns",
        "3",
        "--key-space",
        "100",
        "--total",
        "200",
    ],
    &["--workload", "txn", "--clients", "4", "--total", "200"],
    &[
        "--workload",
        "watch",
        "--clients",
        "5",
        "--conns",
        "2",
        "--total",
        "20",
        "--put-rate",
        "200",
    ],
    &[
        "--workload",
        "lease",
        "--clients",
        "4",
        "--leases",
        "50",
        "--total",
        "100",
    ],
    &["--workload", "dataset", "--clients", "8", "--total", "2000"],
];

/// Runs every workload; returns the rows `(workload/name, ops, errors, rss?, disk?)`.
fn run_all(endpoints: &str, pids: &str, dirs: &str) -> Vec<(String, u64, u64, bool, bool)> {
    let mut rows = Vec::new();
    for w in WORKLOADS {
        let out = Command::new(BIN)
            .args([
                "bench",
                "kv",
                "--endpoints",
                endpoints,
                "--json",
                "--max-seconds",
                "60",
            ])
            .args(["--pids", pids, "--data-dirs", dirs])
            .args(*w)
            .output()
            .expect("run flotilla bench kv");
        assert!(
            out.status.success(),
            "{w:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON row");
            rows.push((
                format!(
                    "{}/{}",
                    v["workload"].as_str().unwrap(),
                    v["name"].as_str().unwrap()
                ),
                v["ops"].as_u64().unwrap(),
                v["errors"].as_u64().unwrap(),
                v["peak_rss_mib"].as_f64().is_some_and(|m| m > 1.0),
                v["disk_mib"].as_f64().is_some_and(|m| m > 0.0),
            ));
        }
    }
    rows
}

fn check(rows: &[(String, u64, u64, bool, bool)]) {
    let ops =
        |name: &str| -> Vec<u64> { rows.iter().filter(|r| r.0 == name).map(|r| r.1).collect() };
    assert_eq!(ops("put/put"), vec![200, 100], "{rows:?}");
    assert_eq!(ops("range/range, linearizable"), vec![200], "{rows:?}");
    assert_eq!(ops("range/range, serializable"), vec![200], "{rows:?}");
    assert_eq!(ops("txn/txn (CAS)"), vec![200], "{rows:?}");
    // Every watcher saw every put.
    assert_eq!(ops("watch/watch delivery"), vec![100], "{rows:?}");
    assert_eq!(ops("lease/lease grant"), vec![50], "{rows:?}");
    assert_eq!(ops("lease/lease keepalive"), vec![100], "{rows:?}");
    assert_eq!(ops("lease/lease revoke"), vec![50], "{rows:?}");
    assert_eq!(ops("dataset/load"), vec![2000], "{rows:?}");
    assert_eq!(ops("dataset/range of 10,000 keys"), vec![50], "{rows:?}");
    for r in rows {
        assert_eq!(r.2, 0, "errors in {r:?}");
        assert!(r.3, "peak RSS of {r:?}");
    }
    assert!(
        rows.iter().any(|r| r.0 == "dataset/load" && r.4),
        "disk use"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_every_workload_against_the_kvstore_and_etcd() {
    let c = Cluster::start(3, &[]).await;
    let eps: Vec<String> = c.members.iter().map(|m| m.client_url()).collect();
    let pids: Vec<String> = c
        .members
        .iter()
        .map(|m| m.child.as_ref().unwrap().id().to_string())
        .collect();
    let dirs: Vec<String> = c
        .members
        .iter()
        .map(|m| m.data_dir.display().to_string())
        .collect();
    check(&run_all(&eps.join(","), &pids.join(","), &dirs.join(",")));
    drop(c);

    let e = EtcdCluster::start(3).await;
    let pids: Vec<String> = e
        .children
        .iter()
        .map(|c| c.as_ref().unwrap().id().to_string())
        .collect();
    check(&run_all(
        &e.urls().join(","),
        &pids.join(","),
        &e.dir.path().display().to_string(),
    ));
}
