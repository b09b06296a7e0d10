//! The DaemonSet controller (apps/v1), as kube's `pkg/controller/daemon`: one pod on every
//! node that fits (node selector, required node affinity, taints, with the daemon
//! tolerations), each pinned to its node through node affinity and placed by the
//! scheduler as kube does since 1.12. A DaemonSet is queued when it, a node, a pod it
//! controls or one of its revisions changes. `reconcile`: the current revision
//! (`crate::history`: found by its template, else created with the next number), the pure
//! decisions of `plan.rs` (creations, deletions, the rolling update under maxUnavailable
//! or maxSurge; OnDelete leaves old pods alone) carried out under expectations, the
//! status, and old revisions beyond `revisionHistoryLimit` removed.

pub mod backoff;
pub mod nodes;
pub mod plan;

use std::collections::BTreeSet;
use std::sync::Arc;

use component_base::events::{object_ref, EventType};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;

use crate::claims;
use crate::context::{controller_of, controller_ref, key_of, refers_to, Context, Key};
use crate::expectations::Expectations;
use crate::history::{self, HASH_LABEL};
use crate::informer::{Change, Informer};
use crate::reconciler::{Action, Controller, Reconciler, Run};
use crate::workqueue::WorkQueue;

pub const GENERATION_LABEL: &str = "pod-template-generation";
/// apps/v1 keeps the template generation in this annotation.
pub const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Claim(#[from] claims::Error),
    #[error("writing revision {name}")]
    Revision {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("creating a pod for node {node}")]
    Create {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting pod {pod}")]
    Delete {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the status of daemonset {name}")]
    Status {
        name: String,
        #[source]
        source: kube::Error,
    },
}

pub struct DaemonSetController {
    ctx: Arc<Context>,
    daemonsets: Arc<Informer<DaemonSet>>,
    nodes: Arc<Informer<Node>>,
    pods: Arc<Informer<Pod>>,
    revisions: Arc<Informer<ControllerRevision>>,
    expectations: Expectations<Key>,
    /// Backoff on deleting failed daemon pods, per DaemonSet and node.
    failed: std::sync::Mutex<backoff::FailedPods>,
}

pub fn new(ctx: &Arc<Context>) -> Box<dyn Run> {
    let queue = WorkQueue::new();
    let c = Arc::new(DaemonSetController {
        ctx: ctx.clone(),
        daemonsets: ctx.informers.get(),
        nodes: ctx.informers.get(),
        pods: ctx.informers.get(),
        revisions: ctx.informers.get(),
        expectations: Expectations::default(),
        failed: Default::default(),
    });
    let q = queue.clone();
    c.daemonsets.on_change(move |ch| {
        if let Change::Apply { new, .. } = ch {
            q.add(key_of(new));
        }
    });
    // A node that comes, goes, or changes its labels or spec (taints, unschedulable) may
    // change where daemon pods belong; status heartbeats do not.
    let (q, weak) = (queue.clone(), Arc::downgrade(&c));
    c.nodes.on_change(move |ch| {
        let relevant = match ch {
            Change::Apply { old: Some(o), new } => {
                o.metadata.labels != new.metadata.labels || o.spec != new.spec
            }
            _ => true,
        };
        if !relevant {
            return;
        }
        if let Some(c) = weak.upgrade() {
            for ds in c.daemonsets.store().state() {
                q.add(key_of(ds.as_ref()));
            }
        }
    });
    let (q, weak) = (queue.clone(), Arc::downgrade(&c));
    c.pods.on_change(move |ch| {
        let Some(c) = weak.upgrade() else { return };
        if let Some(key) = crate::podcontrol::observe::<DaemonSet>(&c.expectations, &ch) {
            q.add(key);
        } else if let Change::Apply { new, .. } = ch {
            let dsets = c.daemonsets.store().state();
            for key in claims::adopters(&dsets, new, |d| selects(d, &new.metadata)) {
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
        if let Some(owner) = controller_of(r).filter(|o| refers_to::<DaemonSet>(o)) {
            q.add((
                r.metadata.namespace.clone().unwrap_or_default(),
                owner.name.clone(),
            ));
        } else if let Some(c) = weak.upgrade() {
            let dsets = c.daemonsets.store().state();
            for key in claims::adopters(&dsets, r, |d| selects(d, &r.metadata)) {
                q.add(key);
            }
        }
    });
    Controller::new(c, queue).workers(2).into()
}

impl Reconciler for DaemonSetController {
    type Key = Key;
    type Error = Error;

    async fn reconcile(&self, key: &Key) -> Result<Action, Error> {
        let (ns, name) = key;
        let Some(ds) = self
            .daemonsets
            .store()
            .get(&ObjectRef::new(name).within(ns))
        else {
            self.expectations.forget(key);
            return Ok(Action::await_change());
        };
        // Its revisions and pods: those it controls, and orphans its selector picks.
        let owner = controller_ref(ds.as_ref());
        let deleting = ds.metadata.deletion_timestamp.is_some();
        let in_ns = |m: &ObjectMeta| m.namespace.as_deref() == Some(ns.as_str());
        let revs_api: Api<ControllerRevision> = Api::namespaced(self.ctx.client.clone(), ns);
        let candidates = self.revisions.store().state();
        let candidates = candidates.into_iter().filter(|r| in_ns(&r.metadata));
        let revisions = claims::claim_all(
            &revs_api,
            candidates.collect(),
            &owner,
            deleting,
            |r| selects(&ds, &r.metadata),
            &[],
        )
        .await?;
        let revs: Vec<&ControllerRevision> = revisions.iter().map(|r| r.as_ref()).collect();
        let ensured = self.current_revision(&ds, &revs).await?;
        let hash = ensured.hash.clone();
        let pods_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
        let candidates = self.pods.store().state();
        let candidates = candidates.into_iter().filter(|p| in_ns(&p.metadata));
        let owned = claims::claim_all(
            &pods_api,
            candidates.collect(),
            &owner,
            deleting,
            |p| selects(&ds, &p.metadata),
            &[],
        )
        .await?;
        let pods: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
        let node_objs = self.nodes.store().state();
        let nodes: Vec<&Node> = node_objs.iter().map(|n| n.as_ref()).collect();
        let act = ds.metadata.deletion_timestamp.is_none() && self.expectations.satisfied(key);
        let now = jiff::Timestamp::now();
        let plan = {
            let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
            failed.gc(now);
            plan::plan(&ds, &nodes, &pods, &hash, act, &mut failed, now)
        };
        let r = object_ref(ds.as_ref());
        for (_, why) in &plan.delete {
            if let Some((ty, reason, msg)) = why {
                let ty = if *ty == "Warning" {
                    EventType::Warning
                } else {
                    EventType::Normal
                };
                self.ctx.recorder.record(&r, ty, reason, msg);
            }
        }
        if !plan.delete.is_empty() {
            let victims: Vec<&Pod> = pods
                .iter()
                .copied()
                .filter(|p| {
                    plan.delete
                        .iter()
                        .any(|(n, _)| p.metadata.name.as_ref() == Some(n))
                })
                .collect();
            crate::podcontrol::delete_pods(
                &self.ctx,
                &self.expectations,
                key,
                &pods_api,
                &r,
                &victims,
            )
            .await
            .map_err(|f| Error::Delete {
                pod: f.pod,
                source: f.source,
            })?;
        }
        if !plan.create.is_empty() {
            self.create_pods(&ds, key, &hash, &plan.create, &pods_api)
                .await?;
        }
        let mut status = plan.status;
        if ensured.collision_count.is_some() {
            status.collision_count = ensured.collision_count;
        }
        self.write_status(&ds, status).await?;
        self.clean_history(&ds, &revs, &hash, &pods).await?;
        Ok(match plan.requeue_after {
            Some(d) => Action::requeue(d),
            None => Action::await_change(),
        })
    }

    fn all_keys(&self) -> Vec<Key> {
        self.daemonsets
            .store()
            .state()
            .iter()
            .map(|d| key_of(d.as_ref()))
            .collect()
    }
}

impl DaemonSetController {
    /// The hash of the revision holding the current template.
    async fn current_revision(
        &self,
        ds: &DaemonSet,
        revs: &[&ControllerRevision],
    ) -> Result<history::Ensured, Error> {
        let ns = ds.metadata.namespace.clone().unwrap_or_default();
        let api: Api<ControllerRevision> = Api::namespaced(self.ctx.client.clone(), &ns);
        history::ensure(&api, ds, revs)
            .await
            .map_err(|e| Error::Revision {
                name: e.name,
                source: e.source,
            })
    }

    /// Creates a pod for each of `nodes` in slow-start batches, every creation expected
    /// first; those not made (after a failed batch) are observed at once.
    async fn create_pods(
        &self,
        ds: &DaemonSet,
        key: &Key,
        hash: &str,
        nodes: &[String],
        api: &Api<Pod>,
    ) -> Result<(), Error> {
        let r = object_ref(ds);
        self.expectations.expect_creations(key, nodes.len());
        let (made, failed) = crate::podcontrol::slow_start(nodes.to_vec(), |node| {
            let (pod, r) = (pod_for(ds, hash, &node), &r);
            async move {
                match api.create(&PostParams::default(), &pod).await {
                    Ok(p) => {
                        let name = p.metadata.name.unwrap_or_default();
                        let msg = format!("Created pod: {name}");
                        self.ctx
                            .recorder
                            .record(r, EventType::Normal, "SuccessfulCreate", &msg);
                        Ok(())
                    }
                    Err(source) => {
                        self.expectations.creation_observed(key);
                        let msg = format!("Error creating: {source}");
                        self.ctx
                            .recorder
                            .record(r, EventType::Warning, "FailedCreate", &msg);
                        Err(Error::Create { node, source })
                    }
                }
            }
        })
        .await;
        for _ in made..nodes.len() {
            self.expectations.creation_observed(key);
        }
        failed.map_or(Ok(()), Err)
    }

    async fn write_status(
        &self,
        ds: &DaemonSet,
        status: k8s_openapi::api::apps::v1::DaemonSetStatus,
    ) -> Result<(), Error> {
        if ds.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let ns = ds.metadata.namespace.clone().unwrap_or_default();
        let name = ds.metadata.name.clone().unwrap_or_default();
        let api: Api<DaemonSet> = Api::namespaced(self.ctx.client.clone(), &ns);
        let mut updated = ds.clone();
        updated.status = Some(status);
        match api
            .replace_status(&name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
            Err(source) => Err(Error::Status { name, source }),
        }
    }

    async fn clean_history(
        &self,
        ds: &DaemonSet,
        revs: &[&ControllerRevision],
        hash: &str,
        pods: &[&Pod],
    ) -> Result<(), Error> {
        let limit = ds
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        let live: BTreeSet<String> = pods
            .iter()
            .filter_map(|p| p.metadata.labels.as_ref()?.get(HASH_LABEL).cloned())
            .collect();
        let current = format!("{}-{hash}", ds.metadata.name.as_deref().unwrap_or(""));
        let ns = ds.metadata.namespace.clone().unwrap_or_default();
        let api: Api<ControllerRevision> = Api::namespaced(self.ctx.client.clone(), &ns);
        for r in history::to_clean(revs, &current, &live, limit) {
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

/// Whether the DaemonSet's selector picks an object with `meta`'s labels (an empty
/// selector picks nothing).
fn selects(ds: &DaemonSet, meta: &ObjectMeta) -> bool {
    claims::selected_by(ds.spec.as_ref().map(|s| &s.selector), meta)
}

/// A pod of `ds` for `node`: the template with the revision's hash and template
/// generation labels, the daemon tolerations, pinned to the node, controlled by `ds`.
pub fn pod_for(ds: &DaemonSet, hash: &str, node: &str) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.into());
    if let Some(g) = ds
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TEMPLATE_GENERATION))
    {
        labels.insert(GENERATION_LABEL.into(), g.clone());
    }
    let mut spec = template.spec.unwrap_or_default();
    nodes::add_tolerations(&mut spec);
    nodes::pin_to_node(&mut spec, node);
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.metadata.name.as_deref().unwrap_or(""))),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(ds)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}
