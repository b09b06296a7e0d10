//! `flotilla bench api`: load on any Kubernetes apiserver (Flotilla's or another), as the
//! apiserver issue's benchmark asks, printing markdown tables:
//! 1. create `--pods` pods with `--clients` concurrent clients;
//! 2. open `--watchers` watches, then write `--rate` pod patches per second for
//!    `--duration`; each patch carries its send time, so every watcher measures how long
//!    the event took to reach it;
//! 3. list every pod cluster-wide `--lists` times (one response, and in pages of 500 as
//!    kubectl does);
//! 4. the apiserver's RSS (`process_resident_memory_bytes` from `/metrics`) after each
//!    phase and once more 15 s later, beside the JSON size of the pods it serves.
//!
//! Pods go to `--namespace`, name no scheduler that exists (`schedulerName:
//! flotilla-bench`), so a running cluster leaves them alone, and are deleted at the end.
//! Every phase is bounded in count and time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};

#[derive(clap::Args, Debug, Clone)]
pub struct ApiBenchFlags {
    /// The apiserver to load (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<std::path::PathBuf>,
    #[arg(long, default_value = "flotilla-bench")]
    pub namespace: String,
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    /// Concurrent clients creating pods.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    #[arg(long, default_value_t = 1_000)]
    pub watchers: usize,
    /// Watchers are split into this many groups by a label selector; a write reaches the
    /// watchers of its pod's group (1: every watcher sees every write).
    #[arg(long, default_value_t = 100)]
    pub watch_groups: usize,
    /// Patches per second while the watches are open.
    #[arg(long, default_value_t = 100)]
    pub rate: u64,
    #[arg(long, default_value = "60s", value_parser = flotilla_core::duration::parse_duration)]
    pub duration: Duration,
    /// Cluster-wide lists of all pods.
    #[arg(long, default_value_t = 5)]
    pub lists: usize,
}

const SENT: &str = "bench.flotilla.dev/sent-ns";
const GROUP: &str = "bench-group";
/// Watches per HTTP/2 connection (servers allow 100 to 250 streams on one).
const WATCHES_PER_CONNECTION: usize = 100;

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Sorted latencies of one operation.
struct Samples(Vec<Duration>);

impl Samples {
    fn pct(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[i].as_secs_f64() * 1000.0
    }

    fn row(mut self, what: &str, elapsed: Duration) -> String {
        self.0.sort();
        format!(
            "| {what} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} |",
            self.0.len(),
            self.0.len() as f64 / elapsed.as_secs_f64().max(1e-9),
            self.pct(0.5),
            self.pct(0.9),
            self.pct(0.99),
            self.pct(1.0)
        )
    }
}

fn pod(name: &str, group: usize) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "labels": { "app": "bench", GROUP: group.to_string() } },
        "spec": {
            "schedulerName": "flotilla-bench",
            "containers": [{ "name": "c", "image": "busybox",
                "resources": { "requests": { "cpu": "10m", "memory": "16Mi" } } }],
        },
    }))
    .unwrap_or_default()
}

async fn client(flags: &ApiBenchFlags) -> anyhow::Result<kube::Client> {
    match &flags.kubeconfig {
        Some(p) => component_base::client::from_kubeconfig(p).await,
        None => Ok(kube::Client::try_default().await?),
    }
}

/// The apiserver's resident memory, from its `/metrics`.
async fn apiserver_rss(c: &kube::Client) -> Option<u64> {
    let req = http::Request::get("/metrics").body(Vec::new()).ok()?;
    let text = c.request_text(req).await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

pub async fn run(flags: ApiBenchFlags) -> anyhow::Result<()> {
    if flags.pods == 0 || flags.clients == 0 || flags.watch_groups == 0 {
        bail!("--pods, --clients and --watch-groups must be at least 1");
    }
    let c = client(&flags).await?;
    let ns = flags.namespace.as_str();
    let nss: Api<Namespace> = Api::all(c.clone());
    let body: Namespace =
        serde_json::from_value(serde_json::json!({ "metadata": { "name": ns } }))?;
    match nss.create(&PostParams::default(), &body).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e).context("creating the namespace"),
    }
    let pods: Api<Pod> = Api::namespaced(c.clone(), ns);
    let run_id = unix_nanos() / 1_000_000 % 1_000_000_000;
    let name = |i: usize| format!("b{run_id}-{i:05}");
    let rss_before = apiserver_rss(&c).await;

    // 1. Creates.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..flags.clients {
        let pods = pods.clone();
        let (n, groups) = (flags.pods, flags.watch_groups);
        let mine: Vec<(usize, String)> = (k..n)
            .step_by(flags.clients)
            .map(|i| (i, name(i)))
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for (i, nm) in &mine {
                let t = Instant::now();
                pods.create(&PostParams::default(), &pod(nm, i % groups))
                    .await
                    .with_context(|| format!("creating pod {nm}"))?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut create_lat = Vec::new();
    for t in tasks {
        create_lat.extend(t.await??);
    }
    let create_elapsed = started.elapsed();
    let rss_created = apiserver_rss(&c).await;

    // 2. Watches, then paced patches.
    let groups = flags.watch_groups;
    let list = pods
        .list_metadata(&ListParams::default().limit(1))
        .await
        .context("listing for a resourceVersion")?;
    let rv = list.metadata.resource_version.unwrap_or_default();
    let mut clients = Vec::new();
    for _ in 0..flags.watchers.div_ceil(WATCHES_PER_CONNECTION) {
        clients.push(client(&flags).await?);
    }
    let delivered = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let seen = Arc::new(AtomicU64::new(0));
    let opened = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut watches = Vec::new();
    for w in 0..flags.watchers {
        let api: Api<Pod> = Api::namespaced(clients[w / WATCHES_PER_CONNECTION].clone(), ns);
        let (delivered, seen, opened) = (delivered.clone(), seen.clone(), opened.clone());
        let mut stop = stop.clone();
        let rv = rv.clone();
        let wp = WatchParams::default()
            .labels(&format!("{GROUP}={}", w % groups))
            .timeout(flags.duration.as_secs() as u32 + 120);
        watches.push(tokio::spawn(async move {
            let stream = match api.watch(&wp, &rv).await {
                Ok(s) => s,
                Err(e) => return Err(anyhow::anyhow!("opening watch {w}: {e}")),
            };
            opened.fetch_add(1, Ordering::Relaxed);
            let mut stream = stream.boxed();
            let mut mine = Vec::new();
            loop {
                let ev = tokio::select! {
                    ev = stream.try_next() => ev,
                    _ = stop.wait_for(|s| *s) => break,
                };
                match ev {
                    Ok(Some(WatchEvent::Modified(p))) => {
                        let now = unix_nanos();
                        if let Some(sent) = p
                            .metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(SENT))
                            .and_then(|s| s.parse::<u64>().ok())
                        {
                            mine.push(Duration::from_nanos(now.saturating_sub(sent)));
                            seen.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(Some(WatchEvent::Error(e))) => {
                        return Err(anyhow::anyhow!("watch {w}: {}", e.message))
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return Err(anyhow::anyhow!("watch {w} ended early")),
                    Err(e) => return Err(anyhow::anyhow!("watch {w}: {e}")),
                }
            }
            delivered
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(mine);
            Ok(())
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while opened.load(Ordering::Relaxed) < flags.watchers as u64 {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} watches opened in 60 s",
                opened.load(Ordering::Relaxed),
                flags.watchers
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let patch_lat = Arc::new(Mutex::new(Vec::new()));
    let writes = (flags.rate as f64 * flags.duration.as_secs_f64()) as usize;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / flags.rate.max(1) as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let write_started = Instant::now();
    let mut inflight = Vec::new();
    for k in 0..writes {
        ticker.tick().await;
        let pods = pods.clone();
        let nm = name(k * 7919 % flags.pods);
        let patch_lat = patch_lat.clone();
        inflight.push(tokio::spawn(async move {
            let body = serde_json::json!({ "metadata": { "annotations": { SENT: unix_nanos().to_string() } } });
            let t = Instant::now();
            pods.patch(&nm, &PatchParams::default(), &Patch::Merge(&body))
                .await
                .with_context(|| format!("patching {nm}"))?;
            patch_lat.lock().unwrap_or_else(|e| e.into_inner()).push(t.elapsed());
            anyhow::Ok(())
        }));
    }
    for t in inflight {
        t.await??;
    }
    let write_elapsed = write_started.elapsed();
    let rss_written = apiserver_rss(&c).await;
    // Let the last events arrive, then close the watches.
    let per_group = |g: usize| (0..flags.watchers).filter(|w| w % groups == g).count();
    let expected: usize = (0..writes)
        .map(|k| per_group(k * 7919 % flags.pods % groups))
        .sum();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (seen.load(Ordering::Relaxed) as usize) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(true);
    let mut watch_errors = 0;
    for w in watches {
        match tokio::time::timeout(Duration::from_secs(10), w).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                watch_errors += 1;
                eprintln!("{e}");
            }
            _ => watch_errors += 1,
        }
    }
    // The watches' connections close with their clients.
    drop(clients);
    let delivered = std::mem::take(&mut *delivered.lock().unwrap_or_else(|e| e.into_inner()));
    let patch_lat = std::mem::take(&mut *patch_lat.lock().unwrap_or_else(|e| e.into_inner()));

    // 3. Cluster-wide lists.
    let all: Api<Pod> = Api::all(c.clone());
    let mut whole = Vec::new();
    let mut paged = Vec::new();
    let mut json_bytes = 0usize;
    let mut items = 0usize;
    let lists_started = Instant::now();
    for _ in 0..flags.lists {
        let t = Instant::now();
        let req = http::Request::get("/api/v1/pods").body(Vec::new())?;
        let text = c.request_text(req).await.context("listing all pods")?;
        whole.push(t.elapsed());
        let v: serde_json::Value = serde_json::from_str(&text)?;
        let list = v["items"].as_array().map(Vec::as_slice).unwrap_or_default();
        items = list.len();
        json_bytes = list.iter().map(|p| p.to_string().len()).sum();
    }
    let whole_elapsed = lists_started.elapsed();
    let paged_started = Instant::now();
    for _ in 0..flags.lists {
        let t = Instant::now();
        let mut lp = ListParams::default().limit(500);
        loop {
            let page = all.list(&lp).await.context("listing pods in pages")?;
            match page.metadata.continue_ {
                Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
                _ => break,
            }
        }
        paged.push(t.elapsed());
    }
    let paged_elapsed = paged_started.elapsed();
    let rss_after = apiserver_rss(&c).await;
    // Freed memory goes back to the system after a while (jemalloc's decay, 10 s).
    tokio::time::sleep(Duration::from_secs(15)).await;
    let rss_settled = apiserver_rss(&c).await;

    println!("\n### apiserver load: {} pods, {} clients; {} watches in {groups} groups; {} patches/s for {:?}\n",
        flags.pods, flags.clients, flags.watchers, flags.rate, flags.duration);
    println!("| operation | count | per s | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "{}",
        Samples(create_lat).row(
            &format!("create pod ({} clients)", flags.clients),
            create_elapsed
        )
    );
    println!(
        "{}",
        Samples(patch_lat).row(
            &format!("patch pod ({} /s, watches open)", flags.rate),
            write_elapsed
        )
    );
    let got = delivered.len();
    println!(
        "{}",
        Samples(delivered).row(
            &format!("watch delivery ({got} of {expected} events)"),
            write_elapsed
        )
    );
    println!(
        "{}",
        Samples(whole).row(
            &format!("list {items} pods, cluster-wide, one response"),
            whole_elapsed
        )
    );
    println!(
        "{}",
        Samples(paged).row(
            &format!("list {items} pods, cluster-wide, pages of 500"),
            paged_elapsed
        )
    );
    let mib = |b: Option<u64>| match b {
        Some(b) => format!("{:.0}", b as f64 / (1024.0 * 1024.0)),
        None => "?".into(),
    };
    println!("\n| apiserver RSS MiB: at start | after creates | after patches (watches open) | after lists | 15 s later | JSON of the pods MiB | RSS / JSON | (RSS - RSS at start) / JSON |");
    println!("|---|---|---|---|---|---|---|---|");
    let json = json_bytes.max(1) as f64;
    let ratio = |b: Option<u64>| {
        b.map(|b| format!("{:.2}", b as f64 / json))
            .unwrap_or("?".into())
    };
    println!(
        "| {} | {} | {} | {} | {} | {:.1} | {} | {} |",
        mib(rss_before),
        mib(rss_created),
        mib(rss_written),
        mib(rss_after),
        mib(rss_settled),
        json / (1024.0 * 1024.0),
        ratio(rss_settled),
        ratio(
            rss_settled
                .zip(rss_before)
                .map(|(a, b)| a.saturating_sub(b))
        ),
    );

    // Clean up: the bench's pods are unbound, so they go at once.
    let dp = DeleteParams::default();
    let lp = ListParams::default().labels("app=bench");
    if let Err(e) = pods.delete_collection(&dp, &lp).await {
        eprintln!("deleting the benchmark's pods: {e}");
    }
    if watch_errors > 0 {
        bail!("{watch_errors} watches failed");
    }
    if got < expected {
        bail!("watchers saw {got} of {expected} events");
    }
    Ok(())
}
