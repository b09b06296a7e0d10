//! Deployments scaled up and down through the apiservers of every master while faults
//! hit, with a monitor that follows every pod's binding in the kvstore: a watch of the
//! pods' keys through any member, resumed after the last revision it saw. After the heal
//! the Deployments must roll out to the replicas they were last given.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::etcdserverpb as pb;
use rand::Rng;
use serde::Serialize;
use tokio::sync::watch as signal;
use tracing::{debug, warn};

use super::{Ctx, Worker};
use crate::api::{self, Deployments};
use crate::client::OpError;
use crate::history::{Kind, Op};

/// Deployments the workload scales.
pub const DEPLOYMENTS: usize = 2;
/// Each is scaled to between 0 and this many replicas.
const MAX_REPLICAS: u32 = 3;
/// Scales per second at most, all clients together: each one makes pods come and go.
const MAX_RATE: f64 = 10.0;
/// Where the apiserver keeps the pods of namespace default.
const PREFIX: &str = "/registry/pods/default/";
/// A monitor with no response for this long is presumed stuck (an isolated member).
const IDLE: Duration = Duration::from_secs(3);
/// The process that records the Deployments' creation.
const SETUP: i64 = -2;

pub fn deployment(i: usize) -> String {
    format!("jepsen-d{i}")
}

/// A client of `node`'s apiserver.
async fn client(ctx: &Ctx, node: usize) -> anyhow::Result<Deployments> {
    let server = ctx.cluster.apiserver(node).ok_or_else(|| {
        anyhow::anyhow!(
            "this cluster runs no apiserver (the pods workload needs --cluster compose)"
        )
    })?;
    Deployments::new(
        api::config(&server, ctx.op_timeout()).await?,
        ctx.op_timeout(),
    )
}

/// Creates the Deployments (one replica each) through whichever apiserver answers; returns
/// the kvstore revision from before, where the monitor starts.
pub async fn setup(ctx: &Ctx) -> anyhow::Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let base = super::watch::current_revision(ctx, deadline)
        .await
        .ok_or_else(|| anyhow::anyhow!("no member answered for the current revision"))?;
    for i in 0..DEPLOYMENTS {
        let mut node = 0;
        loop {
            let r = match client(ctx, node % ctx.cluster.size()).await {
                Ok(d) => d.create(&deployment(i), 1).await,
                Err(e) => Err(OpError::Fail(e.to_string())),
            };
            match r {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => {
                    anyhow::bail!("creating {}: {e}", deployment(i))
                }
                Err(e) => debug!(error = %e, "creating a deployment; again"),
            }
            node += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(base)
}

/// Puts the Deployments' creation (replicas 1) at the head of the history, for the
/// checker of the desired replicas.
pub fn record_setup(ctx: &Ctx) {
    for i in 0..DEPLOYMENTS {
        let op = Op::Scale {
            deployment: deployment(i),
            replicas: 1,
        };
        ctx.rec.record(SETUP, Kind::Invoke, None, op.clone(), None);
        ctx.rec.record(SETUP, Kind::Ok, None, op, None);
    }
}

pub async fn run(ctx: Ctx) -> anyhow::Result<()> {
    let c = ctx.opts.concurrency;
    let mut clients = Vec::new();
    for node in 0..ctx.cluster.size() {
        clients.push(client(&ctx, node).await?);
    }
    let mut tasks = Vec::new();
    for w in 0..c {
        let mut worker = Worker::new(&ctx, w, c)?;
        worker.limit_rate(MAX_RATE, c);
        let d = clients[worker.node].clone();
        tasks.push(tokio::spawn(async move {
            while worker.pace().await {
                let i = worker.rng.random_range(0..DEPLOYMENTS);
                let replicas = worker.rng.random_range(0..=MAX_REPLICAS);
                let op = Op::Scale {
                    deployment: deployment(i),
                    replicas,
                };
                worker.invoke(op.clone());
                match d.scale(&deployment(i), replicas).await {
                    Ok(()) => worker.ok(op),
                    Err(e) => worker.error(op, e, false),
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}

/// One change of a pod as the kvstore recorded it.
#[derive(Clone, Debug, Serialize)]
pub struct PodSeen {
    pub revision: i64,
    pub name: String,
    pub uid: String,
    /// spec.nodeName (None: not bound).
    pub node: Option<String>,
    pub deleted: bool,
}

/// What the monitor saw, and whether it saw everything up to the end.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MonitorLog {
    pub seen: Vec<PodSeen>,
    /// Every revision up to the end was delivered.
    pub complete: bool,
    /// Why not, if not.
    pub gap: Option<String>,
}

pub struct Monitor {
    log: Arc<Mutex<MonitorLog>>,
    end: signal::Sender<Option<i64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Monitor {
    /// Tells the monitor the last revision and waits (until `deadline`) for it to get there.
    pub async fn finish(self, last: i64, deadline: Instant) -> MonitorLog {
        let _ = self.end.send(Some(last));
        let abort = self.task.abort_handle();
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, self.task).await.is_err() {
            abort.abort();
        }
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.clone()
    }
}

fn decode(kv: &proto::mvccpb::KeyValue) -> Option<(String, Option<String>)> {
    let v: serde_json::Value = serde_json::from_slice(&kv.value).ok()?;
    let uid = v["metadata"]["uid"].as_str()?.to_string();
    let node = v["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    Some((uid, node))
}

/// Starts following the pods from `base + 1`.
pub fn start_monitor(ctx: &Ctx, base: i64) -> Monitor {
    let log = Arc::new(Mutex::new(MonitorLog::default()));
    let (end, mut end_rx) = signal::channel(None);
    let ctx = ctx.clone();
    let l = log.clone();
    let task = tokio::spawn(async move {
        let mut next = base + 1;
        let mut node = 0usize;
        loop {
            let mut c = match ctx.client(node % ctx.cluster.size()) {
                Ok(c) => c,
                Err(_) => {
                    node += 1;
                    continue;
                }
            };
            let (tx, mut stream) = match c.watch(PREFIX, next).await {
                Ok(s) => s,
                Err(e) => {
                    debug!(error = %e, "monitor: watch failed; another member");
                    node += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let mut ask = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = ask.tick() => {
                        // Progress requests keep a quiet stream answering, and tell when
                        // every revision up to the end was delivered.
                        let progress = pb::WatchRequest {
                            request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
                                pb::WatchProgressRequest {},
                            )),
                        };
                        if tx.send(progress).await.is_err() {
                            break;
                        }
                    }
                    r = end_rx.changed() => {
                        if r.is_err() {
                            // Nobody waits for the monitor any more.
                            return;
                        }
                    }
                    r = tokio::time::timeout(IDLE, stream.message()) => {
                        let Ok(Ok(Some(resp))) = r else {
                            debug!("monitor: stream ended, failed or stalled; another member");
                            break;
                        };
                        if resp.compact_revision > 0 {
                            let mut log = l.lock().unwrap_or_else(|e| e.into_inner());
                            log.gap = Some(format!("compacted at {} before revision {next} was seen", resp.compact_revision));
                            return;
                        }
                        let mut log = l.lock().unwrap_or_else(|e| e.into_inner());
                        for ev in &resp.events {
                            let Some(kv) = &ev.kv else { continue };
                            let deleted = ev.r#type == proto::mvccpb::event::EventType::Delete as i32;
                            let name = String::from_utf8_lossy(&kv.key)
                                .trim_start_matches(PREFIX)
                                .to_string();
                            let from = if deleted { ev.prev_kv.as_ref() } else { Some(kv) };
                            let Some((uid, node)) = from.and_then(decode) else {
                                warn!(%name, revision = kv.mod_revision, "monitor: a pod that does not decode");
                                continue;
                            };
                            log.seen.push(PodSeen {
                                revision: kv.mod_revision,
                                name,
                                uid,
                                node: if deleted { None } else { node },
                                deleted,
                            });
                            next = next.max(kv.mod_revision.saturating_add(1));
                        }
                        let at = resp.header.as_ref().map_or(0, |h| h.revision);
                        if resp.events.is_empty() && end_rx.borrow().is_some_and(|e| at >= e) {
                            log.complete = true;
                            return;
                        }
                    }
                }
            }
            node += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    Monitor { log, end, task }
}

/// How one Deployment ended up after the heal.
#[derive(Clone, Debug, Serialize)]
pub struct Converged {
    pub deployment: String,
    pub desired: Option<u32>,
    /// Milliseconds from `since` until its rollout was done (None: not within the bound).
    pub after_ms: Option<f64>,
}

/// Records a consistent read of each Deployment's desired replicas (as `Get`), then waits
/// until `deadline` for each rollout to be done, through whichever apiserver answers.
pub async fn converge(ctx: &Ctx, since: Instant, deadline: Instant) -> Vec<Converged> {
    let mut out = Vec::new();
    for i in 0..DEPLOYMENTS {
        let name = deployment(i);
        let mut c = Converged {
            deployment: name.clone(),
            desired: None,
            after_ms: None,
        };
        let mut node = 0;
        let process = 1_000_000 + i as i64;
        while Instant::now() < deadline {
            let n = node % ctx.cluster.size();
            node += 1;
            let Ok(d) = client(ctx, n).await else {
                continue;
            };
            if c.desired.is_none() {
                let op = Op::Get {
                    key: name.clone(),
                    value: None,
                    rv: None,
                };
                ctx.rec
                    .record(process, Kind::Invoke, Some(n), op.clone(), None);
                match d.rollout(&name).await {
                    Ok(r) => {
                        c.desired = Some(r.desired);
                        ctx.rec.record(
                            process,
                            Kind::Ok,
                            Some(n),
                            Op::Get {
                                key: name.clone(),
                                value: Some(u64::from(r.desired)),
                                rv: Some(r.rv),
                            },
                            None,
                        );
                    }
                    Err(e) => {
                        ctx.rec
                            .record(process, Kind::Fail, Some(n), op, Some(e.to_string()));
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
            // The same apiserver while it answers.
            while Instant::now() < deadline {
                match d.rollout(&name).await {
                    Ok(r) if r.done => {
                        c.after_ms = Some(since.elapsed().as_secs_f64() * 1e3);
                        break;
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    Err(_) => break,
                }
            }
            if c.after_ms.is_some() {
                break;
            }
        }
        out.push(c);
    }
    out
}
