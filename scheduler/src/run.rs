//! The scheduler at work: watches feeding the cache and queue, one scheduling loop
//! deciding a pod at a time, bindings sent in parallel, failures written to the pod's
//! PodScheduled condition and to Events.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use component_base::events::{object_ref, EventType, Recorder};
use component_base::leaderelection::{run_maybe_elected, LeaderState, Term};
use component_base::metrics::Registry;
use component_base::supervise::catch_panic;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Binding, Namespace, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
    PodCondition,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::informer::State;
use crate::metrics::{Attempt, Metrics};
use crate::preemption;
use crate::queue::Popped;
use crate::schedule::{Algorithm, Decision};
use crate::SchedulerConfig;

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the scheduler until `shutdown`, scheduling only while it holds the lease.
pub async fn run(cfg: SchedulerConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let base = component_base::client::config_from_kubeconfig(&cfg.common.kubeconfig).await?;
    let client = kube::Client::try_from(base.clone())?;
    let leader = LeaderState::new("flotilla-scheduler");
    let metrics = Arc::new(Metrics::new(&cfg.scheduler_name));
    let mut reg = Registry::default();
    reg.register(leader.clone());
    reg.register(metrics.clone());
    if let Some(serving) = &cfg.common.serving {
        component_base::metrics::serve(serving, reg, client.clone())
            .await
            .map_err(|e| anyhow::anyhow!("serving the secure port {}: {e:#}", serving.addr))?;
    }
    let recorder = Recorder::new(client.clone(), "default-scheduler");
    let election = cfg.common.election.clone();
    let identity = cfg.common.identity.clone();
    run_maybe_elected(client, election, &identity, leader, shutdown, move |term| {
        // The leader's requests carry its fence: a binding sent after another replica
        // took the lease is refused.
        let fenced = kube::Client::try_from(term.config(&base));
        let (cfg, metrics, recorder) = (cfg.clone(), metrics.clone(), recorder.clone());
        async move { schedule(fenced?, term, cfg, metrics, recorder).await }
    })
    .await
}

/// Everything the leader does; all of it lives in one JoinSet, so aborting this future
/// stops it all.
async fn schedule(
    client: kube::Client,
    term: Term,
    cfg: SchedulerConfig,
    metrics: Arc<Metrics>,
    recorder: Recorder,
) -> anyhow::Result<()> {
    let state: Shared = Arc::new(Mutex::new(State::new(&cfg.scheduler_name)));
    let wake = Arc::new(Notify::new());
    let (synced_tx, synced_rx) = watch::channel(0u8);
    let synced_tx = Arc::new(synced_tx);
    let mut tasks = JoinSet::new();
    tasks.spawn(watch_into(
        Api::<Pod>::all(client.clone()),
        state.clone(),
        wake.clone(),
        Some(synced_tx.clone()),
        Handlers {
            apply: State::pod_applied,
            delete: State::pod_deleted,
            started: State::pods_relist_started,
            done: State::pods_relist_done,
        },
    ));
    tasks.spawn(watch_into(
        Api::<Node>::all(client.clone()),
        state.clone(),
        wake.clone(),
        Some(synced_tx.clone()),
        Handlers {
            apply: State::node_applied,
            delete: |s, n, _| s.node_deleted(n),
            started: State::nodes_relist_started,
            done: State::nodes_relist_done,
        },
    ));
    tasks.spawn(watch_into(
        Api::<Namespace>::all(client.clone()),
        state.clone(),
        wake.clone(),
        None,
        Handlers {
            apply: |s, ns, _| s.namespace_applied(ns),
            delete: |s, ns, _| s.namespace_deleted(ns),
            started: |_| {},
            done: |_, _| {},
        },
    ));
    tasks.spawn(watch_into(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        state.clone(),
        wake.clone(),
        None,
        Handlers {
            apply: |s, c, now| s.storage_changed(now, |st| st.set_claim(c)),
            delete: |s, c, now| s.storage_changed(now, |st| st.remove_claim(c)),
            started: |_| {},
            done: |_, _| {},
        },
    ));
    tasks.spawn(watch_into(
        Api::<PersistentVolume>::all(client.clone()),
        state.clone(),
        wake.clone(),
        None,
        Handlers {
            apply: |s, v, now| s.storage_changed(now, |st| st.set_volume(v)),
            delete: |s, v, now| s.storage_changed(now, |st| st.remove_volume(v)),
            started: |_| {},
            done: |_, _| {},
        },
    ));
    tasks.spawn(watch_into(
        Api::<StorageClass>::all(client.clone()),
        state.clone(),
        wake.clone(),
        None,
        Handlers {
            apply: |s, c, now| s.storage_changed(now, |st| st.set_class(c)),
            delete: |s, c, now| s.storage_changed(now, |st| st.remove_class(c)),
            started: |_| {},
            done: |_, _| {},
        },
    ));
    let binds = Arc::new(Semaphore::new(cfg.parallel_binds));
    let mut binders = JoinSet::new();
    let run_loop = scheduling_loop(
        client,
        term.stamp().into(),
        cfg,
        state,
        wake,
        metrics,
        recorder,
        synced_rx,
        binds,
        &mut binders,
    );
    tokio::select! {
        r = run_loop => r,
        Some(r) = tasks.join_next() => Err(anyhow::anyhow!("a watch ended: {r:?}")),
    }
}

struct Handlers<K> {
    apply: fn(&mut State, K, Instant),
    delete: fn(&mut State, &K, Instant),
    started: fn(&mut State),
    done: fn(&mut State, Instant),
}

/// Feeds one watch into the state. Counts its first complete list in `synced`.
async fn watch_into<K>(
    api: Api<K>,
    state: Shared,
    wake: Arc<Notify>,
    synced: Option<Arc<watch::Sender<u8>>>,
    h: Handlers<K>,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut first = true;
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = stream.next().await {
        let now = Instant::now();
        match ev {
            Ok(Event::Init) => (h.started)(&mut lock(&state)),
            Ok(Event::InitApply(o)) | Ok(Event::Apply(o)) => (h.apply)(&mut lock(&state), o, now),
            Ok(Event::Delete(o)) => (h.delete)(&mut lock(&state), &o, now),
            Ok(Event::InitDone) => {
                (h.done)(&mut lock(&state), now);
                if std::mem::take(&mut first) {
                    if let Some(s) = &synced {
                        s.send_modify(|n| *n += 1);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "watch failed; retrying"),
        }
        wake.notify_one();
    }
}

#[allow(clippy::too_many_arguments)]
async fn scheduling_loop(
    client: kube::Client,
    bound_by: Arc<str>,
    cfg: SchedulerConfig,
    state: Shared,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    mut synced: watch::Receiver<u8>,
    binds: Arc<Semaphore>,
    binders: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    synced.wait_for(|n| *n >= 2).await?;
    tracing::info!("pods and nodes listed; scheduling");
    let mut alg = Algorithm::new(
        crate::plugins::default_framework(&cfg.weights),
        cfg.percentage,
    );
    // Queue sizes cost a pass over every pending pod: refreshed once a second.
    let mut sizes_at = Instant::now() - Duration::from_secs(1);
    loop {
        let permit = binds.clone().acquire_owned().await?;
        let popped = loop {
            let (next, wakeup) = {
                let mut s = lock(&state);
                let now = Instant::now();
                s.queue.flush(now);
                if now.saturating_duration_since(sizes_at) >= Duration::from_secs(1) {
                    sizes_at = now;
                    let (a, b, u) = s.queue.sizes();
                    let set = |g: &std::sync::atomic::AtomicU64, v: usize| {
                        g.store(v as u64, std::sync::atomic::Ordering::Relaxed)
                    };
                    set(&metrics.active, a);
                    set(&metrics.backoff, b);
                    set(&metrics.unschedulable_pods, u);
                }
                (s.queue.pop(), s.queue.next_wakeup())
            };
            if let Some(p) = next {
                break p;
            }
            let limit = Instant::now() + Duration::from_secs(1);
            let until = wakeup.map_or(limit, |w| w.min(limit));
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep_until(until) => {}
            }
            reap(binders);
        };
        let started = Instant::now();
        let decision = alg.schedule(&popped.info, &lock(&state).cache);
        metrics.algorithm.observe(started.elapsed().as_secs_f64());
        match decision {
            Decision::Fit { node, .. } => {
                lock(&state).cache.assume(popped.info.clone(), &node);
                let (uid, key, st) = (popped.info.uid.clone(), popped.info.key(), state.clone());
                let binding = bind(
                    client.clone(),
                    bound_by.clone(),
                    popped,
                    node,
                    state.clone(),
                    metrics.clone(),
                    recorder.clone(),
                    permit,
                    started,
                );
                binders.spawn(async move {
                    // A panic must not leave the pod assumed on the node forever.
                    if let Err(panic) = catch_panic(binding).await {
                        tracing::error!(pod = %key, %panic, "binding panicked; retrying after backoff");
                        let mut s = lock(&st);
                        s.cache.forget(&uid);
                        s.queue.retry(&uid, Instant::now());
                    }
                });
            }
            Decision::NoFit(d) => {
                drop(permit);
                metrics.attempt(Attempt::Unschedulable, started.elapsed().as_secs_f64());
                let candidate = {
                    let s = lock(&state);
                    preemption::find(&alg.framework, &s.cache, &popped.info, &d)
                };
                lock(&state).queue.unschedulable(&popped, Instant::now());
                let msg = d.message();
                tracing::debug!(pod = %popped.info.key(), %msg, "unschedulable");
                recorder.record(
                    &object_ref(popped.info.pod.as_ref()),
                    EventType::Warning,
                    "FailedScheduling",
                    &msg,
                );
                let nominated = candidate.as_ref().map(|c| c.node.clone());
                if nominated.is_some() {
                    // Reserve the room now: the victims' replacements must not take it.
                    lock(&state)
                        .cache
                        .nominate(popped.info.clone(), nominated.clone());
                }
                if let Some(c) = candidate {
                    tracing::info!(pod = %popped.info.key(), node = %c.node, victims = c.victims.len(), "preempting lower-priority pods");
                    for v in c.victims {
                        recorder.record(
                            &object_ref(v.pod.as_ref()),
                            EventType::Normal,
                            "Preempted",
                            &format!("Preempted by pod {} on node {}", popped.info.uid, c.node),
                        );
                        binders.spawn(delete_victim(client.clone(), v));
                    }
                }
                binders.spawn(write_unschedulable(
                    client.clone(),
                    popped.info.pod.clone(),
                    msg,
                    nominated,
                ));
            }
        }
        reap(binders);
    }
}

/// Collects finished binder tasks (bindings, which repair the cache if they panic;
/// victim deletions; status writes): one that failed or panicked is logged, never dropped
/// unseen.
fn reap(binders: &mut JoinSet<()>) {
    while let Some(r) = binders.try_join_next() {
        if let Err(e) = r {
            tracing::error!(error = %e, "a binding task failed");
        }
    }
}

/// Binds the pod, recording `bound_by` ([`crate::BOUND_BY`]); `attempt` is when its
/// scheduling attempt began.
#[allow(clippy::too_many_arguments)]
async fn bind(
    client: kube::Client,
    bound_by: Arc<str>,
    popped: Popped,
    node: String,
    state: Shared,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    _permit: tokio::sync::OwnedSemaphorePermit,
    attempt: Instant,
) {
    let info = &popped.info;
    let api: Api<Pod> = Api::namespaced(client.clone(), &info.namespace);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(info.name.clone()),
            namespace: Some(info.namespace.clone()),
            uid: Some(info.uid.clone()),
            // Copied onto the pod: which replica bound it, under which acquisition.
            annotations: Some([(crate::BOUND_BY.to_string(), bound_by.to_string())].into()),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.clone()),
            ..Default::default()
        },
    };
    let started = Instant::now();
    // kube's VolumeBinding PreBind: delayed claims learn their node before the pod does.
    let delayed: Vec<String> = {
        let s = lock(&state);
        crate::volumes::pod_volumes(&info.pod, &s.cache.storage)
            .map(|v| v.delayed)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, selected)| selected.is_none())
            .map(|(c, _)| c)
            .collect()
    };
    if let Err(e) = select_node(&client, &info.namespace, &delayed, &node).await {
        failed(&state, &metrics, &recorder, info, &node, &e, attempt);
        return;
    }
    let res = api
        .create_subresource::<Binding, serde_json::Value>(
            "binding",
            &info.name,
            &PostParams::default(),
            &binding,
        )
        .await;
    metrics.binding.observe(started.elapsed().as_secs_f64());
    match res {
        Ok(_) => {
            metrics.attempt(Attempt::Scheduled, attempt.elapsed().as_secs_f64());
            metrics.e2e.observe(popped.added.elapsed().as_secs_f64());
            lock(&state).queue.remove(&info.uid);
            recorder.record(
                &object_ref(info.pod.as_ref()),
                EventType::Normal,
                "Scheduled",
                &format!("Successfully assigned {} to {node}", info.key()),
            );
        }
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
            // Bound by someone else, or gone: the watch will tell the rest.
            tracing::debug!(pod = %info.key(), code = e.code, message = %e.message, "binding refused");
            let mut s = lock(&state);
            s.cache.forget(&info.uid);
            s.queue.remove(&info.uid);
        }
        Err(e) => failed(&state, &metrics, &recorder, info, &node, &e, attempt),
    }
}

/// A binding (or its claims' node selection) failed: the pod is tried again after
/// backoff.
fn failed(
    state: &Shared,
    metrics: &Metrics,
    recorder: &Recorder,
    info: &crate::nodeinfo::PodInfo,
    node: &str,
    e: &kube::Error,
    attempt: Instant,
) {
    metrics.attempt(Attempt::Error, attempt.elapsed().as_secs_f64());
    tracing::warn!(pod = %info.key(), %node, error = %e, "binding failed; retrying after backoff");
    {
        let mut s = lock(state);
        s.cache.forget(&info.uid);
        s.queue.retry(&info.uid, Instant::now());
    }
    recorder.record(
        &object_ref(info.pod.as_ref()),
        EventType::Warning,
        "FailedScheduling",
        &format!("Binding rejected: {e}"),
    );
}

/// Writes `volume.kubernetes.io/selected-node` on each of `claims`, so their
/// provisioner makes the volume where the pod goes.
async fn select_node(
    client: &kube::Client,
    ns: &str,
    claims: &[String],
    node: &str,
) -> Result<(), kube::Error> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    for c in claims {
        let patch =
            serde_json::json!({"metadata": {"annotations": {crate::volumes::SELECTED_NODE: node}}});
        api.patch(
            c,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await?;
    }
    Ok(())
}

/// Deletes a preemption victim gracefully (only that very pod: uid precondition).
async fn delete_victim(client: kube::Client, v: Arc<crate::nodeinfo::PodInfo>) {
    let api: Api<Pod> = Api::namespaced(client, &v.namespace);
    let dp = kube::api::DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some(v.uid.clone()),
            resource_version: None,
        }),
        ..Default::default()
    };
    if let Err(e) = api.delete(&v.name, &dp).await {
        tracing::debug!(pod = %v.key(), error = %e, "deleting a preemption victim failed");
    }
}

/// Sets PodScheduled=False/Unschedulable with `msg` (and the nominated node, when
/// preempting), unless it already says so.
async fn write_unschedulable(
    client: kube::Client,
    pod: Arc<Pod>,
    msg: String,
    nominated: Option<String>,
) {
    let mut p = (*pod).clone();
    let name = p.metadata.name.clone().unwrap_or_default();
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let status = p.status.get_or_insert_with(Default::default);
    let nominate = nominated.is_some() && status.nominated_node_name != nominated;
    if nominate {
        status.nominated_node_name = nominated;
    }
    let conds = status.conditions.get_or_insert_with(Vec::new);
    let now = Time(jiff::Timestamp::now());
    match conds.iter_mut().find(|c| c.type_ == "PodScheduled") {
        Some(c)
            if c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(msg.as_str())
                && !nominate =>
        {
            return;
        }
        Some(c) => {
            if c.status != "False" {
                c.last_transition_time = Some(now);
            }
            c.status = "False".into();
            c.reason = Some("Unschedulable".into());
            c.message = Some(msg);
        }
        None => conds.push(PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some(msg),
            last_transition_time: Some(now),
            ..Default::default()
        }),
    }
    let api: Api<Pod> = Api::namespaced(client, &ns);
    if let Err(e) = api.replace_status(&name, &PostParams::default(), &p).await {
        tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "writing PodScheduled failed");
    }
}
