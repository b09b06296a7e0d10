//! Which webhooks a request reaches, as kube's webhook dispatcher decides it: a rule
//! (operation, group, version, resource and subresource, scope), then the namespace and
//! object selectors. Pure: the namespace's labels and the objects come from the caller.

use flotilla_core::labels::{self, Labels};
use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, NamedRuleWithOperations, RuleWithOperations, ValidatingWebhook,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

/// What a rule looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub operation: &'a str,
    pub group: &'a str,
    pub version: &'a str,
    pub resource: &'a str,
    /// "" for the object itself.
    pub subresource: &'a str,
    pub namespaced: bool,
    /// The request is for a Namespace object (its own labels are the namespace's).
    pub namespace_object: bool,
}

fn any_or<'a>(list: Option<&'a Vec<String>>, v: &str) -> bool {
    list.is_some_and(|l| l.iter().any(|x| x == "*" || x == v))
}

/// A `resources` entry: `pods` (not its subresources), `pods/*` (pods and every
/// subresource: kube's matcher takes `*` for any subresource, none included),
/// `pods/status`, `*` (every resource, no subresource), `*/*` (everything), `*/scale`.
pub fn resource_matches(pattern: &str, resource: &str, sub: &str) -> bool {
    match pattern.split_once('/') {
        None => sub.is_empty() && (pattern == "*" || pattern == resource),
        Some((r, s)) => (r == "*" || r == resource) && (s == "*" || s == sub),
    }
}

pub fn rule_matches(r: &RuleWithOperations, q: &Request) -> bool {
    let scope = match r.scope.as_deref().unwrap_or("*") {
        "Cluster" => !q.namespaced,
        "Namespaced" => q.namespaced,
        _ => true,
    };
    scope
        && any_or(r.operations.as_ref(), q.operation)
        && any_or(r.api_groups.as_ref(), q.group)
        && any_or(r.api_versions.as_ref(), q.version)
        && r.resources
            .iter()
            .flatten()
            .any(|p| resource_matches(p, q.resource, q.subresource))
}

/// Whether any of the webhook's rules match.
pub fn rules_match(w: &ValidatingWebhook, q: &Request) -> bool {
    w.rules.iter().flatten().any(|r| rule_matches(r, q))
}

/// A policy's rule: a webhook rule, and when `resourceNames` is given, the name too.
pub fn named_rule_matches(r: &NamedRuleWithOperations, q: &Request, name: &str) -> bool {
    let rule = RuleWithOperations {
        api_groups: r.api_groups.clone(),
        api_versions: r.api_versions.clone(),
        operations: r.operations.clone(),
        resources: r.resources.clone(),
        scope: r.scope.clone(),
    };
    rule_matches(&rule, q)
        && r.resource_names
            .as_ref()
            .is_none_or(|n| n.is_empty() || n.iter().any(|x| x == name))
}

/// A policy's or binding's MatchResources: a resource rule matches (or, with `all`, there
/// is none: a binding's narrowing without rules keeps all its policy matches) and no
/// exclude rule does, and both selectors match.
pub fn resources_match(
    m: &MatchResources,
    all: bool,
    q: &Request,
    name: &str,
    obj: Option<&Value>,
    old: Option<&Value>,
    ns_labels: Option<&Labels>,
) -> bool {
    let rules = m.resource_rules.as_deref().unwrap_or(&[]);
    (all && rules.is_empty() || rules.iter().any(|r| named_rule_matches(r, q, name)))
        && !m
            .exclude_resource_rules
            .iter()
            .flatten()
            .any(|r| named_rule_matches(r, q, name))
        && namespace_matches(m.namespace_selector.as_ref(), q, ns_labels)
        && object_matches(m.object_selector.as_ref(), obj, old)
}

/// The labels of an object (none for null).
pub fn labels_of(obj: Option<&Value>) -> Labels {
    obj.and_then(|o| o["metadata"]["labels"].as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The namespace selector: cluster-scoped requests match it (but a Namespace, which is
/// matched by its own labels); `ns_labels` None: a namespaced request whose namespace is
/// not found, which matches only an empty selector.
pub fn namespace_matches(
    sel: Option<&LabelSelector>,
    q: &Request,
    ns_labels: Option<&Labels>,
) -> bool {
    let Some(sel) = sel else {
        return true;
    };
    if labels::is_empty(sel) {
        return true;
    }
    if !q.namespaced && !q.namespace_object {
        return true;
    }
    ns_labels.is_some_and(|l| labels::matches(sel, l))
}

/// The object selector, on the new object or the old one (either matching is enough).
pub fn object_matches(
    sel: Option<&LabelSelector>,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> bool {
    let Some(sel) = sel else {
        return true;
    };
    if labels::is_empty(sel) {
        return true;
    }
    [obj, old]
        .into_iter()
        .flatten()
        .any(|o| labels::matches(sel, &labels_of(Some(o))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(v: Value) -> RuleWithOperations {
        serde_json::from_value(v).unwrap()
    }

    const CM: Request = Request {
        operation: "CREATE",
        group: "",
        version: "v1",
        resource: "configmaps",
        subresource: "",
        namespaced: true,
        namespace_object: false,
    };

    #[test]
    fn resources_and_subresources() {
        assert!(resource_matches("pods", "pods", ""));
        assert!(!resource_matches("pods", "pods", "status"));
        assert!(resource_matches("pods/*", "pods", "status"));
        // As kube's matcher: `*` as the subresource also matches none.
        assert!(resource_matches("pods/*", "pods", ""));
        assert!(resource_matches("*", "configmaps", ""));
        assert!(!resource_matches("*", "pods", "status"));
        assert!(resource_matches("*/*", "pods", "status"));
        assert!(resource_matches("*/scale", "deployments", "scale"));
        assert!(!resource_matches("*/scale", "deployments", "status"));
    }

    #[test]
    fn rules_look_at_every_part_and_the_scope() {
        let r = rule(
            json!({"operations": ["CREATE", "UPDATE"], "apiGroups": [""],
            "apiVersions": ["v1"], "resources": ["configmaps"], "scope": "Namespaced"}),
        );
        assert!(rule_matches(&r, &CM));
        assert!(!rule_matches(
            &r,
            &Request {
                operation: "DELETE",
                ..CM
            }
        ));
        assert!(!rule_matches(
            &r,
            &Request {
                group: "apps",
                ..CM
            }
        ));
        assert!(!rule_matches(
            &r,
            &Request {
                namespaced: false,
                ..CM
            }
        ));
        let all = rule(json!({"operations": ["*"], "apiGroups": ["*"],
            "apiVersions": ["*"], "resources": ["*"]}));
        assert!(rule_matches(
            &all,
            &Request {
                group: "apps",
                operation: "DELETE",
                ..CM
            }
        ));
        assert!(!rule_matches(
            &all,
            &Request {
                subresource: "status",
                ..CM
            }
        ));
    }

    #[test]
    fn selectors() {
        let w: ValidatingWebhook = serde_json::from_value(json!({
            "name": "a.b.c", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"url": "https://x"},
            "namespaceSelector": {"matchLabels": {"team": "a"}},
            "objectSelector": {"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}
        }))
        .unwrap();
        let team_a: Labels = [("team".to_string(), "a".to_string())].into();
        let ns = w.namespace_selector.as_ref();
        assert!(namespace_matches(ns, &CM, Some(&team_a)));
        assert!(!namespace_matches(ns, &CM, Some(&Labels::new())));
        assert!(!namespace_matches(ns, &CM, None));
        assert!(namespace_matches(
            ns,
            &Request {
                namespaced: false,
                ..CM
            },
            None
        ));
        let plain = json!({"metadata": {"name": "x"}});
        let skipped = json!({"metadata": {"name": "x", "labels": {"skip": "yes"}}});
        let o = w.object_selector.as_ref();
        assert!(object_matches(o, Some(&plain), None));
        assert!(!object_matches(o, Some(&skipped), None));
        assert!(object_matches(o, Some(&skipped), Some(&plain)));
    }
}
