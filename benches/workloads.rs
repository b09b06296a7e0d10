//! Workload controllers at scale, on this machine's whole stack (3 kvstore members with
//! fsync, an apiserver, a scheduler, a controller-manager, agents):
//! - Jobs: N one-pod Jobs (`true` in a real process, process runtime on 2 nodes) created
//!   at once by 16 clients; Jobs Complete per second and the create-to-Complete latency.
//! - DaemonSet: one DaemonSet over N hollow nodes (fake runtime in one agent process):
//!   the time until every node's pod is Ready, then a template change rolled out under
//!   `maxUnavailable: 10%`; the controller-manager's memory.
//!
//! `cargo bench --bench workloads` (WORKLOADS_BENCH_JOBS=1000, WORKLOADS_BENCH_NODES=1000;
//! 0 skips a case).

#[path = "../tests/common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::agents::Agents;
use common::control::Replicas;
use common::k8s::{Apiservers, Backend};
use common::procstat::{nodes_ready, pct_ms as pct, rss_mib};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};

const CLIENTS: usize = 16;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The controller-managers' peak resident memory, MiB.
fn cm_peak(cm: &Replicas) -> f64 {
    cm.replicas
        .iter()
        .filter_map(|r| r.child.as_ref().map(|c| rss_mib(c.id()).1))
        .fold(0.0, f64::max)
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run());
}

async fn run() {
    common::images::ensure_busybox().await;
    let jobs = env("WORKLOADS_BENCH_JOBS", 1000);
    if jobs > 0 {
        println!("\n### Jobs: one pod each (`true`, process runtime, 2 nodes), created at once by {CLIENTS} clients\n");
        println!("| jobs | all Complete after s | Jobs Complete/s | p50 ms | p90 ms | p99 ms | max ms | controller-manager RSS MiB (peak) |");
        println!("|---|---|---|---|---|---|---|---|");
        jobs_case(jobs).await;
    }
    let nodes = env("WORKLOADS_BENCH_NODES", 1000);
    if nodes > 0 {
        println!("\n### DaemonSet over hollow nodes (fake runtime, one agent process)\n");
        println!("| nodes | all Ready after s | rollout (maxUnavailable 10%) s | controller-manager RSS MiB (peak) |");
        println!("|---|---|---|---|");
        daemonset_case(nodes).await;
    }
}

fn complete(j: &Job) -> bool {
    j.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
        })
}

async fn jobs_case(n: usize) {
    let backend = Backend::flotilla().await;
    let a = Apiservers::start(1, &backend.urls()).await;
    let client = a.client(0).await;
    let kc = a.kubeconfig(0).to_path_buf();
    let dir = tempfile::tempdir().expect("tempdir");
    let _sched = Replicas::start("scheduler", &[&kc], dir.path(), &["--leader-elect=false"]);
    let cm = Replicas::start(
        "controller-manager",
        &[&kc],
        dir.path(),
        &["--leader-elect=false"],
    );
    let names = [
        format!("wl{}-a", std::process::id()),
        format!("wl{}-b", std::process::id()),
    ];
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let _agents = Agents::start_process(&kc, Some(&a.certs()), &refs, &[]);
    nodes_ready(&client, 2, Duration::from_secs(120)).await;
    let api: Api<Job> = Api::namespaced(client.clone(), "default");
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let (s2, api2) = (seen.clone(), api.clone());
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
                let j = match ev {
                    Ok(WatchEvent::Added(j)) | Ok(WatchEvent::Modified(j)) => j,
                    _ => continue,
                };
                rv = j.metadata.resource_version.clone().unwrap_or(rv);
                if complete(&j) {
                    let mut s = s2.lock().unwrap();
                    s.entry(j.metadata.name.clone().unwrap_or_default())
                        .or_insert_with(Instant::now);
                    if s.len() >= n {
                        if let Some(d) = done.take() {
                            let _ = d.send(());
                        }
                    }
                }
            }
        }
    });
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (api, sent) = (api.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            for i in (c..n).step_by(CLIENTS) {
                let job: Job = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("j{i}")},
                    "spec": {"template": {"spec": {
                        "restartPolicy": "Never",
                        "terminationGracePeriodSeconds": 0,
                        "containers": [{"name": "c", "image": common::images::BUSYBOX,
                                        "command": ["true"],
                                        "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}}}]
                    }}}
                }))
                .expect("job");
                sent.lock().unwrap().insert(format!("j{i}"), Instant::now());
                api.create(&PostParams::default(), &job)
                    .await
                    .expect("create");
            }
        }));
    }
    for task in tasks {
        task.await.expect("creator");
    }
    if tokio::time::timeout(Duration::from_secs(1200), done_rx)
        .await
        .is_err()
    {
        panic!(
            "not every Job Complete within 20 minutes: {} of {n}",
            seen.lock().unwrap().len()
        );
    }
    let elapsed = t.elapsed();
    watcher.abort();
    let seen = seen.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    let mut lat: Vec<Duration> = sent
        .iter()
        .filter_map(|(k, at)| seen.get(k).map(|d| d.saturating_duration_since(*at)))
        .collect();
    lat.sort();
    let peak = cm_peak(&cm);
    println!(
        "| {n} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {peak:.0} |",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        pct(&lat, 1.0),
    );
}

async fn ds_done(api: &Api<DaemonSet>, n: usize, within: Duration) -> Instant {
    let until = Instant::now() + within;
    loop {
        if let Ok(ds) = api.get("everywhere").await {
            let gen = ds.metadata.generation;
            if let Some(st) = ds.status {
                if st.observed_generation == gen
                    && st.desired_number_scheduled as usize == n
                    && st.updated_number_scheduled == Some(n as i32)
                    && st.number_available == Some(n as i32)
                {
                    return Instant::now();
                }
            }
        }
        assert!(
            Instant::now() < until,
            "the DaemonSet did not roll out in {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn daemonset_case(n: usize) {
    let backend = Backend::flotilla().await;
    let a = Apiservers::start(1, &backend.urls()).await;
    let client = a.client(0).await;
    let kc = a.kubeconfig(0).to_path_buf();
    let dir = tempfile::tempdir().expect("tempdir");
    let _sched = Replicas::start("scheduler", &[&kc], dir.path(), &["--leader-elect=false"]);
    let cm = Replicas::start(
        "controller-manager",
        &[&kc],
        dir.path(),
        &["--leader-elect=false"],
    );
    let _agents = Agents::start_fake(&kc, "hollow", n);
    nodes_ready(&client, n, Duration::from_secs(600)).await;
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let ds: DaemonSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "everywhere"},
        "spec": {
            "selector": {"matchLabels": {"app": "everywhere"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
            "template": {"metadata": {"labels": {"app": "everywhere"}},
                         "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
        }
    }))
    .expect("daemonset");
    let t = Instant::now();
    api.create(&PostParams::default(), &ds)
        .await
        .expect("create");
    let ready = ds_done(&api, n, Duration::from_secs(1200)).await;
    let patch =
        serde_json::json!({"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}});
    let t2 = Instant::now();
    api.patch("everywhere", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    let rolled = ds_done(&api, n, Duration::from_secs(1800)).await;
    let peak = cm_peak(&cm);
    println!(
        "| {n} | {:.1} | {:.1} | {peak:.0} |",
        ready.saturating_duration_since(t).as_secs_f64(),
        rolled.saturating_duration_since(t2).as_secs_f64(),
    );
}
