//! Pod startup latency, as Kubernetes' pod startup SLI: each pod's time from its create
//! request to a watch showing it Ready, with 3 kvstore members, an apiserver and a
//! scheduler on this machine, and agents with the docker runtime (2 nodes, real
//! containers) or the fake runtime (hollow nodes, one agent process). Also the cost of
//! hollow nodes themselves: how long N take to register and the agent's memory.
//!
//! `cargo bench --bench pods` (PODS_BENCH_CASES="docker:2x100@5,docker:2x100,fake:10x1000"
//! as runtime:nodes×pods, `@r` to create r pods per second instead of all at once with 16
//! clients; PODS_BENCH_HOLLOW="1000" hollow nodes for the registration case).

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
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, PostParams, WatchEvent, WatchParams};

const CLIENTS: usize = 16;
fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod(i: usize) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": format!("pod-{i:05}") },
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{ "name": "c", "image": common::images::BUSYBOX,
                "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"],
                "resources": { "requests": { "cpu": "10m", "memory": "16Mi" } } }] }
    }))
    .expect("pod")
}
fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let cases: Vec<(String, usize, usize, Option<f64>)> = std::env::var("PODS_BENCH_CASES")
        .unwrap_or_else(|_| "docker:2x100@5,docker:2x100,fake:10x1000".into())
        .split(',')
        .filter_map(|c| {
            let (rt, rest) = c.split_once(':')?;
            let (shape, rate) = match rest.split_once('@') {
                Some((s, r)) => (s, Some(r.trim().parse().ok()?)),
                None => (rest, None),
            };
            let (n, p) = shape.split_once('x')?;
            Some((
                rt.trim().to_string(),
                n.trim().parse().ok()?,
                p.trim().parse().ok()?,
                rate,
            ))
        })
        .collect();
    common::images::ensure_busybox().await;
    println!("\n### pods: startup latency, create request to Ready (watched)\n");
    println!("| runtime | nodes | pods | created | pods Ready/s | p50 ms | p90 ms | p99 ms | max ms | agent RSS MiB (peak) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (rt, nodes, pods, rate) in &cases {
        case(rt, *nodes, *pods, *rate).await;
    }
    let hollow: usize = std::env::var("PODS_BENCH_HOLLOW")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    if hollow > 0 {
        println!("\n### hollow nodes: one agent process with --fake-nodes N\n");
        println!("| nodes | all Ready after s | agent RSS MiB | agent RSS per node KiB | apiserver RSS MiB |");
        println!("|---|---|---|---|---|");
        hollow_nodes(hollow).await;
    }
}

async fn case(runtime: &str, nodes: usize, pods: usize, rate: Option<f64>) {
    let backend = Backend::flotilla().await;
    let a = Apiservers::start(1, &backend.urls()).await;
    let client = a.client(0).await;
    let kc = a.kubeconfig(0).to_path_buf();
    let dir = tempfile::tempdir().expect("tempdir");
    let _sched = Replicas::start("scheduler", &[&kc], dir.path(), &["--leader-elect=false"]);
    let names: Vec<String> = (0..nodes)
        .map(|i| format!("bench{}-{i}", std::process::id()))
        .collect();
    // Docker nodes take their pods' addresses from their podCIDRs: the node IPAM
    // controller alone gives them out.
    let ipam = (runtime == "docker").then(|| {
        Replicas::start(
            "controller-manager",
            &[&kc],
            dir.path(),
            &["--leader-elect=false", "--controllers", "nodeipam"],
        )
    });
    let agents = match runtime {
        "docker" => {
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let cidr = ipam
                .as_ref()
                .and_then(|r| r.cluster_cidr.clone())
                .expect("a cluster CIDR");
            Agents::start_docker(&kc, Some(&a.certs()), &refs, &cidr, &[])
        }
        "process" => {
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            Agents::start_process(&kc, Some(&a.certs()), &refs, &[])
        }
        _ => Agents::start_fake(&kc, "hollow", nodes),
    };
    nodes_ready(&client, nodes, Duration::from_secs(120)).await;
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(serde_json::json!({"metadata": {"name": "bench"}})).expect("ns"),
    )
    .await
    .expect("namespace");
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "bench");
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let (s2, api2) = (seen.clone(), pods_api.clone());
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
                    _ => continue,
                };
                rv = p.metadata.resource_version.clone().unwrap_or(rv);
                if ready(&p) {
                    let mut s = s2.lock().unwrap();
                    s.entry(p.metadata.name.clone().unwrap_or_default())
                        .or_insert_with(Instant::now);
                    if s.len() >= pods {
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
        let (api, sent) = (pods_api.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            for i in (c..pods).step_by(CLIENTS) {
                if let Some(r) = rate {
                    tokio::time::sleep_until((t + Duration::from_secs_f64(i as f64 / r)).into())
                        .await;
                }
                let p = pod(i);
                sent.lock()
                    .unwrap()
                    .insert(p.metadata.name.clone().unwrap(), Instant::now());
                api.create(&PostParams::default(), &p)
                    .await
                    .expect("create");
            }
        }));
    }
    for task in tasks {
        task.await.expect("creator");
    }
    if tokio::time::timeout(Duration::from_secs(600), done_rx)
        .await
        .is_err()
    {
        panic!(
            "not every pod was Ready within 10 minutes: {} of {pods}",
            seen.lock().unwrap().len()
        );
    }
    let elapsed = t.elapsed();
    watcher.abort();
    let seen = seen.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    let mut lat: Vec<Duration> = sent
        .iter()
        .filter_map(|(n, at)| seen.get(n).map(|r| r.saturating_duration_since(*at)))
        .collect();
    lat.sort();
    let peak = agents
        .agents
        .iter()
        .filter_map(|a| a.child.as_ref().map(|c| rss_mib(c.id()).1))
        .fold(0.0, f64::max);
    let created = match rate {
        Some(r) => format!("{r} pods/s"),
        None => format!("at once, {CLIENTS} clients"),
    };
    println!(
        "| {runtime} | {nodes} | {pods} | {created} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {peak:.0} |",
        pods as f64 / elapsed.as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        pct(&lat, 1.0),
    );
    // The agents' logs stay for a look afterwards; their containers go with them.
    for a in &agents.agents {
        let _ = std::fs::copy(
            &a.log,
            std::env::temp_dir().join(format!("pods-bench-{runtime}-{}.log", a.node)),
        );
    }
    drop(agents);
}

async fn hollow_nodes(n: usize) {
    let backend = Backend::flotilla().await;
    let a = Apiservers::start(1, &backend.urls()).await;
    let client = a.client(0).await;
    let kc = a.kubeconfig(0).to_path_buf();
    let t = Instant::now();
    let agents = Agents::start_fake(&kc, "hollow", n);
    let at = nodes_ready(&client, n, Duration::from_secs(600)).await;
    // Let a few heartbeat rounds pass, then weigh the agent.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let (rss, _) = agents.agents[0]
        .child
        .as_ref()
        .map_or((f64::NAN, f64::NAN), |c| rss_mib(c.id()));
    let (api_rss, _) = a.servers[0]
        .child
        .as_ref()
        .map_or((f64::NAN, f64::NAN), |c| rss_mib(c.id()));
    println!(
        "| {n} | {:.1} | {rss:.0} | {:.0} | {api_rss:.0} |",
        at.saturating_duration_since(t).as_secs_f64(),
        rss * 1024.0 / n as f64
    );
}
