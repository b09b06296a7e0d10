//! Storage object in-use protection, as kube's `pvcprotection` and `pvprotection`
//! controllers: the apiserver's StorageObjectInUseProtection admission gives every new
//! claim and volume a finalizer; these controllers add it to older objects that lack it
//! and remove it from a deleted object once nothing uses it, so that deleting a claim a
//! running pod mounts, or a volume still bound to a claim, waits instead of pulling the
//! storage from under the application. Pure decisions here; `pvc.rs` and `pv.rs` carry
//! them out.

pub mod pv;
pub mod pvc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, PostParams};

pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// What to do with an object's protection finalizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Add,
    /// Deleted and carrying the finalizer: remove it unless the object is in use.
    RemoveIfUnused,
    Nothing,
}

pub fn decide<K: kube::Resource>(obj: &K, finalizer: &str) -> Decision {
    let m = obj.meta();
    let has = m.finalizers.iter().flatten().any(|f| f == finalizer);
    match (m.deletion_timestamp.is_some(), has) {
        (false, false) => Decision::Add,
        (true, true) => Decision::RemoveIfUnused,
        _ => Decision::Nothing,
    }
}

/// The claims a pod's volumes name: `persistentVolumeClaim` volumes, and generic
/// ephemeral volumes (`<pod>-<volume>`).
pub fn claims_of(pod: &Pod) -> impl Iterator<Item = String> + '_ {
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(move |v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some(c.claim_name.clone())
            } else {
                v.ephemeral
                    .as_ref()
                    .map(|_| format!("{pod_name}-{}", v.name))
            }
        })
}

/// Whether `pod` uses `claim` (kube's `podUsesPVC`): it has been scheduled (an
/// unscheduled pod cannot start on a claim being deleted: the scheduler and the agent
/// refuse it) and names the claim in a `persistentVolumeClaim` volume, whatever its phase;
/// or, while it has not finished, in a generic ephemeral volume whose claim it controls.
pub fn pod_uses(pod: &Pod, claim: &PersistentVolumeClaim) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let scheduled = spec.node_name.as_deref().is_some_and(|n| !n.is_empty());
    let Some(name) = claim.metadata.name.as_deref() else {
        return false;
    };
    if !scheduled || pod.metadata.namespace != claim.metadata.namespace {
        return false;
    }
    let finished = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    let controlled_by_pod = crate::context::controller_of(claim)
        .is_some_and(|r| Some(r.uid.as_str()) == pod.metadata.uid.as_deref());
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    spec.volumes.iter().flatten().any(|v| {
        if let Some(c) = &v.persistent_volume_claim {
            c.claim_name == name
        } else {
            v.ephemeral.is_some()
                && !finished
                && controlled_by_pod
                && format!("{pod_name}-{}", v.name) == name
        }
    })
}

/// Whether a volume is in use (kube's `isVolumeUsed`): bound to a claim.
pub fn volume_used(pv: &PersistentVolume) -> bool {
    pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
}

/// The object with `finalizer` added (`add`) or removed, written by an update guarded by
/// its resourceVersion (kube's roles for these controllers may update, not patch).
/// `Ok(false)` when it changed or went meanwhile: the watch brings it again.
pub async fn set_finalizer<K>(
    api: &Api<K>,
    obj: &K,
    finalizer: &str,
    add: bool,
) -> Result<bool, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let mut updated = obj.clone();
    let fins = updated.meta_mut().finalizers.get_or_insert_with(Vec::new);
    if add {
        fins.push(finalizer.to_string());
    } else {
        fins.retain(|f| f != finalizer);
    }
    let name = obj.meta().name.clone().unwrap_or_default();
    match api.replace(&name, &PostParams::default(), &updated).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn claim(deleting: bool, fins: &[&str]) -> PersistentVolumeClaim {
        let mut c: PersistentVolumeClaim = serde_json::from_value(
            json!({"metadata": {"name": "data", "namespace": "ns", "finalizers": fins}}),
        )
        .unwrap();
        if deleting {
            c.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        }
        c
    }

    fn pod(node: Option<&str>, volumes: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "ns"},
            "spec": {"nodeName": node, "containers": [], "volumes": volumes}
        }))
        .unwrap()
    }

    #[test]
    fn the_finalizer_is_added_to_live_objects_and_removed_from_deleted_ones() {
        assert_eq!(decide(&claim(false, &[]), PVC_PROTECTION), Decision::Add);
        assert_eq!(
            decide(&claim(false, &[PVC_PROTECTION]), PVC_PROTECTION),
            Decision::Nothing
        );
        assert_eq!(
            decide(&claim(true, &[PVC_PROTECTION]), PVC_PROTECTION),
            Decision::RemoveIfUnused
        );
        assert_eq!(
            decide(&claim(true, &["other"]), PVC_PROTECTION),
            Decision::Nothing,
            "a deleted object never gets it back"
        );
    }

    fn named_again() -> serde_json::Value {
        json!([{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}])
    }

    #[test]
    fn a_scheduled_pod_naming_the_claim_uses_it() {
        let c = claim(true, &[PVC_PROTECTION]);
        let named = json!([{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]);
        assert!(pod_uses(&pod(Some("n1"), named.clone()), &c));
        assert!(!pod_uses(&pod(None, named), &c), "not yet scheduled");
        let other = json!([{"name": "d", "persistentVolumeClaim": {"claimName": "logs"}}]);
        assert!(!pod_uses(&pod(Some("n1"), other), &c));
        let mut eph = claim(true, &[PVC_PROTECTION]);
        eph.metadata.name = Some("web-0-scratch".into());
        let ephemeral =
            json!([{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]);
        let mut owner = pod(Some("n1"), ephemeral);
        owner.metadata.uid = Some("pod-uid".into());
        assert!(
            !pod_uses(&owner, &eph),
            "an ephemeral claim the pod does not control"
        );
        eph.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                uid: "pod-uid".into(),
                controller: Some(true),
                ..Default::default()
            },
        ]);
        assert!(pod_uses(&owner, &eph));
        owner.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        assert!(
            !pod_uses(&owner, &eph),
            "a finished pod is done with its ephemeral claim"
        );
        let mut done = pod(Some("n1"), named_again());
        done.status = owner.status.clone();
        assert!(
            pod_uses(&done, &c),
            "a finished pod still holds a named claim (as kube)"
        );
        let mut elsewhere = pod(
            Some("n1"),
            json!([{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]),
        );
        elsewhere.metadata.namespace = Some("other".into());
        assert!(!pod_uses(&elsewhere, &c));
    }

    #[test]
    fn a_bound_volume_is_used() {
        let pv = |phase: &str| -> PersistentVolume {
            serde_json::from_value(json!({"metadata": {"name": "v"}, "status": {"phase": phase}}))
                .unwrap()
        };
        assert!(volume_used(&pv("Bound")));
        assert!(!volume_used(&pv("Released")));
        assert!(!volume_used(&pv("Available")));
    }
}
