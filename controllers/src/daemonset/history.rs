//! A DaemonSet's revisions (ControllerRevisions), pure (kube's `pkg/controller/history`
//! and the daemon controller's `snapshot`/`cleanupHistory`): the template's hash names
//! the revision and labels its pods; the revision stores the template as the patch
//! `kubectl rollout undo` applies.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;

use crate::context::controller_ref;

pub const HASH_LABEL: &str = "controller-revision-hash";
pub const GENERATION_LABEL: &str = "pod-template-generation";
/// apps/v1 keeps the template generation in this annotation.
pub const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

/// kube's `rand.SafeEncodeString` alphabet (no vowels, no easily confused characters).
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The hash of the DaemonSet's template (and collision count): FNV-32a over the template's
/// JSON, written in decimal and safe-encoded, as kube's `ComputeHash` shapes it.
pub fn template_hash(ds: &DaemonSet) -> String {
    let template = ds.spec.as_ref().map(|s| &s.template);
    let mut bytes = serde_json::to_vec(&template).unwrap_or_default();
    if let Some(c) = ds.status.as_ref().and_then(|s| s.collision_count) {
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
pub fn patch_of(ds: &DaemonSet) -> serde_json::Value {
    let mut template = ds
        .spec
        .as_ref()
        .and_then(|s| serde_json::to_value(&s.template).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    if let Some(o) = template.as_object_mut() {
        o.insert("$patch".into(), "replace".into());
    }
    serde_json::json!({ "spec": { "template": template } })
}

/// The revision that holds the DaemonSet's current template, if one does (the highest).
pub fn current<'a>(
    ds: &DaemonSet,
    revisions: &[&'a ControllerRevision],
) -> Option<&'a ControllerRevision> {
    let want = patch_of(ds);
    revisions
        .iter()
        .copied()
        .filter(|r| r.data.as_ref().is_some_and(|d| d.0 == want))
        .max_by_key(|r| r.revision)
}

pub fn max_revision(revisions: &[&ControllerRevision]) -> i64 {
    revisions.iter().map(|r| r.revision).max().unwrap_or(0)
}

/// A new revision of the DaemonSet's template numbered `revision`.
pub fn new_revision(ds: &DaemonSet, hash: &str, revision: i64) -> ControllerRevision {
    let mut labels = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.into());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}-{hash}",
                ds.metadata.name.as_deref().unwrap_or("")
            )),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: ds.metadata.annotations.clone(),
            owner_references: Some(vec![controller_ref(ds)]),
            ..Default::default()
        },
        data: Some(RawExtension(patch_of(ds))),
        revision,
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
        .filter(|r| {
            let hash = r
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(HASH_LABEL))
                .cloned()
                .or_else(|| r.metadata.name.clone())
                .unwrap_or_default();
            !live_hashes.contains(&hash)
        })
        .take(excess)
        .collect()
}
