//! The StatefulSet controller (apps/v1), as kube's `pkg/controller/statefulset`: pods
//! with stable names, hostnames and claims (`identity.rs`), made and removed in ordinal
//! order or in parallel, rolled from the highest ordinal down to the partition
//! (`plan.rs`), with ControllerRevisions (`crate::history`) naming the current and the
//! update revision. A set is queued when it, a pod it controls or one of its revisions
//! changes.
//!
//! Contract: at most one pod per ordinal ever exists (names are the ordinals, so a
//! second create is refused by the apiserver); under OrderedReady no pod is made before
//! its predecessors are Running and Ready, and none is removed while a lower one is not;
//! a claim is made before its pod, and is never deleted by this controller (the retention
//! policy gives it owners, and the garbage collector deletes it with them).

pub mod identity;
pub mod plan;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use component_base::events::{object_ref, EventType};
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;

use crate::claims;
use crate::context::{controller_of, controller_ref, key_of, refers_to, Context, Key};
use crate::history::{self, HASH_LABEL};
use crate::informer::{Change, Informer};
use crate::reconciler::{Action, Controller, Reconciler, Run};
use crate::workqueue::WorkQueue;
use plan::Step;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Adopt(#[from] claims::Error),
    #[error("writing revision {name}")]
    Revision {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("create Pod {pod} in StatefulSet {set}")]
    Create {
        pod: String,
        set: String,
        #[source]
        source: kube::Error,
    },
    #[error("pvc {0} is being deleted")]
    ClaimDeleting(String),
    #[error("creating PVC {claim}")]
    Claim {
        claim: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating pod {pod}")]
    Update {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("delete Pod {pod} in StatefulSet {set}")]
    Delete {
        pod: String,
        set: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the status of statefulset {name}")]
    Status {
        name: String,
        #[source]
        source: kube::Error,
    },
}

pub struct StatefulSetController {
    ctx: Arc<Context>,
    sets: Arc<Informer<StatefulSet>>,
    pods: Arc<Informer<Pod>>,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    revisions: Arc<Informer<ControllerRevision>>,
}

pub fn new(ctx: &Arc<Context>) -> Box<dyn Run> {
    let queue = WorkQueue::new();
    let c = Arc::new(StatefulSetController {
        ctx: ctx.clone(),
        sets: ctx.informers.get(),
        pods: ctx.informers.get(),
        claims: ctx.informers.get(),
        revisions: ctx.informers.get(),
    });
    let q = queue.clone();
    c.sets.on_change(move |ch| {
        if let Change::Apply { new, .. } = ch {
            q.add(key_of(new));
        }
    });
    let (q, weak) = (queue.clone(), Arc::downgrade(&c));
    c.pods.on_change(move |ch| {
        let p = match ch {
            Change::Apply { new, .. } => new,
            Change::Delete(p) => p,
        };
        if let Some(owner) = controller_of(p).filter(|o| refers_to::<StatefulSet>(o)) {
            q.add((
                p.metadata.namespace.clone().unwrap_or_default(),
                owner.name.clone(),
            ));
        } else if let Some(c) = weak.upgrade() {
            let sets = c.sets.store().state();
            let member =
                |s: &StatefulSet| identity::ordinal_of(s, p).is_some() && selects(s, &p.metadata);
            for key in claims::adopters(&sets, p, member) {
                q.add(key);
            }
        }
    });
    let (q, weak) = (queue.clone(), Arc::downgrade(&c));
    c.revisions.on_change(move |ch| {
        let r = match ch {
            Change::Apply { new, .. } => new,
            Change::Delete(r) => r,
        };
        if let Some(owner) = controller_of(r).filter(|o| refers_to::<StatefulSet>(o)) {
            q.add((
                r.metadata.namespace.clone().unwrap_or_default(),
                owner.name.clone(),
            ));
        } else if let Some(c) = weak.upgrade() {
            let sets = c.sets.store().state();
            for key in claims::adopters(&sets, r, |s| selects(s, &r.metadata)) {
                q.add(key);
            }
        }
    });
    Controller::new(c, queue).workers(2).into()
}

/// Whether the set's selector picks an object with `meta`'s labels (an empty selector
/// picks nothing).
fn selects(sts: &StatefulSet, meta: &ObjectMeta) -> bool {
    claims::selected_by(sts.spec.as_ref().map(|s| &s.selector), meta)
}

/// The template a revision holds (its patch without `$patch`).
fn template_of(r: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = r.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(o) = t.as_object_mut() {
        o.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

impl StatefulSetController {
    /// The set's objects of one kind among `objs`: those it controls, and orphans of its
    /// namespace that `member` accepts and its selector picks, adopted.
    async fn claim<K>(
        &self,
        sts: &StatefulSet,
        objs: Vec<Arc<K>>,
        member: impl Fn(&K) -> bool,
    ) -> Result<Vec<Arc<K>>, Error>
    where
        K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + serde::Serialize,
    {
        let ns = sts.metadata.namespace.clone().unwrap_or_default();
        let api: Api<K> = Api::namespaced(self.ctx.client.clone(), &ns);
        let objs = objs
            .into_iter()
            .filter(|o| o.meta().namespace.as_deref() == Some(ns.as_str()))
            .collect();
        Ok(claims::claim_all(
            &api,
            objs,
            &controller_ref(sts),
            sts.metadata.deletion_timestamp.is_some(),
            |o| member(o) && selects(sts, o.meta()),
            &[],
        )
        .await?)
    }

    /// Makes the claims of `ordinal` that are missing; one being deleted is an error
    /// (the pod must wait for it to go).
    async fn ensure_claims(&self, sts: &StatefulSet, ordinal: i32) -> Result<(), Error> {
        let ns = sts.metadata.namespace.clone().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.ctx.client.clone(), &ns);
        let owners = identity::claim_owners(sts, None, true);
        let r = object_ref(sts);
        let pod = identity::pod_name(sts, ordinal);
        for claim in identity::claims(sts, ordinal, &owners) {
            let name = claim.metadata.name.clone().unwrap_or_default();
            let cached = self.claims.store().get(&ObjectRef::new(&name).within(&ns));
            let existing = match cached {
                Some(c) => Some(c),
                None => api
                    .get_opt(&name)
                    .await
                    .map_err(|source| Error::Claim {
                        claim: name.clone(),
                        source,
                    })?
                    .map(Arc::new),
            };
            match existing {
                Some(c) if c.metadata.deletion_timestamp.is_some() => {
                    return Err(Error::ClaimDeleting(name))
                }
                Some(_) => continue,
                None => {}
            }
            let set = identity::set_name(sts);
            match api.create(&PostParams::default(), &claim).await {
                Ok(_) => self.ctx.recorder.record(
                    &r,
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!("create Claim {name} Pod {pod} in StatefulSet {set} success"),
                ),
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(source) => {
                    self.ctx.recorder.record(
                        &r,
                        EventType::Warning,
                        "FailedCreate",
                        &format!("create Claim {name} for Pod {pod} in StatefulSet {set} failed error: {source}"),
                    );
                    return Err(Error::Claim {
                        claim: name,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    async fn create_pod(
        &self,
        sts: &StatefulSet,
        ordinal: i32,
        template: &PodTemplateSpec,
        revision: &str,
    ) -> Result<(), Error> {
        let set = identity::set_name(sts).to_string();
        let pod = identity::new_pod(sts, ordinal, template, revision);
        let name = pod.metadata.name.clone().unwrap_or_default();
        let r = object_ref(sts);
        if let Err(e) = self.ensure_claims(sts, ordinal).await {
            self.ctx.recorder.record(
                &r,
                EventType::Warning,
                "FailedCreate",
                &format!("create Pod {name} in StatefulSet {set} failed error: {e}"),
            );
            return Err(e);
        }
        let ns = sts.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        match api.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                self.ctx.recorder.record(
                    &r,
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!("create Pod {name} in StatefulSet {set} successful"),
                );
                Ok(())
            }
            // Made by a sync the cache does not show yet.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(source) => {
                self.ctx.recorder.record(
                    &r,
                    EventType::Warning,
                    "FailedCreate",
                    &format!("create Pod {name} in StatefulSet {set} failed error: {source}"),
                );
                Err(Error::Create {
                    pod: name,
                    set,
                    source,
                })
            }
        }
    }

    async fn delete_pod(&self, sts: &StatefulSet, pod: &Pod) -> Result<(), Error> {
        let set = identity::set_name(sts).to_string();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = sts.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {
                self.ctx.recorder.record(
                    &object_ref(sts),
                    EventType::Normal,
                    "SuccessfulDelete",
                    &format!("delete Pod {name} in StatefulSet {set} successful"),
                );
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(source) => Err(Error::Delete {
                pod: name,
                set,
                source,
            }),
        }
    }

    /// A scaled-away pod's claims take the owners the retention policy gives them (the
    /// pod under `whenScaled: Delete`), then the pod goes.
    async fn condemn(&self, sts: &StatefulSet, pod: &Pod, ordinal: i32) -> Result<(), Error> {
        let owners = identity::claim_owners(sts, Some(pod), false);
        let ns = sts.metadata.namespace.clone().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.ctx.client.clone(), &ns);
        for claim in identity::claims(sts, ordinal, &[]) {
            let name = claim.metadata.name.clone().unwrap_or_default();
            let Some(have) = self.claims.store().get(&ObjectRef::new(&name).within(&ns)) else {
                continue;
            };
            if have.metadata.owner_references.clone().unwrap_or_default() == owners {
                continue;
            }
            let patch = serde_json::json!({"metadata": {"ownerReferences": owners}});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => {
                    return Err(Error::Claim {
                        claim: name,
                        source,
                    })
                }
            }
        }
        self.delete_pod(sts, pod).await
    }

    async fn relabel(&self, sts: &StatefulSet, pod: &Pod, ordinal: i32) -> Result<(), Error> {
        let Some(labels) = identity::identity_fix(sts, ordinal, pod) else {
            return Ok(());
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = sts.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        let patch = serde_json::json!({"metadata": {"labels": labels}});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(source) => Err(Error::Update { pod: name, source }),
        }
    }

    async fn write_status(
        &self,
        sts: &StatefulSet,
        status: StatefulSetStatus,
    ) -> Result<(), Error> {
        if sts.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let (ns, name) = key_of(sts);
        let api: Api<StatefulSet> = Api::namespaced(self.ctx.client.clone(), &ns);
        let mut updated = sts.clone();
        updated.status = Some(status);
        match api
            .replace_status(&name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(()),
            // A newer version is on its way: its sync writes the status.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
            Err(source) => Err(Error::Status { name, source }),
        }
    }

    /// Old revisions beyond `revisionHistoryLimit`, never the current, the update or one
    /// a pod still runs.
    async fn clean_history(
        &self,
        sts: &StatefulSet,
        revs: &[&ControllerRevision],
        live: &BTreeSet<String>,
        update: &str,
    ) -> Result<(), Error> {
        let limit = sts
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        let live_hashes: BTreeSet<String> = revs
            .iter()
            .filter(|r| r.metadata.name.as_ref().is_some_and(|n| live.contains(n)))
            .map(|r| history::hash_of(r))
            .collect();
        let ns = sts.metadata.namespace.clone().unwrap_or_default();
        let api: Api<ControllerRevision> = Api::namespaced(self.ctx.client.clone(), &ns);
        for r in history::to_clean(revs, update, &live_hashes, limit) {
            let name = r.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => return Err(Error::Revision { name, source }),
            }
        }
        Ok(())
    }
}

impl Reconciler for StatefulSetController {
    type Key = Key;
    type Error = Error;

    async fn reconcile(&self, key: &Key) -> Result<Action, Error> {
        let (ns, name) = key;
        let Some(sts) = self.sets.store().get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Action::await_change());
        };
        let all_revs = self
            .claim(&sts, self.revisions.store().state(), |_| true)
            .await?;
        let revs: Vec<&ControllerRevision> = all_revs.iter().map(|r| r.as_ref()).collect();
        let api: Api<ControllerRevision> = Api::namespaced(self.ctx.client.clone(), ns);
        let ensured = history::ensure(&api, sts.as_ref(), &revs)
            .await
            .map_err(|e| Error::Revision {
                name: e.name,
                source: e.source,
            })?;
        let hash = ensured.hash;
        let update = history::revision_name(sts.as_ref(), &hash);
        let update_template = sts
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        // The current revision: the one the status names, while it exists.
        let current = sts
            .status
            .as_ref()
            .and_then(|s| s.current_revision.clone())
            .and_then(|c| {
                revs.iter()
                    .find(|r| r.metadata.name.as_deref() == Some(c.as_str()))
                    .and_then(|r| template_of(r).map(|t| (c, t)))
            });
        let (current, current_template) =
            current.unwrap_or_else(|| (update.clone(), update_template.clone()));
        // Pods named as its members (`<set>-<ordinal>`) only, as kube's isMemberOf.
        let all_pods = self.pods.store().state();
        let all_pods = self
            .claim(&sts, all_pods, |p| identity::ordinal_of(&sts, p).is_some())
            .await?;
        let pods: Vec<&Pod> = all_pods.iter().map(|p| p.as_ref()).collect();
        let revisions = plan::Revisions {
            current: &current,
            update: &update,
        };
        let plan = plan::plan(&sts, &pods, revisions, jiff::Timestamp::now());
        let by_name = |n: &str| pods.iter().find(|p| p.metadata.name.as_deref() == Some(n));
        for step in &plan.steps {
            match step {
                Step::Create { ordinal, update: u } => {
                    let (t, rev) = if *u {
                        (&update_template, &update)
                    } else {
                        (&current_template, &current)
                    };
                    self.create_pod(&sts, *ordinal, t, rev).await?;
                }
                Step::Claims { ordinal } => self.ensure_claims(&sts, *ordinal).await?,
                Step::Relabel { pod, ordinal } => {
                    if let Some(p) = by_name(pod) {
                        self.relabel(&sts, p, *ordinal).await?;
                    }
                }
                Step::Condemn { pod, ordinal } => {
                    if let Some(p) = by_name(pod) {
                        self.condemn(&sts, p, *ordinal).await?;
                    }
                }
                Step::Delete { pod } => {
                    if let Some(p) = by_name(pod) {
                        self.delete_pod(&sts, p).await?;
                    }
                }
            }
        }
        let mut live: BTreeSet<String> = pods
            .iter()
            .filter_map(|p| p.metadata.labels.as_ref()?.get(HASH_LABEL).cloned())
            .collect();
        live.insert(current.clone());
        live.insert(update.clone());
        let min_ready = sts
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        let waiting = plan.status.available_replicas.unwrap_or(0) != plan.status.replicas;
        let mut status = plan.status;
        status.collision_count = Some(ensured.collision_count.unwrap_or(0));
        self.write_status(&sts, status).await?;
        self.clean_history(&sts, &revs, &live, &update).await?;
        // Pods become available minReadySeconds after they are ready; nothing else says so.
        if min_ready > 0 && waiting {
            return Ok(Action::requeue(Duration::from_secs(
                u64::try_from(min_ready).unwrap_or(1),
            )));
        }
        Ok(Action::await_change())
    }

    fn all_keys(&self) -> Vec<Key> {
        self.sets
            .store()
            .state()
            .iter()
            .map(|s| key_of(s.as_ref()))
            .collect()
    }
}
