//! The local-path provisioner's decisions, pure (after rancher's local-path-provisioner,
//! which k3s ships): which claims it provisions, the volume it makes for one (a directory
//! `<root>/pvc-<uid>_<namespace>_<claim>` on the node the scheduler chose, as a hostPath
//! of type DirectoryOrCreate that the node's agent makes when it mounts it, pinned there
//! by node affinity and pre-bound to the claim), which volumes it deletes, and the helper
//! pod that removes a deleted volume's directory on its node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    Container, EnvVar, HostPathVolumeSource, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec, Pod, PodSpec, Toleration, Volume, VolumeMount, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::volumebinder::plan::{PROVISIONED_BY, SELECTED_NODE, STORAGE_PROVISIONER};

/// `--local-path-root` and `--local-path-helper-image`.
#[derive(Debug, Clone)]
pub struct Config {
    pub root: PathBuf,
    pub helper_image: String,
}

pub const PROVISIONER: &str = "rancher.io/local-path";
pub const CLASS: &str = "local-path";
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// Where helper pods run.
pub const HELPER_NAMESPACE: &str = "kube-system";

/// The `local-path` StorageClass, the cluster's default as in k3s.
pub fn default_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(CLASS.into()),
            annotations: Some(
                [(
                    "storageclass.kubernetes.io/is-default-class".to_string(),
                    "true".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        ..Default::default()
    }
}

/// The volume a claim gets: `pvc-<claim uid>`.
pub fn volume_name(c: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", c.metadata.uid.as_deref().unwrap_or(""))
}

/// Whether the claim waits for this provisioner: unbound, not being deleted, and
/// annotated for it by the binder (who waited for the scheduler's node under
/// WaitForFirstConsumer).
pub fn wants(c: &PersistentVolumeClaim) -> bool {
    let a = c.metadata.annotations.clone().unwrap_or_default();
    c.metadata.deletion_timestamp.is_none()
        && c.spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .is_none_or(str::is_empty)
        && a.get(STORAGE_PROVISIONER).map(String::as_str) == Some(PROVISIONER)
}

/// The volume for `c` on `node` (whose `kubernetes.io/hostname` label is `hostname`), or
/// why this provisioner refuses it (rancher's messages).
pub fn provision(
    c: &PersistentVolumeClaim,
    class: &StorageClass,
    node: Option<(&str, &str)>,
    root: &Path,
) -> Result<PersistentVolume, String> {
    let spec = c.spec.clone().unwrap_or_default();
    if spec.selector.is_some() {
        return Err("claim.Spec.Selector is not supported".into());
    }
    let modes = spec.access_modes.clone().unwrap_or_default();
    if modes
        .iter()
        .any(|m| m != "ReadWriteOnce" && m != "ReadWriteOncePod")
    {
        return Err(
            "NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes".into(),
        );
    }
    let Some((node, hostname)) = node else {
        return Err("configuration error, no node was specified".into());
    };
    let name = volume_name(c);
    let ns = c.metadata.namespace.clone().unwrap_or_default();
    let claim = c.metadata.name.clone().unwrap_or_default();
    let path = root.join(format!("{name}_{ns}_{claim}"));
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned();
    Ok(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name),
            annotations: Some(
                [
                    (PROVISIONED_BY.to_string(), PROVISIONER.to_string()),
                    (
                        "local.path.provisioner/selected-node".to_string(),
                        node.to_string(),
                    ),
                ]
                .into(),
            ),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: Some(modes),
            capacity: storage.map(|q| BTreeMap::from([("storage".to_string(), q)])),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: class.metadata.name.clone(),
            volume_mode: Some("Filesystem".into()),
            host_path: Some(HostPathVolumeSource {
                path: path.to_string_lossy().into_owned(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![hostname.to_string()]),
                        }]),
                        ..Default::default()
                    }],
                }),
            }),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(ns),
                name: Some(claim),
                uid: c.metadata.uid.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    })
}

/// The node a claim was promised to.
pub fn selected_node(c: &PersistentVolumeClaim) -> Option<String> {
    c.metadata
        .annotations
        .as_ref()?
        .get(SELECTED_NODE)
        .filter(|n| !n.is_empty())
        .cloned()
}

/// A volume of ours to delete: Released, reclaim policy Delete, not being deleted. Its
/// directory and node (the first value of its hostname affinity).
pub fn to_delete(v: &PersistentVolume) -> Option<(PathBuf, String)> {
    let a = v.metadata.annotations.clone().unwrap_or_default();
    let spec = v.spec.as_ref()?;
    let ours = a.get(PROVISIONED_BY).map(String::as_str) == Some(PROVISIONER);
    let released = v.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let delete = spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete");
    if !(ours && released && delete) || v.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let path = PathBuf::from(&spec.host_path.as_ref()?.path);
    let node = a
        .get("local.path.provisioner/selected-node")
        .cloned()
        .or_else(|| {
            spec.node_affinity
                .as_ref()?
                .required
                .as_ref()?
                .node_selector_terms
                .first()?
                .match_expressions
                .as_ref()?
                .first()?
                .values
                .as_ref()?
                .first()
                .cloned()
        })?;
    Some((path, node))
}

pub fn helper_name(volume: &str) -> String {
    let mut n = format!("helper-pod-delete-{volume}");
    n.truncate(128);
    n
}

/// The pod that removes `dir` on `node`: the parent directory mounted at the same path,
/// `rm -rf` of the volume's directory (rancher's teardown).
pub fn helper_pod(volume: &str, dir: &Path, node: &str, image: &str) -> Pod {
    let parent = dir
        .parent()
        .unwrap_or(Path::new("/"))
        .to_string_lossy()
        .into_owned();
    Pod {
        metadata: ObjectMeta {
            name: Some(helper_name(volume)),
            namespace: Some(HELPER_NAMESPACE.into()),
            labels: Some([("app".to_string(), "local-path-helper".to_string())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            restart_policy: Some("Never".into()),
            tolerations: Some(vec![Toleration {
                operator: Some("Exists".into()),
                ..Default::default()
            }]),
            volumes: Some(vec![Volume {
                name: "data".into(),
                host_path: Some(HostPathVolumeSource {
                    path: parent.clone(),
                    type_: Some("DirectoryOrCreate".into()),
                }),
                ..Default::default()
            }]),
            containers: vec![Container {
                name: "helper-pod".into(),
                image: Some(image.into()),
                command: Some(vec!["sh".into(), "-c".into(), "rm -rf \"$VOL_DIR\"".into()]),
                env: Some(vec![EnvVar {
                    name: "VOL_DIR".into(),
                    value: Some(dir.to_string_lossy().into_owned()),
                    ..Default::default()
                }]),
                volume_mounts: Some(vec![VolumeMount {
                    name: "data".into(),
                    mount_path: parent,
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut v = json!({
            "metadata": {"name": "data-web-0", "namespace": "d", "uid": "u1",
                "annotations": {STORAGE_PROVISIONER: PROVISIONER, SELECTED_NODE: "node-a"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                     "resources": {"requests": {"storage": "1Gi"}}}
        });
        for (k, val) in extra.as_object().unwrap() {
            v["spec"][k] = val.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_volume_on_the_chosen_node_prebound_to_the_claim() {
        let c = claim(json!({}));
        assert!(wants(&c));
        assert_eq!(selected_node(&c).as_deref(), Some("node-a"));
        let v = provision(
            &c,
            &default_class(),
            Some(("node-a", "node-a")),
            Path::new("/srv/lp"),
        )
        .unwrap();
        assert_eq!(v.metadata.name.as_deref(), Some("pvc-u1"));
        let spec = v.spec.as_ref().unwrap();
        assert_eq!(
            spec.host_path.as_ref().unwrap().path,
            "/srv/lp/pvc-u1_d_data-web-0"
        );
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        assert_eq!(spec.claim_ref.as_ref().unwrap().uid.as_deref(), Some("u1"));
        assert_eq!(spec.capacity.as_ref().unwrap()["storage"].0, "1Gi");
        // Released with reclaim Delete: removed on its node.
        let mut gone = v.clone();
        gone.status = Some(serde_json::from_value(json!({"phase": "Released"})).unwrap());
        assert_eq!(
            to_delete(&gone),
            Some((
                PathBuf::from("/srv/lp/pvc-u1_d_data-web-0"),
                "node-a".to_string()
            ))
        );
        let p = helper_pod("pvc-u1", &to_delete(&gone).unwrap().0, "node-a", "busybox");
        assert_eq!(
            p.spec.as_ref().unwrap().node_name.as_deref(),
            Some("node-a")
        );
        assert_eq!(
            p.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0]
                .host_path
                .as_ref()
                .unwrap()
                .path,
            "/srv/lp"
        );
    }

    #[test]
    fn rancher_refusals() {
        let e = |c: PersistentVolumeClaim, node| {
            provision(&c, &default_class(), node, Path::new("/r")).unwrap_err()
        };
        assert_eq!(
            e(
                claim(json!({"selector": {"matchLabels": {"a": "b"}}})),
                Some(("n", "n"))
            ),
            "claim.Spec.Selector is not supported"
        );
        assert!(e(
            claim(json!({"accessModes": ["ReadWriteMany"]})),
            Some(("n", "n"))
        )
        .starts_with("NodePath only supports"));
        assert_eq!(
            e(claim(json!({})), None),
            "configuration error, no node was specified"
        );
        let mut bound = claim(json!({"volumeName": "pvc-u1"}));
        assert!(!wants(&bound));
        bound.spec.as_mut().unwrap().volume_name = None;
        bound
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove(STORAGE_PROVISIONER);
        assert!(!wants(&bound));
    }
}
