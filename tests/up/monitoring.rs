//! Monitoring on the README's cluster: every kvstore member serves etcd's metrics and
//! health on its metrics port (+6 of its block) to holders of a client certificate of
//! the kvstore's CA, and to no one else; the leading controller-manager counts its
//! controllers' work queues under client-go's names (its secure port, +3, asks the
//! apiserver whether the caller may read `/metrics`).

use std::path::Path;
use std::process::Command;

fn curl(args: &[&str]) -> (bool, String) {
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

/// The admin's bearer token, from the kubeconfig.
fn admin_token(kc: &Path) -> String {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(kc).unwrap()).unwrap();
    v["users"][0]["user"]["token"].as_str().unwrap().to_string()
}

pub fn check(data: &Path, kc: &Path) {
    let pki = data.join("pki/etcd");
    let f = |n: &str| pki.join(n).display().to_string();
    let (ca, cert, key) = (f("ca.crt"), f("admin.crt"), f("admin.key"));
    let mut leaders = 0;
    for m in 0..3 {
        let url = format!("https://127.0.0.1:{}", 2385 + 10_000 * m);
        let (ok, text) = curl(&[
            "--cacert",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            &format!("{url}/metrics"),
        ]);
        assert!(ok, "member {m}'s metrics: {text}");
        for name in [
            "etcd_server_has_leader 1",
            "etcd_server_leader_changes_seen_total",
            "etcd_disk_wal_fsync_duration_seconds_count",
            "etcd_disk_backend_commit_duration_seconds_count",
            "etcd_mvcc_db_total_size_in_bytes",
            "etcd_server_proposals_committed_total",
            "etcd_server_proposals_applied_total",
            "etcd_server_proposals_pending",
            "etcd_server_proposals_failed_total",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "{name} from member {m}:\n{text}"
            );
        }
        // The leader times its heartbeats to each follower (followers send none).
        if text.lines().any(|l| l == "etcd_server_is_leader 1") {
            leaders += 1;
            let rtt = "etcd_network_peer_round_trip_time_seconds_count{To=";
            assert_eq!(
                text.lines().filter(|l| l.starts_with(rtt)).count(),
                2,
                "{text}"
            );
        }
        let (ok, health) = curl(&[
            "--cacert",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            &format!("{url}/health"),
        ]);
        assert!(ok && health.contains(r#""health":"true""#), "{health}");
        // Without a client certificate the handshake fails.
        let (ok, _) = curl(&["--cacert", &ca, &format!("{url}/metrics")]);
        assert!(!ok, "member {m} served its metrics to a stranger");
    }
    assert_eq!(leaders, 1, "one member says it leads");

    // The controller-managers' secure ports (self-signed, as kube's without a certificate).
    let auth = format!("Authorization: Bearer {}", admin_token(kc));
    // One of the three was killed by the workloads check (`flotilla up` does not restart it).
    let (mut counted, mut reachable) = (0, 0);
    for m in 0..3 {
        let url = format!("https://127.0.0.1:{}/metrics", 2382 + 10_000 * m);
        let (ok, text) = curl(&["-k", "-H", &auth, &url]);
        if !ok {
            continue;
        }
        reachable += 1;
        if text
            .lines()
            .any(|l| l.starts_with("workqueue_adds_total{name=\"deployment\"}"))
        {
            for name in [
                "workqueue_depth{name=\"deployment\"}",
                "workqueue_queue_duration_seconds_bucket{name=\"deployment\"",
                "workqueue_work_duration_seconds_count{name=\"horizontalpodautoscaling\"}",
                "workqueue_retries_total{name=\"deployment\"}",
            ] {
                assert!(text.lines().any(|l| l.starts_with(name)), "{name}:\n{text}");
            }
            counted += 1;
        }
        let (_, refused) = curl(&["-k", "-o", "/dev/null", "-w", "%{http_code}", &url]);
        assert_eq!(refused, "401", "controller-manager {m} without a token");
    }
    assert_eq!(
        reachable, 2,
        "the two controller-managers left serve their metrics"
    );
    assert_eq!(
        counted, 1,
        "the leading controller-manager counts its queues"
    );
}
