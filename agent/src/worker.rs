//! One task per pod bound to this node: it looks at the runtime, plans (`sync.rs`), acts,
//! runs the probes, and reports the status (`status.rs`) when it changed. It wakes on
//! every change of the pod object, when the runtime's view of the pod changed (`pleg.rs`),
//! when a probe, a backoff or the active deadline is due, and every 10 s otherwise. When
//! the pod is deleted it stops everything and then removes the pod object (grace 0 with a
//! uid precondition, as the kubelet's status manager does); when the object is gone it
//! stops and removes whatever is left.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use component_base::events::{object_ref, EventType, Recorder};
use flotilla_core::backoff::Backoff;
use flotilla_core::ratelimit::TokenBucket;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::containers;
use crate::crashloop::CrashBackoff;
use crate::hooks;
use crate::probes::{self, Kind, Prober};
use crate::runtime::{PodRef, PodView, Runtime, SandboxConfig};
use crate::status;
use crate::sync::{self, Action, Ending, StopReason};

/// What every pod worker of one node shares.
pub struct Shared {
    pub client: kube::Client,
    pub runtime: Arc<dyn Runtime>,
    pub node_name: String,
    pub host_ip: String,
    /// `<root-dir>/pods`: logs and volumes, one directory per pod.
    pub pods_dir: PathBuf,
    /// Status writes of all the node's pods share this bucket (the kubelet's
    /// `--kube-api-qps` and `--kube-api-burst`), so thousands of pods stay within the
    /// agent's share of the apiserver.
    pub status_writes: Arc<TokenBucket>,
    pub recorder: Recorder,
    /// Turns true when the agent stops and takes its pods down with it: every worker
    /// stops its pod's containers, reports that, and ends.
    pub stopping: watch::Receiver<bool>,
    /// The most grace a pod gets when the agent stops with its pods.
    pub shutdown_grace: Duration,
    /// Wakes a worker when the runtime's view of its pod changed.
    pub pleg: crate::pleg::Pleg,
}

/// A stable hash of a container's spec (FNV-1a over its JSON): a running container whose
/// spec hash changed is replaced.
pub fn container_hash(c: &Container) -> u64 {
    fnv(&serde_json::to_vec(c).unwrap_or_default())
}

/// FNV-1a: stable across builds and machines.
pub fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

pub fn pod_dir_name(pod: &PodRef) -> String {
    format!("{}_{}_{}", pod.namespace, pod.name, pod.uid)
}

struct Worker {
    shared: Arc<Shared>,
    uid: String,
    backoff: CrashBackoff,
    start_errors: HashMap<String, (String, String)>,
    /// Failed actions are not retried before these times: the sandbox (key "") and
    /// container starts by name, with the current delay.
    retry: HashMap<String, (Instant, Duration)>,
    probers: HashMap<String, Vec<Prober>>,
    last_status: Option<PodStatus>,
    /// The resourceVersion of the pod after this worker's last status write.
    written_rv: Option<u64>,
}

/// Runs the worker of pod `uid` until the pod is gone. `rx` holds the newest pod object,
/// or `None` once it was removed from the API (or never existed: an orphan found in the
/// runtime).
pub async fn run(shared: Arc<Shared>, uid: String, mut rx: watch::Receiver<Option<Pod>>) {
    let mut w = Worker {
        shared,
        uid,
        backoff: CrashBackoff::default(),
        start_errors: HashMap::new(),
        retry: HashMap::new(),
        probers: HashMap::new(),
        last_status: None,
        written_rv: None,
    };
    let shared = w.shared.clone();
    let events = shared.pleg.subscribe(&w.uid);
    loop {
        let pod = rx.borrow_and_update().clone();
        let Some(pod) = pod else {
            w.clean_up().await;
            return;
        };
        if *w.shared.stopping.borrow() {
            w.shut_down(&pod).await;
            return;
        }
        let wait = match w.sync(&pod).await {
            Ok(Step::Done) => return,
            Ok(Step::Again) => Duration::ZERO,
            Ok(Step::Wait(d)) => d,
            Err(e) => {
                warn!(pod = %pod_key(&pod), error = %e, "sync failed");
                Duration::from_secs(1)
            }
        };
        if wait.is_zero() {
            tokio::task::yield_now().await;
            continue;
        }
        let mut stopping = w.shared.stopping.clone();
        let gone = tokio::select! {
            r = rx.changed() => r.is_err(),
            _ = stopping.wait_for(|s| *s) => false,
            _ = events.notify.notified() => false,
            _ = tokio::time::sleep(wait) => false,
        };
        if gone {
            w.clean_up().await;
            return;
        }
    }
}

/// A worker whose pod runs looks again at least this often without any event.
const RESYNC: Duration = Duration::from_secs(10);
/// The same for a finished pod kept for its status.
const IDLE_RESYNC: Duration = Duration::from_secs(30);

enum Step {
    /// Something was done: look again at once.
    Again,
    Wait(Duration),
    /// The pod is finished and removed.
    Done,
}

/// The pod's resourceVersion as the number it is in this apiserver (a kvstore revision).
fn resource_version(p: &Pod) -> Option<u64> {
    p.metadata.resource_version.as_deref()?.parse().ok()
}

fn pod_key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or(""),
        p.metadata.name.as_deref().unwrap_or("")
    )
}

fn container_of<'a>(pod: &'a Pod, name: &str, init: bool) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    let list = if init {
        spec.init_containers.as_deref().unwrap_or(&[])
    } else {
        &spec.containers[..]
    };
    list.iter().find(|c| c.name == name)
}

fn image_of(pod: &Pod, name: &str, init: bool) -> String {
    container_of(pod, name, init)
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

pub(crate) fn pod_ref(p: &Pod) -> PodRef {
    PodRef {
        uid: p.metadata.uid.clone().unwrap_or_default(),
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        name: p.metadata.name.clone().unwrap_or_default(),
    }
}

impl Worker {
    async fn clean_up(&mut self) {
        let rt = &self.shared.runtime;
        if let Err(e) = rt.stop_pod(&self.uid, Duration::from_secs(2)).await {
            warn!(uid = %self.uid, error = %e, "stopping a removed pod");
        }
        if let Err(e) = rt.remove_pod(&self.uid).await {
            warn!(uid = %self.uid, error = %e, "removing a removed pod");
        }
        self.remove_pod_dir();
        debug!(uid = %self.uid, "pod removed from the runtime");
    }

    /// The agent is stopping with its pods: stop the containers and say so, so the pod does
    /// not look ready while nothing runs.
    async fn shut_down(&mut self, pod: &Pod) {
        let rt = self.shared.runtime.clone();
        let grace = sync::grace(pod).min(self.shared.shutdown_grace);
        if let Err(e) = rt.stop_pod(&self.uid, grace).await {
            warn!(pod = %pod_key(pod), error = %e, "stopping the pod");
        }
        self.probers.clear();
        let Ok(view) = rt.pod(&self.uid).await else {
            return;
        };
        let none = HashSet::new();
        let st = status::compute(&status::Inputs {
            pod,
            view: &view,
            plan: &sync::Plan::default(),
            start_errors: &self.start_errors,
            ready: &none,
            started: &none,
            runtime: rt.name(),
            host_ip: &self.shared.host_ip,
            now: Timestamp::now(),
        });
        self.report(pod, st).await;
    }

    /// Runs the preStop hooks of the running containers `(id, name)` at once, within
    /// `grace`; returns what is left of the grace for the stop itself (at least 2 s, the
    /// kubelet's minimum).
    async fn pre_stop(
        &self,
        pod: &Pod,
        view: &PodView,
        running: &[(String, String)],
        grace: Duration,
    ) -> Duration {
        let started = Instant::now();
        let ip = view
            .sandbox
            .as_ref()
            .and_then(|s| s.ip.clone())
            .unwrap_or_default();
        let rt = self.shared.runtime.clone();
        let hooks_run = running.iter().filter_map(|(id, name)| {
            let c = container_of(pod, name, false)?;
            let h = hooks::pre_stop(c)?;
            let (rt, ip) = (rt.clone(), ip.clone());
            Some(async move {
                let r = hooks::run(h, c, id, &ip, rt.as_ref(), grace).await;
                (name.clone(), r)
            })
        });
        for (name, r) in futures::future::join_all(hooks_run).await {
            if let Err(msg) = r {
                self.event(
                    pod,
                    EventType::Warning,
                    "FailedPreStopHook",
                    &format!("PreStopHook failed for container {name}: {msg}"),
                );
            }
        }
        grace
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(2))
    }

    /// Removes the pod's directory (volumes, logs) once nothing of it runs.
    fn remove_pod_dir(&self) {
        let Ok(rd) = std::fs::read_dir(&self.shared.pods_dir) else {
            return;
        };
        let suffix = format!("_{}", self.uid);
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().ends_with(&suffix) {
                if let Err(err) = std::fs::remove_dir_all(e.path()) {
                    warn!(uid = %self.uid, error = %err, "removing the pod directory");
                }
            }
        }
    }

    fn event(&self, pod: &Pod, kind: EventType, reason: &str, msg: &str) {
        self.shared
            .recorder
            .record(&object_ref(pod), kind, reason, msg);
    }

    async fn sync(&mut self, pod: &Pod) -> anyhow::Result<Step> {
        // What this worker last reported is newer than what the watch has shown so far,
        // unless someone else changed the status since (then it is written again).
        if self.drifted(pod) {
            info!(pod = %pod_key(pod), "pod status changed by another writer; reporting again");
            self.last_status = None;
        }
        let mut merged;
        let pod = match &self.last_status {
            Some(st) => {
                merged = pod.clone();
                merged.status = Some(st.clone());
                &merged
            }
            None => pod,
        };
        let rt = self.shared.runtime.clone();
        let view = rt.pod(&self.uid).await?;
        let now = Timestamp::now();
        self.run_probes(pod, &view).await;
        let (unhealthy, startup_failed) = self.probe_failures(&view);
        let plan = sync::plan(&sync::Inputs {
            pod,
            view: &view,
            backoff: &self.backoff,
            unhealthy: &unhealthy,
            startup_failed: &startup_failed,
            hash: &container_hash,
            now,
        });
        if plan.stopped && plan.ending == Some(Ending::Deleted) {
            rt.remove_pod(&self.uid).await?;
            self.remove_pod_dir();
            self.delete_object(pod).await?;
            return Ok(Step::Done);
        }
        let mut acted = false;
        for a in &plan.actions {
            acted |= self.act(pod, &view, a).await;
        }
        let view = if acted {
            rt.pod(&self.uid).await?
        } else {
            view
        };
        let (ready, started) = self.probe_verdicts(&view);
        let st = status::compute(&status::Inputs {
            pod,
            view: &view,
            plan: &plan,
            start_errors: &self.start_errors,
            ready: &ready,
            started: &started,
            runtime: rt.name(),
            host_ip: &self.shared.host_ip,
            now,
        });
        self.report(pod, st).await;
        if acted {
            return Ok(Step::Again);
        }
        // Runtime changes wake the worker (pleg.rs); what else is due bounds the wait.
        let idle = plan.ending.is_some() && !view.any_running();
        let mut wait = if idle { IDLE_RESYNC } else { RESYNC };
        let now_i = Instant::now();
        for at in self.probers.values().filter_map(|p| probes::next_due(p)) {
            wait = wait.min(at.saturating_duration_since(now_i) + Duration::from_millis(10));
        }
        for (_, _, _, left) in &plan.backing_off {
            wait = wait.min(*left + Duration::from_millis(10));
        }
        for (at, _) in self.retry.values() {
            wait = wait.min(at.saturating_duration_since(now_i) + Duration::from_millis(10));
        }
        if let Some(secs) = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds) {
            if let Some(start) = pod.status.as_ref().and_then(|s| s.start_time.as_ref()) {
                let left = secs - now.duration_since(start.0).as_secs();
                if left > 0 {
                    wait = wait.min(Duration::from_secs(left as u64));
                }
            }
        }
        Ok(Step::Wait(wait))
    }

    async fn delete_object(&self, pod: &Pod) -> anyhow::Result<()> {
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api
            .delete(pod.metadata.name.as_deref().unwrap_or(""), &dp)
            .await
        {
            Ok(_) => {
                info!(pod = %pod_key(pod), "pod finished and deleted");
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a failure of `key` is still backing off.
    fn backing_off(&self, key: &str) -> bool {
        self.retry
            .get(key)
            .is_some_and(|(at, _)| Instant::now() < *at)
    }

    /// Records a failure of `key`: the next try waits `first`, doubling up to `max`.
    fn failed(&mut self, key: &str, first: Duration, max: Duration) {
        let prev = self.retry.get(key).map(|(_, d)| *d);
        let delay = Backoff::new(first, max).after(prev);
        self.retry
            .insert(key.to_string(), (Instant::now() + delay, delay));
    }

    /// Carries out one action; returns whether anything was tried (so the worker looks
    /// again at once) rather than skipped while a failure backs off.
    async fn act(&mut self, pod: &Pod, view: &PodView, a: &Action) -> bool {
        let rt = self.shared.runtime.clone();
        match a {
            Action::Remove { id } => {
                if let Err(e) = rt.remove_container(id).await {
                    debug!(id, error = %e, "removing an old attempt");
                }
            }
            Action::StopPod { grace } => {
                let names: Vec<String> = view
                    .containers
                    .iter()
                    .filter(|c| c.running())
                    .map(|c| c.name.clone())
                    .collect();
                for n in &names {
                    self.event(
                        pod,
                        EventType::Normal,
                        "Killing",
                        &format!("Stopping container {n}"),
                    );
                }
                let running: Vec<(String, String)> = view
                    .containers
                    .iter()
                    .filter(|c| c.running())
                    .map(|c| (c.id.clone(), c.name.clone()))
                    .collect();
                let left = self.pre_stop(pod, view, &running, *grace).await;
                if let Err(e) = rt.stop_pod(&self.uid, left).await {
                    warn!(pod = %pod_key(pod), error = %e, "stopping the pod");
                }
                self.probers.clear();
            }
            Action::CreateSandbox => {
                if self.backing_off("") {
                    return false;
                }
                let pr = pod_ref(pod);
                let cfg = SandboxConfig {
                    hostname: pr.name.clone(),
                    pod_dir: self.shared.pods_dir.join(pod_dir_name(&pr)),
                    pod: pr,
                };
                match rt.run_sandbox(&cfg).await {
                    Ok(_) => {
                        self.retry.remove("");
                    }
                    Err(e) => {
                        warn!(pod = %pod_key(pod), error = %e, "creating the pod sandbox");
                        self.failed("", Duration::from_secs(1), Duration::from_secs(30));
                        self.event(
                            pod,
                            EventType::Warning,
                            "FailedCreatePodSandBox",
                            &format!("Failed to create pod sandbox: {e}"),
                        );
                    }
                }
            }
            Action::Stop {
                id,
                name,
                grace,
                why,
            } => {
                let msg = match why {
                    StopReason::LivenessFailed => {
                        format!("Container {name} failed liveness probe, will be restarted")
                    }
                    StopReason::StartupFailed => {
                        format!("Container {name} failed startup probe, will be restarted")
                    }
                    StopReason::SpecChanged => {
                        format!("Container {name} definition changed, will be restarted")
                    }
                };
                self.event(pod, EventType::Normal, "Killing", &msg);
                let left = self
                    .pre_stop(pod, view, &[(id.clone(), name.clone())], *grace)
                    .await;
                if let Err(e) = rt.stop_container(id, left).await {
                    warn!(pod = %pod_key(pod), container = %name, error = %e, "stopping a container");
                }
                self.probers.remove(id);
            }
            Action::Start {
                name,
                init,
                attempt,
                replaces_exit,
            } => {
                let key = sync::backoff_key(name, *init);
                if self.backing_off(&key) {
                    // A failed pull shows as ImagePullBackOff while it waits.
                    if let Some((reason, msg)) = self.start_errors.get_mut(name.as_str()) {
                        if reason == "ErrImagePull" {
                            *reason = "ImagePullBackOff".into();
                            *msg =
                                format!("Back-off pulling image {:?}", image_of(pod, name, *init));
                        }
                    }
                    return false;
                }
                match self
                    .start(pod, view, name, *init, *attempt, *replaces_exit)
                    .await
                {
                    Ok(()) => {
                        self.retry.remove(&key);
                    }
                    Err("ErrImagePull") => {
                        self.failed(&key, Duration::from_secs(10), Duration::from_secs(300))
                    }
                    Err(_) => self.failed(&key, Duration::from_secs(1), Duration::from_secs(60)),
                }
            }
        }
        true
    }

    async fn start(
        &mut self,
        pod: &Pod,
        view: &PodView,
        name: &str,
        init: bool,
        attempt: u32,
        replaces_exit: Option<Timestamp>,
    ) -> Result<(), &'static str> {
        let Some(c) = container_of(pod, name, init) else {
            return Ok(());
        };
        let Some(sandbox) = view.sandbox.clone() else {
            return Ok(());
        };
        if let Some(at) = replaces_exit {
            self.backoff
                .restarted(&sync::backoff_key(name, init), at, Timestamp::now());
        }
        let cfg = match containers::config(&self.shared, pod, c, init, attempt, &sandbox).await {
            Ok(cfg) => cfg,
            Err(msg) => {
                self.start_errors.insert(
                    name.to_string(),
                    ("CreateContainerConfigError".into(), msg.clone()),
                );
                self.event(pod, EventType::Warning, "Failed", &format!("Error: {msg}"));
                return Err("CreateContainerConfigError");
            }
        };
        match self.shared.runtime.start_container(&sandbox, &cfg).await {
            Ok(id) => {
                self.start_errors.remove(name);
                debug!(pod = %pod_key(pod), container = %name, attempt, id, "started");
                self.event(
                    pod,
                    EventType::Normal,
                    "Started",
                    &format!("Started container {name}"),
                );
                if let Some(h) = hooks::post_start(c) {
                    let ip = sandbox.ip.clone().unwrap_or_default();
                    let rt = self.shared.runtime.clone();
                    if let Err(msg) =
                        hooks::run(h, c, &id, &ip, rt.as_ref(), sync::grace(pod)).await
                    {
                        // As the kubelet: the container is killed and restarts by policy.
                        self.event(
                            pod,
                            EventType::Warning,
                            "FailedPostStartHook",
                            &format!("PostStartHook failed: {msg}"),
                        );
                        if let Err(e) = rt.stop_container(&id, sync::grace(pod)).await {
                            warn!(pod = %pod_key(pod), container = %name, error = %e, "stopping after a failed postStart");
                        }
                        return Ok(());
                    }
                }
                self.probers.insert(id, probes::probers(c, Instant::now()));
                Ok(())
            }
            Err(e) => {
                let reason = e.reason();
                warn!(pod = %pod_key(pod), container = %name, error = %e, "starting a container");
                self.event(pod, EventType::Warning, "Failed", &format!("Error: {e}"));
                // A failed start that left an attempt behind shows as that attempt's exit.
                if self
                    .shared
                    .runtime
                    .pod(&self.uid)
                    .await
                    .ok()
                    .and_then(|v| v.latest(name, init).map(|l| l.attempt))
                    != Some(attempt)
                {
                    self.start_errors
                        .insert(name.to_string(), (reason.to_string(), e.to_string()));
                    return Err(reason);
                }
                Ok(())
            }
        }
    }

    /// Runs the probes that are due, for the containers that run.
    async fn run_probes(&mut self, pod: &Pod, view: &PodView) {
        let Some(spec) = pod.spec.as_ref() else {
            return;
        };
        let pod_ip = view
            .sandbox
            .as_ref()
            .and_then(|s| s.ip.clone())
            .unwrap_or_default();
        let now = Instant::now();
        self.probers
            .retain(|id, _| view.containers.iter().any(|c| &c.id == id && c.running()));
        for s in view.containers.iter().filter(|c| c.running() && !c.init) {
            let Some(c) = spec.containers.iter().find(|c| c.name == s.name) else {
                continue;
            };
            // Containers adopted from an earlier run get probers from now.
            let probers = self
                .probers
                .entry(s.id.clone())
                .or_insert_with(|| probes::probers(c, now));
            let startup_ok = probers
                .iter()
                .find(|p| p.kind == Kind::Startup)
                .is_none_or(|p| p.ok);
            for p in probers.iter_mut() {
                if !p.due(now) || (p.kind != Kind::Startup && !startup_ok) {
                    continue;
                }
                if p.kind == Kind::Startup && p.ok {
                    continue;
                }
                let out = probes::run(
                    p.probe(),
                    c,
                    &s.id,
                    &pod_ip,
                    self.shared.runtime.as_ref(),
                    p.timeout(),
                )
                .await;
                let failed = out.as_ref().err().cloned();
                let changed = p.record(out, Instant::now());
                if let Some(m) = failed {
                    let what = match p.kind {
                        Kind::Liveness => "Liveness",
                        Kind::Readiness => "Readiness",
                        Kind::Startup => "Startup",
                    };
                    self.shared.recorder.record(
                        &object_ref(pod),
                        EventType::Warning,
                        "Unhealthy",
                        &format!("{what} probe failed: {m}"),
                    );
                }
                if changed {
                    debug!(pod = %pod_key(pod), container = %s.name, kind = ?p.kind, ok = p.ok, "probe verdict changed");
                }
            }
        }
    }

    fn probe_failures(&self, view: &PodView) -> (HashSet<String>, HashSet<String>) {
        let mut unhealthy = HashSet::new();
        let mut startup = HashSet::new();
        for c in &view.containers {
            for p in self.probers.get(&c.id).into_iter().flatten() {
                match p.kind {
                    Kind::Liveness if !p.ok => {
                        unhealthy.insert(c.id.clone());
                    }
                    Kind::Startup if !p.ok && p.failed_out() => {
                        startup.insert(c.id.clone());
                    }
                    _ => {}
                }
            }
        }
        (unhealthy, startup)
    }

    /// (ready, started): running containers whose readiness passes and whose startup probe
    /// (if any) has passed.
    fn probe_verdicts(&self, view: &PodView) -> (HashSet<String>, HashSet<String>) {
        let mut ready = HashSet::new();
        let mut started = HashSet::new();
        for c in view.containers.iter().filter(|c| c.running()) {
            let ps = self.probers.get(&c.id);
            let verdict = |k: Kind, default: bool| {
                ps.and_then(|ps| ps.iter().find(|p| p.kind == k))
                    .map_or(default, |p| p.ok)
            };
            if verdict(Kind::Startup, true) {
                started.insert(c.id.clone());
                if verdict(Kind::Readiness, true) {
                    ready.insert(c.id.clone());
                }
            }
        }
        (ready, started)
    }

    /// Whether the API holds a newer status than this worker wrote last whose phase or
    /// conditions differ from it: another writer changed them (the node lifecycle
    /// controller marks the pods of a node it lost touch with not ready).
    fn drifted(&self, api: &Pod) -> bool {
        let (Some(last), Some(rv)) = (&self.last_status, self.written_rv) else {
            return false;
        };
        if resource_version(api).is_none_or(|seen| seen <= rv) {
            return false;
        }
        // Phase and condition statuses only: times come back at the API's precision.
        let gist = |st: &PodStatus| {
            let conds: Vec<(String, String)> = st
                .conditions
                .iter()
                .flatten()
                .map(|c| (c.type_.clone(), c.status.clone()))
                .collect();
            (st.phase.clone(), conds)
        };
        api.status.as_ref().map(gist) != Some(gist(last))
    }

    /// Sends the status when it changed since the last report.
    async fn report(&mut self, pod: &Pod, st: PodStatus) {
        let current = pod.status.as_ref();
        if self.last_status.as_ref() == Some(&st) || current == Some(&st) {
            self.last_status = Some(st);
            return;
        }
        let wait = self.shared.status_writes.take(Instant::now().into_std());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let patch = serde_json::json!({ "status": st });
        match api
            .patch_status(
                pod.metadata.name.as_deref().unwrap_or(""),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(written) => {
                if current.and_then(|c| c.phase.as_deref()) != st.phase.as_deref() {
                    info!(pod = %pod_key(pod), phase = ?st.phase, "pod phase");
                }
                self.written_rv = resource_version(&written);
                self.last_status = Some(st);
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                warn!(pod = %pod_key(pod), error = %e, "writing pod status");
                self.last_status = None;
            }
        }
    }
}
