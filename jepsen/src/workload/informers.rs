//! Informers through the apiservers: writers put and delete a few ConfigMaps through the
//! apiserver of the master they are bound to, while informers (kube-rs's `watcher`, which
//! lists, watches from the list's resourceVersion and relists after 410 Gone) follow them
//! through one apiserver at a time. An informer moves to another apiserver, with a new
//! watcher and so a new list, when its stream goes quiet, now and then after an error, and
//! now and then on purpose. Half of the informers list consistently (resourceVersion ""),
//! half at resourceVersion "0". The truth they are checked against is the kvstore's own
//! record of the objects' keys, followed through its watch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher;
use rand::Rng;
use tokio::sync::watch as signal;
use tokio_stream::StreamExt;
use tracing::{debug, warn};

use super::follow::{follow, Followed};
use super::{Ctx, Worker};
use crate::api::{Api, LABEL};
use crate::checker::informers::{Change, InformerLog, Observation, Seen, Segment, Truth};
use crate::history::Op;

/// The objects' label value and name prefix.
const WORKLOAD: &str = "informers";
const KEYS: usize = 12;
/// Where the apiserver keeps them.
const PREFIX: &str = "/registry/configmaps/default/jepsen-i-";
/// A stream with nothing for this long is presumed stuck (its master cut off or frozen).
const IDLE: Duration = Duration::from_secs(5);

fn name(i: usize) -> String {
    format!("jepsen-i-{i:02}")
}

fn split(concurrency: usize) -> (usize, usize) {
    let informers = (concurrency / 2).max(2);
    (informers, concurrency.saturating_sub(informers).max(1))
}

/// Writers: each puts a fresh value into one of the objects (PUT, or POST when it does not
/// exist) or deletes one, through its master's apiserver, until the time limit.
pub async fn run_writers(ctx: Ctx) -> anyhow::Result<()> {
    let (informers, writers) = split(ctx.opts.concurrency);
    let values = Arc::new(AtomicU64::new(1));
    let mut tasks = Vec::new();
    for w in 0..writers {
        // Writer processes are numbered after the informers' slots.
        let mut worker = Worker::new(&ctx, informers + w, writers)?;
        let cfg = ctx.kube_config(worker.node).await?;
        let mut api = Api::labelled(cfg.clone(), ctx.op_timeout(), false, WORKLOAD)?;
        let values = values.clone();
        tasks.push(tokio::spawn(async move {
            while worker.pace().await {
                let key = name(worker.rng.random_range(0..KEYS));
                let process = worker.process;
                if worker.rng.random_bool(0.2) {
                    let op = Op::Delete { key: key.clone() };
                    worker.invoke(op.clone());
                    match api.delete(&key).await {
                        Ok(()) => worker.ok(op),
                        Err(e) => worker.error(op, e, false),
                    }
                } else {
                    let value = values.fetch_add(1, Ordering::Relaxed);
                    let op = Op::Put {
                        key: key.clone(),
                        value,
                        rv: None,
                    };
                    worker.invoke(op.clone());
                    match api.put(&key, value).await {
                        Ok(rv) => worker.ok(Op::Put {
                            key,
                            value,
                            rv: Some(rv),
                        }),
                        Err(e) => worker.error(op, e, false),
                    }
                }
                if worker.process != process {
                    // A process after an unknown outcome: a new connection too.
                    if let Ok(a) =
                        Api::labelled(cfg.clone(), worker.ctx.op_timeout(), false, WORKLOAD)
                    {
                        api = a;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}

/// The kvstore's record of the objects, being followed.
pub struct Record {
    truth: Arc<Mutex<Truth>>,
    end: signal::Sender<Option<i64>>,
    task: tokio::task::JoinHandle<Followed>,
}

fn value_of(kv: &proto::mvccpb::KeyValue) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(&kv.value).ok()?;
    v["data"]["v"].as_str()?.parse().ok()
}

/// Follows every change of the objects' keys from `base + 1` (the kvstore's revision
/// before the first write).
pub fn start_record(ctx: &Ctx, base: i64) -> Record {
    let truth = Arc::new(Mutex::new(Truth::default()));
    let (end, end_rx) = signal::channel(None);
    let (t, rec) = (truth.clone(), ctx.rec.clone());
    let task = follow(ctx.clone(), PREFIX, base, end_rx, move |ev| {
        let Some(kv) = &ev.kv else { return };
        let deleted = ev.r#type == proto::mvccpb::event::EventType::Delete as i32;
        let name = String::from_utf8_lossy(&kv.key);
        let value = if deleted { None } else { value_of(kv) };
        if !deleted && value.is_none() {
            warn!(%name, revision = kv.mod_revision, "record: an object without a value");
        }
        t.lock()
            .unwrap_or_else(|e| e.into_inner())
            .changes
            .push(Change {
                revision: kv.mod_revision,
                name: name
                    .trim_start_matches("/registry/configmaps/default/")
                    .to_string(),
                value,
                seen_ms: rec.now() as f64 / 1e6,
            });
    });
    Record { truth, end, task }
}

impl Record {
    /// Tells the follower the last revision and waits (until `deadline`) for it to get there.
    pub async fn finish(self, last: i64, deadline: Instant) -> Truth {
        let _ = self.end.send(Some(last));
        let abort = self.task.abort_handle();
        let left = deadline.saturating_duration_since(Instant::now());
        let followed = match tokio::time::timeout(left, self.task).await {
            Ok(Ok(f)) => f,
            _ => {
                abort.abort();
                Followed {
                    complete: false,
                    gap: Some("the kvstore's watch did not reach the end in time".into()),
                }
            }
        };
        let mut truth = self.truth.lock().unwrap_or_else(|e| e.into_inner()).clone();
        truth.complete = followed.complete;
        truth.gap = followed.gap;
        truth
    }
}

/// The objects as the record says they ended: name → resourceVersion.
pub fn final_state(truth: &Truth) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for c in &truth.changes {
        match c.value {
            Some(_) => m.insert(c.name.clone(), c.revision),
            None => m.remove(&c.name),
        };
    }
    m
}

pub struct InformerSet {
    logs: Arc<Mutex<Vec<InformerLog>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The objects' final state, once known: an informer whose cache holds it is done.
    last: signal::Sender<Option<BTreeMap<String, i64>>>,
}

impl InformerSet {
    /// Gives the informers the final state and waits (until `deadline`) for each to hold it.
    pub async fn finish(self, last: BTreeMap<String, i64>, deadline: Instant) -> Vec<InformerLog> {
        let _ = self.last.send(Some(last));
        for t in self.tasks {
            let abort = t.abort_handle();
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, t).await.is_err() {
                abort.abort();
            }
        }
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.clone()
    }
}

/// Starts the informers (informer `i` on apiserver `i mod masters` first) and returns.
pub async fn start_informers(ctx: &Ctx) -> anyhow::Result<InformerSet> {
    let (n, _) = split(ctx.opts.concurrency);
    let mut configs = Vec::new();
    for node in 0..ctx.cluster.size() {
        configs.push(ctx.kube_config(node).await?);
    }
    let logs = Arc::new(Mutex::new(
        (0..n)
            .map(|id| InformerLog {
                id,
                segments: Vec::new(),
            })
            .collect(),
    ));
    let (tx, rx) = signal::channel(None);
    let tasks = (0..n)
        .map(|id| {
            let informer = Informer {
                ctx: ctx.clone(),
                id,
                consistent: id % 2 == 0,
                configs: configs.clone(),
                logs: logs.clone(),
                last: rx.clone(),
                cache: BTreeMap::new(),
            };
            tokio::spawn(informer.run())
        })
        .collect();
    Ok(InformerSet {
        logs,
        tasks,
        last: tx,
    })
}

struct Informer {
    ctx: Ctx,
    id: usize,
    consistent: bool,
    configs: Vec<kube::Config>,
    logs: Arc<Mutex<Vec<InformerLog>>>,
    last: signal::Receiver<Option<BTreeMap<String, i64>>>,
    /// What the informer holds: name → resourceVersion, as its store would.
    cache: BTreeMap<String, i64>,
}

fn rv_of(cm: &ConfigMap) -> i64 {
    cm.metadata
        .resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or(-1)
}

fn name_of(cm: &ConfigMap) -> String {
    cm.metadata.name.clone().unwrap_or_default()
}

fn value(cm: &ConfigMap) -> Option<u64> {
    cm.data.as_ref()?.get("v")?.parse().ok()
}

impl Informer {
    fn done(&self) -> bool {
        self.last
            .borrow()
            .as_ref()
            .is_some_and(|l| *l == self.cache)
    }

    async fn run(mut self) {
        let n = self.configs.len();
        let mut rng = self.ctx.rng(7000 + self.id as u64);
        let mut node = self.id % n;
        let mut listing: Option<BTreeMap<String, i64>> = None;
        loop {
            if self.done() {
                return;
            }
            let mut seg = Segment {
                apiserver: node,
                consistent: self.consistent,
                ..Default::default()
            };
            let leave_after = rng.random_range(50..800usize);
            seg.end = match kube::Client::try_from(self.configs[node].clone()) {
                Err(e) => format!("no client: {e}"),
                Ok(client) => {
                    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, "default");
                    let mut wc = watcher::Config::default().labels(&format!("{LABEL}={WORKLOAD}"));
                    if !self.consistent {
                        wc = wc.any_semantic();
                    }
                    let mut stream = Box::pin(watcher::watcher(api, wc));
                    let mut events = 0usize;
                    loop {
                        if listing.is_none() && self.done() {
                            break "caught up".to_string();
                        }
                        let next = tokio::select! {
                            n = tokio::time::timeout(IDLE, stream.next()) => n,
                            r = self.last.changed() => {
                                if r.is_err() {
                                    break "abandoned".to_string();
                                }
                                continue;
                            }
                        };
                        let at_ms = self.ctx.rec.now() as f64 / 1e6;
                        let seen = match next {
                            Err(_) => break "idle".into(),
                            Ok(None) => break "stream ended".into(),
                            Ok(Some(Err(e))) => {
                                seg.seen.push(Observation {
                                    at_ms,
                                    seen: Seen::Error {
                                        error: e.to_string(),
                                    },
                                });
                                if rng.random_bool(0.5) {
                                    break format!("error: {e}");
                                }
                                tokio::time::sleep(Duration::from_millis(200)).await;
                                continue;
                            }
                            Ok(Some(Ok(ev))) => ev,
                        };
                        let seen = match seen {
                            watcher::Event::Init => {
                                listing = Some(BTreeMap::new());
                                Seen::Init
                            }
                            watcher::Event::InitApply(cm) => {
                                if let Some(l) = listing.as_mut() {
                                    l.insert(name_of(&cm), rv_of(&cm));
                                }
                                Seen::Listed {
                                    name: name_of(&cm),
                                    rv: rv_of(&cm),
                                    value: value(&cm),
                                }
                            }
                            watcher::Event::InitDone => {
                                self.cache = listing.take().unwrap_or_default();
                                Seen::Synced
                            }
                            watcher::Event::Apply(cm) => {
                                events += 1;
                                self.cache.insert(name_of(&cm), rv_of(&cm));
                                Seen::Applied {
                                    name: name_of(&cm),
                                    rv: rv_of(&cm),
                                    value: value(&cm),
                                }
                            }
                            watcher::Event::Delete(cm) => {
                                events += 1;
                                self.cache.remove(&name_of(&cm));
                                Seen::Deleted {
                                    name: name_of(&cm),
                                    rv: rv_of(&cm),
                                }
                            }
                        };
                        seg.seen.push(Observation { at_ms, seen });
                        if events >= leave_after && Instant::now() < self.ctx.end {
                            break "left on purpose".into();
                        }
                    }
                }
            };
            // A list cut short is no list: the next watcher starts its own.
            listing = None;
            debug!(informer = self.id, node, end = %seg.end, "informer segment ended");
            let quiet = seg.end == "caught up" || seg.end == "abandoned";
            self.logs.lock().unwrap_or_else(|e| e.into_inner())[self.id]
                .segments
                .push(seg);
            if quiet {
                return;
            }
            node = (node + 1) % n;
            tokio::time::sleep(Duration::from_millis(rng.random_range(50..500))).await;
        }
    }
}

/// The informers workload as a run drives it.
#[derive(Default)]
pub struct Informers {
    running: Option<(Record, InformerSet)>,
    seen: Option<(Truth, Vec<InformerLog>)>,
}

#[async_trait::async_trait]
impl super::Workload for Informers {
    async fn run(&mut self, ctx: &Ctx) -> anyhow::Result<()> {
        let base = super::watch::current_revision(ctx, Instant::now() + Duration::from_secs(10))
            .await
            .context("reading the base revision")?;
        let record = start_record(ctx, base);
        let informers = start_informers(ctx).await?;
        self.running = Some((record, informers));
        run_writers(ctx.clone()).await
    }

    async fn finish(
        &mut self,
        ctx: &Ctx,
        _healed: Instant,
        dir: &std::path::Path,
    ) -> anyhow::Result<()> {
        let Some((record, informers)) = self.running.take() else {
            return Ok(());
        };
        let last = super::watch::current_revision(ctx, Instant::now() + Duration::from_secs(20))
            .await
            .unwrap_or(i64::MAX);
        let truth = record
            .finish(last, Instant::now() + Duration::from_secs(30))
            .await;
        let logs = informers
            .finish(
                final_state(&truth),
                Instant::now() + Duration::from_secs(60),
            )
            .await;
        super::save(
            dir,
            "informers.json",
            &serde_json::json!({"truth": truth, "informers": logs}),
        )?;
        self.seen = Some((truth, logs));
        Ok(())
    }

    fn check(
        &mut self,
        history: &[crate::history::Event],
        _deadline: Instant,
    ) -> Vec<crate::checker::Verdict> {
        let (truth, logs) = self.seen.take().unwrap_or_default();
        vec![crate::checker::informers::check(history, &truth, &logs)]
    }
}
