//! What a request asks to do, in the terms RBAC rules speak: a verb on a resource (with
//! its API group, subresource, namespace and name), or a verb on a non-resource path.

use std::collections::HashMap;

use http::Method;

use crate::http::route::ResourcePath;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attributes {
    Resource(ResourceAttributes),
    NonResource { verb: String, path: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceAttributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

impl ResourceAttributes {
    /// `resource` or `resource/subresource`, as rules and messages name it.
    pub fn combined(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// The attributes of a request on a resource path.
pub fn of_resource(method: &Method, p: &ResourcePath, q: &HashMap<String, String>) -> Attributes {
    let has_name = p.name.is_some();
    let watch = q
        .get("watch")
        .is_some_and(|w| !matches!(w.as_str(), "false" | "0" | ""));
    let verb = match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD if has_name => "get",
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD => "list",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if has_name => "delete",
        Method::DELETE => "deletecollection",
        _ => "",
    };
    // A list or watch narrowed to one name by a field selector is about that name.
    let mut name = p.name.clone().unwrap_or_default();
    if !has_name {
        if let Some(sel) = q.get("fieldSelector") {
            for req in sel.split(',') {
                if let Some(n) = req
                    .trim()
                    .strip_prefix("metadata.name=")
                    .or_else(|| req.trim().strip_prefix("metadata.name=="))
                {
                    name = n.to_string();
                }
            }
        }
    }
    let mut namespace = p.namespace.clone().unwrap_or_default();
    // A namespace is inside itself: a RoleBinding there may grant reading it.
    if p.group.is_empty() && p.plural == "namespaces" && namespace.is_empty() {
        namespace = name.clone();
    }
    Attributes::Resource(ResourceAttributes {
        verb: verb.to_string(),
        group: p.group.clone(),
        resource: p.plural.clone(),
        subresource: p.sub.clone().unwrap_or_default(),
        namespace,
        name,
    })
}

/// The attributes of a request on any other path (discovery, OpenAPI, health, metrics).
pub fn of_path(method: &Method, path: &str) -> Attributes {
    Attributes::NonResource {
        verb: method.as_str().to_ascii_lowercase(),
        path: path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(
        group: &str,
        plural: &str,
        ns: Option<&str>,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> ResourcePath {
        ResourcePath {
            group: group.into(),
            version: "v1".into(),
            plural: plural.into(),
            namespace: ns.map(String::from),
            name: name.map(String::from),
            sub: sub.map(String::from),
        }
    }

    #[test]
    fn verbs_from_methods_as_kubernetes_maps_them() {
        let q = HashMap::new();
        let get = |m: Method, p: ResourcePath, q: &HashMap<String, String>| match of_resource(
            &m, &p, q,
        ) {
            Attributes::Resource(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            get(Method::GET, rp("", "pods", Some("d"), None, None), &q).verb,
            "list"
        );
        let w = HashMap::from([("watch".to_string(), "1".to_string())]);
        assert_eq!(
            get(Method::GET, rp("", "pods", None, None, None), &w).verb,
            "watch"
        );
        let r = get(
            Method::GET,
            rp("", "pods", Some("d"), Some("p"), Some("log")),
            &q,
        );
        assert_eq!(
            (r.verb.as_str(), r.combined().as_str()),
            ("get", "pods/log")
        );
        assert_eq!(
            get(Method::DELETE, rp("", "pods", Some("d"), None, None), &q).verb,
            "deletecollection"
        );
        let ns = get(
            Method::GET,
            rp("", "namespaces", None, Some("foo"), None),
            &q,
        );
        assert_eq!(ns.namespace, "foo");
        let one = HashMap::from([("fieldSelector".to_string(), "metadata.name=n1".to_string())]);
        assert_eq!(
            get(Method::GET, rp("", "nodes", None, None, None), &one).name,
            "n1"
        );
    }
}
