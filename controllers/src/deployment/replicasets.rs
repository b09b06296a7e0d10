//! The Deployment controller's writes: claiming ReplicaSets (adopt and release), creating
//! the new one (with the collision count on a name clash), scaling, pruning old revisions,
//! and the revision annotation on the Deployment itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use component_base::events::{object_ref, EventType};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};

use super::{
    revision, same_template, selects, spec_replicas, template_hash, DeploymentController, Error,
    DESIRED, HASH_LABEL, MAX_REPLICAS, REVISION,
};
use crate::context::{controller_of, controller_ref, pod_active, Context};

fn rs_error(verb: &'static str, rs: &ReplicaSet) -> impl FnOnce(kube::Error) -> Error {
    let name = rs.metadata.name.clone().unwrap_or_default();
    move |source| Error::ReplicaSet { verb, name, source }
}

impl DeploymentController {
    /// The Deployment's ReplicaSets: those it controls that still match, plus matching orphans
    /// it adopts; controlled ones that stopped matching are released.
    pub(super) async fn claim(
        &self,
        d: &Deployment,
        api: &Api<ReplicaSet>,
    ) -> Result<Vec<Arc<ReplicaSet>>, Error> {
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let deleting = d.metadata.deletion_timestamp.is_some();
        let mut out = Vec::new();
        for rs in self.replicasets.store().state() {
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

    pub(super) fn old_pods_remain(&self, ns: &str, olds: &[Arc<ReplicaSet>]) -> bool {
        let uids: Vec<&str> = olds
            .iter()
            .filter_map(|o| o.metadata.uid.as_deref())
            .collect();
        self.pods.store().state().iter().any(|p| {
            p.metadata.namespace.as_deref() == Some(ns)
                && controller_of(p.as_ref()).is_some_and(|r| uids.contains(&r.uid.as_str()))
                && (pod_active(p) || p.metadata.deletion_timestamp.is_some())
        })
    }
}

/// Keeps the Deployment's own `deployment.kubernetes.io/revision` annotation at its new
/// ReplicaSet's revision, as Kubernetes' controller does: `kubectl rollout undo` replaces
/// the Deployment's annotations with a JSON patch and needs them to exist, and `kubectl
/// rollout history` and users read the current revision there. An update (kube's
/// deployment-controller role may update Deployments, not patch them) guarded by the
/// resourceVersion the decision was made on; a conflict re-queues.
pub(super) async fn sync_revision(
    ctx: &Context,
    d: &Deployment,
    new_rs: &ReplicaSet,
) -> Result<Option<Deployment>, Error> {
    let want = revision(new_rs).to_string();
    let have = d
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION));
    if have == Some(&want) {
        return Ok(None);
    }
    let mut d = d.clone();
    d.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(REVISION.to_string(), want);
    let api: Api<Deployment> = Api::namespaced(
        ctx.client.clone(),
        d.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let updated = api
        .replace(
            d.metadata.name.as_deref().unwrap_or_default(),
            &PostParams::default(),
            &d,
        )
        .await
        .map_err(|source| Error::Revision { source })?;
    Ok(Some(updated))
}

pub(super) async fn create_new_rs(
    ctx: &Context,
    d: &Deployment,
    api: &Api<ReplicaSet>,
    replicas: i32,
    surge: i32,
    revision: i64,
) -> Result<Arc<ReplicaSet>, Error> {
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
        spec.replicas.unwrap_or(1).saturating_add(surge).to_string(),
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
            let existing = api.get_opt(&name).await.map_err(rs_error("reading", &rs))?;
            if let Some(ex) = existing.filter(|r| {
                same_template(r, d)
                    && controller_of(r).is_some_and(|c| Some(&c.uid) == d.metadata.uid.as_ref())
            }) {
                return Ok(Arc::new(ex));
            }
            let mut d2 = d.clone();
            let st = d2.status.get_or_insert_with(Default::default);
            st.collision_count = Some(st.collision_count.unwrap_or(0).saturating_add(1));
            let dapi: Api<Deployment> = Api::namespaced(
                ctx.client.clone(),
                d.metadata.namespace.as_deref().unwrap_or(""),
            );
            dapi.replace_status(
                d.metadata.name.as_deref().unwrap_or(""),
                &PostParams::default(),
                &d2,
            )
            .await
            .map_err(|source| Error::CollisionCount { source })?;
            Err(Error::Collision { name })
        }
        Err(e) => Err(rs_error("creating", &rs)(e)),
    }
}

pub(super) async fn scale(
    ctx: &Context,
    d: &Deployment,
    api: &Api<ReplicaSet>,
    rs: &ReplicaSet,
    to: i32,
    surge: i32,
) -> Result<(), Error> {
    let from = spec_replicas(rs);
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let mut r2 = rs.clone();
    if let Some(s) = r2.spec.as_mut() {
        s.replicas = Some(to);
    }
    let a = r2.metadata.annotations.get_or_insert_with(Default::default);
    a.insert(DESIRED.into(), desired.to_string());
    a.insert(
        MAX_REPLICAS.into(),
        desired.saturating_add(surge).to_string(),
    );
    replace(api, &r2, "scaling").await?;
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
pub(super) async fn cleanup(
    d: &Deployment,
    api: &Api<ReplicaSet>,
    olds: &[Arc<ReplicaSet>],
) -> Result<(), Error> {
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
            Err(e) => return Err(rs_error("pruning", rs)(e)),
        }
    }
    Ok(())
}

pub(super) async fn replace(
    api: &Api<ReplicaSet>,
    rs: &ReplicaSet,
    verb: &'static str,
) -> Result<ReplicaSet, Error> {
    api.replace(
        rs.metadata.name.as_deref().unwrap_or(""),
        &PostParams::default(),
        rs,
    )
    .await
    .map_err(rs_error(verb, rs))
}

/// Writes `rs`; a conflict or a missing object is left for the next sync (the watch
/// brings the newer version).
async fn replace_ignoring_conflict(
    api: &Api<ReplicaSet>,
    rs: &ReplicaSet,
) -> Result<Option<ReplicaSet>, Error> {
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
        Err(e) => Err(rs_error("updating the owner of", rs)(e)),
    }
}
