//! The horizontal-pod-autoscaler controller (kube's `HorizontalController`): every
//! `--horizontal-pod-autoscaler-sync-period` (15 s) and on every change of an HPA, read
//! its target's `scale` subresource (any kind that serves one), the usage of the pods the
//! scale's selector names from the resource metrics API, propose a count per metric
//! (`compute.rs`), stabilize and limit it (`behavior.rs`), write the new count through
//! `scale` and the status through `status`, with kube's conditions and Events.
//!
//! Contract: the scale is written with the resourceVersion it was read at, so a
//! concurrent `kubectl scale` is not overwritten blindly (the next sync sees it); the
//! recommendations behind stabilization live in this process, as in kube, so a new
//! leader starts with none and may scale down sooner than the window after a failover.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use component_base::events::{object_ref, EventType};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::runtime::reflector::ObjectRef;

use super::behavior::{self, History};
use super::compute::{self, Proposal};
use super::status::{self, ABLE_TO_SCALE, SCALING_ACTIVE, SCALING_LIMITED};
use crate::context::{key_of, Context, Key};
use crate::informer::{Change, Informer};
use crate::reconciler::{Action, Controller, Reconciler, Run};
use crate::workqueue::WorkQueue;

/// `--horizontal-pod-autoscaler-*` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub sync_period: Duration,
    /// The scale-down stabilization window of HPAs that do not set one.
    pub downscale_stabilization: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sync_period: Duration::from_secs(15),
            downscale_stabilization: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status of horizontalpodautoscaler {name}")]
    Status {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("horizontalpodautoscaler {name}: {message}")]
    Sync { name: String, message: String },
}

pub struct HpaController {
    ctx: Arc<Context>,
    hpas: Arc<Informer<HorizontalPodAutoscaler>>,
    pods: Arc<Informer<Pod>>,
    history: Mutex<HashMap<Key, History>>,
    config: Config,
}

pub fn new(ctx: &Arc<Context>) -> Box<dyn Run> {
    let queue = WorkQueue::new();
    let c = Arc::new(HpaController {
        ctx: ctx.clone(),
        hpas: ctx.informers.get(),
        pods: ctx.informers.get(),
        history: Mutex::new(HashMap::new()),
        config: ctx.config.hpa,
    });
    let q = queue.clone();
    c.hpas.on_change(move |ch| match ch {
        Change::Apply { old, new } => {
            // The controller's own status writes queue nothing: the sync period does.
            if old.is_none_or(|o| {
                o.spec != new.spec || o.metadata.generation != new.metadata.generation
            }) {
                q.add(key_of(new));
            }
        }
        Change::Delete(h) => q.add(key_of(h)),
    });
    Controller::new(c, queue).workers(5).into()
}

/// What reading the target's scale gave.
struct Target {
    api: Api<DynamicObject>,
    scale: Scale,
}

impl HpaController {
    async fn target(&self, ns: &str, r: &CrossVersionObjectReference) -> Result<Target, String> {
        let api_version = r.api_version.as_deref().unwrap_or("");
        if api_version.is_empty() {
            return Err(format!(
                "invalid API version in scale target reference: {api_version:?}"
            ));
        }
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, &r.kind);
        let (ar, _) = kube::discovery::pinned_kind(&self.ctx.client, &gvk)
            .await
            .map_err(|e| format!("unable to determine resource for scale target reference: {e}"))?;
        let api: Api<DynamicObject> = Api::namespaced_with(self.ctx.client.clone(), ns, &ar);
        let scale = api.get_scale(&r.name).await.map_err(|e| {
            format!(
                "{}.{} \"{}\": {}",
                ar.plural,
                ar.group,
                r.name,
                api_error(&e)
            )
        })?;
        Ok(Target { api, scale })
    }

    /// The metrics API's PodMetrics for the selector, or kube's error text.
    async fn pod_metrics(&self, ns: &str, selector: &str) -> Result<serde_json::Value, String> {
        let req =
            kube::core::Request::new(format!("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods"))
                .list(&ListParams::default().labels(selector))
                .map_err(|e| e.to_string())?;
        self.ctx
            .client
            .request::<serde_json::Value>(req)
            .await
            .map_err(|e| format!("unable to get metrics for resource: unable to fetch metrics from resource metrics API: {}", api_error(&e)))
    }

    fn pods_of(&self, ns: &str, selector: &flotilla_core::labels::LabelSelector) -> Vec<Arc<Pod>> {
        self.pods
            .store()
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .filter(|p| {
                selector.matches_with(|k| {
                    p.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(k))
                        .map(String::as_str)
                })
            })
            .collect()
    }

    async fn write_status(
        &self,
        hpa: &HorizontalPodAutoscaler,
        status: HorizontalPodAutoscalerStatus,
    ) -> Result<(), Error> {
        if hpa.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let (ns, name) = key_of(hpa);
        let mut next = hpa.clone();
        next.status = Some(status);
        let api: Api<HorizontalPodAutoscaler> = Api::namespaced(self.ctx.client.clone(), &ns);
        match api
            .replace_status(&name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(source) => Err(Error::Status { name, source }),
        }
    }

    fn event(&self, hpa: &HorizontalPodAutoscaler, warning: bool, reason: &str, message: &str) {
        let kind = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        self.ctx
            .recorder
            .record(&object_ref(hpa), kind, reason, message);
    }
}

fn api_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

impl Reconciler for HpaController {
    type Key = Key;
    type Error = Error;

    async fn reconcile(&self, key: &Key) -> Result<Action, Error> {
        let (ns, name) = key;
        let Some(hpa) = self.hpas.store().get(&ObjectRef::new(name).within(ns)) else {
            self.history
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(key);
            return Ok(Action::await_change());
        };
        if hpa.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let resync = Action::requeue(self.config.sync_period);
        let now = jiff::Timestamp::now();
        let spec = hpa.spec.clone().unwrap_or_default();
        let old = hpa.status.clone().unwrap_or_default();
        let mut conds = old.conditions.clone().unwrap_or_default();
        let mut status = HorizontalPodAutoscalerStatus {
            observed_generation: hpa.metadata.generation,
            last_scale_time: old.last_scale_time.clone(),
            current_replicas: old.current_replicas,
            desired_replicas: old.desired_replicas,
            current_metrics: None,
            conditions: None,
        };
        let done = |mut status: HorizontalPodAutoscalerStatus,
                    conds: Vec<_>|
         -> HorizontalPodAutoscalerStatus {
            status.conditions = (!conds.is_empty()).then_some(conds);
            status
        };

        let target = match self.target(ns, &spec.scale_target_ref).await {
            Ok(t) => t,
            Err(e) => {
                self.event(&hpa, true, "FailedGetScale", &e);
                status::set(
                    &mut conds,
                    ABLE_TO_SCALE,
                    false,
                    "FailedGetScale",
                    &format!(
                        "the HPA controller was unable to get the target's current scale: {e}"
                    ),
                    now,
                );
                status.current_metrics = old.current_metrics.clone();
                self.write_status(&hpa, done(status, conds)).await?;
                return Ok(resync);
            }
        };
        status::set(
            &mut conds,
            ABLE_TO_SCALE,
            true,
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
            now,
        );
        let current = target
            .scale
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(0);
        status.current_replicas = Some(current);
        let min = spec.min_replicas.unwrap_or(1);
        let max = spec.max_replicas;

        let (desired, reason) = if current == 0 && min != 0 {
            status::set(
                &mut conds,
                SCALING_ACTIVE,
                false,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
                now,
            );
            (0, String::new())
        } else if current > max {
            (
                max,
                "Current number of replicas above Spec.MaxReplicas".to_string(),
            )
        } else if current < min {
            (
                min,
                "Current number of replicas below Spec.MinReplicas".to_string(),
            )
        } else {
            // The pods the target's scale selects.
            let selector = target
                .scale
                .status
                .as_ref()
                .and_then(|s| s.selector.clone())
                .unwrap_or_default();
            if selector.is_empty() {
                self.event(&hpa, true, "SelectorRequired", "selector is required");
                status::set(
                    &mut conds,
                    SCALING_ACTIVE,
                    false,
                    "InvalidSelector",
                    "the HPA target's scale is missing a selector",
                    now,
                );
                self.write_status(&hpa, done(status, conds)).await?;
                return Ok(resync);
            }
            let parsed = match flotilla_core::labels::LabelSelector::parse(&selector) {
                Ok(s) => s,
                Err(e) => {
                    let m = format!("couldn't convert selector into a corresponding internal selector object: {e}");
                    self.event(&hpa, true, "InvalidSelector", &m);
                    status::set(
                        &mut conds,
                        SCALING_ACTIVE,
                        false,
                        "InvalidSelector",
                        &m,
                        now,
                    );
                    self.write_status(&hpa, done(status, conds)).await?;
                    return Ok(resync);
                }
            };
            let pods = self.pods_of(ns, &parsed);
            let pods: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
            let metrics = spec.metrics.clone().unwrap_or_default();
            let needs_api = metrics
                .iter()
                .any(|m| matches!(m.type_.as_str(), "Resource" | "ContainerResource"));
            let listed = if needs_api {
                self.pod_metrics(ns, &selector).await
            } else {
                Ok(serde_json::Value::Null)
            };
            let listed_ref = listed.as_ref().map_err(Clone::clone);
            let results: Vec<_> = metrics
                .iter()
                .map(|m| compute::metric(m, current, &pods, &listed_ref, now))
                .collect();
            status.current_metrics = Some(
                results
                    .iter()
                    .map(|r| r.as_ref().map(|c| c.status.clone()).unwrap_or_default())
                    .collect(),
            )
            .filter(|v: &Vec<_>| !v.is_empty());
            for f in results.iter().filter_map(|r| r.as_ref().err()) {
                self.event(&hpa, true, f.reason, &f.message);
            }
            match compute::combine(&results, current) {
                Proposal::Invalid {
                    first,
                    invalid,
                    total,
                } => {
                    status::set(
                        &mut conds,
                        SCALING_ACTIVE,
                        false,
                        first.reason,
                        &format!(
                            "the HPA was unable to compute the replica count: {}",
                            first.message
                        ),
                        now,
                    );
                    self.event(&hpa, true, "FailedComputeMetricsReplicas",
                        &format!("invalid metrics ({invalid} invalid out of {total}), first error is: {}", first.message));
                    self.write_status(&hpa, done(status, conds)).await?;
                    return Ok(resync);
                }
                Proposal::Scale {
                    replicas, metric, ..
                } => {
                    status::set(&mut conds, SCALING_ACTIVE, true, "ValidMetricFound",
                        &format!("the HPA was able to successfully calculate a replica count from {metric}"), now);
                    let (up, mut down) = behavior::of(spec.behavior.as_ref());
                    let window_given = spec
                        .behavior
                        .as_ref()
                        .and_then(|b| b.scale_down.as_ref())
                        .and_then(|d| d.stabilization_window_seconds)
                        .is_some();
                    if !window_given {
                        down.window = self.config.downscale_stabilization;
                    }
                    let n = {
                        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
                        let h = h.entry(key.clone()).or_default();
                        behavior::normalize(h, &up, &down, current, replicas, min, max, now)
                    };
                    status::set(
                        &mut conds,
                        ABLE_TO_SCALE,
                        true,
                        n.able_reason,
                        n.able_message,
                        now,
                    );
                    status::set(
                        &mut conds,
                        SCALING_LIMITED,
                        n.limited,
                        n.limited_reason,
                        n.limited_message,
                        now,
                    );
                    let reason = if n.replicas > current {
                        format!("{metric} above target")
                    } else {
                        "All metrics below target".to_string()
                    };
                    (n.replicas, reason)
                }
            }
        };

        if desired != current && !(current == 0 && min != 0) {
            let mut scale = target.scale.clone();
            scale.spec.get_or_insert_with(Default::default).replicas = Some(desired);
            if let Err(e) = target
                .api
                .replace_scale(&spec.scale_target_ref.name, &PostParams::default(), &scale)
                .await
            {
                let e = api_error(&e);
                self.event(
                    &hpa,
                    true,
                    "FailedRescale",
                    &format!("New size: {desired}; reason: {reason}; error: {e}"),
                );
                status::set(
                    &mut conds,
                    ABLE_TO_SCALE,
                    false,
                    "FailedUpdateScale",
                    &format!("the HPA controller was unable to update the target scale: {e}"),
                    now,
                );
                self.write_status(&hpa, done(status, conds)).await?;
                return Err(Error::Sync {
                    name: name.clone(),
                    message: e,
                });
            }
            status::set(
                &mut conds,
                ABLE_TO_SCALE,
                true,
                "SucceededRescale",
                &format!("the HPA controller was able to update the target scale to {desired}"),
                now,
            );
            self.event(
                &hpa,
                false,
                "SuccessfulRescale",
                &format!("New size: {desired}; reason: {reason}"),
            );
            status.last_scale_time = Some(Time(now));
            status.desired_replicas = desired;
            let keep = longest_period(&spec);
            let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
            h.entry(key.clone())
                .or_default()
                .record_scale(current, desired, now, keep);
        } else {
            status.desired_replicas = if current == 0 && min != 0 { 0 } else { current };
        }
        self.write_status(&hpa, done(status, conds)).await?;
        Ok(resync)
    }

    fn all_keys(&self) -> Vec<Key> {
        self.hpas
            .store()
            .state()
            .iter()
            .map(|h| key_of(h.as_ref()))
            .collect()
    }
}

/// How long scale events matter: the longest policy period of either direction.
fn longest_period(
    spec: &k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerSpec,
) -> Duration {
    let (up, down) = behavior::of(spec.behavior.as_ref());
    up.policies
        .iter()
        .chain(down.policies.iter())
        .map(|p| p.period)
        .max()
        .unwrap_or(Duration::from_secs(15))
}
