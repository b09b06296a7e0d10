//! Kubernetes' patch strategies for the built-in types (the `patchStrategy` and
//! `patchMergeKey` tags of k8s.io/api, and the list keys server-side apply uses), and the
//! [`PatchSchema`] that finds a field's type through the kinds' OpenAPI schemas.
//!
//! Lists without an entry here are replaced by a strategic merge patch and atomic for
//! server-side apply; maps merge key by key.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::fieldset::{ApplySchema, Child, ListKind};
use super::strategic::{FieldMeta, PatchSchema};

/// One field's strategy.
#[derive(Debug, Clone, Copy)]
pub struct Strategy {
    pub ty: &'static str,
    pub field: &'static str,
    /// `merge`, `merge,retainKeys`, `retainKeys` or `replace`.
    pub strategy: &'static str,
    /// The strategic-merge key; empty for a list of scalars merged by value.
    pub merge_key: &'static str,
    /// Server-side apply's keys of an associative list, when more than the merge key.
    pub list_keys: &'static [&'static str],
}

const fn s(
    ty: &'static str,
    field: &'static str,
    strategy: &'static str,
    merge_key: &'static str,
) -> Strategy {
    Strategy {
        ty,
        field,
        strategy,
        merge_key,
        list_keys: &[],
    }
}

const fn keys(base: Strategy, list_keys: &'static [&'static str]) -> Strategy {
    Strategy { list_keys, ..base }
}

/// The table, from k8s.io/api's struct tags (the kinds served here and what they contain).
pub static STRATEGIES: &[Strategy] = &[
    s(
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        "merge,retainKeys",
        "name",
    ),
    s(
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        "merge",
        "name",
    ),
    s("io.k8s.api.core.v1.PodSpec", "containers", "merge", "name"),
    s(
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        "merge",
        "name",
    ),
    s(
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        "merge",
        "name",
    ),
    s("io.k8s.api.core.v1.PodSpec", "hostAliases", "merge", "ip"),
    keys(
        s(
            "io.k8s.api.core.v1.PodSpec",
            "topologySpreadConstraints",
            "merge",
            "topologyKey",
        ),
        &["topologyKey", "whenUnsatisfiable"],
    ),
    s(
        "io.k8s.api.core.v1.PodSpec",
        "schedulingGates",
        "merge",
        "name",
    ),
    s(
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        "merge,retainKeys",
        "name",
    ),
    keys(
        s(
            "io.k8s.api.core.v1.Container",
            "ports",
            "merge",
            "containerPort",
        ),
        &["containerPort", "protocol"],
    ),
    s("io.k8s.api.core.v1.Container", "env", "merge", "name"),
    s(
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        "merge",
        "mountPath",
    ),
    s(
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        "merge",
        "devicePath",
    ),
    keys(
        s(
            "io.k8s.api.core.v1.EphemeralContainer",
            "ports",
            "merge",
            "containerPort",
        ),
        &["containerPort", "protocol"],
    ),
    s(
        "io.k8s.api.core.v1.EphemeralContainer",
        "env",
        "merge",
        "name",
    ),
    s(
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        "merge",
        "mountPath",
    ),
    s(
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeDevices",
        "merge",
        "devicePath",
    ),
    s(
        "io.k8s.api.core.v1.ContainerStatus",
        "volumeMounts",
        "merge",
        "mountPath",
    ),
    s(
        "io.k8s.api.core.v1.ContainerStatus",
        "allocatedResourcesStatus",
        "merge",
        "name",
    ),
    s(
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        "merge",
        "type",
    ),
    s("io.k8s.api.core.v1.PodStatus", "hostIPs", "merge", "ip"),
    s("io.k8s.api.core.v1.PodStatus", "podIPs", "merge", "ip"),
    s(
        "io.k8s.api.core.v1.PodStatus",
        "resourceClaimStatuses",
        "merge,retainKeys",
        "name",
    ),
    keys(
        s("io.k8s.api.core.v1.ServiceSpec", "ports", "merge", "port"),
        &["port", "protocol"],
    ),
    s(
        "io.k8s.api.core.v1.ServiceStatus",
        "conditions",
        "merge",
        "type",
    ),
    s(
        "io.k8s.api.core.v1.ServiceAccount",
        "secrets",
        "merge",
        "name",
    ),
    s("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "merge", ""),
    s(
        "io.k8s.api.core.v1.NodeStatus",
        "conditions",
        "merge",
        "type",
    ),
    s(
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        "merge",
        "type",
    ),
    s(
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        "merge",
        "type",
    ),
    s(
        "io.k8s.api.core.v1.ReplicationControllerStatus",
        "conditions",
        "merge",
        "type",
    ),
    s(
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        "merge",
        "type",
    ),
    s(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "merge",
        "uid",
    ),
    s(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        "merge",
        "",
    ),
    s(
        "io.k8s.api.apps.v1.DeploymentSpec",
        "strategy",
        "retainKeys",
        "",
    ),
    s(
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        "merge",
        "type",
    ),
    s(
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        "merge",
        "type",
    ),
    s(
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        "merge",
        "type",
    ),
    s(
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "conditions",
        "merge",
        "type",
    ),
    s(
        "io.k8s.api.batch.v1.JobStatus",
        "conditions",
        "merge",
        "type",
    ),
    s(
        "io.k8s.api.policy.v1.PodDisruptionBudgetSpec",
        "selector",
        "replace",
        "",
    ),
    s(
        "io.k8s.api.policy.v1.PodDisruptionBudgetStatus",
        "conditions",
        "merge",
        "type",
    ),
    s(
        "io.k8s.api.storage.v1.CSINodeSpec",
        "drivers",
        "merge",
        "name",
    ),
];

/// Looks a strategy up by type and field.
pub fn strategy(ty: &str, field: &str) -> Option<&'static Strategy> {
    STRATEGIES.iter().find(|s| s.ty == ty && s.field == field)
}

/// The schema name a `$ref` points to (`#/components/schemas/<name>` or `#/$defs/<name>`).
pub fn ref_name(v: &Value) -> Option<&str> {
    let r = v
        .get("$ref")
        .or_else(|| v.pointer("/allOf/0/$ref"))
        .and_then(Value::as_str)?;
    r.rsplit('/').next()
}

/// Schema types by name, as the OpenAPI documents hold them, for finding field types.
pub struct Schemas {
    pub defs: HashMap<String, Value>,
}

/// The prefix of a pseudo type: a map whose values have the named type.
const MAP_OF: &str = "map:";

impl Schemas {
    pub fn new(defs: Map<String, Value>) -> Self {
        Schemas {
            defs: defs.into_iter().collect(),
        }
    }

    /// The type of property `field` of `ty`'s schema, or of its items for a list.
    fn child_type(&self, ty: &str, field: &str) -> Option<String> {
        if let Some(values) = ty.strip_prefix(MAP_OF) {
            return Some(values.to_string());
        }
        let prop = self
            .defs
            .get(ty)?
            .pointer(&format!("/properties/{field}"))?;
        if let Some(name) = ref_name(prop) {
            return Some(name.to_string());
        }
        if let Some(items) = prop.get("items") {
            return ref_name(items).map(String::from);
        }
        if let Some(values) = prop.get("additionalProperties") {
            return ref_name(values).map(|n| format!("{MAP_OF}{n}"));
        }
        None
    }
}

impl PatchSchema for Schemas {
    fn field(&self, ty: Option<&str>, field: &str) -> FieldMeta {
        let Some(ty) = ty else {
            return FieldMeta::default();
        };
        let mut meta = FieldMeta {
            ty: self.child_type(ty, field),
            ..Default::default()
        };
        if let Some(s) = strategy(ty, field) {
            meta.merge = s.strategy.split(',').any(|p| p == "merge");
            meta.replace = s.strategy == "replace";
            meta.merge_key = (!s.merge_key.is_empty()).then(|| s.merge_key.to_string());
        }
        meta
    }
}

/// Types server-side apply owns as a whole (`+structType=atomic`).
const ATOMIC_TYPES: &[&str] = &[
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
    "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference",
    "io.k8s.api.core.v1.ObjectReference",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.TypedLocalObjectReference",
    "io.k8s.api.core.v1.SecretReference",
    "io.k8s.api.core.v1.NodeSelector",
    "io.k8s.api.core.v1.NodeSelectorTerm",
    "io.k8s.api.core.v1.TopologySelectorTerm",
    "io.k8s.api.core.v1.ConfigMapKeySelector",
    "io.k8s.api.core.v1.SecretKeySelector",
    "io.k8s.api.core.v1.ObjectFieldSelector",
    "io.k8s.api.core.v1.ResourceFieldSelector",
    "io.k8s.api.core.v1.EndpointAddress",
    "io.k8s.api.core.v1.EndpointPort",
];

/// Map fields owned as a whole (`+mapType=atomic`).
const ATOMIC_MAPS: &[(&str, &str)] = &[
    ("io.k8s.api.core.v1.PodSpec", "nodeSelector"),
    ("io.k8s.api.core.v1.ServiceSpec", "selector"),
    ("io.k8s.api.core.v1.ReplicationControllerSpec", "selector"),
];

impl ApplySchema for Schemas {
    fn child(&self, ty: Option<&str>, field: &str) -> Child {
        let Some(ty) = ty else {
            return Child {
                ty: None,
                list: ListKind::Atomic,
                atomic: false,
            };
        };
        let child_ty = self.child_type(ty, field);
        let list = match strategy(ty, field) {
            Some(s) if s.strategy.split(',').any(|p| p == "merge") => {
                if s.merge_key.is_empty() {
                    ListKind::Set
                } else if s.list_keys.is_empty() {
                    ListKind::Map(vec![s.merge_key.to_string()])
                } else {
                    ListKind::Map(s.list_keys.iter().map(|k| k.to_string()).collect())
                }
            }
            _ => ListKind::Atomic,
        };
        let atomic = ATOMIC_MAPS.contains(&(ty, field))
            || child_ty
                .as_deref()
                .is_some_and(|t| ATOMIC_TYPES.contains(&t));
        Child {
            ty: child_ty,
            list,
            atomic,
        }
    }
}
