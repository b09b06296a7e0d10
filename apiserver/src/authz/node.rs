//! The node restriction (kube-apiserver's Node authorizer and NodeRestriction admission):
//! a user `system:node:<name>` in `system:nodes` may change only its own Node (and its
//! status), its own Lease in `kube-node-lease`, and the status of pods bound to it, and
//! may delete or evict only those pods; it may read a Secret, ConfigMap or
//! PersistentVolumeClaim only by name, and only one a pod bound to it uses. It checks
//! requests that RBAC's `system:node` role already allowed. Creates name their object in
//! the body, so they are checked once the body is read ([`check_create`]).

use serde_json::Value;

use super::ResourceAttributes;
use crate::auth::User;
use crate::error::ApiError;
use crate::store::{object_key, Store};

pub const NODES_GROUP: &str = "system:nodes";
const NODE_PREFIX: &str = "system:node:";
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The node a user is the agent of, if it is one.
pub fn node_of(user: &User) -> Option<&str> {
    let n = user.name.strip_prefix(NODE_PREFIX)?;
    (!n.is_empty() && user.groups.iter().any(|g| g == NODES_GROUP)).then_some(n)
}

fn forbidden(a: &ResourceAttributes, name: &str, why: String) -> ApiError {
    let gr = if a.group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.group)
    };
    ApiError::Forbidden(if name.is_empty() {
        format!("{gr} is forbidden: {why}")
    } else {
        format!("{gr} {name:?} is forbidden: {why}")
    })
}

fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    )
}

/// Checks a request `node`'s agent makes, before its body is read.
pub async fn check(node: &str, a: &ResourceAttributes, store: &Store) -> Result<(), ApiError> {
    if !is_write(&a.verb) {
        return match (a.group.as_str(), a.resource.as_str()) {
            ("", "secrets" | "configmaps" | "persistentvolumeclaims") => {
                check_reference(node, a, store).await
            }
            _ => Ok(()),
        };
    }
    match (a.group.as_str(), a.resource.as_str()) {
        ("", "nodes") => {
            // A create names its node in the body.
            if a.verb == "create" && a.name.is_empty() {
                return Ok(());
            }
            if a.name != node {
                return Err(forbidden(
                    a,
                    &a.name,
                    format!("node {node:?} is not allowed to modify node {:?}", a.name),
                ));
            }
            Ok(())
        }
        ("coordination.k8s.io", "leases") => {
            if a.namespace != LEASE_NAMESPACE
                || (a.name != node && !(a.verb == "create" && a.name.is_empty()))
            {
                return Err(forbidden(
                    a,
                    &a.name,
                    format!(
                        "node {node:?} can only access leases with the same name as itself in the namespace {LEASE_NAMESPACE}"
                    ),
                ));
            }
            Ok(())
        }
        ("", "pods") => {
            let what = match (a.verb.as_str(), a.subresource.as_str()) {
                ("update" | "patch", "status") => "update the status of",
                ("delete", "") => "delete",
                ("create", "eviction") => "evict",
                _ => {
                    return Err(forbidden(
                        a,
                        &a.name,
                        format!(
                            "node {node:?} can only update the status of, delete or evict pods bound to it"
                        ),
                    ))
                }
            };
            let key = object_key("pods", Some(&a.namespace), &a.name);
            let bound = match store.cache.get(&key) {
                Some(o) => serde_json::from_slice::<Value>(&o.json).ok(),
                None => store.read(&key).await?.map(|s| s.value),
            };
            match bound {
                // Not there: the request itself answers 404.
                None => Ok(()),
                Some(p) if p["spec"]["nodeName"].as_str() == Some(node) => Ok(()),
                Some(_) => Err(forbidden(
                    a,
                    &a.name,
                    format!("node {node:?} can only {what} pods with spec.nodeName set to itself"),
                )),
            }
        }
        _ => Ok(()),
    }
}

/// A read of a Secret, ConfigMap or PVC: allowed by name only, when a pod bound to the
/// node uses it. The watch cache answers; when it does not know of such a pod it is
/// brought up to date once (the pod may be newer than this apiserver's cache).
async fn check_reference(
    node: &str,
    a: &ResourceAttributes,
    store: &Store,
) -> Result<(), ApiError> {
    let deny = |why: &str| {
        let head = if a.name.is_empty() {
            format!("{} is forbidden", a.resource)
        } else {
            format!("{} {:?} is forbidden", a.resource, a.name)
        };
        ApiError::Forbidden(format!(
            "{head}: User \"{NODE_PREFIX}{node}\" cannot {} resource {:?} in API group \"\" in the namespace {:?}: {why}",
            a.verb, a.resource, a.namespace
        ))
    };
    if a.name.is_empty() || a.namespace.is_empty() {
        return Err(deny("can only read individual resources of this type"));
    }
    let prefix = format!("/registry/pods/{}/", a.namespace);
    let used = |store: &Store| {
        store.cache.list(&prefix).is_some_and(|(pods, _)| {
            pods.iter().any(|p| {
                serde_json::from_slice::<Value>(&p.json)
                    .is_ok_and(|p| uses(&p, node, &a.resource, &a.name))
            })
        })
    };
    if used(store) {
        return Ok(());
    }
    let wait = std::time::Duration::from_secs(1);
    if crate::store::cache::catch_up(&store.cache, store.storage.as_ref(), wait)
        .await
        .is_ok_and(|r| r.is_some())
        && used(store)
    {
        return Ok(());
    }
    Err(deny(&format!(
        "no relationship found between node '{node}' and this object"
    )))
}

/// Whether `pod`, bound to `node`, uses the object `name` of `resource` (volumes,
/// projected sources, env, envFrom, image pull secrets; PVC claims).
pub fn uses(pod: &Value, node: &str, resource: &str, name: &str) -> bool {
    if pod["spec"]["nodeName"].as_str() != Some(node) {
        return false;
    }
    let spec = &pod["spec"];
    let is = |v: &Value| v.as_str() == Some(name);
    let items = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let containers: Vec<Value> = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| items(&spec[*k]))
        .collect();
    let volumes = items(&spec["volumes"]);
    let projected: Vec<Value> = volumes
        .iter()
        .flat_map(|v| items(&v["projected"]["sources"]))
        .collect();
    let env = || containers.iter().flat_map(|c| items(&c["env"]));
    let env_from = || containers.iter().flat_map(|c| items(&c["envFrom"]));
    match resource {
        "secrets" => {
            volumes.iter().any(|v| is(&v["secret"]["secretName"]))
                || projected.iter().any(|s| is(&s["secret"]["name"]))
                || env().any(|e| is(&e["valueFrom"]["secretKeyRef"]["name"]))
                || env_from().any(|e| is(&e["secretRef"]["name"]))
                || items(&spec["imagePullSecrets"])
                    .iter()
                    .any(|s| is(&s["name"]))
        }
        "configmaps" => {
            volumes.iter().any(|v| is(&v["configMap"]["name"]))
                || projected.iter().any(|s| is(&s["configMap"]["name"]))
                || env().any(|e| is(&e["valueFrom"]["configMapKeyRef"]["name"]))
                || env_from().any(|e| is(&e["configMapRef"]["name"]))
        }
        "persistentvolumeclaims" => volumes
            .iter()
            .any(|v| is(&v["persistentVolumeClaim"]["claimName"])),
        _ => false,
    }
}

/// Checks what `node`'s agent creates: a Node or a Lease must carry the node's own name.
pub fn check_create(node: &str, a: &ResourceAttributes, body: &Value) -> Result<(), ApiError> {
    let name = body["metadata"]["name"].as_str().unwrap_or_default();
    match (a.group.as_str(), a.resource.as_str(), a.subresource.as_str()) {
        ("", "nodes", "") if name != node => Err(forbidden(
            a,
            name,
            format!("node {node:?} is not allowed to modify node {name:?}"),
        )),
        ("coordination.k8s.io", "leases", "") if name != node => Err(forbidden(
            a,
            name,
            format!("node {node:?} can only access leases with the same name as itself in the namespace {LEASE_NAMESPACE}"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_node_uses_only_what_its_own_pods_name() {
        let pod = json!({"spec": {"nodeName": "n1",
            "volumes": [{"name": "v", "secret": {"secretName": "vol-secret"}},
                        {"name": "p", "projected": {"sources": [{"configMap": {"name": "proj-cm"}}]}},
                        {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
            "imagePullSecrets": [{"name": "pull"}],
            "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init-env"}}]}],
            "containers": [{"name": "c", "env": [
                {"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
                {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}}]}]}});
        for s in ["vol-secret", "pull", "init-env", "env-secret"] {
            assert!(uses(&pod, "n1", "secrets", s), "{s}");
            assert!(!uses(&pod, "n2", "secrets", s), "another node: {s}");
        }
        for c in ["proj-cm", "env-cm"] {
            assert!(uses(&pod, "n1", "configmaps", c), "{c}");
        }
        assert!(uses(&pod, "n1", "persistentvolumeclaims", "data"));
        assert!(
            !uses(&pod, "n1", "secrets", "env-cm"),
            "a ConfigMap's name is not a Secret's"
        );
        assert!(!uses(&pod, "n1", "secrets", "other"));
        assert!(!uses(&json!({"spec": {}}), "n1", "secrets", "x"));
    }

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            name: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn only_members_of_system_nodes_are_nodes() {
        assert_eq!(node_of(&user("system:node:a", &[NODES_GROUP])), Some("a"));
        assert_eq!(node_of(&user("system:node:a", &["dev"])), None);
        assert_eq!(node_of(&user("system:node:", &[NODES_GROUP])), None);
        assert_eq!(node_of(&user("alice", &[NODES_GROUP])), None);
    }

    #[test]
    fn creates_carry_the_nodes_own_name() {
        let a = ResourceAttributes {
            verb: "create".into(),
            resource: "nodes".into(),
            ..Default::default()
        };
        assert!(check_create("a", &a, &json!({"metadata": {"name": "a"}})).is_ok());
        let e = check_create("a", &a, &json!({"metadata": {"name": "b"}})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "nodes \"b\" is forbidden: node \"a\" is not allowed to modify node \"b\""
        );
        let lease = ResourceAttributes {
            verb: "create".into(),
            group: "coordination.k8s.io".into(),
            resource: "leases".into(),
            namespace: LEASE_NAMESPACE.into(),
            ..Default::default()
        };
        assert!(check_create("a", &lease, &json!({"metadata": {"name": "b"}})).is_err());
        let event = ResourceAttributes {
            verb: "create".into(),
            resource: "events".into(),
            ..Default::default()
        };
        assert!(check_create("a", &event, &json!({"metadata": {"name": "b"}})).is_ok());
    }
}
