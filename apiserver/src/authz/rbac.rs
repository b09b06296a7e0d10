//! RBAC evaluation: the rules of every ClusterRole bound to the user by a
//! ClusterRoleBinding, and, for a request inside a namespace, of every Role or ClusterRole
//! bound to it there by a RoleBinding. The first rule that allows the request decides;
//! nothing denies.

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};

use super::attributes::{Attributes, ResourceAttributes};
use crate::auth::User;

/// The RBAC objects, as of one moment.
#[derive(Debug, Default, Clone)]
pub struct Policy {
    pub cluster_roles: Vec<ClusterRole>,
    pub cluster_bindings: Vec<ClusterRoleBinding>,
    pub roles: Vec<Role>,
    pub bindings: Vec<RoleBinding>,
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

/// Whether one rule allows the attributes.
pub fn rule_allows(rule: &PolicyRule, a: &Attributes) -> bool {
    if !has(&rule.verbs, verb(a)) {
        return false;
    }
    match a {
        Attributes::Resource(r) => resource_matches(rule, r),
        Attributes::NonResource { path, .. } => rule
            .non_resource_urls
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .any(|u| {
                u == "*" || u == path || u.strip_suffix('*').is_some_and(|p| path.starts_with(p))
            }),
    }
}

fn verb(a: &Attributes) -> &str {
    match a {
        Attributes::Resource(r) => &r.verb,
        Attributes::NonResource { verb, .. } => verb,
    }
}

fn resource_matches(rule: &PolicyRule, r: &ResourceAttributes) -> bool {
    let groups = rule.api_groups.as_deref().unwrap_or(&[]);
    if !has(groups, &r.group) {
        return false;
    }
    let combined = r.combined();
    let resources = rule.resources.as_deref().unwrap_or(&[]);
    let resource_ok = resources.iter().any(|x| {
        x == "*"
            || *x == combined
            || (!r.subresource.is_empty() && x.strip_prefix("*/") == Some(r.subresource.as_str()))
    });
    if !resource_ok {
        return false;
    }
    let names = rule.resource_names.as_deref().unwrap_or(&[]);
    names.is_empty() || names.iter().any(|n| *n == r.name)
}

/// Whether a binding's subject is this user (`ns`: the binding's namespace, the default
/// for a service account subject without one).
fn applies(s: &Subject, user: &User, ns: &str) -> bool {
    match s.kind.as_str() {
        "User" => s.name == user.name,
        "Group" => user.groups.iter().any(|g| *g == s.name),
        "ServiceAccount" => {
            let sa_ns = s
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(ns);
            !sa_ns.is_empty() && user.name == format!("system:serviceaccount:{sa_ns}:{}", s.name)
        }
        _ => false,
    }
}

impl Policy {
    fn cluster_role(&self, name: &str) -> Option<&ClusterRole> {
        self.cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
    }

    /// Every rule that applies to `user` in `namespace` ("" for cluster-wide only), with
    /// where it came from (for the reason of an allowed request).
    pub fn rules_for<'a>(&'a self, user: &User, namespace: &str) -> Vec<(&'a PolicyRule, String)> {
        let mut out = Vec::new();
        for b in &self.cluster_bindings {
            if !b
                .subjects
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .any(|s| applies(s, user, ""))
            {
                continue;
            }
            if let Some(r) = self.cluster_role(&b.role_ref.name) {
                let why = format!(
                    "ClusterRoleBinding {:?} of ClusterRole {:?}",
                    b.metadata.name.as_deref().unwrap_or(""),
                    b.role_ref.name
                );
                out.extend(r.rules.iter().flatten().map(|rule| (rule, why.clone())));
            }
        }
        if namespace.is_empty() {
            return out;
        }
        for b in &self.bindings {
            if b.metadata.namespace.as_deref() != Some(namespace) {
                continue;
            }
            if !b
                .subjects
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .any(|s| applies(s, user, namespace))
            {
                continue;
            }
            let why = |kind: &str| {
                format!(
                    "RoleBinding \"{}/{namespace}\" of {kind} {:?}",
                    b.metadata.name.as_deref().unwrap_or(""),
                    b.role_ref.name
                )
            };
            let rules: Option<&Vec<PolicyRule>> = match b.role_ref.kind.as_str() {
                "Role" => self
                    .roles
                    .iter()
                    .find(|r| {
                        r.metadata.namespace.as_deref() == Some(namespace)
                            && r.metadata.name.as_deref() == Some(b.role_ref.name.as_str())
                    })
                    .and_then(|r| r.rules.as_ref()),
                _ => self
                    .cluster_role(&b.role_ref.name)
                    .and_then(|r| r.rules.as_ref()),
            };
            let w = why(&b.role_ref.kind);
            out.extend(rules.into_iter().flatten().map(|rule| (rule, w.clone())));
        }
        out
    }

    /// Why the request is allowed, or None.
    pub fn allows(&self, user: &User, a: &Attributes) -> Option<String> {
        let ns = match a {
            Attributes::Resource(r) => r.namespace.as_str(),
            Attributes::NonResource { .. } => "",
        };
        self.rules_for(user, ns)
            .into_iter()
            .find(|(rule, _)| {
                // Non-resource URLs count only through ClusterRoleBindings.
                rule_allows(rule, a)
            })
            .map(|(_, why)| format!("RBAC: allowed by {why} to User {:?}", user.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> Policy {
        let cr: ClusterRole = serde_json::from_value(json!({
            "metadata": {"name": "reader"},
            "rules": [
                {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["web"], "verbs": ["get"]},
                {"nonResourceURLs": ["/healthz", "/api/*"], "verbs": ["get"]}
            ]
        }))
        .unwrap_or_default();
        let rb: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "alice-reads", "namespace": "team"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "reader"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "bot"}]
        }))
        .unwrap_or_default();
        let crb: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "ops"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "reader"},
            "subjects": [{"kind": "Group", "name": "ops"}]
        }))
        .unwrap_or_default();
        Policy {
            cluster_roles: vec![cr],
            cluster_bindings: vec![crb],
            roles: vec![],
            bindings: vec![rb],
        }
    }

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            name: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn res(verb: &str, group: &str, resource: &str, sub: &str, ns: &str, name: &str) -> Attributes {
        Attributes::Resource(ResourceAttributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
        })
    }

    #[test]
    fn bindings_rules_and_scopes() {
        let p = policy();
        let alice = user("alice", &[]);
        assert!(p
            .allows(&alice, &res("list", "", "pods", "", "team", ""))
            .is_some());
        assert!(p
            .allows(&alice, &res("list", "", "pods", "", "other", ""))
            .is_none());
        assert!(p
            .allows(&alice, &res("delete", "", "pods", "", "team", "x"))
            .is_none());
        assert!(p
            .allows(&alice, &res("get", "", "pods", "log", "team", "x"))
            .is_some());
        assert!(p
            .allows(&alice, &res("get", "", "pods", "exec", "team", "x"))
            .is_none());
        assert!(p
            .allows(
                &alice,
                &res("get", "apps", "deployments", "", "team", "web")
            )
            .is_some());
        assert!(p
            .allows(&alice, &res("get", "apps", "deployments", "", "team", "db"))
            .is_none());
        let bot = user("system:serviceaccount:team:bot", &[]);
        assert!(p
            .allows(&bot, &res("watch", "", "pods", "", "team", ""))
            .is_some());
        let ops = user("carol", &["ops"]);
        let why = p.allows(&ops, &res("list", "", "pods", "", "", ""));
        assert_eq!(
            why.as_deref(),
            Some("RBAC: allowed by ClusterRoleBinding \"ops\" of ClusterRole \"reader\" to User \"carol\"")
        );
        let get = |path: &str| Attributes::NonResource {
            verb: "get".into(),
            path: path.into(),
        };
        assert!(p.allows(&ops, &get("/healthz")).is_some());
        assert!(p.allows(&ops, &get("/api/v1")).is_some());
        assert!(p.allows(&ops, &get("/apis")).is_none());
        // Non-resource rules reached through a RoleBinding count for nothing.
        assert!(p.allows(&alice, &get("/healthz")).is_none());
    }
}
