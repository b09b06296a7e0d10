//! Name, label and metadata validation with Kubernetes' rules and messages. Pure functions
//! that return every problem found, so a client learns all of them at once.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::error::FieldError;

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn too_long(max: usize) -> String {
    format!("must be no more than {max} characters")
}

fn is_label(s: &str, first_alpha: bool) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && (if first_alpha {
            b[0].is_ascii_lowercase()
        } else {
            b[0] != b'-'
        })
        && b[b.len() - 1] != b'-'
}

/// RFC 1123 label (namespaces, container names, port names...).
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut e = Vec::new();
    if s.len() > 63 {
        e.push(too_long(63));
    }
    if !is_label(s, false) {
        e.push(DNS1123_LABEL_MSG.to_string());
    }
    e
}

/// RFC 1123 subdomain (most object names).
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut e = Vec::new();
    if s.len() > 253 {
        e.push(too_long(253));
    }
    if s.is_empty() || !s.split('.').all(|l| is_label(l, false)) {
        e.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    e
}

/// RFC 1035 label (service names).
pub fn dns1035_label(s: &str) -> Vec<String> {
    let mut e = Vec::new();
    if s.len() > 63 {
        e.push(too_long(63));
    }
    if !is_label(s, true) {
        e.push(DNS1035_LABEL_MSG.to_string());
    }
    e
}

fn is_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A qualified name: `[prefix/]name`, as label and annotation keys and finalizers are.
pub fn label_key(k: &str) -> Vec<String> {
    let mut e = Vec::new();
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            e.push("prefix part must be non-empty".to_string());
        } else {
            e.extend(
                dns1123_subdomain(p)
                    .into_iter()
                    .map(|m| format!("prefix part {m}")),
            );
        }
    }
    if name.is_empty() {
        e.push("name part must be non-empty".to_string());
    } else {
        if name.len() > 63 {
            e.push(format!("name part {}", too_long(63)));
        }
        if !is_qualified_part(name) {
            e.push(QUALIFIED_NAME_MSG.to_string());
        }
    }
    e
}

pub fn label_value(v: &str) -> Vec<String> {
    let mut e = Vec::new();
    if v.len() > 63 {
        e.push(too_long(63));
    }
    if !v.is_empty() && !is_qualified_part(v) {
        e.push(LABEL_VALUE_MSG.to_string());
    }
    e
}

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
        let mut total = 0;
        for (k, v) in a {
            total += k.len() + v.len();
            for m in label_key(&k.to_lowercase()) {
                out.push(FieldError::invalid("metadata.annotations", k, m));
            }
        }
        if total > TOTAL_ANNOTATION_SIZE {
            out.push(FieldError::too_long(
                "metadata.annotations",
                TOTAL_ANNOTATION_SIZE,
            ));
        }
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
    fn label_keys_and_values() {
        assert!(label_key("app.kubernetes.io/name").is_empty());
        assert!(label_key("App_Name").is_empty());
        assert!(!label_key("/x").is_empty());
        assert!(!label_key("a/b/c").is_empty());
        assert!(!label_key(&"x".repeat(64)).is_empty());
        assert!(label_value("").is_empty());
        assert!(!label_value("-x").is_empty());
        assert!(!label_value(&"x".repeat(64)).is_empty());
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
