//! The replica controller: keeps `replicas` active pods matching an owner's selector,
//! adopting matching orphans and releasing pods that stopped matching, and reports status
//! (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas, observedGeneration).
//! It is generic over the owner's kind ([`Replicated`]): ReplicaSet (apps/v1, here) and
//! ReplicationController (core/v1, `replicationcontroller.rs`) share all of it, as
//! Kubernetes runs its ReplicaSet controller for both.
//!
//! Level-triggered: every change of an owner or of a pod that belongs to one (or could)
//! queues the owner; `reconcile` compares the pods in the cache with `replicas` and acts
//! (the decisions are in `plan.rs`). Expectations keep it from acting again before the
//! cache shows its previous actions.

pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;

use component_base::events::{object_ref, EventType};
use component_base::labels;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};
use kube::runtime::reflector::ObjectRef;

use crate::claims;
use crate::context::{controller_of, controller_ref, key_of, pod_active, refers_to, Context, Key};
use crate::expectations::Expectations;
use crate::informer::{Change, Informer, Watched};
use crate::reconciler::{Action, Controller, Reconciler, Run};
use crate::workqueue::WorkQueue;
use plan::{Counts, Diff};

/// What the replica controller needs of an owner kind.
pub trait Replicated:
    Watched + serde::Serialize + kube::Resource<Scope = kube::core::NamespaceResourceScope>
{
    /// Whether the selector selects pods with `labels`; an empty selector selects nothing.
    fn selects(&self, labels: &BTreeMap<String, String>) -> bool;
    /// `spec.replicas`, 1 when unset.
    fn replicas(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// The object with `counts` as its status (its conditions kept), or `None` when that
    /// is its status already.
    fn with_status(&self, counts: &Counts) -> Option<Self>;
}

impl Replicated for ReplicaSet {
    fn selects(&self, pod_labels: &BTreeMap<String, String>) -> bool {
        self.spec.as_ref().is_some_and(|s| {
            !labels::is_empty(&s.selector) && labels::matches(&s.selector, pod_labels)
        })
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn with_status(&self, c: &Counts) -> Option<Self> {
        let old = self.status.clone().unwrap_or_default();
        let new = ReplicaSetStatus {
            replicas: c.replicas,
            fully_labeled_replicas: Some(c.fully_labeled),
            ready_replicas: Some(c.ready),
            available_replicas: Some(c.available),
            // Set only with the DeploymentReplicaSetTerminatingReplicas feature (alpha in 1.33).
            terminating_replicas: None,
            observed_generation: c.observed_generation,
            conditions: old.conditions.clone(),
        };
        (new != old).then(|| Self {
            status: Some(new),
            ..self.clone()
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Claim(#[from] claims::Error),
    #[error("creating pods ({created} of {wanted} created)")]
    Create {
        created: usize,
        wanted: usize,
        #[source]
        source: kube::Error,
    },
    #[error("deleting pod {pod}")]
    Delete {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the status")]
    Status {
        #[source]
        source: kube::Error,
    },
}

pub struct ReplicaController<K: Replicated> {
    ctx: Arc<Context>,
    owners: Arc<Informer<K>>,
    pods: Arc<Informer<Pod>>,
    queue: Arc<WorkQueue<Key>>,
    expectations: Expectations<Key>,
}

/// The ReplicaSet controller.
pub fn new(ctx: &Arc<Context>) -> Box<dyn Run> {
    ReplicaController::<ReplicaSet>::controller(ctx, ctx.config.replicaset_workers).into()
}

fn pod_labels(p: &Pod) -> &BTreeMap<String, String> {
    static NONE: BTreeMap<String, String> = BTreeMap::new();
    p.metadata.labels.as_ref().unwrap_or(&NONE)
}

/// A controller reference to a `K` (any version of its group).
fn controlled_by<K: Replicated>(p: &Pod) -> Option<&OwnerReference> {
    controller_of(p).filter(|r| refers_to::<K>(r))
}

impl<K: Replicated> ReplicaController<K> {
    /// Registers the handlers on the owners' and pods' informers; keyed by owner.
    pub fn controller(ctx: &Arc<Context>, workers: usize) -> Controller<Self> {
        let queue = WorkQueue::new();
        let c = Arc::new(Self {
            ctx: ctx.clone(),
            owners: ctx.informers.get(),
            pods: ctx.informers.get(),
            queue: queue.clone(),
            expectations: Expectations::default(),
        });
        let q = queue.clone();
        c.owners.on_change(move |ch| match ch {
            Change::Apply { new, .. } => q.add(key_of(new)),
            Change::Delete(o) => q.add(key_of(o)),
        });
        let weak = Arc::downgrade(&c);
        c.pods.on_change(move |ch| {
            if let Some(c) = weak.upgrade() {
                c.pod_changed(ch);
            }
        });
        Controller::new(c, queue).workers(workers)
    }

    /// Queues the owners a pod change concerns, and counts expected changes seen.
    fn pod_changed(&self, ch: Change<'_, Pod>) {
        let ns = |p: &Pod| p.metadata.namespace.clone().unwrap_or_default();
        match ch {
            Change::Apply { old, new } => {
                if let Some(r) = controlled_by::<K>(new) {
                    let key = (ns(new), r.name.clone());
                    if old.is_none() {
                        self.expectations.creation_observed(&key);
                    }
                    if new.metadata.deletion_timestamp.is_some() {
                        self.expectations
                            .deletion_observed(&key, new.metadata.uid.as_deref().unwrap_or(""));
                    }
                    self.queue.add(key);
                } else {
                    // An orphan: every owner that could adopt it.
                    let owners = self.owners.store().state();
                    for key in claims::adopters(&owners, new, |o| o.selects(pod_labels(new))) {
                        self.queue.add(key);
                    }
                }
                // A controller change, or labels that stopped matching: the old owner too.
                if let Some(r) = old.as_deref().and_then(controlled_by::<K>) {
                    self.queue.add((ns(new), r.name.clone()));
                }
            }
            Change::Delete(p) => {
                if let Some(r) = controlled_by::<K>(p) {
                    let key = (ns(p), r.name.clone());
                    self.expectations
                        .deletion_observed(&key, p.metadata.uid.as_deref().unwrap_or(""));
                    self.queue.add(key);
                }
            }
        }
    }
}

impl<K: Replicated> Reconciler for ReplicaController<K> {
    type Key = Key;
    type Error = Error;

    async fn reconcile(&self, key: &Key) -> Result<Action, Error> {
        let (ns, name) = key;
        let Some(owner) = self.owners.store().get(&ObjectRef::new(name).within(ns)) else {
            self.expectations.forget(key);
            return Ok(Action::await_change());
        };
        let deleting = owner.meta().deletion_timestamp.is_some();
        let pods_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);

        let candidates: Vec<Arc<Pod>> = self
            .pods
            .store()
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
            .collect();
        let mine = claims::claim_all(
            &pods_api,
            candidates,
            &controller_ref(owner.as_ref()),
            deleting,
            |p| owner.selects(pod_labels(p)),
            &[],
        )
        .await?;
        let active: Vec<&Pod> = mine
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| pod_active(p))
            .collect();

        if self.expectations.satisfied(key) && !deleting {
            match plan::diff(owner.replicas(), &active) {
                Diff::Steady => {}
                Diff::Create(n) => self.create_pods(&owner, key, n).await?,
                Diff::Delete(victims) => self.delete_pods(&owner, key, &pods_api, &victims).await?,
            }
        }
        self.update_status(&owner, &active).await
    }

    fn all_keys(&self) -> Vec<Key> {
        self.owners
            .store()
            .state()
            .iter()
            .map(|o| key_of(o.as_ref()))
            .collect()
    }
}

impl<K: Replicated> ReplicaController<K> {
    async fn create_pods(&self, owner: &K, key: &Key, n: usize) -> Result<(), Error> {
        let (ns, name) = key;
        let template = owner.template().cloned().unwrap_or_default();
        let tmeta = template.metadata.unwrap_or_default();
        let mut annotations = tmeta.annotations.unwrap_or_default();
        annotations.insert(crate::context::CREATED_BY.into(), self.ctx.term.stamp());
        let pod = Pod {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}-")),
                namespace: Some(ns.clone()),
                labels: tmeta.labels,
                annotations: Some(annotations),
                finalizers: tmeta.finalizers,
                owner_references: Some(vec![controller_ref(owner)]),
                ..Default::default()
            },
            spec: template.spec,
            status: None,
        };
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
        let pp = PostParams::default();
        self.expectations.expect_creations(key, n);
        // Slow start, as Kubernetes: batches of 1, 2, 4, ... so that a template the
        // apiserver rejects costs one request, not hundreds.
        let (mut left, mut batch, mut created) = (n, 1usize, 0usize);
        while left > 0 {
            let size = batch.min(left);
            let results = futures::future::join_all((0..size).map(|_| api.create(&pp, &pod))).await;
            let mut failed = None;
            for r in results {
                match r {
                    Ok(_) => created += 1,
                    Err(e) => {
                        self.expectations.creation_observed(key);
                        failed = Some(e);
                    }
                }
            }
            left -= size;
            if let Some(e) = failed {
                for _ in 0..left {
                    self.expectations.creation_observed(key);
                }
                self.ctx.recorder.record(
                    &object_ref(owner),
                    EventType::Warning,
                    "FailedCreate",
                    &format!("Error creating: {e}"),
                );
                return Err(Error::Create {
                    created,
                    wanted: n,
                    source: e,
                });
            }
            batch = batch.saturating_mul(2);
        }
        if created > 0 {
            self.ctx.recorder.record(
                &object_ref(owner),
                EventType::Normal,
                "SuccessfulCreate",
                &format!("Created {created} pod(s)"),
            );
        }
        Ok(())
    }

    async fn delete_pods(
        &self,
        owner: &K,
        key: &Key,
        api: &Api<Pod>,
        victims: &[&Pod],
    ) -> Result<(), Error> {
        crate::podcontrol::delete_pods(
            &self.ctx,
            &self.expectations,
            key,
            api,
            &object_ref(owner),
            victims,
        )
        .await
        .map_err(|f| Error::Delete {
            pod: f.pod,
            source: f.source,
        })
    }

    /// Writes the status the pods make, if it changed; asks to look again when a ready pod
    /// is about to become available.
    async fn update_status(&self, owner: &K, active: &[&Pod]) -> Result<Action, Error> {
        let min_ready = owner.min_ready_seconds();
        let template_labels = owner
            .template()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let counts = plan::counts(
            active,
            &template_labels,
            min_ready,
            owner.meta().generation,
            jiff::Timestamp::now(),
        );
        if let Some(updated) = owner.with_status(&counts) {
            let api: Api<K> = Api::namespaced(
                self.ctx.client.clone(),
                owner.meta().namespace.as_deref().unwrap_or_default(),
            );
            let name = owner.meta().name.clone().unwrap_or_default();
            match api
                .replace_status(&name, &PostParams::default(), &updated)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
                Err(source) => return Err(Error::Status { source }),
            }
        }
        Ok(plan::recheck_after(&counts, min_ready).map_or(Action::await_change(), Action::requeue))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn rs(selector: &[(&str, &str)]) -> ReplicaSet {
        ReplicaSet {
            spec: Some(ReplicaSetSpec {
                selector: LabelSelector {
                    match_labels: Some(labels(selector)),
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_replicaset_selects_by_its_label_selector_and_an_empty_one_selects_nothing() {
        assert!(rs(&[("app", "web")]).selects(&labels(&[("app", "web"), ("x", "y")])));
        assert!(!rs(&[("app", "web")]).selects(&labels(&[("app", "db")])));
        assert!(!rs(&[]).selects(&labels(&[("app", "web")])));
        assert!(!ReplicaSet::default().selects(&labels(&[])));
        assert_eq!(rs(&[]).replicas(), 1);
    }

    #[test]
    fn a_replicaset_status_is_written_only_when_it_changes() {
        let mut r = rs(&[("app", "web")]);
        r.metadata.generation = Some(2);
        let c = Counts {
            replicas: 2,
            fully_labeled: 2,
            ready: 1,
            available: 1,
            observed_generation: Some(2),
        };
        let updated = r.with_status(&c).expect("a new status");
        let s = updated.status.clone().unwrap();
        assert_eq!(
            (
                s.replicas,
                s.fully_labeled_replicas,
                s.ready_replicas,
                s.available_replicas,
                s.observed_generation
            ),
            (2, Some(2), Some(1), Some(1), Some(2))
        );
        assert!(updated.with_status(&c).is_none());
    }
}
