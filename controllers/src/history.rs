//! Controllers' revisions (ControllerRevisions), pure (kube's `pkg/controller/history`):
//! the pod template's hash names a revision `<owner>-<hash>`, which stores the template as
//! the patch `kubectl rollout undo` applies; old revisions beyond the history limit go.
//! Shared by the DaemonSet and StatefulSet controllers through [`Revisioned`]; [`ensure`]
//! finds or makes the revision of the current template.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::context::controller_ref;

pub const HASH_LABEL: &str = "controller-revision-hash";

/// A controller whose pod template has revisions.
pub trait Revisioned: kube::Resource<DynamicType = ()> + Send + Sync {
    fn template(&self) -> Option<&PodTemplateSpec>;
    fn collision_count(&self) -> Option<i32>;
}

impl Revisioned for DaemonSet {
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
    fn collision_count(&self) -> Option<i32> {
        self.status.as_ref().and_then(|s| s.collision_count)
    }
}

impl Revisioned for StatefulSet {
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
    fn collision_count(&self) -> Option<i32> {
        self.status.as_ref().and_then(|s| s.collision_count)
    }
}

/// kube's `rand.SafeEncodeString` alphabet (no vowels, no easily confused characters).
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The hash of the owner's template and a collision count: FNV-32a over the template's
/// JSON, written in decimal and safe-encoded, as kube's `ComputeHash` shapes it.
pub fn template_hash<T: Revisioned>(owner: &T, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(&owner.template()).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(&c.to_le_bytes());
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.to_string()
        .bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// What a revision stores: `{"spec":{"template":{"$patch":"replace", ...}}}`.
pub fn patch_of<T: Revisioned>(owner: &T) -> serde_json::Value {
    let mut template = owner
        .template()
        .and_then(|t| serde_json::to_value(t).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    if let Some(o) = template.as_object_mut() {
        o.insert("$patch".into(), "replace".into());
    }
    serde_json::json!({ "spec": { "template": template } })
}

/// The revision that holds the owner's current template, if one does (the highest).
pub fn current<'a, T: Revisioned>(
    owner: &T,
    revisions: &[&'a ControllerRevision],
) -> Option<&'a ControllerRevision> {
    let want = patch_of(owner);
    revisions
        .iter()
        .copied()
        .filter(|r| r.data.as_ref().is_some_and(|d| d.0 == want))
        .max_by_key(|r| r.revision)
}

pub fn max_revision(revisions: &[&ControllerRevision]) -> i64 {
    revisions.iter().map(|r| r.revision).max().unwrap_or(0)
}

/// A new revision of the owner's template numbered `revision`.
pub fn new_revision<T: Revisioned>(owner: &T, hash: &str, revision: i64) -> ControllerRevision {
    let meta = owner.meta();
    let mut labels = owner
        .template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.into());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(owner, hash)),
            namespace: meta.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations.clone(),
            owner_references: Some(vec![controller_ref(owner)]),
            ..Default::default()
        },
        data: Some(RawExtension(patch_of(owner))),
        revision,
    }
}

/// `<owner>-<hash>`.
pub fn revision_name<T: Revisioned>(owner: &T, hash: &str) -> String {
    format!("{}-{hash}", owner.meta().name.as_deref().unwrap_or(""))
}

/// The revision's hash: its label, else its name.
pub fn hash_of(r: &ControllerRevision) -> String {
    r.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HASH_LABEL))
        .cloned()
        .or_else(|| r.metadata.name.clone())
        .unwrap_or_default()
}

/// Why [`ensure`] failed: the revision it wrote and the API's error.
#[derive(Debug)]
pub struct EnsureError {
    pub name: String,
    pub source: kube::Error,
}

/// How many times [`ensure`] tries another collision count before it gives up.
const MAX_COLLISIONS: i32 = 10;

/// What [`ensure`] found or made.
#[derive(Debug, Clone, PartialEq)]
pub struct Ensured {
    /// The hash of the revision holding the owner's current template.
    pub hash: String,
    /// The owner's collision count, raised when the name the template hashes to is taken
    /// by a revision of another template (kube's `status.collisionCount`).
    pub collision_count: Option<i32>,
}

/// The revision holding the owner's current template: an existing one (renumbered to be
/// the newest if an undo brought it back), else a new one. A new revision whose name is
/// taken by a different template is made again under the next collision count, as kube's
/// `CreateControllerRevision` does; the owner's status must then carry that count.
pub async fn ensure<T: Revisioned>(
    api: &Api<ControllerRevision>,
    owner: &T,
    revs: &[&ControllerRevision],
) -> Result<Ensured, EnsureError> {
    let max = max_revision(revs);
    let mut collision_count = owner.collision_count();
    if let Some(cur) = current(owner, revs) {
        let name = cur.metadata.name.clone().unwrap_or_default();
        if cur.revision < max {
            let patch = serde_json::json!({ "revision": max.saturating_add(1) });
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|source| EnsureError {
                    name: name.clone(),
                    source,
                })?;
        }
        return Ok(Ensured {
            hash: hash_of(cur),
            collision_count,
        });
    }
    let mut attempts = 0;
    loop {
        attempts += 1;
        let hash = template_hash(owner, collision_count);
        let rev = new_revision(owner, &hash, max.saturating_add(1));
        let name = rev.metadata.name.clone().unwrap_or_default();
        let taken = match api.create(&PostParams::default(), &rev).await {
            Ok(_) => false,
            // Made by a sync whose write the cache does not show yet, or another template
            // with the same hash.
            Err(kube::Error::Api(e)) if e.code == 409 => match api.get_opt(&name).await {
                Ok(Some(existing)) if existing.data == rev.data => false,
                Ok(_) if attempts <= MAX_COLLISIONS => true,
                Ok(_) => {
                    return Err(EnsureError {
                        name,
                        source: kube::Error::Api(e),
                    })
                }
                Err(source) => return Err(EnsureError { name, source }),
            },
            Err(source) => return Err(EnsureError { name, source }),
        };
        if !taken {
            return Ok(Ensured {
                hash,
                collision_count,
            });
        }
        collision_count = Some(collision_count.unwrap_or(0).saturating_add(1));
    }
}

/// Old revisions to delete: beyond `limit`, oldest first, never one whose hash a pod
/// still carries.
pub fn to_clean<'a>(
    revisions: &[&'a ControllerRevision],
    current: &str,
    live_hashes: &BTreeSet<String>,
    limit: i32,
) -> Vec<&'a ControllerRevision> {
    let mut old: Vec<&ControllerRevision> = revisions
        .iter()
        .copied()
        .filter(|r| r.metadata.name.as_deref() != Some(current))
        .collect();
    let excess = old
        .len()
        .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
    old.sort_by_key(|r| r.revision);
    old.into_iter()
        .filter(|r| !live_hashes.contains(&hash_of(r)))
        .take(excess)
        .collect()
}
