//! RBAC escalation prevention, as kube-apiserver's RBAC storage enforces it: whoever may
//! write Roles or bindings may still grant only what they hold.
//! - A Role or ClusterRole may be stored only if the writer holds every permission in it
//!   (in the Role's namespace; cluster-wide for a ClusterRole), or may `escalate` roles
//!   (clusterroles). An `aggregationRule` needs `escalate`.
//! - A RoleBinding or ClusterRoleBinding may be stored only if the writer holds every
//!   permission of the role it references (in the binding's namespace; cluster-wide for a
//!   ClusterRoleBinding), or may `bind` that role by name.
//!
//! Members of `system:masters` (and `--authorization-mode=AlwaysAllow`) may do anything.
//! The check runs on the object as it will be stored ([`crate::store::WriteCheck`]), so
//! updates and patches are held to it too.

use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef};
use serde_json::Value;

use super::attributes::{Attributes, ResourceAttributes};
use super::rbac::Policy;
use super::Authorizer;
use crate::auth::User;
use crate::error::{ApiError, GroupResource};
use crate::kinds::ResourceInfo;

const GROUP: &str = "rbac.authorization.k8s.io";

/// The check for a write of `info` by `user`, if one applies.
pub fn check_for(
    authorizer: &Authorizer,
    user: &User,
    info: &ResourceInfo,
) -> Option<Arc<dyn crate::store::WriteCheck>> {
    if info.group != GROUP || authorizer.unrestricted(user) {
        return None;
    }
    Some(Arc::new(Escalation {
        user: user.clone(),
        policy: authorizer.policy(),
    }))
}

struct Escalation {
    user: User,
    /// None while the authorization cache is not synced.
    policy: Option<Arc<Policy>>,
}

impl crate::store::WriteCheck for Escalation {
    fn check(&self, info: &ResourceInfo, obj: &Value) -> Result<(), ApiError> {
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
        let forbidden = |why: String| {
            ApiError::Forbidden(format!(
                "{}.{GROUP} {name:?} is forbidden: {why}",
                info.plural
            ))
        };
        let Some(policy) = &self.policy else {
            return Err(forbidden(
                "RBAC: the authorization cache is not synced yet".into(),
            ));
        };
        let may = |verb: &str, resource: &str, name: &str| {
            let a = Attributes::Resource(ResourceAttributes {
                verb: verb.into(),
                group: GROUP.into(),
                resource: resource.into(),
                namespace: ns.into(),
                name: name.into(),
                ..Default::default()
            });
            policy.allows(&self.user, &a).is_some()
        };
        let rules: Vec<PolicyRule> = match info.plural {
            "roles" | "clusterroles" => {
                if may("escalate", info.plural, "") {
                    return Ok(());
                }
                if !obj["aggregationRule"].is_null() {
                    return Err(forbidden(
                        "must have cluster-admin privileges to use the aggregationRule".into(),
                    ));
                }
                serde_json::from_value(obj["rules"].clone()).unwrap_or_default()
            }
            "rolebindings" | "clusterrolebindings" => {
                let r: RoleRef = serde_json::from_value(obj["roleRef"].clone())
                    .map_err(|e| ApiError::BadRequest(format!("roleRef: {e}")))?;
                let resource = if r.kind == "Role" {
                    "roles"
                } else {
                    "clusterroles"
                };
                if may("bind", resource, &r.name) {
                    return Ok(());
                }
                referenced_rules(policy, &r, ns)?
            }
            _ => return Ok(()),
        };
        let held: Vec<&PolicyRule> = policy
            .rules_for(&self.user, ns)
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        let missing = missing(&held, &rules);
        if missing.is_empty() {
            return Ok(());
        }
        Err(forbidden(format!(
            "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
            self.user.name,
            go_quoted(&self.user.groups),
            missing.join("\n")
        )))
    }
}

/// The rules of the role a binding references (a Role in the binding's namespace).
fn referenced_rules(policy: &Policy, r: &RoleRef, ns: &str) -> Result<Vec<PolicyRule>, ApiError> {
    let found = if r.kind == "Role" {
        policy
            .roles
            .iter()
            .find(|x| {
                x.metadata.namespace.as_deref() == Some(ns)
                    && x.metadata.name.as_deref() == Some(r.name.as_str())
            })
            .map(|x| x.rules.clone().unwrap_or_default())
    } else {
        policy
            .cluster_roles
            .iter()
            .find(|x| x.metadata.name.as_deref() == Some(r.name.as_str()))
            .map(|x| x.rules.clone().unwrap_or_default())
    };
    found.ok_or_else(|| ApiError::NotFound {
        gr: GroupResource {
            group: GROUP,
            resource: if r.kind == "Role" {
                "roles"
            } else {
                "clusterroles"
            },
        },
        name: r.name.clone(),
    })
}

/// One permission: a verb on one group, resource and name (empty: every name), or on
/// one non-resource URL.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom<'a> {
    Resource {
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        name: Option<&'a str>,
    },
    Url {
        verb: &'a str,
        url: &'a str,
    },
}

fn list(v: &Option<Vec<String>>) -> &[String] {
    v.as_deref().unwrap_or(&[])
}

/// A rule broken down into single permissions (kube's BreakdownRule).
fn atoms(rule: &PolicyRule) -> Vec<Atom<'_>> {
    let mut out = vec![];
    for verb in &rule.verbs {
        for group in list(&rule.api_groups) {
            for resource in list(&rule.resources) {
                let names = list(&rule.resource_names);
                if names.is_empty() {
                    out.push(Atom::Resource {
                        verb,
                        group,
                        resource,
                        name: None,
                    });
                }
                for n in names {
                    out.push(Atom::Resource {
                        verb,
                        group,
                        resource,
                        name: Some(n),
                    });
                }
            }
        }
        for url in list(&rule.non_resource_urls) {
            out.push(Atom::Url { verb, url });
        }
    }
    out
}

fn has(set: &[String], want: &str) -> bool {
    set.iter().any(|x| x == "*" || x == want)
}

/// Whether a held rule grants one permission (kube's ruleCovers, for one atom).
fn covers(owner: &PolicyRule, atom: &Atom) -> bool {
    match *atom {
        Atom::Resource {
            verb,
            group,
            resource,
            name,
        } => {
            let resources = list(&owner.resources);
            let resource_ok = has(resources, resource)
                || resource
                    .split_once('/')
                    .is_some_and(|(_, sub)| resources.iter().any(|r| *r == format!("*/{sub}")));
            let names = list(&owner.resource_names);
            has(&owner.verbs, verb)
                && has(list(&owner.api_groups), group)
                && resource_ok
                && (names.is_empty() || name.is_some_and(|n| names.iter().any(|x| x == n)))
        }
        Atom::Url { verb, url } => {
            has(&owner.verbs, verb)
                && list(&owner.non_resource_urls).iter().any(|u| {
                    u == "*" || u == url || u.strip_suffix('*').is_some_and(|p| url.starts_with(p))
                })
        }
    }
}

/// The permissions of `wanted` that no rule of `held` grants, in kube's words (its
/// CompactString, one line per group/resource/name with their verbs together, sorted).
fn missing(held: &[&PolicyRule], wanted: &[PolicyRule]) -> Vec<String> {
    // (groups, resources, names, urls) → verbs, in first-seen order.
    let mut lacking: Vec<(String, String, String, String, Vec<&str>)> = vec![];
    for rule in wanted {
        for atom in atoms(rule) {
            if held.iter().any(|h| covers(h, &atom)) {
                continue;
            }
            let (verb, key) = match atom {
                Atom::Resource {
                    verb,
                    group,
                    resource,
                    name,
                } => (
                    verb,
                    (
                        go_quoted(&[group]),
                        go_quoted(&[resource]),
                        name.map(|n| go_quoted(&[n])).unwrap_or_default(),
                        String::new(),
                    ),
                ),
                Atom::Url { verb, url } => (
                    verb,
                    (
                        String::new(),
                        String::new(),
                        String::new(),
                        go_quoted(&[url]),
                    ),
                ),
            };
            match lacking
                .iter_mut()
                .find(|l| (&l.0, &l.1, &l.2, &l.3) == (&key.0, &key.1, &key.2, &key.3))
            {
                Some(l) if !l.4.contains(&verb) => l.4.push(verb),
                Some(_) => {}
                None => lacking.push((key.0, key.1, key.2, key.3, vec![verb])),
            }
        }
    }
    let mut out: Vec<String> = lacking
        .into_iter()
        .map(|(groups, resources, names, urls, verbs)| {
            let mut parts = vec![];
            if !groups.is_empty() {
                parts.push(format!("APIGroups:{groups}"));
            }
            if !resources.is_empty() {
                parts.push(format!("Resources:{resources}"));
            }
            if !urls.is_empty() {
                parts.push(format!("NonResourceURLs:{urls}"));
            }
            if !names.is_empty() {
                parts.push(format!("ResourceNames:{names}"));
            }
            parts.push(format!("Verbs:{}", go_quoted(&verbs)));
            format!("{{{}}}", parts.join(", "))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A list as Go's `%q` prints a []string: `["a" "b"]`.
fn go_quoted<S: AsRef<str>>(items: &[S]) -> String {
    let inner: Vec<String> = items
        .iter()
        .map(|s| serde_json::to_string(s.as_ref()).unwrap_or_default())
        .collect();
    format!("[{}]", inner.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(v: Value) -> PolicyRule {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn held_rules_cover_what_they_grant_and_no_more() {
        let held = [
            rule(
                json!({"apiGroups": [""], "resources": ["pods", "*/log"], "verbs": ["get", "list"]}),
            ),
            rule(
                json!({"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["web"], "verbs": ["*"]}),
            ),
            rule(json!({"nonResourceURLs": ["/healthz/*"], "verbs": ["get"]})),
        ];
        let held: Vec<&PolicyRule> = held.iter().collect();
        let ok = [
            rule(json!({"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]})),
            rule(
                json!({"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["web"], "verbs": ["delete"]}),
            ),
            rule(json!({"nonResourceURLs": ["/healthz/etcd"], "verbs": ["get"]})),
        ];
        assert!(missing(&held, &ok).is_empty());
        let too_much = [
            rule(
                json!({"apiGroups": [""], "resources": ["pods", "secrets"], "verbs": ["get", "delete"]}),
            ),
            // Every name is more than one name.
            rule(json!({"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]})),
            rule(json!({"nonResourceURLs": ["/metrics"], "verbs": ["get"]})),
        ];
        assert_eq!(
            missing(&held, &too_much),
            vec![
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#,
                r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get" "delete"]}"#,
                r#"{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}"#,
                r#"{NonResourceURLs:["/metrics"], Verbs:["get"]}"#,
            ]
        );
        // A wildcard held covers everything.
        let admin = rule(json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}));
        let urls = rule(json!({"nonResourceURLs": ["*"], "verbs": ["*"]}));
        assert!(missing(&[&admin, &urls], &too_much).is_empty());
    }

    #[test]
    fn groups_print_as_go_does() {
        assert_eq!(
            go_quoted(&["system:authenticated", "a\"b"]),
            r#"["system:authenticated" "a\"b"]"#
        );
        assert_eq!(go_quoted::<&str>(&[]), "[]");
    }
}
