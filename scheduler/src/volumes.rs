//! What the scheduler knows of storage (kube's VolumeBinding plugin, reduced to what
//! local volumes need): the claims, volumes and classes it watches, and for a pod the
//! node constraints its claims bring. A bound claim ties the pod to the nodes its
//! volume's node affinity allows; an unbound claim of a `WaitForFirstConsumer` class is
//! bound after the node is chosen (the scheduler writes `volume.kubernetes.io/selected-node`
//! on it before binding the pod); an unbound claim of any other class keeps the pod
//! pending until the volume binder binds it. Pure.

use std::collections::HashMap;
use std::sync::Arc;

use flotilla_core::labels::{node_term, Labels};
use k8s_openapi::api::core::v1::{NodeSelector, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;

pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

pub const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
pub const NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";

#[derive(Default)]
pub struct Storage {
    claims: HashMap<(String, String), Arc<PersistentVolumeClaim>>,
    volumes: HashMap<String, Arc<PersistentVolume>>,
    classes: HashMap<String, Arc<StorageClass>>,
}

fn name_of(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    m.name.clone().unwrap_or_default()
}

impl Storage {
    pub fn set_claim(&mut self, c: PersistentVolumeClaim) {
        let k = (
            c.metadata.namespace.clone().unwrap_or_default(),
            name_of(&c.metadata),
        );
        self.claims.insert(k, Arc::new(c));
    }
    pub fn remove_claim(&mut self, c: &PersistentVolumeClaim) {
        self.claims.remove(&(
            c.metadata.namespace.clone().unwrap_or_default(),
            name_of(&c.metadata),
        ));
    }
    pub fn set_volume(&mut self, v: PersistentVolume) {
        self.volumes.insert(name_of(&v.metadata), Arc::new(v));
    }
    pub fn remove_volume(&mut self, v: &PersistentVolume) {
        self.volumes.remove(&name_of(&v.metadata));
    }
    pub fn set_class(&mut self, c: StorageClass) {
        self.classes.insert(name_of(&c.metadata), Arc::new(c));
    }
    pub fn remove_class(&mut self, c: &StorageClass) {
        self.classes.remove(&name_of(&c.metadata));
    }
}

/// What a pod's claims ask of a node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodVolumes {
    /// The node affinity of each bound volume; a node must satisfy all of them.
    pub affinities: Vec<NodeSelector>,
    /// Unbound delayed claims: (name, the node already selected for it, if any).
    pub delayed: Vec<(String, Option<String>)>,
}

/// The pod's claim names.
pub fn claims_of(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .collect()
}

/// kube's PreFilter: what the pod's claims ask, or why no node can take it now.
pub fn pod_volumes(pod: &Pod, s: &Storage) -> Result<PodVolumes, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut out = PodVolumes::default();
    for name in claims_of(pod) {
        let Some(c) = s.claims.get(&(ns.clone(), name.clone())) else {
            return Err(format!("persistentvolumeclaim \"{name}\" not found"));
        };
        if c.metadata.deletion_timestamp.is_some() {
            return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
        }
        let spec = c.spec.clone().unwrap_or_default();
        match spec.volume_name.filter(|v| !v.is_empty()) {
            Some(v) => {
                let Some(pv) = s.volumes.get(&v) else {
                    return Err(format!(
                        "persistentvolumeclaim \"{name}\" bound to non-existent persistentvolume \"{v}\""
                    ));
                };
                if let Some(r) = pv
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_affinity.as_ref())
                    .and_then(|a| a.required.clone())
                {
                    out.affinities.push(r);
                }
            }
            None => {
                let class = spec.storage_class_name.unwrap_or_default();
                let delayed = s.classes.get(&class).is_some_and(|c| {
                    c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
                });
                if !delayed {
                    return Err(UNBOUND_IMMEDIATE.into());
                }
                let selected = c
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(SELECTED_NODE))
                    .filter(|n| !n.is_empty())
                    .cloned();
                out.delayed.push((name, selected));
            }
        }
    }
    Ok(out)
}

/// kube's Filter: the node satisfies every bound volume's affinity, and no delayed claim
/// was already promised to another node.
pub fn fits(v: &PodVolumes, node: &str, labels: &Labels) -> Result<(), &'static str> {
    for a in &v.affinities {
        if !a
            .node_selector_terms
            .iter()
            .any(|t| node_term(t, node, labels))
        {
            return Err(NODE_CONFLICT);
        }
    }
    if v.delayed
        .iter()
        .any(|(_, sel)| sel.as_deref().is_some_and(|n| n != node))
    {
        return Err(BIND_CONFLICT);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn storage() -> Storage {
        let mut s = Storage::default();
        s.set_class(
            serde_json::from_value(json!({"metadata": {"name": "local-path"},
            "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"}))
            .unwrap(),
        );
        s.set_class(
            serde_json::from_value(json!({"metadata": {"name": "now"},
            "provisioner": "x.io/p", "volumeBindingMode": "Immediate"}))
            .unwrap(),
        );
        s.set_volume(
            serde_json::from_value(json!({"metadata": {"name": "pv-a"},
            "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions":
                [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["a"]}]}]}}}}))
            .unwrap(),
        );
        for (name, class, volume) in [
            ("bound", "local-path", "pv-a"),
            ("wait", "local-path", ""),
            ("imm", "now", ""),
        ] {
            s.set_claim(
                serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d"},
                "spec": {"storageClassName": class, "volumeName": volume}}))
                .unwrap(),
            );
        }
        s
    }

    fn pod(claims: &[&str]) -> Pod {
        let vols: Vec<_> = claims
            .iter()
            .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "d"},
            "spec": {"containers": [], "volumes": vols}}))
        .unwrap()
    }

    fn host(n: &str) -> Labels {
        [("kubernetes.io/hostname".to_string(), n.to_string())].into()
    }

    #[test]
    fn bound_volumes_pin_the_pod_and_delayed_ones_wait_for_the_node() {
        let s = storage();
        let v = pod_volumes(&pod(&["bound", "wait"]), &s).unwrap();
        assert_eq!(v.delayed, [("wait".to_string(), None)]);
        assert_eq!(fits(&v, "a", &host("a")), Ok(()));
        assert_eq!(fits(&v, "b", &host("b")), Err(NODE_CONFLICT));
        let v = pod_volumes(&pod(&["wait"]), &s).unwrap();
        assert_eq!(fits(&v, "b", &host("b")), Ok(()));
    }

    #[test]
    fn unbound_immediate_and_missing_claims_keep_the_pod_pending() {
        let s = storage();
        assert_eq!(
            pod_volumes(&pod(&["imm"]), &s),
            Err(UNBOUND_IMMEDIATE.to_string())
        );
        assert_eq!(
            pod_volumes(&pod(&["nope"]), &s),
            Err("persistentvolumeclaim \"nope\" not found".to_string())
        );
        let mut s = s;
        s.set_claim(
            serde_json::from_value(json!({"metadata": {"name": "lost", "namespace": "d"},
            "spec": {"volumeName": "pv-gone"}}))
            .unwrap(),
        );
        assert!(pod_volumes(&pod(&["lost"]), &s)
            .unwrap_err()
            .contains("non-existent persistentvolume"));
    }

    #[test]
    fn a_claim_promised_to_a_node_keeps_to_it() {
        let mut s = storage();
        s.set_claim(
            serde_json::from_value(json!({"metadata": {"name": "wait", "namespace": "d",
            "annotations": {SELECTED_NODE: "a"}}, "spec": {"storageClassName": "local-path"}}))
            .unwrap(),
        );
        let v = pod_volumes(&pod(&["wait"]), &s).unwrap();
        assert_eq!(fits(&v, "a", &host("a")), Ok(()));
        assert_eq!(fits(&v, "b", &host("b")), Err(BIND_CONFLICT));
    }
}
