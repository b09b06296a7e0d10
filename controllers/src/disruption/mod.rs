//! The disruption controller (policy/v1 PodDisruptionBudget status), as kube's
//! `pkg/controller/disruption`: for each budget, the pods its selector covers, how many
//! it expects (the pods, or the scales of their controllers for percentages and
//! maxUnavailable), how many are healthy (Ready, not being deleted, not just evicted),
//! and so how many disruptions the eviction subresource may allow. A budget is queued
//! when it changes or when a pod it covers (before or after the change) does, and again
//! when an eviction it awaits expires. The arithmetic is `plan.rs`.
//!
//! Contract: the status is written only with the resourceVersion it was computed from,
//! so a decrement an eviction made meanwhile is never overwritten; when the budget
//! cannot be computed, it allows nothing (kube's fail-safe).

pub mod plan;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use component_base::events::{object_ref, EventType};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DynamicObject, PostParams};
use kube::runtime::reflector::ObjectRef;

use crate::context::{key_of, refers_to, Context, Key};
use crate::informer::{Change, Informer};
use crate::reconciler::{Action, Controller, Reconciler, Run};
use crate::workqueue::WorkQueue;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status of poddisruptionbudget {name}")]
    Status {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("poddisruptionbudget {name}: {message}")]
    Sync { name: String, message: String },
}

pub struct DisruptionController {
    ctx: Arc<Context>,
    budgets: Arc<Informer<PodDisruptionBudget>>,
    pods: Arc<Informer<Pod>>,
    replicasets: Arc<Informer<ReplicaSet>>,
    deployments: Arc<Informer<Deployment>>,
    rcs: Arc<Informer<ReplicationController>>,
}

pub fn new(ctx: &Arc<Context>) -> Box<dyn Run> {
    let queue = WorkQueue::new();
    let c = Arc::new(DisruptionController {
        ctx: ctx.clone(),
        budgets: ctx.informers.get(),
        pods: ctx.informers.get(),
        replicasets: ctx.informers.get(),
        deployments: ctx.informers.get(),
        rcs: ctx.informers.get(),
    });
    let q = queue.clone();
    c.budgets.on_change(move |ch| {
        if let Change::Apply { new, .. } = ch {
            q.add(key_of(new));
        }
    });
    let (q, weak) = (queue.clone(), Arc::downgrade(&c));
    c.pods.on_change(move |ch| {
        let Some(c) = weak.upgrade() else { return };
        let (old, new) = match ch {
            Change::Apply { old, new } => (old, Some(new)),
            Change::Delete(p) => (None, Some(p)),
        };
        for b in c.budgets.store().state() {
            let covers = |p: Option<&Pod>| p.is_some_and(|p| !plan::covered(&b, [p]).is_empty());
            if covers(old.as_deref()) || covers(new) {
                q.add(key_of(b.as_ref()));
            }
        }
    });
    Controller::new(c, queue).workers(2).into()
}

impl DisruptionController {
    /// The scale of the controller a pod's controller reference names (kube's finders:
    /// ReplicationController, Deployment through its ReplicaSet, ReplicaSet from the
    /// caches; anything else through its `scale` subresource), with the UID of the object
    /// whose replicas they are. `None`: no such controller.
    async fn scale_of(
        &self,
        ns: &str,
        r: &OwnerReference,
    ) -> Result<Option<(String, i32)>, String> {
        if refers_to::<ReplicationController>(r) {
            return Ok(self
                .rcs
                .store()
                .get(&ObjectRef::new(&r.name).within(ns))
                .filter(|rc| rc.metadata.uid.as_deref() == Some(r.uid.as_str()))
                .map(|rc| {
                    let n = rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    (r.uid.clone(), n)
                }));
        }
        if refers_to::<ReplicaSet>(r) {
            let Some(rs) = self
                .replicasets
                .store()
                .get(&ObjectRef::new(&r.name).within(ns))
                .filter(|rs| rs.metadata.uid.as_deref() == Some(r.uid.as_str()))
            else {
                return Ok(None);
            };
            let deployment = crate::context::controller_of(rs.as_ref())
                .filter(|o| refers_to::<Deployment>(o))
                .and_then(|o| {
                    self.deployments
                        .store()
                        .get(&ObjectRef::new(&o.name).within(ns))
                        .filter(|d| d.metadata.uid.as_deref() == Some(o.uid.as_str()))
                });
            return Ok(Some(match deployment {
                Some(d) => (
                    d.metadata.uid.clone().unwrap_or_default(),
                    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                ),
                None => (
                    r.uid.clone(),
                    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                ),
            }));
        }
        self.generic_scale(ns, r).await
    }

    /// kube's `getScaleController`: the `scale` subresource of any kind that serves one
    /// (a StatefulSet, a custom resource).
    async fn generic_scale(
        &self,
        ns: &str,
        r: &OwnerReference,
    ) -> Result<Option<(String, i32)>, String> {
        let (group, version) = r
            .api_version
            .rsplit_once('/')
            .unwrap_or(("", &r.api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, &r.kind);
        let (ar, _) = kube::discovery::pinned_kind(&self.ctx.client, &gvk)
            .await
            .map_err(|e| format!("{}: {e}", r.kind))?;
        let api: Api<DynamicObject> = Api::namespaced_with(self.ctx.client.clone(), ns, &ar);
        match api.get_scale(&r.name).await {
            Ok(s) if s.metadata.uid.as_deref() == Some(r.uid.as_str()) => Ok(Some((
                r.uid.clone(),
                s.spec.and_then(|s| s.replicas).unwrap_or(0),
            ))),
            Ok(_) => Ok(None),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
            Err(e) => Err(format!("{}/{}: {e}", ar.plural, r.name)),
        }
    }

    async fn scales(&self, ns: &str, pods: &[&Pod]) -> Result<plan::Scales, String> {
        let mut out = plan::Scales::new();
        for p in pods {
            let Some(r) = crate::context::controller_of(*p) else {
                continue;
            };
            if out.contains_key(&r.uid) {
                continue;
            }
            if let Some(s) = self.scale_of(ns, r).await? {
                out.insert(r.uid.clone(), s);
            }
        }
        Ok(out)
    }

    async fn write(
        &self,
        pdb: &PodDisruptionBudget,
        status: PodDisruptionBudgetStatus,
    ) -> Result<(), Error> {
        let (ns, name) = key_of(pdb);
        let mut next = pdb.clone();
        next.status = Some(status);
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.ctx.client.clone(), &ns);
        match api
            .replace_status(&name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => Ok(()),
            // Deleted meanwhile: nothing to keep.
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(source) => Err(Error::Status { name, source }),
        }
    }
}

impl Reconciler for DisruptionController {
    type Key = Key;
    type Error = Error;

    async fn reconcile(&self, key: &Key) -> Result<Action, Error> {
        let (ns, name) = key;
        let Some(pdb) = self.budgets.store().get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Action::await_change());
        };
        if pdb.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let now = jiff::Timestamp::now();
        let all = self.pods.store().state();
        let pods = plan::covered(&pdb, all.iter().map(|p| p.as_ref()));
        let r = object_ref(pdb.as_ref());
        let scales = if plan::needs_scales(&pdb) {
            self.scales(ns, &pods).await
        } else {
            Ok(HashMap::new())
        };
        let expected = scales.and_then(|s| plan::expected(&pdb, &pods, &s));
        let e = match expected {
            Ok(e) => e,
            Err(message) => {
                self.ctx.recorder.record(
                    &r,
                    EventType::Warning,
                    "CalculateExpectedPodCountFailed",
                    &format!("Failed to calculate the number of expected pods: {message}"),
                );
                self.write(&pdb, plan::fail_safe(&pdb, &message, now))
                    .await?;
                return Err(Error::Sync {
                    name: name.clone(),
                    message,
                });
            }
        };
        let (awaited, recheck, expired) = plan::awaited(&pdb, &pods, now);
        let healthy = plan::healthy(&pods, &awaited, now);
        if let Some(status) = plan::status(&pdb, healthy, &e, awaited, now) {
            // Said once per change of the status, not on every look.
            if pods.is_empty() {
                self.ctx
                    .recorder
                    .record(&r, EventType::Normal, "NoPods", "No matching pods found");
            }
            if !e.unmanaged.is_empty() {
                let sel = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
                self.ctx.recorder.record(&r, EventType::Warning, "UnmanagedPods", &format!(
                    "Pods selected by this PodDisruptionBudget (selector: {}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
                    sel.map(flotilla_core::labels::to_query).unwrap_or_default()
                ));
            }
            for p in pods.iter().filter(|p| {
                expired
                    .iter()
                    .any(|n| p.metadata.name.as_deref() == Some(n.as_str()))
            }) {
                self.ctx.recorder.record(
                    &object_ref(*p),
                    EventType::Warning,
                    "NotDeleted",
                    &format!("Pod was expected by PDB {ns}/{name} to be deleted but it wasn't"),
                );
            }
            self.write(&pdb, status).await?;
        }
        Ok(match recheck {
            Some(at) => Action::requeue(
                Duration::try_from(at.duration_since(now))
                    .unwrap_or(Duration::ZERO)
                    .max(Duration::from_millis(100)),
            ),
            None => Action::await_change(),
        })
    }

    fn all_keys(&self) -> Vec<Key> {
        self.budgets
            .store()
            .state()
            .iter()
            .map(|b| key_of(b.as_ref()))
            .collect()
    }
}
