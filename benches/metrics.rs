//! The metrics API (metrics.k8s.io/v1beta1, which the apiserver serves from its scrape of
//! every node's `/stats/summary`) with N hollow nodes reporting: one agent process runs
//! them (`--fake-nodes N --fake-node-cidr 127.1.0.0/16`), each with its own address and
//! its own agent port (TLS, authorization by SubjectAccessReview), beside a control plane
//! on this machine (3 kvstore members, one apiserver with the default 15 s
//! `--metric-resolution`). P pods per node are bound by nodeName (no scheduler).
//!
//! Measured, per round: after two resolutions of silence, the latency of the request
//! that waits for a new scrape round (every node dialled) and the apiserver's CPU seconds
//! for it (less its idle rate: the nodes' heartbeats); one resolution later, the latency
//! of a request that finds that round expired (it is answered from it while the next
//! round runs behind it); then requests served from a round (NodeMetrics and PodMetrics
//! lists of all namespaces), `kubectl top nodes` and `kubectl top pods -A`; the
//! apiserver's resident memory before the first round and after the last.
//!
//! `cargo bench --bench metrics` (METRICS_BENCH_NODES=1000, METRICS_BENCH_PODS=5 per node,
//! METRICS_BENCH_ROUNDS=5).

#[path = "../tests/common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::time::{Duration, Instant};

use common::agents::Agents;
use common::k8s::{Apiservers, Backend};
use common::procstat::{cpu_seconds, nodes_ready, pct_ms, rss_mib};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, PostParams};

const NODES: &str = "/apis/metrics.k8s.io/v1beta1/nodes";
const PODS: &str = "/apis/metrics.k8s.io/v1beta1/pods";
/// The apiserver's default `--metric-resolution`.
const RESOLUTION: Duration = Duration::from_secs(15);

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One metrics list: its latency and how many items it held.
async fn list(client: &kube::Client, path: &str) -> (Duration, usize) {
    let t = Instant::now();
    let req = http::Request::get(path).body(Vec::new()).expect("request");
    let v: serde_json::Value = client.request(req).await.expect("metrics list");
    let n = v["items"].as_array().map_or(0, Vec::len);
    (t.elapsed(), n)
}

/// A kubectl command's wall time and output lines.
fn kubectl_timed(kc: &std::path::Path, args: &[&str]) -> (Duration, usize) {
    let t = Instant::now();
    let out = common::k8s::kubectl_ok(kc, args);
    (t.elapsed(), out.lines().count())
}

/// The rate of a process's CPU use, in cores, over `window`.
async fn idle_rate(pid: u32, window: Duration) -> f64 {
    let (c0, t0) = (cpu_seconds(pid), Instant::now());
    tokio::time::sleep(window).await;
    (cpu_seconds(pid) - c0) / t0.elapsed().as_secs_f64()
}

fn pod(i: usize, node: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": format!("pod-{i:05}"), "labels": { "app": "bench" } },
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [{ "name": "c", "image": "busybox",
                "resources": { "requests": { "cpu": "10m", "memory": "16Mi" } } }] }
    }))
    .expect("pod")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env("METRICS_BENCH_NODES", 1000);
    let per_node = env("METRICS_BENCH_PODS", 5);
    let rounds = env("METRICS_BENCH_ROUNDS", 5);
    let backend = Backend::flotilla().await;
    let a = Apiservers::start(1, &backend.urls()).await;
    let client = a.client(0).await;
    let kc = a.kubeconfig(0).to_path_buf();
    let api_pid = a.servers[0].child.as_ref().expect("apiserver").id();
    let t = Instant::now();
    let agents = Agents::start_fake_serving(&kc, &a.certs(), "hollow", n, "127.1.0.0/16");
    let agent_pid = agents.agents[0].child.as_ref().expect("agent").id();
    nodes_ready(&client, n, Duration::from_secs(900)).await;
    let registered = t.elapsed();

    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(serde_json::json!({"metadata": {"name": "bench"}})).expect("ns"),
    )
    .await
    .expect("namespace");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bench");
    let total = n * per_node;
    futures::stream::iter(0..total)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let p = pod(i, &format!("hollow-{}", i % n));
                pods.create(&PostParams::default(), &p)
                    .await
                    .expect("create");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    common::wait_for(
        Duration::from_secs(600),
        &format!("{total} pods running"),
        || async {
            let l = pods.list(&ListParams::default()).await.ok()?;
            let running = l
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .count();
            (running >= total).then_some(())
        },
    )
    .await;
    println!("\n### metrics API: {n} hollow nodes, {total} pods ({registered:.0?} to register)\n");

    let rss_before = rss_mib(api_pid).0;
    let api_idle = idle_rate(api_pid, Duration::from_secs(20)).await;
    let agent_idle = idle_rate(agent_pid, Duration::from_secs(20)).await;
    // The first round: no agent has yet authorized the apiserver (SubjectAccessReviews),
    // and the containers have no CPU rate until their second sample.
    let (first, first_nodes) = list(&client, NODES).await;
    println!("first round (authorization caches empty): {first:.0?}, {first_nodes} nodes\n");
    // Until every pod has a CPU rate (two housekeeping samples, 10 s apart).
    common::wait_for(
        Duration::from_secs(120),
        "metrics for every pod",
        || async { (list(&client, PODS).await.1 >= total).then_some(()) },
    )
    .await;

    println!("| round | round made while the request waits, ms | nodes | apiserver CPU s (less idle) | agent CPU s (less idle) | request after the round expired, ms | served nodes list p50/p99 ms | served pods list p50/p99 ms | pods | kubectl top nodes ms | kubectl top pods -A ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut made = Vec::new();
    let mut api_cpu = Vec::new();
    let mut expired = Vec::new();
    for r in 0..rounds {
        // Silence for two resolutions: the next request waits for a new round.
        tokio::time::sleep(RESOLUTION * 2 + Duration::from_millis(500)).await;
        let (c0, g0) = (cpu_seconds(api_pid), cpu_seconds(agent_pid));
        let (took, nodes) = list(&client, NODES).await;
        let secs = took.as_secs_f64();
        let cpu = cpu_seconds(api_pid) - c0 - api_idle * secs;
        let agent_cpu = cpu_seconds(agent_pid) - g0 - agent_idle * secs;
        made.push(took);
        api_cpu.push(cpu);
        // One resolution later: answered from that round, the next one started behind it.
        tokio::time::sleep(RESOLUTION + Duration::from_millis(500)).await;
        let (after, _) = list(&client, NODES).await;
        expired.push(after);
        let (mut served_nodes, mut served_pods, mut pod_items) = (Vec::new(), Vec::new(), 0);
        for _ in 0..10 {
            served_nodes.push(list(&client, NODES).await.0);
            let (d, items) = list(&client, PODS).await;
            served_pods.push(d);
            pod_items = items;
        }
        served_nodes.sort();
        served_pods.sort();
        let (top_nodes, lines) = kubectl_timed(&kc, &["top", "nodes"]);
        assert!(lines > n, "kubectl top nodes printed {lines} lines");
        let (top_pods, _) = kubectl_timed(&kc, &["top", "pods", "-A"]);
        println!(
            "| {r} | {:.0} | {nodes} | {cpu:.2} | {agent_cpu:.2} | {:.1} | {:.1}/{:.1} | {:.1}/{:.1} | {pod_items} | {:.0} | {:.0} |",
            secs * 1000.0,
            after.as_secs_f64() * 1000.0,
            pct_ms(&served_nodes, 0.5),
            pct_ms(&served_nodes, 0.99),
            pct_ms(&served_pods, 0.5),
            pct_ms(&served_pods, 0.99),
            top_nodes.as_secs_f64() * 1000.0,
            top_pods.as_secs_f64() * 1000.0,
        );
    }
    expired.sort();
    made.sort();
    let rss_after = rss_mib(api_pid).0;
    let mean_cpu = api_cpu.iter().sum::<f64>() / api_cpu.len().max(1) as f64;
    println!(
        "\nround made while a request waits: p50 {:.0} ms, max {:.0} ms; a request after the round expired: p50 {:.1} ms, max {:.1} ms; apiserver CPU per round {mean_cpu:.2} s = {:.3} millicores per node at one round per {RESOLUTION:?} (metrics-server's budget: 1); apiserver idle {:.1}% of a core, RSS {rss_before:.0} MiB before the first round, {rss_after:.0} MiB after the last ({:.1} KiB per node)",
        pct_ms(&made, 0.5),
        pct_ms(&made, 1.0),
        pct_ms(&expired, 0.5),
        pct_ms(&expired, 1.0),
        mean_cpu / RESOLUTION.as_secs_f64() / n as f64 * 1000.0,
        api_idle * 100.0,
        (rss_after - rss_before) * 1024.0 / n as f64,
    );
}
