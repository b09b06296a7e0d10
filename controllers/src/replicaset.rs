//! The ReplicaSet controller: keeps `replicas` active pods matching the selector, adopting
//! matching orphans and releasing pods that stopped matching, and reports status.
//!
//! Level-triggered: every change of a ReplicaSet or of a pod that belongs to one (or could)
//! queues the ReplicaSet; `sync` compares the pods in the cache with `replicas` and acts.
//! Expectations keep it from acting again before the cache shows its previous actions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use component_base::events::{object_ref, EventType};
use component_base::labels;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;

use crate::context::{
    controller_of, controller_ref, key_of, pod_active, pod_available, ready_since, Context, Key,
};
use crate::expectations::Expectations;
use crate::informer::Change;
use crate::worker::{run_workers, Next};
use crate::workqueue::WorkQueue;

/// At most this many pods are created or deleted per sync (Kubernetes' burstReplicas).
const BURST: usize = 500;

pub struct ReplicaSetController {
    ctx: Arc<Context>,
    queue: Arc<WorkQueue<Key>>,
    expectations: Expectations<Key>,
}

fn rs_selects(rs: &ReplicaSet, pod: &Pod) -> bool {
    let Some(spec) = rs.spec.as_ref() else {
        return false;
    };
    // An empty selector selects nothing for a ReplicaSet.
    !labels::is_empty(&spec.selector)
        && labels::matches(
            &spec.selector,
            pod.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
        )
}

fn owned_by_rs(r: &OwnerReference) -> bool {
    r.kind == "ReplicaSet" && r.api_version.starts_with("apps/")
}

impl ReplicaSetController {
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        let c = Arc::new(Self {
            ctx: ctx.clone(),
            queue: WorkQueue::new(),
            expectations: Expectations::default(),
        });
        let q = c.queue.clone();
        ctx.informers.replicasets.on_change(move |ch| match ch {
            Change::Apply { new, .. } => q.add(key_of(new)),
            Change::Delete(o) => q.add(key_of(o)),
        });
        let weak = Arc::downgrade(&c);
        ctx.informers.pods.on_change(move |ch| {
            if let Some(c) = weak.upgrade() {
                c.pod_changed(ch);
            }
        });
        c
    }

    /// Queues the ReplicaSets a pod change concerns, and counts expected changes seen.
    fn pod_changed(&self, ch: Change<'_, Pod>) {
        let ns = |p: &Pod| p.metadata.namespace.clone().unwrap_or_default();
        match ch {
            Change::Apply { old, new } => {
                if let Some(r) = controller_of(new).filter(|r| owned_by_rs(r)) {
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
                    // An orphan: every ReplicaSet that could adopt it.
                    for rs in self.ctx.informers.replicasets.store().state() {
                        if rs.metadata.namespace == new.metadata.namespace && rs_selects(&rs, new) {
                            self.queue.add(key_of(rs.as_ref()));
                        }
                    }
                }
                // A controller change, or labels that stopped matching: the old owner too.
                if let Some(r) = old
                    .as_deref()
                    .and_then(controller_of)
                    .filter(|r| owned_by_rs(r))
                {
                    self.queue.add((ns(new), r.name.clone()));
                }
            }
            Change::Delete(p) => {
                if let Some(r) = controller_of(p).filter(|r| owned_by_rs(r)) {
                    let key = (ns(p), r.name.clone());
                    self.expectations
                        .deletion_observed(&key, p.metadata.uid.as_deref().unwrap_or(""));
                    self.queue.add(key);
                }
            }
        }
    }

    /// Runs `workers` workers until aborted, and re-syncs every ReplicaSet every 5 minutes.
    pub async fn run(self: Arc<Self>, workers: usize) {
        self.ctx.informers.replicasets.synced().await;
        self.ctx.informers.pods.synced().await;
        let (c, c2) = (self.clone(), self.clone());
        run_workers(
            "replicaset",
            self.queue.clone(),
            workers,
            Duration::from_secs(300),
            move |key| {
                let c = c.clone();
                async move {
                    Ok(match c.sync(&key).await? {
                        Some(d) => Next::After(d),
                        None => Next::Done,
                    })
                }
            },
            move || {
                c2.ctx
                    .informers
                    .replicasets
                    .store()
                    .state()
                    .iter()
                    .map(|r| key_of(r.as_ref()))
                    .collect()
            },
        )
        .await;
    }

    /// One reconciliation; `Ok(Some(d))` asks to be run again after `d` (a pod becomes
    /// available then).
    #[tracing::instrument(skip(self), fields(replicaset = %format!("{}/{}", key.0, key.1)))]
    pub async fn sync(&self, key: &Key) -> anyhow::Result<Option<Duration>> {
        let (ns, name) = key;
        tracing::debug!("sync");
        let Some(rs) = self
            .ctx
            .informers
            .replicasets
            .store()
            .get(&ObjectRef::new(name).within(ns))
        else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let rs_uid = rs.metadata.uid.clone().unwrap_or_default();
        let deleting = rs.metadata.deletion_timestamp.is_some();
        let pods_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);

        // Claim: keep ours that match, release ours that don't, adopt matching orphans.
        let mut mine: Vec<Arc<Pod>> = Vec::new();
        for p in self.ctx.informers.pods.store().state() {
            if p.metadata.namespace.as_deref() != Some(ns.as_str()) {
                continue;
            }
            let ctl = controller_of(p.as_ref());
            let matches = rs_selects(&rs, &p);
            match ctl {
                Some(r) if r.uid == rs_uid => {
                    if matches || deleting {
                        mine.push(p);
                    } else {
                        self.set_owner(&pods_api, &p, None).await?;
                    }
                }
                None if matches && !deleting && p.metadata.deletion_timestamp.is_none() => {
                    self.set_owner(&pods_api, &p, Some(controller_ref(rs.as_ref())))
                        .await?;
                    mine.push(p);
                }
                _ => {}
            }
        }
        let active: Vec<&Arc<Pod>> = mine.iter().filter(|p| pod_active(p)).collect();

        if self.expectations.satisfied(key) && !deleting {
            let want = rs
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .unwrap_or(1)
                .max(0) as usize;
            if active.len() < want {
                self.create_pods(&rs, key, (want - active.len()).min(BURST))
                    .await?;
            } else if active.len() > want {
                let mut victims: Vec<&Arc<Pod>> = active.clone();
                victims.sort_by(|a, b| deletion_rank(a).cmp(&deletion_rank(b)));
                victims.truncate((active.len() - want).min(BURST));
                self.delete_pods(&rs, key, &pods_api, &victims).await?;
            }
        }
        self.update_status(&rs, &active).await
    }

    async fn set_owner(
        &self,
        api: &Api<Pod>,
        p: &Pod,
        owner: Option<OwnerReference>,
    ) -> anyhow::Result<()> {
        let mut p = p.clone();
        let refs = p.metadata.owner_references.get_or_insert_with(Vec::new);
        match owner {
            Some(o) => refs.push(o),
            None => refs.retain(|r| r.controller != Some(true)),
        }
        let name = p.metadata.name.clone().unwrap_or_default();
        match api.replace(&name, &PostParams::default(), &p).await {
            Ok(_) => Ok(()),
            // Changed or gone meanwhile: the watch brings the new version and another sync.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn create_pods(&self, rs: &ReplicaSet, key: &Key, n: usize) -> anyhow::Result<()> {
        let (ns, name) = key;
        let template = rs
            .spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .unwrap_or_default();
        let tmeta = template.metadata.unwrap_or_default();
        let pod = Pod {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}-")),
                namespace: Some(ns.clone()),
                labels: tmeta.labels,
                annotations: tmeta.annotations,
                finalizers: tmeta.finalizers,
                owner_references: Some(vec![controller_ref(rs)]),
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
                    &object_ref(rs),
                    EventType::Warning,
                    "FailedCreate",
                    &format!("Error creating: {e}"),
                );
                return Err(e.into());
            }
            batch *= 2;
        }
        if created > 0 {
            self.ctx.recorder.record(
                &object_ref(rs),
                EventType::Normal,
                "SuccessfulCreate",
                &format!("Created {created} pod(s)"),
            );
        }
        Ok(())
    }

    async fn delete_pods(
        &self,
        rs: &ReplicaSet,
        key: &Key,
        api: &Api<Pod>,
        victims: &[&Arc<Pod>],
    ) -> anyhow::Result<()> {
        self.expectations.expect_deletions(
            key,
            victims
                .iter()
                .map(|p| p.metadata.uid.clone().unwrap_or_default()),
        );
        let mut err = None;
        for p in victims {
            let uid = p.metadata.uid.clone().unwrap_or_default();
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            let name = p.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &dp).await {
                Ok(_) => self.ctx.recorder.record(
                    &object_ref(rs),
                    EventType::Normal,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {name}"),
                ),
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                    self.expectations.deletion_observed(key, &uid);
                }
                Err(e) => {
                    self.expectations.deletion_observed(key, &uid);
                    err = Some(e);
                }
            }
        }
        match err {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    async fn update_status(
        &self,
        rs: &ReplicaSet,
        active: &[&Arc<Pod>],
    ) -> anyhow::Result<Option<Duration>> {
        let min_ready = rs
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        let now = jiff::Timestamp::now();
        let template_labels = rs
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let ready = active.iter().filter(|p| ready_since(p).is_some()).count() as i32;
        let available = active
            .iter()
            .filter(|p| pod_available(p, min_ready, now))
            .count() as i32;
        let fully_labeled = active
            .iter()
            .filter(|p| {
                let l = p.metadata.labels.clone().unwrap_or_default();
                template_labels.iter().all(|(k, v)| l.get(k) == Some(v))
            })
            .count() as i32;
        let old = rs.status.clone().unwrap_or_default();
        let new = ReplicaSetStatus {
            replicas: active.len() as i32,
            fully_labeled_replicas: Some(fully_labeled),
            ready_replicas: Some(ready),
            available_replicas: Some(available),
            // Set only with the DeploymentReplicaSetTerminatingReplicas feature (alpha in 1.33).
            terminating_replicas: None,
            observed_generation: rs.metadata.generation,
            conditions: old.conditions.clone(),
        };
        if new != old {
            let mut rs2 = rs.clone();
            rs2.status = Some(new);
            let api: Api<ReplicaSet> = Api::namespaced(
                self.ctx.client.clone(),
                rs.metadata.namespace.as_deref().unwrap_or_default(),
            );
            let name = rs.metadata.name.clone().unwrap_or_default();
            match api
                .replace_status(&name, &PostParams::default(), &rs2)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        // A ready pod becomes available after minReadySeconds: look again then.
        if min_ready > 0 && ready > available {
            return Ok(Some(Duration::from_secs(min_ready as u64)));
        }
        Ok(None)
    }
}

/// Which pods to delete first when scaling down (Kubernetes' ActivePods ordering, in
/// short): unbound before bound, pending before running, not ready before ready, newer
/// before older.
fn deletion_rank(p: &Pod) -> (u8, u8, u8, std::cmp::Reverse<Option<jiff::Timestamp>>) {
    let bound = p
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let phase = match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        _ => 2,
    };
    let ready = ready_since(p);
    (
        u8::from(bound),
        phase,
        u8::from(ready.is_some()),
        std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: Option<&str>, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                node_name: node.map(str::to_string),
                ..Default::default()
            }),
            status: Some(k8s_openapi::api::core::v1::PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn unbound_and_pending_pods_go_first() {
        let mut v = [
            pod("running", Some("n"), "Running"),
            pod("pending-bound", Some("n"), "Pending"),
            pod("unbound", None, "Pending"),
        ];
        v.sort_by_key(deletion_rank);
        let names: Vec<_> = v.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, ["unbound", "pending-bound", "running"]);
    }
}
