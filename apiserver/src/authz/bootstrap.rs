//! The ClusterRoles and ClusterRoleBindings every cluster starts with: cluster-admin for
//! `system:masters`, discovery and self-review for every authenticated user, roles for
//! the scheduler, the controller-manager and the nodes' agents, and
//! `system:kubelet-api-admin` for the apiservers' client certificate to the agents.
//! Created when missing, never overwritten (an administrator may change them).

use serde_json::{json, Value};

const GROUP: &str = "rbac.authorization.k8s.io";

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({ "apiGroups": groups, "resources": resources, "verbs": verbs })
}

fn named(groups: &[&str], resources: &[&str], names: &[&str], verbs: &[&str]) -> Value {
    json!({ "apiGroups": groups, "resources": resources, "resourceNames": names, "verbs": verbs })
}

fn urls(urls: &[&str], verbs: &[&str]) -> Value {
    json!({ "nonResourceURLs": urls, "verbs": verbs })
}

fn meta(name: &str) -> Value {
    json!({
        "name": name,
        "labels": { "kubernetes.io/bootstrapping": "rbac-defaults" },
        "annotations": { "rbac.authorization.kubernetes.io/autoupdate": "true" },
    })
}

fn role(name: &str, rules: Vec<Value>) -> Value {
    json!({ "apiVersion": format!("{GROUP}/v1"), "kind": "ClusterRole", "metadata": meta(name), "rules": rules })
}

/// A binding of ClusterRole `name` (binding of the same name) to `subjects` as
/// (kind, name).
fn binding(name: &str, subjects: &[(&str, &str)]) -> Value {
    let subjects: Vec<Value> = subjects
        .iter()
        .map(|(kind, n)| json!({ "apiGroup": GROUP, "kind": kind, "name": n }))
        .collect();
    json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "ClusterRoleBinding", "metadata": meta(name),
        "roleRef": { "apiGroup": GROUP, "kind": "ClusterRole", "name": name },
        "subjects": subjects,
    })
}

const READ: &[&str] = &["get", "list", "watch"];

/// The user the apiservers' client certificate for the agents names (its CN).
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
const EVENTS: &[&str] = &["create", "update", "patch"];

/// (ClusterRoles, ClusterRoleBindings).
pub fn objects() -> (Vec<Value>, Vec<Value>) {
    let roles = vec![
        role(
            "cluster-admin",
            vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
        ),
        role(
            "system:discovery",
            vec![urls(
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/readyz",
                    "/openapi",
                    "/openapi/*",
                    "/version",
                    "/version/",
                ],
                &["get"],
            )],
        ),
        role(
            "system:public-info-viewer",
            vec![urls(
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
                &["get"],
            )],
        ),
        role(
            "system:basic-user",
            vec![
                rule(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                ),
                rule(
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                    &["create"],
                ),
            ],
        ),
        role(
            "system:monitoring",
            vec![urls(
                &[
                    "/healthz",
                    "/healthz/*",
                    "/livez",
                    "/livez/*",
                    "/readyz",
                    "/readyz/*",
                    "/metrics",
                ],
                &["get"],
            )],
        ),
        role(
            "system:kube-scheduler",
            vec![
                rule(&["", "events.k8s.io"], &["events"], EVENTS),
                rule(&["coordination.k8s.io"], &["leases"], &["create"]),
                named(
                    &["coordination.k8s.io"],
                    &["leases"],
                    &["kube-scheduler", "flotilla-scheduler"],
                    &["get", "update"],
                ),
                rule(
                    &[""],
                    &[
                        "nodes",
                        "namespaces",
                        "services",
                        "replicationcontrollers",
                        "persistentvolumeclaims",
                        "persistentvolumes",
                    ],
                    READ,
                ),
                rule(&[""], &["pods"], &["get", "list", "watch", "delete"]),
                rule(&[""], &["bindings", "pods/binding"], &["create"]),
                rule(&[""], &["pods/status"], &["patch", "update"]),
                rule(&["apps"], &["replicasets", "statefulsets"], READ),
                rule(&["policy"], &["poddisruptionbudgets"], READ),
                rule(&["scheduling.k8s.io"], &["priorityclasses"], READ),
                rule(
                    &["storage.k8s.io"],
                    &[
                        "csinodes",
                        "csidrivers",
                        "csistoragecapacities",
                        "storageclasses",
                    ],
                    READ,
                ),
            ],
        ),
        // One identity runs every controller, so it reads everything and writes what
        // the controllers write (the garbage collector deletes any kind).
        role(
            "system:kube-controller-manager",
            vec![
                rule(&["*"], &["*"], READ),
                rule(&["", "events.k8s.io"], &["events"], EVENTS),
                rule(&["coordination.k8s.io"], &["leases"], &["create"]),
                named(
                    &["coordination.k8s.io"],
                    &["leases"],
                    &["kube-controller-manager", "flotilla-controller-manager"],
                    &["get", "update"],
                ),
                rule(
                    &["*"],
                    &["*"],
                    &["create", "update", "patch", "delete", "deletecollection"],
                ),
            ],
        ),
        role(
            "system:node",
            vec![
                rule(
                    &[""],
                    &["nodes"],
                    &["get", "list", "watch", "create", "update", "patch"],
                ),
                rule(&[""], &["nodes/status"], &["update", "patch"]),
                rule(
                    &[""],
                    &["pods"],
                    &["get", "list", "watch", "create", "delete"],
                ),
                rule(&[""], &["pods/status"], &["update", "patch"]),
                rule(&[""], &["pods/eviction"], &["create"]),
                rule(&["", "events.k8s.io"], &["events"], EVENTS),
                rule(
                    &["coordination.k8s.io"],
                    &["leases"],
                    &["get", "create", "update", "patch", "delete"],
                ),
                rule(&[""], &["configmaps", "secrets", "services"], READ),
                rule(
                    &[""],
                    &["endpoints", "persistentvolumeclaims", "persistentvolumes"],
                    &["get"],
                ),
                // An agent asks who calls it and whether they may (its port's
                // authentication and authorization are delegated to the apiserver).
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                    &["create"],
                ),
            ],
        ),
        // Full use of the agents' port (kube's role of this name, rule for rule).
        role(
            "system:kubelet-api-admin",
            vec![
                rule(&[""], &["nodes"], READ),
                rule(&[""], &["nodes"], &["proxy"]),
                rule(
                    &[""],
                    &[
                        "nodes/proxy",
                        "nodes/metrics",
                        "nodes/spec",
                        "nodes/stats",
                        "nodes/log",
                    ],
                    &["*"],
                ),
            ],
        ),
    ];
    let bindings = vec![
        binding("cluster-admin", &[("Group", "system:masters")]),
        binding("system:discovery", &[("Group", "system:authenticated")]),
        binding(
            "system:public-info-viewer",
            &[
                ("Group", "system:authenticated"),
                ("Group", "system:unauthenticated"),
            ],
        ),
        binding("system:basic-user", &[("Group", "system:authenticated")]),
        binding("system:monitoring", &[("Group", "system:monitoring")]),
        binding(
            "system:kube-scheduler",
            &[("User", "system:kube-scheduler")],
        ),
        binding(
            "system:kube-controller-manager",
            &[("User", "system:kube-controller-manager")],
        ),
        binding("system:node", &[("Group", "system:nodes")]),
        // The apiservers' client certificate for the agents (`pods/log`): kubeadm's
        // `kube-apiserver-kubelet-client`, bound to this role rather than system:masters.
        binding("system:kubelet-api-admin", &[("User", KUBELET_CLIENT_USER)]),
    ];
    (roles, bindings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::User;
    use crate::authz::rbac::Policy;
    use crate::authz::{Attributes, ResourceAttributes};

    fn policy() -> Policy {
        let (roles, bindings) = objects();
        Policy {
            cluster_roles: roles
                .into_iter()
                .map(|r| serde_json::from_value(r).unwrap())
                .collect(),
            cluster_bindings: bindings
                .into_iter()
                .map(|b| serde_json::from_value(b).unwrap())
                .collect(),
            ..Default::default()
        }
    }

    fn can(user: &User, verb: &str, group: &str, resource: &str, sub: &str) -> bool {
        let a = Attributes::Resource(ResourceAttributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: "n1".into(),
            ..Default::default()
        });
        policy().allows(user, &a).is_some()
    }

    #[test]
    fn agents_review_callers_and_the_apiserver_client_uses_agents() {
        let node = User {
            name: "system:node:n1".into(),
            uid: String::new(),
            groups: vec!["system:nodes".into(), "system:authenticated".into()],
        };
        assert!(can(
            &node,
            "create",
            "authentication.k8s.io",
            "tokenreviews",
            ""
        ));
        assert!(can(
            &node,
            "create",
            "authorization.k8s.io",
            "subjectaccessreviews",
            ""
        ));
        assert!(!can(&node, "get", "", "nodes", "proxy"));
        let client = User {
            name: KUBELET_CLIENT_USER.into(),
            uid: String::new(),
            groups: vec!["system:authenticated".into()],
        };
        for (verb, sub) in [
            ("get", "proxy"),
            ("create", "proxy"),
            ("get", "log"),
            ("get", "stats"),
        ] {
            assert!(can(&client, verb, "", "nodes", sub), "{verb} nodes/{sub}");
        }
        assert!(can(&client, "proxy", "", "nodes", ""));
        assert!(can(&client, "list", "", "nodes", ""));
        assert!(!can(&client, "delete", "", "nodes", ""));
        assert!(!can(&client, "get", "", "pods", ""));
        assert!(!can(&client, "get", "", "nodes", "exec"));
    }
}
