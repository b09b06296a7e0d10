//! Monitoring on the README's cluster: every kvstore member serves etcd's metrics and
//! health on its metrics port (+6 of its block) to holders of a client certificate of
//! the kvstore's CA, and to no one else; the leading controller-manager counts its
//! controllers' work queues under client-go's names (its secure port, +3, asks the
//! apiserver whether the caller may read `/metrics`). And the real Prometheus scrapes
//! every component with the `prometheus.yml` that `flotilla up` wrote.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

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

/// Debian's real Prometheus with the `prometheus.yml` that `flotilla up` wrote (scraping
/// every 2 s instead of 15 s): every target is up but the controller-manager the
/// workloads check killed, and the names of kube's and etcd's dashboards come from the
/// jobs that should serve them.
pub fn prometheus(data: &Path, scratch: &Path) {
    let written = std::fs::read_to_string(data.join("prometheus.yml")).expect("prometheus.yml");
    let config = scratch.join("prometheus.yml");
    std::fs::write(
        &config,
        written
            .replace("scrape_interval: 15s", "scrape_interval: 2s")
            .replace("scrape_timeout: 10s", "scrape_timeout: 2s"),
    )
    .unwrap();
    let port = crate::common::free_port();
    let log = std::fs::File::create(scratch.join("prometheus.log")).unwrap();
    let mut child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            scratch.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("prometheus (scripts/setup --test installs it)");
    let result = std::panic::catch_unwind(|| query_all(port, &written));
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        let log = std::fs::read_to_string(scratch.join("prometheus.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        eprintln!("prometheus' log ends:\n{}", tail.join("\n"));
        std::panic::resume_unwind(e);
    }
}

/// The instant vector of `query`: (labels, value) of each series.
fn query(port: u16, q: &str) -> Vec<(serde_json::Value, String)> {
    let (ok, body) = curl(&[
        "-G",
        "--data-urlencode",
        &format!("query={q}"),
        &format!("http://127.0.0.1:{port}/api/v1/query"),
    ]);
    if !ok {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["metric"].clone(),
                s["value"][1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn query_all(port: u16, config: &str) {
    let targets = config.matches("targets:").count();
    assert!(targets >= 20, "{config}");
    // Scraped once at least: a series of `up` per target, all 1 but one controller-manager.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ups = query(port, "up");
        let down: Vec<String> = ups
            .iter()
            .filter(|(_, v)| v != "1")
            .map(|(m, _)| format!("{}/{}", m["job"], m["instance"]))
            .collect();
        if ups.len() == targets && down.len() == 1 && down[0].starts_with("\"controller-manager\"/")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {targets} targets scraped; down: {down:?}",
            ups.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for (job, names) in [
        (
            "kvstore",
            &[
                "etcd_server_has_leader",
                "etcd_server_leader_changes_seen_total",
                "etcd_disk_wal_fsync_duration_seconds_count",
                "etcd_disk_backend_commit_duration_seconds_count",
                "etcd_network_peer_round_trip_time_seconds_count",
                "etcd_mvcc_db_total_size_in_bytes",
                "etcd_server_proposals_committed_total",
                "etcd_server_proposals_applied_total",
                "etcd_server_proposals_pending",
                "etcd_server_proposals_failed_total",
            ][..],
        ),
        ("apiserver", &["apiserver_request_total"][..]),
        (
            "scheduler",
            &[
                "scheduler_schedule_attempts_total",
                "scheduler_scheduling_attempt_duration_seconds_count",
                "scheduler_pending_pods",
                "process_resident_memory_bytes",
            ][..],
        ),
        (
            "controller-manager",
            &[
                "workqueue_depth",
                "workqueue_adds_total",
                "workqueue_queue_duration_seconds_count",
                "workqueue_work_duration_seconds_count",
                "workqueue_retries_total",
            ][..],
        ),
        ("dns", &["coredns_cache_hits_total"][..]),
        (
            "kubelet",
            &[
                "kubelet_running_pods",
                "kubelet_running_containers",
                "kubelet_pod_start_duration_seconds_count",
                "process_cpu_seconds_total",
            ][..],
        ),
        (
            "cadvisor",
            &[
                "container_cpu_usage_seconds_total",
                "container_memory_working_set_bytes",
                "machine_cpu_cores",
            ][..],
        ),
        (
            "kubelet-resource",
            &[
                "node_cpu_usage_seconds_total",
                "pod_memory_working_set_bytes",
            ][..],
        ),
        (
            "proxy",
            &["kubeproxy_sync_proxy_rules_duration_seconds_count"][..],
        ),
    ] {
        if job == "proxy" && !config.contains("job_name: proxy") {
            continue;
        }
        for name in names {
            let got = query(port, &format!("{name}{{job=\"{job}\"}}"));
            assert!(!got.is_empty(), "no {name} from job {job}");
        }
    }
    // Pods started on both agents were timed.
    let started = query(
        port,
        "sum by (node) (kubelet_pod_start_duration_seconds_count{job=\"kubelet\"})",
    );
    assert_eq!(started.len(), 2, "{started:?}");
    assert!(
        started.iter().all(|(_, v)| v != "0"),
        "pod starts timed on each node: {started:?}"
    );
}
