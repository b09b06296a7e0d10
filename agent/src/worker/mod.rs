//! One task per pod bound to this node: it looks at the runtime, plans (`sync.rs`), acts,
//! runs the probes, and reports the status (`status.rs`) when it changed. It wakes on
//! every change of the pod object, when the runtime's view of the pod changed (`pleg.rs`),
//! when a probe, a backoff or the active deadline is due, and every 10 s otherwise. When
//! the pod is deleted it stops everything and then removes the pod object (grace 0 with a
//! uid precondition, as the kubelet's status manager does); when the object is gone it
//! stops and removes whatever is left.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use component_base::events::{object_ref, EventType};
use flotilla_core::backoff::Backoff;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::containers;
use crate::crashloop::CrashBackoff;
use crate::hooks;
use crate::node_state::{container_hash, pod_dir_name, pod_ref, Shared};
use crate::probes::{self, Kind, Prober};
use crate::runtime::{PodView, SandboxConfig};
use crate::status;
use crate::sync::{self, Action, Ending, StopReason};

mod act;
mod probing;

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
    /// When this worker began: the agent seeing the pod first, for the start latency.
    seen: Instant,
    /// Whether the pod's start was observed (or it was running before this worker).
    start_observed: bool,
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
        seen: Instant::now(),
        start_observed: false,
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
                crate::tmpfs::unmount_volumes(&e.path());
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
            let st = self.status_of(pod, &view, &plan, now);
            self.report(pod, st).await;
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
        let st = self.status_of(pod, &view, &plan, now);
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
        if let Some(left) = sync::deadline_left(pod, now) {
            wait = wait.min(left);
        }
        Ok(Step::Wait(wait))
    }

    /// The status to report for `pod` as the runtime shows it after `plan`.
    fn status_of(&self, pod: &Pod, view: &PodView, plan: &sync::Plan, now: Timestamp) -> PodStatus {
        let (ready, started) = self.probe_verdicts(view);
        status::compute(&status::Inputs {
            pod,
            view,
            plan,
            start_errors: &self.start_errors,
            ready: &ready,
            started: &started,
            runtime: self.shared.runtime.name(),
            host_ip: &self.shared.host_ip,
            now,
        })
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
        // The kubelet's start latency: the first Running status of a pod that was not
        // already running when this worker began.
        if !self.start_observed && st.phase.as_deref() == Some("Running") {
            self.start_observed = true;
            if current.and_then(|c| c.phase.as_deref()) != Some("Running") {
                let took = self.seen.elapsed().as_secs_f64();
                self.shared.kubelet.pod_start.observe(took);
            }
        }
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
