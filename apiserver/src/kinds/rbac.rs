//! rbac.authorization.k8s.io/v1: Roles and ClusterRoles (rules), RoleBindings and
//! ClusterRoleBindings (subjects to a role). The authorizer (`authz/`) reads them from the
//! watch cache.

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use super::Kind;
use crate::error::FieldError;
use crate::validation::NameRule;

pub struct Roles;
pub struct ClusterRoles;
pub struct RoleBindings;
pub struct ClusterRoleBindings;

/// Role names are path segments (anything without `/` or `%`, not `.` or `..`).
const NAME_RULE: NameRule = NameRule::PathSegment;

fn rules(rules: &[PolicyRule], cluster: bool, errs: &mut Vec<FieldError>) {
    for (i, r) in rules.iter().enumerate() {
        let f = |n: &str| format!("rules[{i}].{n}");
        if r.verbs.is_empty() {
            errs.push(FieldError::required(
                f("verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = r.non_resource_urls.as_deref().unwrap_or(&[]);
        if !urls.is_empty() {
            if !cluster {
                errs.push(FieldError::invalid(
                    f("nonResourceURLs"),
                    &urls.join(","),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if r.api_groups.as_ref().is_some_and(|g| !g.is_empty())
                || r.resources.as_ref().is_some_and(|g| !g.is_empty())
            {
                errs.push(FieldError::invalid(
                    f("nonResourceURLs"),
                    &urls.join(","),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
        } else {
            if r.api_groups.as_ref().is_none_or(|g| g.is_empty()) {
                errs.push(FieldError::required(
                    f("apiGroups"),
                    "resource rules must supply at least one api group",
                ));
            }
            if r.resources.as_ref().is_none_or(|g| g.is_empty()) {
                errs.push(FieldError::required(
                    f("resources"),
                    "resource rules must supply at least one resource",
                ));
            }
        }
    }
}

fn role_ref(r: &RoleRef, cluster_binding: bool, errs: &mut Vec<FieldError>) {
    let ok = if cluster_binding {
        r.kind == "ClusterRole"
    } else {
        r.kind == "Role" || r.kind == "ClusterRole"
    };
    if !ok {
        let allowed: &[&str] = if cluster_binding {
            &["ClusterRole"]
        } else {
            &["Role", "ClusterRole"]
        };
        errs.push(FieldError::not_supported("roleRef.kind", &r.kind, allowed));
    }
    if r.api_group != "rbac.authorization.k8s.io" {
        errs.push(FieldError::not_supported(
            "roleRef.apiGroup",
            &r.api_group,
            &["rbac.authorization.k8s.io"],
        ));
    }
    if r.name.is_empty() {
        errs.push(FieldError::required("roleRef.name", ""));
    }
}

fn subjects(subjects: &[Subject], cluster_binding: bool, errs: &mut Vec<FieldError>) {
    for (i, s) in subjects.iter().enumerate() {
        let f = |n: &str| format!("subjects[{i}].{n}");
        if s.name.is_empty() {
            errs.push(FieldError::required(f("name"), ""));
        }
        match s.kind.as_str() {
            "ServiceAccount" => {
                if cluster_binding && s.namespace.as_deref().unwrap_or("").is_empty() {
                    errs.push(FieldError::required(f("namespace"), ""));
                }
            }
            "User" | "Group" => {}
            other => errs.push(FieldError::not_supported(
                f("kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
}

impl Kind for Roles {
    type Obj = Role;
    const SINGULAR: &'static str = "role";
    const NAME_RULE: NameRule = NAME_RULE;
    fn validate(r: &Role) -> Vec<FieldError> {
        let mut errs = Vec::new();
        rules(r.rules.as_deref().unwrap_or(&[]), false, &mut errs);
        errs
    }
}

impl Kind for ClusterRoles {
    type Obj = ClusterRole;
    const SINGULAR: &'static str = "clusterrole";
    const NAME_RULE: NameRule = NAME_RULE;
    fn validate(r: &ClusterRole) -> Vec<FieldError> {
        let mut errs = Vec::new();
        rules(r.rules.as_deref().unwrap_or(&[]), true, &mut errs);
        errs
    }
}

impl Kind for RoleBindings {
    type Obj = RoleBinding;
    const SINGULAR: &'static str = "rolebinding";
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::other::ROLEBINDING);
    const NAME_RULE: NameRule = NAME_RULE;
    fn validate(b: &RoleBinding) -> Vec<FieldError> {
        let mut errs = Vec::new();
        role_ref(&b.role_ref, false, &mut errs);
        subjects(b.subjects.as_deref().unwrap_or(&[]), false, &mut errs);
        errs
    }
}

impl Kind for ClusterRoleBindings {
    type Obj = ClusterRoleBinding;
    const SINGULAR: &'static str = "clusterrolebinding";
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::other::ROLEBINDING);
    const NAME_RULE: NameRule = NAME_RULE;
    fn validate(b: &ClusterRoleBinding) -> Vec<FieldError> {
        let mut errs = Vec::new();
        role_ref(&b.role_ref, true, &mut errs);
        subjects(b.subjects.as_deref().unwrap_or(&[]), true, &mut errs);
        errs
    }
}
