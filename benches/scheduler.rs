//! Scheduler benchmark, as Kubernetes' scheduler_perf SchedulingBasic: a 3-member kvstore,
//! one apiserver and one scheduler on loopback; N Node objects (no agents), then M pods
//! with small requests created by 64 clients. Reports pods bound per second from the first
//! creation to the last binding, and each pod's time from its create request to the watch
//! showing it bound.
//!
//! `cargo bench --bench scheduler` (SCHEDULER_BENCH_CASES="500x5000,5000x10000" to change
//! the nodes×pods cases).

#[path = "../tests/common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::control::Replicas;
use common::k8s::{Apiservers, Backend};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, PostParams, WatchEvent, WatchParams};

const CLIENTS: usize = 64;

fn node(i: usize) -> Node {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": format!("node-{i:05}"), "labels": {
            "kubernetes.io/hostname": format!("node-{i:05}"),
            "topology.kubernetes.io/zone": format!("zone-{}", i % 3) } },
        "status": {
            "capacity": { "cpu": "32", "memory": "256Gi", "pods": "110" },
            "allocatable": { "cpu": "32", "memory": "256Gi", "pods": "110" } }
    }))
    .expect("node")
}

fn pod(i: usize) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": format!("pod-{i:06}") },
        "spec": { "containers": [{ "name": "c", "image": "pause",
            "resources": { "requests": { "cpu": "100m", "memory": "128Mi" } } }] }
    }))
    .expect("pod")
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

/// Peak resident memory of a process, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

async fn create_all<K, F>(api: Api<K>, n: usize, make: F) -> HashMap<String, Instant>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    F: Fn(usize) -> K + Send + Sync + Copy + 'static,
{
    let sent = Arc::new(Mutex::new(HashMap::new()));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (api, sent) = (api.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            for i in (c..n).step_by(CLIENTS) {
                let obj = make(i);
                let name = obj.meta().name.clone().unwrap_or_default();
                sent.lock().unwrap().insert(name, Instant::now());
                api.create(&PostParams::default(), &obj)
                    .await
                    .expect("create");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    Arc::try_unwrap(sent)
        .map(|m| m.into_inner().unwrap())
        .unwrap_or_default()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let cases: Vec<(usize, usize)> = std::env::var("SCHEDULER_BENCH_CASES")
        .unwrap_or_else(|_| "500x5000,5000x10000".into())
        .split(',')
        .filter_map(|c| {
            let (n, p) = c.split_once('x')?;
            Some((n.trim().parse().ok()?, p.trim().parse().ok()?))
        })
        .collect();
    println!("\n### scheduler: pods bound per second (SchedulingBasic)\n");
    println!("| nodes | pods | nodes created/s | pods created/s | pods bound/s | p50 ms | p90 ms | p99 ms | max ms | scheduler peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (nodes, pods) in &cases {
        case(*nodes, *pods).await;
    }
    println!("\n### scheduler alone: pods created first, then the scheduler started\n");
    println!("| nodes | pods | pods bound/s (first to last binding) | scheduler peak RSS MiB |");
    println!("|---|---|---|---|");
    for (nodes, pods) in &cases {
        backlog(*nodes, *pods).await;
    }
}

/// The scheduler's own pace: every pod exists before it starts, so pod creation does not
/// share the machine with binding.
async fn backlog(nodes: usize, pods: usize) {
    let backend = Backend::flotilla().await;
    let a = Apiservers::start(1, &backend.urls()).await;
    let client = a.client(0).await;
    let dir = tempfile::tempdir().expect("tempdir");
    create_all(Api::<Node>::all(client.clone()), nodes, node).await;
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(serde_json::json!({"metadata": {"name": "bench"}})).expect("ns"),
    )
    .await
    .expect("namespace");
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "bench");
    create_all(pods_api.clone(), pods, pod).await;
    let kc = a.kubeconfig(0).to_path_buf();
    let sched = Replicas::start("scheduler", &[&kc], dir.path(), &["--leader-elect=false"]);
    // The metric counts bindings the apiserver accepted.
    let scheduled = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("scheduler_schedule_attempts_total{profile=\"default-scheduler\",result=\"scheduled\"}"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    };
    let first = common::wait_for(Duration::from_secs(120), "the first binding", || async {
        let m = sched.metrics(0).await?;
        (scheduled(&m) > 0).then(Instant::now)
    })
    .await;
    let first_count = scheduled(&sched.metrics(0).await.unwrap_or_default());
    let last = common::wait_for(Duration::from_secs(600), "every binding", || async {
        let m = sched.metrics(0).await?;
        (scheduled(&m) >= pods).then(Instant::now)
    })
    .await;
    let rss = sched.replicas[0]
        .child
        .as_ref()
        .map_or(f64::NAN, |c| peak_rss_mib(c.id()));
    println!(
        "| {nodes} | {pods} | {:.0} | {rss:.0} |",
        (pods - first_count) as f64 / last.saturating_duration_since(first).as_secs_f64()
    );
}

async fn case(nodes: usize, pods: usize) {
    let backend = Backend::flotilla().await;
    let a = Apiservers::start(1, &backend.urls()).await;
    let client = a.client(0).await;
    let dir = tempfile::tempdir().expect("tempdir");

    let t = Instant::now();
    create_all(Api::<Node>::all(client.clone()), nodes, node).await;
    let nodes_per_s = nodes as f64 / t.elapsed().as_secs_f64();

    let kc = a.kubeconfig(0).to_path_buf();
    let sched = Replicas::start("scheduler", &[&kc], dir.path(), &["--leader-elect=false"]);
    common::wait_for(
        Duration::from_secs(60),
        "the scheduler to list the nodes",
        || async {
            let m = sched.metrics(0).await?;
            m.contains("scheduler_pending_pods").then_some(())
        },
    )
    .await;

    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(serde_json::json!({"metadata": {"name": "bench"}})).expect("ns"),
    )
    .await
    .expect("namespace");
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "bench");
    // Watch from now on: every pod's binding as a client sees it.
    let bound: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let (b2, api2) = (bound.clone(), pods_api.clone());
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(async move {
        let mut done = Some(done_tx);
        let mut rv = "0".to_string();
        loop {
            let Ok(stream) = api2.watch(&WatchParams::default().timeout(290), &rv).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let mut stream = stream.boxed();
            while let Some(ev) = stream.next().await {
                let p = match ev {
                    Ok(WatchEvent::Added(p)) | Ok(WatchEvent::Modified(p)) => p,
                    Ok(WatchEvent::Bookmark(b)) => {
                        rv = b.metadata.resource_version;
                        continue;
                    }
                    _ => continue,
                };
                rv = p.metadata.resource_version.clone().unwrap_or(rv);
                if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                    let mut b = b2.lock().unwrap();
                    b.entry(p.metadata.name.clone().unwrap_or_default())
                        .or_insert_with(Instant::now);
                    if b.len() >= pods {
                        if let Some(d) = done.take() {
                            let _ = d.send(());
                        }
                    }
                }
            }
        }
    });
    let t = Instant::now();
    let sent = create_all(pods_api, pods, pod).await;
    let pods_per_s = pods as f64 / t.elapsed().as_secs_f64();
    if tokio::time::timeout(Duration::from_secs(600), done_rx)
        .await
        .is_err()
    {
        panic!(
            "not every pod was bound within 10 minutes: {} of {pods}",
            bound.lock().unwrap().len()
        );
    }
    watcher.abort();
    let bound = bound.lock().unwrap().clone();
    let first = sent.values().min().copied().unwrap_or(t);
    let last = bound.values().max().copied().unwrap_or(t);
    let mut lat: Vec<Duration> = sent
        .iter()
        .filter_map(|(name, s)| bound.get(name).map(|b| b.saturating_duration_since(*s)))
        .collect();
    lat.sort();
    let rss = sched.replicas[0]
        .child
        .as_ref()
        .map_or(f64::NAN, |c| peak_rss_mib(c.id()));
    println!(
        "| {nodes} | {pods} | {nodes_per_s:.0} | {pods_per_s:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {rss:.0} |",
        pods as f64 / last.saturating_duration_since(first).as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        pct(&lat, 1.0),
    );
}
