//! Deployments scaled up and down through the apiservers of every master while faults
//! hit, with a monitor that follows, in the kvstore, every pod's binding (and who bound it,
//! under which lease term) and every acquisition of the leaders' Leases (their fences).
//! After the heal the Deployments must roll out to the replicas they were last given.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::watch as signal;
use tracing::{debug, warn};

use super::follow::{follow, Followed};
use super::{Ctx, Worker};
use crate::api::Deployments;
use crate::checker::pods::{Converged, FenceSeen, MonitorLog, PodSeen};
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
/// Where the apiserver keeps the fences of kube-system's Leases (the leaders' terms).
const FENCES: &str = "/flotilla/fences/leases/kube-system/";
/// The annotation through which the scheduler says who bound a pod, under which term.
pub const BOUND_BY: &str = "scheduler.flotilla.io/bound-by";
/// The annotation through which the controller-manager says who created a pod.
pub const CREATED_BY: &str = "controller.flotilla.io/created-by";
/// The process that records the Deployments' creation.
const SETUP: i64 = -2;

pub fn deployment(i: usize) -> String {
    format!("jepsen-d{i}")
}

/// A client of `node`'s apiserver.
async fn client(ctx: &Ctx, node: usize) -> anyhow::Result<Deployments> {
    Deployments::new(ctx.kube_config(node).await?, ctx.op_timeout())
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

pub struct Monitor {
    log: Arc<Mutex<MonitorLog>>,
    end: signal::Sender<Option<i64>>,
    tasks: Vec<tokio::task::JoinHandle<Followed>>,
}

impl Monitor {
    /// Tells the monitor the last revision and waits (until `deadline`) for it to get there.
    pub async fn finish(self, last: i64, deadline: Instant) -> MonitorLog {
        let _ = self.end.send(Some(last));
        let mut complete = true;
        let mut gap = None;
        for task in self.tasks {
            let abort = task.abort_handle();
            let left = deadline.saturating_duration_since(Instant::now());
            let f = match tokio::time::timeout(left, task).await {
                Ok(Ok(f)) => f,
                _ => {
                    abort.abort();
                    Followed::default()
                }
            };
            complete &= f.complete;
            gap = gap.or(f.gap);
        }
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner()).clone();
        log.complete = complete;
        log.gap = gap.filter(|_| !complete);
        log
    }
}

/// What the monitor reads of a pod.
struct Decoded {
    uid: String,
    node: Option<String>,
    bound_by: Option<String>,
    created_by: Option<String>,
}

fn decode(kv: &proto::mvccpb::KeyValue) -> Option<Decoded> {
    let v: serde_json::Value = serde_json::from_slice(&kv.value).ok()?;
    let annotation = |k: &str| v["metadata"]["annotations"][k].as_str().map(str::to_string);
    Some(Decoded {
        uid: v["metadata"]["uid"].as_str()?.to_string(),
        node: v["spec"]["nodeName"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_string),
        bound_by: annotation(BOUND_BY),
        created_by: annotation(CREATED_BY),
    })
}

fn fence(kv: &proto::mvccpb::KeyValue, deleted: bool, seen_ms: Option<f64>) -> FenceSeen {
    let key = String::from_utf8_lossy(&kv.key);
    FenceSeen {
        revision: kv.mod_revision,
        lease: key.trim_start_matches(FENCES).to_string(),
        holder: if deleted {
            String::new()
        } else {
            String::from_utf8_lossy(&kv.value).into_owned()
        },
        seen_ms,
    }
}

/// The leases' fences as they stood at `base`, through whichever member answers.
pub async fn fences_at(ctx: &Ctx, base: i64) -> anyhow::Result<Vec<FenceSeen>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    super::through_any(ctx, deadline, |mut c| async move {
        c.prefix_at(FENCES, base).await
    })
    .await
    .map(|kvs| kvs.iter().map(|kv| fence(kv, false, None)).collect())
    .ok_or_else(|| anyhow::anyhow!("no member answered for the fences at revision {base}"))
}

/// Starts following the pods and the leases' fences from `base + 1`; `fences`: how they
/// stood at `base`.
pub fn start_monitor(ctx: &Ctx, base: i64, fences: Vec<FenceSeen>) -> Monitor {
    let log = Arc::new(Mutex::new(MonitorLog {
        fences,
        ..Default::default()
    }));
    let (end, end_rx) = signal::channel(None);
    let rec = ctx.rec.clone();
    let l = log.clone();
    let pods = follow(ctx.clone(), PREFIX, base, end_rx.clone(), move |ev| {
        let Some(kv) = &ev.kv else { return };
        let deleted = ev.r#type == proto::mvccpb::event::EventType::Delete as i32;
        let name = String::from_utf8_lossy(&kv.key)
            .trim_start_matches(PREFIX)
            .to_string();
        let from = if deleted {
            ev.prev_kv.as_ref()
        } else {
            Some(kv)
        };
        let Some(d) = from.and_then(decode) else {
            warn!(%name, revision = kv.mod_revision, "monitor: a pod that does not decode");
            return;
        };
        let mut log = l.lock().unwrap_or_else(|e| e.into_inner());
        log.seen.push(PodSeen {
            revision: kv.mod_revision,
            name,
            uid: d.uid,
            node: if deleted { None } else { d.node },
            bound_by: d.bound_by,
            created_by: d.created_by,
            deleted,
            seen_ms: rec.now() as f64 / 1e6,
        });
    });
    let rec = ctx.rec.clone();
    let l = log.clone();
    let fences = follow(ctx.clone(), FENCES, base, end_rx, move |ev| {
        let Some(kv) = &ev.kv else { return };
        let deleted = ev.r#type == proto::mvccpb::event::EventType::Delete as i32;
        let mut log = l.lock().unwrap_or_else(|e| e.into_inner());
        log.fences
            .push(fence(kv, deleted, Some(rec.now() as f64 / 1e6)));
    });
    Monitor {
        log,
        end,
        tasks: vec![pods, fences],
    }
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

/// The pods workload as a run drives it.
#[derive(Default)]
pub struct Pods {
    /// The kvstore's revision before the Deployments were created.
    base: i64,
    monitor: Option<Monitor>,
    seen: Option<(MonitorLog, Vec<Converged>)>,
    /// Each apiserver's count of writes its fences refused (since it last started).
    fenced: serde_json::Value,
}

/// The apiservers' counts of writes refused by a fence, by master: a lower bound (a
/// restarted apiserver counts from zero; `null` when one did not answer).
async fn fenced_refusals(ctx: &Ctx) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for node in 0..ctx.cluster.size() {
        let n = match ctx.kube_config(node).await {
            Ok(cfg) => {
                crate::api::counter(cfg, "flotilla_apiserver_fenced_writes_refused_total").await
            }
            Err(_) => None,
        };
        out.insert(ctx.cluster.name(node), serde_json::json!(n));
    }
    serde_json::Value::Object(out)
}

#[async_trait::async_trait]
impl super::Workload for Pods {
    async fn prepare(&mut self, cx: &Ctx) -> anyhow::Result<()> {
        self.base = setup(cx)
            .await
            .map_err(|e| e.context("creating the pods workload's Deployments"))?;
        Ok(())
    }

    async fn run(&mut self, ctx: &Ctx) -> anyhow::Result<()> {
        record_setup(ctx);
        let fences = fences_at(ctx, self.base).await?;
        self.monitor = Some(start_monitor(ctx, self.base, fences));
        run(ctx.clone()).await
    }

    async fn finish(
        &mut self,
        ctx: &Ctx,
        healed: Instant,
        dir: &std::path::Path,
    ) -> anyhow::Result<()> {
        let Some(monitor) = self.monitor.take() else {
            return Ok(());
        };
        let converged = converge(ctx, healed, Instant::now() + Duration::from_secs(90)).await;
        let last = super::watch::current_revision(ctx, Instant::now() + Duration::from_secs(20))
            .await
            .unwrap_or(i64::MAX);
        let log = monitor
            .finish(last, Instant::now() + Duration::from_secs(30))
            .await;
        self.fenced = fenced_refusals(ctx).await;
        super::save(
            dir,
            "pods.json",
            &serde_json::json!({"monitor": log, "converged": converged, "fenced-writes-refused": self.fenced}),
        )?;
        self.seen = Some((log, converged));
        Ok(())
    }

    fn check(
        &mut self,
        history: &[crate::history::Event],
        deadline: Instant,
    ) -> Vec<crate::checker::Verdict> {
        let (log, converged) = self.seen.take().unwrap_or_default();
        let mut verdicts = crate::checker::pods::check(history, &log, &converged, deadline);
        if let Some(stats) = verdicts.first_mut().and_then(|v| v.stats.as_object_mut()) {
            stats.insert("fenced-writes-refused".into(), self.fenced.take());
        }
        verdicts
    }
}
