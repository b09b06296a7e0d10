//! The agent's own costs on one node with real containers (docker runtime), beside a
//! control plane on this machine (3 kvstore members, an apiserver, a scheduler, node
//! IPAM):
//!
//! 1. Stats collection: the agent's CPU (from `/proc/<pid>/stat`) and RSS over a window
//!    with N running pods, sampling every 10 s (cAdvisor's housekeeping, the default)
//!    and every hour (collection off in effect); the difference is what stats cost.
//! 2. Log shipping: one pod writes L lines at once (`seq`); lines per second from the
//!    pod's start to the last line stored in a Loki stand-in (`tests/common/loki.rs`), and
//!    the agent's CPU seconds per 100,000 lines (over the same interval, less its idle
//!    rate from case 1).
//!
//! `cargo bench --bench agent` (AGENT_BENCH_PODS=100, AGENT_BENCH_WINDOW=60 seconds,
//! AGENT_BENCH_LINES=200000).

#[path = "../tests/common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::time::{Duration, Instant};

use common::agents::Agents;
use common::control::Replicas;
use common::k8s::{Apiservers, Backend};
use common::procstat::{cpu_seconds, rss_mib};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, PostParams};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
fn running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

fn pod(name: &str, command: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{ "name": "c", "image": common::images::BUSYBOX,
                "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", command],
                "resources": { "requests": { "cpu": "1m", "memory": "4Mi" } } }] }
    }))
    .expect("pod")
}

struct Cluster {
    _backend: Backend,
    apiservers: Apiservers,
    _dir: tempfile::TempDir,
    _sched: Replicas,
    ipam: Replicas,
}

impl Cluster {
    async fn start() -> Cluster {
        let backend = Backend::flotilla().await;
        let apiservers = Apiservers::start(1, &backend.urls()).await;
        let kc = apiservers.kubeconfig(0).to_path_buf();
        let dir = tempfile::tempdir().expect("tempdir");
        let sched = Replicas::start("scheduler", &[&kc], dir.path(), &["--leader-elect=false"]);
        let ipam = Replicas::start(
            "controller-manager",
            &[&kc],
            dir.path(),
            &["--leader-elect=false", "--controllers", "nodeipam"],
        );
        let client = apiservers.client(0).await;
        let ns: Api<Namespace> = Api::all(client);
        ns.create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "bench"}}))
                .expect("ns"),
        )
        .await
        .expect("namespace");
        Cluster {
            _backend: backend,
            apiservers,
            _dir: dir,
            _sched: sched,
            ipam,
        }
    }

    fn agent(&self, node: &str, extra: &[&str]) -> Agents {
        let kc = self.apiservers.kubeconfig(0);
        let cidr = self.ipam.cluster_cidr.clone().expect("a cluster CIDR");
        Agents::start_docker(kc, Some(&self.apiservers.certs()), &[node], &cidr, extra)
    }
}

async fn all_running(pods: &Api<Pod>, n: usize) {
    common::wait_for(
        Duration::from_secs(600),
        &format!("{n} pods running"),
        || async {
            let l = pods.list(&ListParams::default()).await.ok()?;
            (l.items.iter().filter(|p| running(p)).count() >= n).then_some(())
        },
    )
    .await;
}

/// CPU percent of one core and RSS of the agent over `window`.
async fn measure(pid: u32, window: Duration) -> (f64, f64) {
    let (c0, t0) = (cpu_seconds(pid), Instant::now());
    tokio::time::sleep(window).await;
    let cpu = (cpu_seconds(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0;
    (cpu, rss_mib(pid).0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    common::images::ensure_busybox().await;
    let n = env("AGENT_BENCH_PODS", 100) as usize;
    let window = Duration::from_secs(env("AGENT_BENCH_WINDOW", 60));
    let lines = env("AGENT_BENCH_LINES", 200_000) as usize;
    let cluster = Cluster::start().await;
    let client = cluster.apiservers.client(0).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bench");

    println!(
        "\n### agent: stats collection with {n} running pods (docker runtime), {window:?} window\n"
    );
    println!("| housekeeping | agent CPU % of a core | agent RSS MiB |");
    println!("|---|---|---|");
    let mut idle_cpu = 0.0;
    for (i, every) in ["10s", "1h"].iter().enumerate() {
        let node = format!("stats{i}-{}", std::process::id());
        let agents = cluster.agent(&node, &["--housekeeping-interval", every]);
        for p in 0..n {
            let mut pod = pod(&format!("idle-{i}-{p:03}"), "sleep 3600");
            pod.spec.as_mut().unwrap().node_name = Some(node.clone());
            pods.create(&PostParams::default(), &pod)
                .await
                .expect("create");
        }
        all_running(&pods, n).await;
        let pid = agents.agents[0].child.as_ref().expect("agent").id();
        // Settle: the starts' work is done and a few samples were taken.
        tokio::time::sleep(Duration::from_secs(15)).await;
        let (cpu, rss) = measure(pid, window).await;
        if i == 1 {
            idle_cpu = cpu;
        }
        println!("| every {every} | {cpu:.2} | {rss:.1} |");
        pods.delete_collection(&Default::default(), &ListParams::default())
            .await
            .expect("delete pods");
        common::wait_for(Duration::from_secs(300), "the pods gone", || async {
            pods.list(&ListParams::default())
                .await
                .ok()
                .filter(|l| l.items.is_empty())
        })
        .await;
        drop(agents);
    }

    println!("\n### agent: log shipping to a Loki stand-in, one pod writing {lines} lines\n");
    println!("| lines | seconds from pod start to the last line stored | lines/s | agent CPU s per 100k lines |");
    println!("|---|---|---|---|");
    let loki = common::loki::Loki::start(common::free_port()).await;
    let node = format!("logs-{}", std::process::id());
    let sink = format!("loki={}", loki.url());
    let agents = cluster.agent(&node, &["--log-sink", &sink]);
    let pid = agents.agents[0].child.as_ref().expect("agent").id();
    let mut p = pod("chatty", &format!("seq 1 {lines}; sleep 3600"));
    p.spec.as_mut().unwrap().node_name = Some(node.clone());
    let (c0, t0) = (cpu_seconds(pid), Instant::now());
    pods.create(&PostParams::default(), &p)
        .await
        .expect("create");
    common::wait_for(Duration::from_secs(600), "every line stored", || async {
        (loki.lines(&[("pod", "chatty")]).len() >= lines).then_some(())
    })
    .await;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - c0 - idle_cpu / 100.0 * secs;
    let got = loki.lines(&[("pod", "chatty")]);
    assert_eq!(got.len(), lines, "every line once");
    assert_eq!(
        got.last().map(String::as_str),
        Some(lines.to_string().as_str())
    );
    println!(
        "| {lines} | {secs:.1} | {:.0} | {:.2} |",
        lines as f64 / secs,
        cpu / lines as f64 * 100_000.0
    );
    drop(agents);
}
