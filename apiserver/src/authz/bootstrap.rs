//! The ClusterRoles and ClusterRoleBindings every cluster starts with: cluster-admin for
//! `system:masters`, discovery and self-review for every authenticated user, roles for
//! the scheduler, the controller-manager, each controller (`controller_roles.rs`, bound
//! to the controllers' ServiceAccounts in kube-system) and the nodes' agents, and
//! `system:kubelet-api-admin` for the apiservers' client certificate to the agents.
//! Created when missing, never overwritten (an administrator may change them; a cluster
//! made before a role changed here keeps the old one).

mod controller_roles;

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
    binding_of(name, subjects)
}

/// A binding of ClusterRole `name` (binding of the same name) to the ServiceAccount
/// `namespace/account`.
fn account_binding(name: &str, namespace: &str, account: &str) -> Value {
    binding_of(
        name,
        vec![json!({ "kind": "ServiceAccount", "name": account, "namespace": namespace })],
    )
}

fn binding_of(name: &str, subjects: Vec<Value>) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "ClusterRoleBinding", "metadata": meta(name),
        "roleRef": { "apiGroup": GROUP, "kind": "ClusterRole", "name": name },
        "subjects": subjects,
    })
}

const READ: &[&str] = &["get", "list", "watch"];

/// The prefix of a controller's role, followed by its ServiceAccount's name.
pub const CONTROLLER_ROLE_PREFIX: &str = "system:controller:";
/// Where the controllers' ServiceAccounts live.
pub const CONTROLLER_NAMESPACE: &str = "kube-system";

/// The user the apiservers' client certificate for the agents names (its CN).
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
const EVENTS: &[&str] = &["create", "update", "patch"];

/// (ClusterRoles, ClusterRoleBindings).
pub fn objects() -> (Vec<Value>, Vec<Value>) {
    let mut roles = vec![
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
        // kube's role for servers that delegate authentication and authorization.
        role(
            "system:auth-delegator",
            vec![
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                    &["create"],
                ),
            ],
        ),
        // kube's role for kube-proxy, which `flotilla proxy` acts with.
        role(
            "system:node-proxier",
            vec![
                rule(&[""], &["endpoints", "services"], &["list", "watch"]),
                rule(&[""], &["nodes"], &["get", "list", "watch"]),
                rule(
                    &["", "events.k8s.io"],
                    &["events"],
                    &["create", "patch", "update"],
                ),
                rule(
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                    &["list", "watch"],
                ),
            ],
        ),
        // `flotilla dns`: reads what it serves and registers itself behind kube-dns (the
        // Service, its own EndpointSlice and the Lease that keeps it alive).
        role(
            "system:flotilla-dns",
            vec![
                rule(&[""], &["services"], &["get", "list", "watch", "create"]),
                rule(
                    &[""],
                    &["endpoints", "pods", "namespaces"],
                    &["list", "watch"],
                ),
                rule(
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                    &[
                        "get", "list", "watch", "create", "update", "patch", "delete",
                    ],
                ),
                rule(
                    &["coordination.k8s.io"],
                    &["leases"],
                    &["get", "list", "watch", "create", "update", "delete"],
                ),
                rule(&["", "events.k8s.io"], &["events"], EVENTS),
            ],
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
                // kube's system:volume-scheduler, bound to the scheduler: delayed claims
                // are told their node.
                rule(
                    &[""],
                    &["persistentvolumeclaims", "persistentvolumes"],
                    &["patch", "update"],
                ),
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
                // Delegated authentication and authorization on its secure port, as
                // kube's role of this name has.
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                    &["create"],
                ),
            ],
        ),
        // kube's role of this name: what the controller-manager needs itself (the shared
        // informers, its election, events) and to make each controller's identity
        // (`--use-service-account-credentials`): its ServiceAccount and tokens for it.
        // The controllers' own rights are in their `system:controller:*` roles.
        role(
            "system:kube-controller-manager",
            vec![
                rule(&["", "events.k8s.io"], &["events"], EVENTS),
                rule(&["coordination.k8s.io"], &["leases"], &["create"]),
                named(
                    &["coordination.k8s.io"],
                    &["leases"],
                    &["kube-controller-manager", "flotilla-controller-manager"],
                    &["get", "update"],
                ),
                rule(&[""], &["secrets", "serviceaccounts"], &["create"]),
                rule(&[""], &["secrets"], &["delete"]),
                rule(
                    &[""],
                    &["namespaces", "secrets", "serviceaccounts", "configmaps"],
                    &["get"],
                ),
                rule(&[""], &["secrets", "serviceaccounts"], &["update"]),
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                    &["create"],
                ),
                rule(&["*"], &["*"], &["list", "watch"]),
                rule(&[""], &["serviceaccounts/token"], &["create"]),
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
    let mut bindings = vec![
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
        binding("system:node-proxier", &[("User", "system:kube-proxy")]),
        binding("system:flotilla-dns", &[("User", "system:kube-dns")]),
        // Their secure ports ask the apiserver who a client is and what it may do.
        binding(
            "system:auth-delegator",
            &[("User", "system:kube-proxy"), ("User", "system:kube-dns")],
        ),
        // The apiservers' client certificate for the agents (`pods/log`): kubeadm's
        // `kube-apiserver-kubelet-client`, bound to this role rather than system:masters.
        binding("system:kubelet-api-admin", &[("User", KUBELET_CLIENT_USER)]),
    ];
    for (account, rules) in controller_roles::accounts() {
        let name = format!("{CONTROLLER_ROLE_PREFIX}{account}");
        roles.push(role(&name, rules));
        bindings.push(account_binding(&name, CONTROLLER_NAMESPACE, account));
    }
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

    fn account(name: &str) -> User {
        User {
            name: format!("system:serviceaccount:kube-system:{name}"),
            uid: String::new(),
            groups: vec![
                "system:serviceaccounts".into(),
                "system:serviceaccounts:kube-system".into(),
                "system:authenticated".into(),
            ],
        }
    }

    #[test]
    fn every_controller_role_is_bound_to_its_account_in_kube_system() {
        let (roles, bindings) = objects();
        let names = |objs: &[Value]| -> Vec<String> {
            objs.iter()
                .filter_map(|o| o["metadata"]["name"].as_str())
                .filter(|n| n.starts_with(CONTROLLER_ROLE_PREFIX))
                .map(String::from)
                .collect()
        };
        assert_eq!(names(&roles), names(&bindings));
        assert_eq!(names(&roles).len(), 21);
        for b in bindings.iter().filter(|b| {
            b["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(CONTROLLER_ROLE_PREFIX))
        }) {
            let name = b["metadata"]["name"].as_str().unwrap();
            assert_eq!(b["roleRef"]["name"], name);
            assert_eq!(
                b["subjects"],
                json!([{
                    "kind": "ServiceAccount",
                    "namespace": "kube-system",
                    "name": name.strip_prefix(CONTROLLER_ROLE_PREFIX).unwrap(),
                }])
            );
        }
    }

    #[test]
    fn each_controller_may_do_its_work_and_no_more() {
        let d = account("deployment-controller");
        assert!(can(&d, "update", "apps", "deployments", "status"));
        assert!(can(&d, "create", "apps", "replicasets", ""));
        assert!(can(&d, "delete", "apps", "replicasets", ""));
        assert!(can(&d, "create", "", "events", ""));
        assert!(!can(&d, "get", "", "secrets", ""));
        assert!(!can(&d, "delete", "", "nodes", ""));
        assert!(!can(&d, "create", "", "pods", ""));
        assert!(!can(&d, "patch", "apps", "deployments", ""));

        let rs = account("replicaset-controller");
        assert!(can(&rs, "create", "", "pods", ""));
        assert!(can(&rs, "patch", "", "pods", ""));
        assert!(can(&rs, "update", "apps", "replicasets", "status"));
        assert!(!can(&rs, "update", "", "pods", ""));
        assert!(!can(&rs, "create", "apps", "replicasets", ""));
        let job = account("job-controller");
        assert!(can(&job, "update", "batch", "jobs", "status"));
        assert!(can(&job, "patch", "", "pods", ""));
        assert!(!can(&job, "update", "", "pods", ""));
        let dsc = account("daemon-set-controller");
        assert!(can(&dsc, "create", "apps", "controllerrevisions", ""));
        assert!(can(&dsc, "update", "apps", "daemonsets", "status"));
        assert!(!can(&dsc, "update", "apps", "daemonsets", ""));
        let cj = account("cronjob-controller");
        assert!(can(&cj, "create", "batch", "jobs", ""));
        assert!(can(&cj, "update", "batch", "cronjobs", "status"));
        assert!(!can(&cj, "create", "", "pods", ""));
        let ttl = account("ttl-after-finished-controller");
        assert!(can(&ttl, "delete", "batch", "jobs", ""));
        assert!(!can(&ttl, "delete", "", "pods", ""));
        let hpa = account("horizontal-pod-autoscaler");
        assert!(can(&hpa, "update", "apps", "deployments", "scale"));
        assert!(can(&hpa, "list", "metrics.k8s.io", "pods", ""));
        assert!(can(
            &hpa,
            "update",
            "autoscaling",
            "horizontalpodautoscalers",
            "status"
        ));
        assert!(!can(
            &hpa,
            "update",
            "autoscaling",
            "horizontalpodautoscalers",
            ""
        ));
        assert!(!can(&hpa, "update", "apps", "deployments", ""));
        let dc = account("disruption-controller");
        assert!(can(
            &dc,
            "update",
            "policy",
            "poddisruptionbudgets",
            "status"
        ));
        assert!(can(&dc, "get", "apps", "statefulsets", "scale"));
        assert!(!can(&dc, "update", "policy", "poddisruptionbudgets", ""));
        assert!(!can(&dc, "delete", "", "pods", ""));
        let rc = account("replication-controller");
        assert!(can(&rc, "update", "", "replicationcontrollers", "status"));
        assert!(can(&rc, "delete", "", "pods", ""));

        let gc = account("generic-garbage-collector");
        assert!(can(&gc, "delete", "apps", "replicasets", ""));
        assert!(can(&gc, "update", "example.com", "widgets", ""));
        assert!(can(&gc, "watch", "", "secrets", ""));
        assert!(!can(&gc, "create", "", "pods", ""));

        let ns = account("namespace-controller");
        assert!(can(&ns, "deletecollection", "example.com", "widgets", ""));
        assert!(can(&ns, "update", "", "namespaces", "finalize"));
        assert!(!can(&ns, "create", "", "pods", ""));
        assert!(!can(&ns, "update", "", "pods", ""));

        let node = account("node-controller");
        assert!(can(&node, "update", "", "nodes", "status"));
        assert!(can(&node, "update", "", "nodes", ""));
        assert!(can(&node, "update", "", "pods", "status"));
        assert!(can(&node, "delete", "", "pods", ""));
        assert!(!can(&node, "create", "", "pods", ""));

        let ep = account("endpoint-controller");
        assert!(can(&ep, "update", "", "endpoints", ""));
        assert!(!can(
            &ep,
            "create",
            "discovery.k8s.io",
            "endpointslices",
            ""
        ));
        let slices = account("endpointslice-controller");
        assert!(can(
            &slices,
            "create",
            "discovery.k8s.io",
            "endpointslices",
            ""
        ));
        assert!(!can(&slices, "update", "", "endpoints", ""));

        let sa = account("service-account-controller");
        assert!(can(&sa, "create", "", "serviceaccounts", ""));
        assert!(!can(&sa, "delete", "", "serviceaccounts", ""));

        // An account outside kube-system of the same name has none of it.
        let other = User {
            name: "system:serviceaccount:default:deployment-controller".into(),
            uid: String::new(),
            groups: vec!["system:authenticated".into()],
        };
        assert!(!can(&other, "update", "apps", "deployments", "status"));
    }

    #[test]
    fn the_controller_manager_itself_reads_elects_and_makes_identities_only() {
        let kcm = User {
            name: "system:kube-controller-manager".into(),
            uid: String::new(),
            groups: vec!["system:authenticated".into()],
        };
        assert!(can(&kcm, "list", "apps", "deployments", ""));
        assert!(can(&kcm, "watch", "", "pods", ""));
        assert!(can(&kcm, "create", "", "serviceaccounts", ""));
        assert!(can(&kcm, "get", "", "serviceaccounts", ""));
        assert!(can(&kcm, "create", "", "serviceaccounts", "token"));
        assert!(can(&kcm, "create", "coordination.k8s.io", "leases", ""));
        assert!(can(&kcm, "create", "", "events", ""));
        for (verb, group, resource) in [
            ("create", "", "pods"),
            ("delete", "", "pods"),
            ("update", "apps", "replicasets"),
            ("delete", "", "nodes"),
            ("deletecollection", "", "configmaps"),
            ("patch", "", "nodes"),
        ] {
            assert!(!can(&kcm, verb, group, resource, ""), "{verb} {resource}");
        }
        // Its election's Lease only.
        let lease = |name: &str| {
            let a = Attributes::Resource(ResourceAttributes {
                verb: "update".into(),
                group: "coordination.k8s.io".into(),
                resource: "leases".into(),
                namespace: "kube-system".into(),
                name: name.into(),
                ..Default::default()
            });
            policy().allows(&kcm, &a).is_some()
        };
        assert!(lease("flotilla-controller-manager"));
        assert!(!lease("flotilla-scheduler"));
    }
}
