//! The Deployment controller: turns a Deployment into ReplicaSets, one per pod template
//! (named `<deployment>-<pod-template-hash>`), and moves pods from the old ones to the new
//! one with the RollingUpdate or Recreate strategy; keeps revisions for `rollout undo`,
//! prunes history beyond `revisionHistoryLimit`, and reports the status `kubectl rollout
//! status` reads (observedGeneration, updated/ready/available replicas, and the Available
//! and Progressing conditions with progressDeadlineSeconds).

pub(crate) mod plan;
mod replicasets;
pub(crate) mod status;

use std::collections::BTreeMap;
use std::sync::Arc;

use component_base::events::{object_ref, EventType};
use component_base::labels;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;

use crate::context::{controller_of, key_of, refers_to, Context, Key};
use crate::informer::{Change, Informer};
use crate::reconciler::{Action, Controller, Reconciler, Run};
use crate::workqueue::WorkQueue;
use plan::Rs;
use replicasets::{cleanup, create_new_rs, replace, scale, sync_revision};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{verb} replica set {name}")]
    ReplicaSet {
        verb: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("invalid rolling update: {message}")]
    Strategy { message: String },
    #[error("replica set {name} exists with another template; collision count raised")]
    Collision { name: String },
    #[error("raising the collision count")]
    CollisionCount {
        #[source]
        source: kube::Error,
    },
    #[error("recording the revision on the deployment")]
    Revision {
        #[source]
        source: kube::Error,
    },
    #[error("writing the status")]
    Status {
        #[source]
        source: kube::Error,
    },
}

pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// The characters Kubernetes' SafeEncodeString maps to (no vowels, no look-alikes).
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The pod-template-hash of a template: FNV-1a over its JSON (and the collision count),
/// encoded as Kubernetes does (the decimal digits through the safe alphabet).
pub fn template_hash(t: &PodTemplateSpec, collision: Option<i32>) -> String {
    let mut h: u32 = 0x811c9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x01000193);
        }
    };
    feed(&serde_json::to_vec(t).unwrap_or_default());
    if let Some(c) = collision {
        feed(&c.to_le_bytes());
    }
    h.to_string()
        .bytes()
        .map(|b| SAFE[usize::from(b) % SAFE.len()] as char)
        .collect()
}

fn without_hash(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.remove(HASH_LABEL);
        if l.is_empty() {
            t.metadata.as_mut().map(|m| m.labels = None);
        }
    }
    t
}

/// Whether a ReplicaSet runs a Deployment's template (ignoring the hash label).
pub fn same_template(rs: &ReplicaSet, d: &Deployment) -> bool {
    let (Some(a), Some(b)) = (
        rs.spec.as_ref().and_then(|s| s.template.as_ref()),
        d.spec.as_ref().map(|s| &s.template),
    ) else {
        return false;
    };
    without_hash(a) == without_hash(b)
}

pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

fn owned_by_deployment(r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference) -> bool {
    refers_to::<Deployment>(r)
}

fn selects(d: &Deployment, rs: &ReplicaSet) -> bool {
    let Some(spec) = d.spec.as_ref() else {
        return false;
    };
    !labels::is_empty(&spec.selector)
        && labels::matches(
            &spec.selector,
            rs.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
        )
}

pub struct DeploymentController {
    ctx: Arc<Context>,
    deployments: Arc<Informer<Deployment>>,
    replicasets: Arc<Informer<ReplicaSet>>,
    pods: Arc<Informer<Pod>>,
}

/// Keyed by Deployment: its changes, its ReplicaSets' (or those it could adopt), and the
/// deletion of its pods (Recreate waits for the old ones to be gone).
pub fn new(ctx: &Arc<Context>) -> Box<dyn Run> {
    let queue = WorkQueue::<Key>::new();
    let r = Arc::new(DeploymentController {
        ctx: ctx.clone(),
        deployments: ctx.informers.get(),
        replicasets: ctx.informers.get(),
        pods: ctx.informers.get(),
    });
    let q = queue.clone();
    r.deployments.on_change(move |ch| match ch {
        Change::Apply { new, .. } => q.add(key_of(new)),
        Change::Delete(d) => q.add(key_of(d)),
    });
    let (q, deployments) = (queue.clone(), r.deployments.clone());
    r.replicasets.on_change(move |ch| {
        let rs = match &ch {
            Change::Apply { new, .. } => *new,
            Change::Delete(rs) => *rs,
        };
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        match controller_of(rs).filter(|r| owned_by_deployment(r)) {
            Some(r) => q.add((ns, r.name.clone())),
            None => {
                for d in deployments.store().state() {
                    if d.metadata.namespace.as_deref() == Some(ns.as_str()) && selects(&d, rs) {
                        q.add(key_of(d.as_ref()));
                    }
                }
            }
        }
    });
    let (q, replicasets) = (queue.clone(), r.replicasets.clone());
    r.pods.on_change(move |ch| {
        if let Change::Delete(p) = ch {
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            if let Some(r) = controller_of(p).filter(|r| r.kind == "ReplicaSet") {
                if let Some(rs) = replicasets
                    .store()
                    .get(&ObjectRef::new(&r.name).within(&ns))
                {
                    if let Some(d) = controller_of(rs.as_ref()).filter(|r| owned_by_deployment(r)) {
                        q.add((ns, d.name.clone()));
                    }
                }
            }
        }
    });
    Controller::new(r, queue)
        .workers(ctx.config.deployment_workers)
        .into()
}

impl Reconciler for DeploymentController {
    type Key = Key;
    type Error = Error;

    async fn reconcile(&self, key: &Key) -> Result<Action, Error> {
        self.sync(key).await
    }

    fn all_keys(&self) -> Vec<Key> {
        self.deployments
            .store()
            .state()
            .iter()
            .map(|d| key_of(d.as_ref()))
            .collect()
    }
}

impl DeploymentController {
    async fn sync(&self, key: &Key) -> Result<Action, Error> {
        let ctx = &*self.ctx;
        let (ns, name) = key;
        let Some(mut d) = self
            .deployments
            .store()
            .get(&ObjectRef::new(name).within(ns))
        else {
            return Ok(Action::await_change());
        };
        let spec = d.spec.clone().unwrap_or_default();
        if labels::is_empty(&spec.selector) {
            ctx.recorder.record(
                &object_ref(d.as_ref()),
                EventType::Warning,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            );
            return Ok(Action::await_change());
        }
        let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), ns);
        let rss = self.claim(&d, &rs_api).await?;
        if d.metadata.deletion_timestamp.is_some() {
            return status::sync(ctx, &d, &rss, None, false, 0).await;
        }
        let desired = spec.replicas.unwrap_or(1).max(0);
        let rolling = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) != Some("Recreate");
        let ru = spec
            .strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref());
        let (surge, unavailable) = if rolling {
            plan::fenceposts(
                ru.and_then(|r| r.max_surge.as_ref()),
                ru.and_then(|r| r.max_unavailable.as_ref()),
                desired,
            )
            .map_err(|message| Error::Strategy { message })?
        } else {
            (0, 0)
        };
        let mut olds: Vec<Arc<ReplicaSet>> = rss
            .iter()
            .filter(|r| !same_template(r, &d))
            .cloned()
            .collect();
        olds.sort_by_key(|r| {
            (
                r.metadata.creation_timestamp.as_ref().map(|t| t.0),
                r.metadata.name.clone(),
            )
        });
        let max_old_rev = olds.iter().map(|r| revision(r)).max().unwrap_or(0);
        let mut new = rss.iter().find(|r| same_template(r, &d)).cloned();
        let paused = spec.paused == Some(true);
        let mut created = false;

        if paused {
            // Paused: only follow a change of replicas when nothing else is running.
            if let Some(n) = &new {
                if olds.iter().all(|o| spec_replicas(o) == 0) && spec_replicas(n) != desired {
                    scale(ctx, &d, &rs_api, n, desired, surge).await?;
                }
            }
            return status::sync(ctx, &d, &rss, new.as_deref(), false, unavailable).await;
        }

        match &new {
            None => {
                let old_total = plan::total(olds.iter().map(|o| spec_replicas(o)));
                let replicas = if rolling {
                    plan::new_rs_replicas(
                        desired,
                        surge,
                        Rs {
                            replicas: 0,
                            available: 0,
                        },
                        old_total,
                    )
                } else if old_total > 0 || self.old_pods_remain(ns, &olds) {
                    0
                } else {
                    desired
                };
                new = Some(
                    create_new_rs(
                        ctx,
                        &d,
                        &rs_api,
                        replicas,
                        surge,
                        max_old_rev.saturating_add(1),
                    )
                    .await?,
                );
                created = true;
            }
            // (An old revision of i64::MAX cannot be outnumbered: leave it, rather than
            // rewrite the same annotation on every sync.)
            Some(n) if revision(n) <= max_old_rev && max_old_rev < i64::MAX => {
                // A rollback made an old template current again: it is the newest revision now.
                let mut rs = (**n).clone();
                rs.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(REVISION.into(), (max_old_rev + 1).to_string());
                new = Some(Arc::new(
                    replace(&rs_api, &rs, "updating the revision of").await?,
                ));
            }
            Some(_) => {}
        }
        let Some(new_rs) = new.clone() else {
            return Ok(Action::await_change());
        };
        if let Some(updated) = sync_revision(ctx, &d, &new_rs).await? {
            d = Arc::new(updated);
        }

        if rolling {
            let all = plan::total(
                std::iter::once(spec_replicas(&new_rs))
                    .chain(olds.iter().map(|o| spec_replicas(o))),
            );
            let want = plan::new_rs_replicas(
                desired,
                surge,
                Rs {
                    replicas: spec_replicas(&new_rs),
                    available: available(&new_rs),
                },
                all,
            );
            let mut new_state = Rs {
                replicas: spec_replicas(&new_rs),
                available: available(&new_rs),
            };
            if want != new_state.replicas {
                scale(ctx, &d, &rs_api, &new_rs, want, surge).await?;
                new_state.replicas = want;
            }
            let old_states: Vec<Rs> = olds
                .iter()
                .map(|o| Rs {
                    replicas: spec_replicas(o),
                    available: available(o),
                })
                .collect();
            let targets = plan::old_rs_replicas(desired, unavailable, new_state, &old_states);
            for (o, t) in olds.iter().zip(targets) {
                if t != spec_replicas(o) {
                    scale(ctx, &d, &rs_api, o, t, surge).await?;
                }
            }
        } else {
            // Recreate: all old pods gone before any new one starts.
            for o in &olds {
                if spec_replicas(o) > 0 {
                    scale(ctx, &d, &rs_api, o, 0, 0).await?;
                }
            }
            let olds_empty =
                olds.iter().all(|o| spec_replicas(o) == 0) && !self.old_pods_remain(ns, &olds);
            if olds_empty && spec_replicas(&new_rs) != desired {
                scale(ctx, &d, &rs_api, &new_rs, desired, 0).await?;
            }
        }
        cleanup(&d, &rs_api, &olds).await?;
        status::sync(ctx, &d, &rss, Some(&new_rs), created, unavailable).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn the_hash_is_stable_safe_and_changes_with_the_template() {
        let mut t = PodTemplateSpec::default();
        let a = template_hash(&t, None);
        assert_eq!(a, template_hash(&t, None));
        assert!(a.bytes().all(|b| SAFE.contains(&b)));
        assert_ne!(a, template_hash(&t, Some(1)));
        t.metadata = Some(ObjectMeta {
            labels: Some([("app".to_string(), "x".to_string())].into()),
            ..Default::default()
        });
        assert_ne!(a, template_hash(&t, None));
    }
}
