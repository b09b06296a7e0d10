//! The Deployment controller: turns a Deployment into ReplicaSets, one per pod template
//! (named `<deployment>-<pod-template-hash>`), and moves pods from the old ones to the new
//! one with the RollingUpdate or Recreate strategy; keeps revisions for `rollout undo`,
//! prunes history beyond `revisionHistoryLimit`, and reports the status `kubectl rollout
//! status` reads (observedGeneration, updated/ready/available replicas, and the Available
//! and Progressing conditions with progressDeadlineSeconds).

mod plan;
mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use component_base::events::{object_ref, EventType};
use component_base::labels;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;

use crate::context::{controller_of, controller_ref, key_of, pod_active, Context, Key};
use crate::informer::Change;
use crate::worker::{run_workers, Next};
use crate::workqueue::WorkQueue;
use plan::Rs;

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
    r.kind == "Deployment" && r.api_version.starts_with("apps/")
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

/// Registers the handlers now; the returned future runs the workers.
pub fn run(ctx: Arc<Context>, workers: usize) -> impl std::future::Future<Output = ()> + Send {
    let queue = WorkQueue::<Key>::new();
    let q = queue.clone();
    ctx.informers.deployments.on_change(move |ch| match ch {
        Change::Apply { new, .. } => q.add(key_of(new)),
        Change::Delete(d) => q.add(key_of(d)),
    });
    let (q, c) = (queue.clone(), ctx.clone());
    ctx.informers.replicasets.on_change(move |ch| {
        let rs = match &ch {
            Change::Apply { new, .. } => *new,
            Change::Delete(rs) => *rs,
        };
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        match controller_of(rs).filter(|r| owned_by_deployment(r)) {
            Some(r) => q.add((ns, r.name.clone())),
            None => {
                for d in c.informers.deployments.store().state() {
                    if d.metadata.namespace.as_deref() == Some(ns.as_str()) && selects(&d, rs) {
                        q.add(key_of(d.as_ref()));
                    }
                }
            }
        }
    });
    // Recreate waits for the old pods to be gone.
    let (q, c) = (queue.clone(), ctx.clone());
    ctx.informers.pods.on_change(move |ch| {
        if let Change::Delete(p) = ch {
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            if let Some(r) = controller_of(p).filter(|r| r.kind == "ReplicaSet") {
                if let Some(rs) = c
                    .informers
                    .replicasets
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
    async move {
        ctx.informers.deployments.synced().await;
        ctx.informers.replicasets.synced().await;
        ctx.informers.pods.synced().await;
        let c2 = ctx.clone();
        run_workers(
            "deployment",
            queue,
            workers,
            Duration::from_secs(300),
            move |key| sync(ctx.clone(), key),
            move || {
                c2.informers
                    .deployments
                    .store()
                    .state()
                    .iter()
                    .map(|d| key_of(d.as_ref()))
                    .collect()
            },
        )
        .await;
    }
}

#[tracing::instrument(skip(ctx), fields(deployment = %format!("{}/{}", key.0, key.1)))]
async fn sync(ctx: Arc<Context>, key: Key) -> anyhow::Result<Next> {
    let (ns, name) = &key;
    let Some(d) = ctx
        .informers
        .deployments
        .store()
        .get(&ObjectRef::new(name).within(ns))
    else {
        return Ok(Next::Done);
    };
    let spec = d.spec.clone().unwrap_or_default();
    if labels::is_empty(&spec.selector) {
        ctx.recorder.record(
            &object_ref(d.as_ref()),
            EventType::Warning,
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.",
        );
        return Ok(Next::Done);
    }
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), ns);
    let rss = claim(&ctx, &d, &rs_api).await?;
    if d.metadata.deletion_timestamp.is_some() {
        return status::sync(&ctx, &d, &rss, None, false, 0).await;
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
        .map_err(anyhow::Error::msg)?
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
                scale(&ctx, &d, &rs_api, n, desired, surge).await?;
            }
        }
        return status::sync(&ctx, &d, &rss, new.as_deref(), false, unavailable).await;
    }

    match &new {
        None => {
            let old_total: i32 = olds.iter().map(|o| spec_replicas(o)).sum();
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
            } else if old_total > 0 || old_pods_remain(&ctx, ns, &olds) {
                0
            } else {
                desired
            };
            new = Some(create_new_rs(&ctx, &d, &rs_api, replicas, surge, max_old_rev + 1).await?);
            created = true;
        }
        Some(n) if revision(n) <= max_old_rev => {
            // A rollback made an old template current again: it is the newest revision now.
            let mut rs = (**n).clone();
            rs.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(REVISION.into(), (max_old_rev + 1).to_string());
            new = Some(Arc::new(replace(&rs_api, &rs).await?));
        }
        Some(_) => {}
    }
    let Some(new_rs) = new.clone() else {
        return Ok(Next::Done);
    };

    if rolling {
        let all: i32 = spec_replicas(&new_rs) + olds.iter().map(|o| spec_replicas(o)).sum::<i32>();
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
            scale(&ctx, &d, &rs_api, &new_rs, want, surge).await?;
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
                scale(&ctx, &d, &rs_api, o, t, surge).await?;
            }
        }
    } else {
        // Recreate: all old pods gone before any new one starts.
        for o in &olds {
            if spec_replicas(o) > 0 {
                scale(&ctx, &d, &rs_api, o, 0, 0).await?;
            }
        }
        let olds_empty =
            olds.iter().all(|o| spec_replicas(o) == 0) && !old_pods_remain(&ctx, ns, &olds);
        if olds_empty && spec_replicas(&new_rs) != desired {
            scale(&ctx, &d, &rs_api, &new_rs, desired, 0).await?;
        }
    }
    cleanup(&d, &rs_api, &olds).await?;
    status::sync(&ctx, &d, &rss, Some(&new_rs), created, unavailable).await
}

/// The Deployment's ReplicaSets: those it controls that still match, plus matching orphans
/// it adopts; controlled ones that stopped matching are released.
async fn claim(
    ctx: &Context,
    d: &Deployment,
    api: &Api<ReplicaSet>,
) -> anyhow::Result<Vec<Arc<ReplicaSet>>> {
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let deleting = d.metadata.deletion_timestamp.is_some();
    let mut out = Vec::new();
    for rs in ctx.informers.replicasets.store().state() {
        if rs.metadata.namespace != d.metadata.namespace {
            continue;
        }
        let matches = selects(d, &rs);
        match controller_of(rs.as_ref()) {
            Some(r) if r.uid == uid => {
                if matches || deleting {
                    out.push(rs);
                } else {
                    let mut r2 = (*rs).clone();
                    if let Some(refs) = r2.metadata.owner_references.as_mut() {
                        refs.retain(|r| r.uid != uid);
                    }
                    replace_ignoring_conflict(api, &r2).await?;
                }
            }
            None if matches && !deleting && rs.metadata.deletion_timestamp.is_none() => {
                let mut r2 = (*rs).clone();
                r2.metadata
                    .owner_references
                    .get_or_insert_with(Vec::new)
                    .push(controller_ref(d));
                if let Some(r) = replace_ignoring_conflict(api, &r2).await? {
                    out.push(Arc::new(r));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn old_pods_remain(ctx: &Context, ns: &str, olds: &[Arc<ReplicaSet>]) -> bool {
    let uids: Vec<&str> = olds
        .iter()
        .filter_map(|o| o.metadata.uid.as_deref())
        .collect();
    ctx.informers.pods.store().state().iter().any(|p| {
        p.metadata.namespace.as_deref() == Some(ns)
            && controller_of(p.as_ref()).is_some_and(|r| uids.contains(&r.uid.as_str()))
            && (pod_active(p) || p.metadata.deletion_timestamp.is_some())
    })
}

async fn create_new_rs(
    ctx: &Context,
    d: &Deployment,
    api: &Api<ReplicaSet>,
    replicas: i32,
    surge: i32,
    revision: i64,
) -> anyhow::Result<Arc<ReplicaSet>> {
    let spec = d.spec.clone().unwrap_or_default();
    let collision = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = template_hash(&spec.template, collision);
    let name = format!("{}-{hash}", d.metadata.name.as_deref().unwrap_or(""));
    let mut template = spec.template.clone();
    let tmeta = template.metadata.get_or_insert_with(Default::default);
    tmeta
        .labels
        .get_or_insert_with(Default::default)
        .insert(HASH_LABEL.into(), hash.clone());
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(HASH_LABEL.into(), hash.clone());
    let mut annotations: BTreeMap<String, String> = d
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("kubectl.kubernetes.io/last-applied") && k != REVISION)
        .collect();
    annotations.insert(REVISION.into(), revision.to_string());
    annotations.insert(DESIRED.into(), spec.replicas.unwrap_or(1).to_string());
    annotations.insert(
        MAX_REPLICAS.into(),
        (spec.replicas.unwrap_or(1) + surge).to_string(),
    );
    let rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: d.metadata.namespace.clone(),
            labels: tmeta.labels.clone(),
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(d)]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    };
    match api.create(&PostParams::default(), &rs).await {
        Ok(created) => {
            ctx.recorder.record(
                &object_ref(d),
                EventType::Normal,
                "ScalingReplicaSet",
                &format!("Scaled up replica set {name} from 0 to {replicas}"),
            );
            Ok(Arc::new(created))
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // A ReplicaSet of that name with another template: count a collision so the
            // next hash differs.
            let existing = api.get_opt(&name).await?;
            if let Some(ex) = existing.filter(|r| {
                same_template(r, d)
                    && controller_of(r).is_some_and(|c| Some(&c.uid) == d.metadata.uid.as_ref())
            }) {
                return Ok(Arc::new(ex));
            }
            let mut d2 = d.clone();
            let st = d2.status.get_or_insert_with(Default::default);
            st.collision_count = Some(st.collision_count.unwrap_or(0) + 1);
            let dapi: Api<Deployment> = Api::namespaced(
                ctx.client.clone(),
                d.metadata.namespace.as_deref().unwrap_or(""),
            );
            dapi.replace_status(
                d.metadata.name.as_deref().unwrap_or(""),
                &PostParams::default(),
                &d2,
            )
            .await?;
            anyhow::bail!("replica set {name} exists with another template; collision count raised")
        }
        Err(e) => Err(e.into()),
    }
}

async fn scale(
    ctx: &Context,
    d: &Deployment,
    api: &Api<ReplicaSet>,
    rs: &ReplicaSet,
    to: i32,
    surge: i32,
) -> anyhow::Result<()> {
    let from = spec_replicas(rs);
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let mut r2 = rs.clone();
    if let Some(s) = r2.spec.as_mut() {
        s.replicas = Some(to);
    }
    let a = r2.metadata.annotations.get_or_insert_with(Default::default);
    a.insert(DESIRED.into(), desired.to_string());
    a.insert(MAX_REPLICAS.into(), (desired + surge).to_string());
    replace(api, &r2).await?;
    let name = rs.metadata.name.as_deref().unwrap_or("");
    let dir = if to > from { "up" } else { "down" };
    ctx.recorder.record(
        &object_ref(d),
        EventType::Normal,
        "ScalingReplicaSet",
        &format!("Scaled {dir} replica set {name} from {from} to {to}"),
    );
    Ok(())
}

/// Deletes the oldest empty old ReplicaSets beyond `revisionHistoryLimit` (default 10).
async fn cleanup(
    d: &Deployment,
    api: &Api<ReplicaSet>,
    olds: &[Arc<ReplicaSet>],
) -> anyhow::Result<()> {
    let limit = d
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let empty: Vec<&Arc<ReplicaSet>> = olds
        .iter()
        .filter(|r| {
            spec_replicas(r) == 0
                && r.status.as_ref().is_none_or(|s| s.replicas == 0)
                && r.metadata.deletion_timestamp.is_none()
        })
        .collect();
    if empty.len() <= limit {
        return Ok(());
    }
    let mut by_rev = empty;
    by_rev.sort_by_key(|r| revision(r));
    for rs in &by_rev[..by_rev.len() - limit] {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: rs.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api
            .delete(rs.metadata.name.as_deref().unwrap_or(""), &dp)
            .await
        {
            Ok(_) => {
                tracing::debug!(replicaset = ?rs.metadata.name, deployment = ?d.metadata.name, "pruned old revision")
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn replace(api: &Api<ReplicaSet>, rs: &ReplicaSet) -> anyhow::Result<ReplicaSet> {
    Ok(api
        .replace(
            rs.metadata.name.as_deref().unwrap_or(""),
            &PostParams::default(),
            rs,
        )
        .await?)
}

/// Writes `rs`; a conflict or a missing object is left for the next sync (the watch
/// brings the newer version).
async fn replace_ignoring_conflict(
    api: &Api<ReplicaSet>,
    rs: &ReplicaSet,
) -> anyhow::Result<Option<ReplicaSet>> {
    match api
        .replace(
            rs.metadata.name.as_deref().unwrap_or(""),
            &PostParams::default(),
            rs,
        )
        .await
    {
        Ok(r) => Ok(Some(r)),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
