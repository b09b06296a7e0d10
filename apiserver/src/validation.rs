//! Name, label and metadata validation with Kubernetes' rules and messages. Pure functions
//! that return every problem found, so a client learns all of them at once. The name rules
//! themselves are `flotilla_core::names`'.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::error::FieldError;

pub use flotilla_core::names::{
    dns1035_label, dns1123_label, dns1123_subdomain, label_key, label_value,
};

pub fn labels(field: &str, labels: &BTreeMap<String, String>) -> Vec<FieldError> {
    let mut out = Vec::new();
    for (k, v) in labels {
        for m in label_key(k) {
            out.push(FieldError::invalid(field, k, m));
        }
        for m in label_value(v) {
            out.push(FieldError::invalid(format!("{field}.{k}"), v, m));
        }
    }
    out
}

/// Which rule an object's name follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    Subdomain,
    Label,
    Dns1035,
    /// Any string a path segment can hold (events, leases).
    PathSegment,
}

/// Annotation keys (qualified names) and their total size, as kube checks them.
pub fn annotations(field: &str, a: &BTreeMap<String, String>) -> Vec<FieldError> {
    let mut out = Vec::new();
    let mut total = 0usize;
    for (k, v) in a {
        total = total.saturating_add(k.len()).saturating_add(v.len());
        for m in label_key(&k.to_lowercase()) {
            out.push(FieldError::invalid(field, k, m));
        }
    }
    if total > TOTAL_ANNOTATION_SIZE {
        out.push(FieldError::too_long(field, TOTAL_ANNOTATION_SIZE));
    }
    out
}

pub fn name(rule: NameRule, name: &str) -> Vec<String> {
    let mut e = path_segment(name);
    if !e.is_empty() {
        return e;
    }
    e = match rule {
        NameRule::Subdomain => dns1123_subdomain(name),
        NameRule::Label => dns1123_label(name),
        NameRule::Dns1035 => dns1035_label(name),
        NameRule::PathSegment => vec![],
    };
    e
}

/// Names that cannot be used in a URL path.
pub fn path_segment(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    for bad in ["/", "%"] {
        if name.contains(bad) {
            return vec![format!("may not contain '{bad}'")];
        }
    }
    vec![]
}

const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

/// The metadata checks every kind shares. `namespaced` says whether the kind lives in a
/// namespace; the request's namespace has already been matched against the object's.
pub fn object_meta(meta: &ObjectMeta, namespaced: bool, rule: NameRule) -> Vec<FieldError> {
    let mut out = Vec::new();
    match meta.name.as_deref() {
        None | Some("") => {
            if meta.generate_name.as_deref().unwrap_or("").is_empty() {
                out.push(FieldError::required(
                    "metadata.name",
                    "name or generateName is required",
                ));
            }
        }
        Some(n) => {
            for m in name(rule, n) {
                out.push(FieldError::invalid("metadata.name", n, m));
            }
        }
    }
    if let Some(g) = meta.generate_name.as_deref().filter(|g| !g.is_empty()) {
        // A generated name is the prefix plus five characters; the prefix may end in '-'.
        let probe = format!("{g}a");
        for m in name(rule, &probe) {
            out.push(FieldError::invalid("metadata.generateName", g, m));
        }
    }
    match (namespaced, meta.namespace.as_deref().unwrap_or("")) {
        (true, "") => out.push(FieldError::required("metadata.namespace", "")),
        (true, ns) => {
            for m in dns1123_label(ns) {
                out.push(FieldError::invalid("metadata.namespace", ns, m));
            }
        }
        (false, "") => {}
        (false, _) => out.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        )),
    }
    if let Some(l) = &meta.labels {
        out.extend(labels("metadata.labels", l));
    }
    if let Some(a) = &meta.annotations {
        out.extend(annotations("metadata.annotations", a));
    }
    for (i, f) in meta.finalizers.iter().flatten().enumerate() {
        for m in label_key(f) {
            out.push(FieldError::invalid(
                format!("metadata.finalizers[{i}]"),
                f,
                m,
            ));
        }
    }
    for (i, r) in meta.owner_references.iter().flatten().enumerate() {
        let field = format!("metadata.ownerReferences[{i}]");
        if r.api_version.is_empty() {
            out.push(FieldError::invalid(
                format!("{field}.apiVersion"),
                "",
                "version must not be empty",
            ));
        }
        if r.kind.is_empty() {
            out.push(FieldError::invalid(
                format!("{field}.kind"),
                "",
                "kind must not be empty",
            ));
        }
        if r.name.is_empty() {
            out.push(FieldError::invalid(
                format!("{field}.name"),
                "",
                "name must not be empty",
            ));
        }
        if r.uid.is_empty() {
            out.push(FieldError::invalid(
                format!("{field}.uid"),
                "",
                "uid must not be empty",
            ));
        }
    }
    let controllers = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.controller == Some(true))
        .count();
    if controllers > 1 {
        out.push(FieldError::invalid_raw(
            "metadata.ownerReferences",
            format!("{controllers} controllers"),
            "Only one reference can have Controller set to true",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(dns1123_subdomain("web-1.example").is_empty());
        assert!(!dns1123_subdomain("Web").is_empty());
        assert!(!dns1123_subdomain("-a").is_empty());
        assert!(!dns1123_subdomain("a..b").is_empty());
        assert!(!dns1123_subdomain(&"a".repeat(254)).is_empty());
        assert!(dns1123_label("kube-system").is_empty());
        assert!(!dns1123_label("a.b").is_empty());
        assert!(!dns1035_label("1abc").is_empty());
        assert!(dns1035_label("abc-1").is_empty());
        assert!(!name(NameRule::PathSegment, "..").is_empty());
        assert!(!name(NameRule::PathSegment, "a/b").is_empty());
    }

    #[test]
    fn object_meta_reports_every_problem() {
        let meta = ObjectMeta {
            name: Some("Bad_Name".into()),
            namespace: Some("default".into()),
            labels: Some([("ok".to_string(), "-bad".to_string())].into()),
            finalizers: Some(vec!["example.com/ok".into(), "bad finalizer".into()]),
            ..Default::default()
        };
        let errs = object_meta(&meta, true, NameRule::Subdomain);
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "metadata.name",
                "metadata.labels.ok",
                "metadata.finalizers[1]"
            ]
        );
        let meta = ObjectMeta {
            namespace: Some("x".into()),
            ..Default::default()
        };
        let errs = object_meta(&meta, false, NameRule::Subdomain);
        assert_eq!(errs.len(), 2, "{errs:?}");
    }
}
