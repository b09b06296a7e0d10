//! A StatefulSet pod's stable identity, pure (kube's `stateful_set_utils.go`): its name
//! `<set>-<ordinal>`, labels (`statefulset.kubernetes.io/pod-name`,
//! `apps.kubernetes.io/pod-index`, the revision), hostname and subdomain, and its claims
//! `<template>-<set>-<ordinal>` mounted in place of same-named template volumes, owned as
//! the claim retention policy says.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::context::controller_ref;
use crate::history::HASH_LABEL;

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

pub fn set_name(sts: &StatefulSet) -> &str {
    sts.metadata.name.as_deref().unwrap_or("")
}

/// The first ordinal (`spec.ordinals.start`, else 0).
pub fn start(sts: &StatefulSet) -> i32 {
    sts.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0)
}

pub fn replicas(sts: &StatefulSet) -> i32 {
    sts.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

pub fn pod_name(sts: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set_name(sts))
}

/// The ordinal in a pod's name if it is one of this set's (`<set>-<digits>`).
pub fn ordinal_of(sts: &StatefulSet, pod: &Pod) -> Option<i32> {
    let name = pod.metadata.name.as_deref()?;
    let digits = name.strip_prefix(set_name(sts))?.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub fn claim_name(template: &str, sts: &StatefulSet, ordinal: i32) -> String {
    format!("{template}-{}-{ordinal}", set_name(sts))
}

fn claim_templates(sts: &StatefulSet) -> &[PersistentVolumeClaim] {
    sts.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or(&[])
}

/// The claims the pod of `ordinal` mounts: each template named for the pod, labelled with
/// the template's labels and the set's matchLabels (which win), owned per `owners`.
pub fn claims(
    sts: &StatefulSet,
    ordinal: i32,
    owners: &[OwnerReference],
) -> Vec<PersistentVolumeClaim> {
    let selector = sts
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    claim_templates(sts)
        .iter()
        .map(|t| {
            let template = t.metadata.name.clone().unwrap_or_default();
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector.clone());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(&template, sts, ordinal)),
                    namespace: sts.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    owner_references: (!owners.is_empty()).then(|| owners.to_vec()),
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// The owners a claim of the pod of `ordinal` should have (kube's retention table):
/// the set while `whenDeleted: Delete` and the pod is in range; the pod once it is scaled
/// away under `whenScaled: Delete`.
pub fn claim_owners(sts: &StatefulSet, pod: Option<&Pod>, in_range: bool) -> Vec<OwnerReference> {
    let policy = sts
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.clone())
        .unwrap_or_default();
    let delete = |p: &Option<String>| p.as_deref() == Some("Delete");
    if !in_range && delete(&policy.when_scaled) {
        return pod.map(|p| vec![controller_ref(p)]).unwrap_or_default();
    }
    if delete(&policy.when_deleted) {
        return vec![controller_ref(sts)];
    }
    vec![]
}

/// The volumes of the set's pods: one per claim template, then the template's volumes
/// that no claim replaces.
fn volumes(sts: &StatefulSet, ordinal: i32, template: &PodTemplateSpec) -> Vec<Volume> {
    let claims = claim_templates(sts);
    let mut out: Vec<Volume> = claims
        .iter()
        .map(|t| {
            let name = t.metadata.name.clone().unwrap_or_default();
            Volume {
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(&name, sts, ordinal),
                    read_only: Some(false),
                }),
                name,
                ..Default::default()
            }
        })
        .collect();
    for v in template
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
    {
        if !claims
            .iter()
            .any(|t| t.metadata.name.as_deref() == Some(v.name.as_str()))
        {
            out.push(v.clone());
        }
    }
    out
}

/// The labels that say who a pod is.
fn identity_labels(sts: &StatefulSet, ordinal: i32) -> BTreeMap<String, String> {
    [
        (POD_NAME_LABEL.to_string(), pod_name(sts, ordinal)),
        (POD_INDEX_LABEL.to_string(), ordinal.to_string()),
    ]
    .into()
}

/// A new pod of `ordinal` from `template` (the revision `revision` holds).
pub fn new_pod(sts: &StatefulSet, ordinal: i32, template: &PodTemplateSpec, revision: &str) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.extend(identity_labels(sts, ordinal));
    labels.insert(HASH_LABEL.into(), revision.into());
    let mut spec = template.spec.clone().unwrap_or_default();
    let name = pod_name(sts, ordinal);
    spec.hostname = Some(name.clone());
    if let Some(svc) = sts
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty())
    {
        spec.subdomain = Some(svc);
    }
    let vols = volumes(sts, ordinal, template);
    spec.volumes = (!vols.is_empty()).then_some(vols);
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: sts.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(sts)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Whether the pod carries its identity labels (kube's `identityMatches`; its volumes
/// cannot change once it exists); if not, the labels to merge in.
pub fn identity_fix(
    sts: &StatefulSet,
    ordinal: i32,
    pod: &Pod,
) -> Option<BTreeMap<String, String>> {
    let want = identity_labels(sts, ordinal);
    let have = pod.metadata.labels.clone().unwrap_or_default();
    let labels_ok = want.iter().all(|(k, v)| have.get(k) == Some(v));
    (!labels_ok).then_some(want)
}

/// The revision a pod was made from.
pub fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(HASH_LABEL)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sts(extra: serde_json::Value) -> StatefulSet {
        let mut v = json!({
            "metadata": {"name": "web", "namespace": "d", "uid": "u1"},
            "spec": {"serviceName": "nginx", "selector": {"matchLabels": {"app": "w"}},
                "template": {"metadata": {"labels": {"app": "w", "tier": "t"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}],
                             "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "emptyDir": {}}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {"app": "x", "k": "v"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}
        });
        for (k, val) in extra.as_object().unwrap() {
            v["spec"][k] = val.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_pod_knows_who_it_is() {
        let s = sts(json!({}));
        let t = s.spec.as_ref().unwrap().template.clone();
        let p = new_pod(&s, 2, &t, "web-abc");
        assert_eq!(p.metadata.name.as_deref(), Some("web-2"));
        let l = p.metadata.labels.as_ref().unwrap();
        assert_eq!(l[POD_NAME_LABEL], "web-2");
        assert_eq!(l[POD_INDEX_LABEL], "2");
        assert_eq!(l[HASH_LABEL], "web-abc");
        assert_eq!(l["tier"], "t");
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let vols = spec.volumes.as_ref().unwrap();
        assert_eq!(vols.len(), 2, "the claim replaces the same-named volume");
        assert_eq!(
            vols[0].persistent_volume_claim.as_ref().unwrap().claim_name,
            "data-web-2"
        );
        assert_eq!(vols[1].name, "cfg");
        assert_eq!(ordinal_of(&s, &p), Some(2));
        assert!(identity_fix(&s, 2, &p).is_none());
        let mut other = p.clone();
        other.metadata.name = Some("web-x".into());
        assert_eq!(ordinal_of(&s, &other), None);
        other.metadata.name = Some("webby-1".into());
        assert_eq!(ordinal_of(&s, &other), None);
    }

    #[test]
    fn claims_and_their_owners() {
        let s = sts(json!({}));
        let c = claims(&s, 0, &[]);
        assert_eq!(c[0].metadata.name.as_deref(), Some("data-web-0"));
        let labels = c[0].metadata.labels.as_ref().unwrap();
        assert_eq!((labels["app"].as_str(), labels["k"].as_str()), ("w", "v"));
        assert!(claim_owners(&s, None, true).is_empty(), "Retain/Retain");
        let s = sts(json!({"persistentVolumeClaimRetentionPolicy":
            {"whenDeleted": "Delete", "whenScaled": "Delete"}}));
        let pod = new_pod(&s, 3, &s.spec.as_ref().unwrap().template, "r");
        let mut pod = pod;
        pod.metadata.uid = Some("p3".into());
        assert_eq!(claim_owners(&s, Some(&pod), true)[0].kind, "StatefulSet");
        let o = claim_owners(&s, Some(&pod), false);
        assert_eq!((o[0].kind.as_str(), o[0].uid.as_str()), ("Pod", "p3"));
    }
}
