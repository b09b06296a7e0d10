//! Apiserver benchmark: a 3-member kvstore and one apiserver on loopback, driven through
//! kube-rs. Prints one markdown table per workload.
//!
//! `cargo bench --bench apiserver` (APISERVER_BENCH_OBJECTS, APISERVER_BENCH_WATCHERS to
//! change the sizes).

#[path = "../tests/common/mod.rs"]
#[allow(dead_code)]
mod common;
#[path = "lib/table.rs"]
mod table;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::k8s::{Apiservers, Backend};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use table::{env, row};

fn cm(name: String, value: String) -> ConfigMap {
    serde_json::from_value(
        serde_json::json!({ "metadata": { "name": name }, "data": { "v": value } }),
    )
    .unwrap_or_default()
}

async fn creates(
    api: &Api<ConfigMap>,
    prefix: &str,
    n: usize,
    clients: usize,
) -> (Duration, Vec<Duration>) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let api = api.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in (c..n).step_by(clients) {
                let t = Instant::now();
                api.create(
                    &PostParams::default(),
                    &cm(format!("{prefix}-{i:06}"), i.to_string()),
                )
                .await
                .expect("create");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    (started.elapsed(), all)
}

async fn lists(
    api: &Api<ConfigMap>,
    lp: &ListParams,
    times: usize,
) -> (Duration, Vec<Duration>, usize) {
    let started = Instant::now();
    let mut lat = Vec::new();
    let mut items = 0;
    for _ in 0..times {
        let t = Instant::now();
        let mut lp = lp.clone();
        loop {
            let page = api.list(&lp).await.expect("list");
            items = page.items.len();
            match page.metadata.continue_ {
                Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
                _ => break,
            }
        }
        lat.push(t.elapsed());
    }
    (started.elapsed(), lat, items)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let objects = env("APISERVER_BENCH_OBJECTS", 2000);
    let watchers = env("APISERVER_BENCH_WATCHERS", 500);
    let backend = Backend::flotilla().await;
    let a = Apiservers::start(1, &backend.urls()).await;
    let api: Api<ConfigMap> = Api::namespaced(a.client(0).await, "default");

    println!("\n### create (configmaps, one apiserver, kube-rs over one HTTP/2 connection)\n");
    println!("| clients | creates | creates/s | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    for (i, clients) in [1usize, 16, 64].into_iter().enumerate() {
        let n = if clients == 1 { objects / 4 } else { objects };
        let (el, lat) = creates(&api, &format!("c{i}"), n, clients).await;
        row(&clients.to_string(), n, el, lat);
    }

    let total = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .len();
    println!("\n### list of {total} configmaps\n");
    println!("| list | lists | lists/s | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    for (name, lp) in [
        (
            "consistent (watch cache after a linearizable read)",
            ListParams::default(),
        ),
        (
            "resourceVersion=0 (watch cache as is)",
            ListParams {
                resource_version: Some("0".into()),
                ..Default::default()
            },
        ),
        (
            "limit=500 pages (kvstore)",
            ListParams::default().limit(500),
        ),
    ] {
        let (el, lat, _) = lists(&api, &lp, 30).await;
        row(name, 30, el, lat);
    }

    println!("\n### watch fan-out: {watchers} watchers, 1 writer, 200 updates\n");
    // Several clients: one HTTP/2 connection carries at most a few hundred streams.
    let mut clients = Vec::new();
    for _ in 0..watchers.div_ceil(100) {
        clients.push(a.client(0).await);
    }
    let rv = api
        .list(&ListParams::default().limit(1))
        .await
        .expect("list")
        .metadata
        .resource_version
        .unwrap_or_default();
    let updates = 200usize;
    let acks: Arc<std::sync::Mutex<Vec<Option<Instant>>>> =
        Arc::new(std::sync::Mutex::new(vec![None; updates]));
    let mut tasks = Vec::new();
    let ready = Arc::new(tokio::sync::Barrier::new(watchers + 1));
    for w in 0..watchers {
        let wapi: Api<ConfigMap> = Api::namespaced(clients[w / 100].clone(), "default");
        let rv = rv.clone();
        let ready = ready.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = wapi
                .watch(&WatchParams::default().fields("metadata.name=fan"), &rv)
                .await
                .expect("watch")
                .boxed();
            ready.wait().await;
            let mut got = Vec::new();
            while got.len() < updates {
                match tokio::time::timeout(Duration::from_secs(60), s.next()).await {
                    Ok(Some(Ok(WatchEvent::Added(o) | WatchEvent::Modified(o)))) => {
                        let seq: usize = o
                            .data
                            .and_then(|d| d.get("v").and_then(|v| v.parse().ok()))
                            .unwrap_or(usize::MAX);
                        got.push((seq, Instant::now()));
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => break,
                }
            }
            got
        }));
    }
    ready.wait().await;
    let started = Instant::now();
    let mut obj = api
        .create(&PostParams::default(), &cm("fan".into(), "0".into()))
        .await
        .expect("create");
    acks.lock().unwrap()[0] = Some(Instant::now());
    for seq in 1..updates {
        obj.data = Some([("v".to_string(), seq.to_string())].into());
        obj = api
            .replace("fan", &PostParams::default(), &obj)
            .await
            .expect("replace");
        acks.lock().unwrap()[seq] = Some(Instant::now());
    }
    let mut lat = Vec::new();
    let mut delivered = 0;
    for t in tasks {
        for (seq, at) in t.await.expect("watcher") {
            if let Some(Some(ack)) = acks.lock().unwrap().get(seq) {
                lat.push(at.saturating_duration_since(*ack));
                delivered += 1;
            }
        }
    }
    println!("| watchers | events delivered | events/s | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    row(&watchers.to_string(), delivered, started.elapsed(), lat);
    println!("\n(latency: from the writer's acknowledgement to delivery at each watcher; {} of {} expected)", delivered, watchers * updates);
}
