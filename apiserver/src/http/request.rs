//! A request parsed once: its route, its query, and for a resource path the kind it
//! names (looked up once), the operation, and the target. Metric labels, authorization
//! attributes and whether it is long-running all derive from this one value; the
//! operations in `ops/` take it as it is. Pure.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, Method};

use super::route::{self, ResourcePath, Route};
use crate::authz::Attributes;
use crate::kinds::{Kinds, Strategy};
use crate::store::Target;

/// What a request on a resource does, as kube-apiserver's metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Apply,
    Delete,
    DeleteCollection,
    /// A method no operation takes (405).
    Other,
}

impl Operation {
    /// The authorization verb (discovery's verbs): `create`, `get`, `patch`, ...
    pub fn verb(self) -> &'static str {
        match self {
            Operation::Get => "get",
            Operation::List => "list",
            Operation::Watch => "watch",
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Patch | Operation::Apply => "patch",
            Operation::Delete => "delete",
            Operation::DeleteCollection => "deletecollection",
            Operation::Other => "",
        }
    }

    /// The `verb` label of kube-apiserver's request metrics.
    pub fn metric_verb(self) -> &'static str {
        match self {
            Operation::Get => "GET",
            Operation::List => "LIST",
            Operation::Watch => "WATCH",
            Operation::Create => "POST",
            Operation::Update => "PUT",
            Operation::Patch => "PATCH",
            Operation::Apply => "APPLY",
            Operation::Delete | Operation::DeleteCollection => "DELETE",
            Operation::Other => "OTHER",
        }
    }
}

/// A request on `/api/...` or `/apis/...` below a resource.
#[derive(Clone)]
pub struct ResourceRequest {
    pub path: ResourcePath,
    /// The served kind; None when nothing serves that group, version and resource.
    pub kind: Option<Arc<dyn Strategy>>,
    pub op: Operation,
}

impl ResourceRequest {
    /// Where it points, once the kind is known to be served.
    pub fn target(&self) -> Option<Target> {
        Some(Target {
            kind: self.kind.clone()?,
            namespace: self.path.namespace.clone(),
            name: self.path.name.clone(),
        })
    }

    pub fn sub(&self) -> Option<&str> {
        self.path.sub.as_deref()
    }
}

pub struct ApiRequest {
    pub method: Method,
    pub path: String,
    pub route: Option<Route>,
    pub query: HashMap<String, String>,
    pub resource: Option<ResourceRequest>,
}

/// The media type of a request body, without parameters, lower case.
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

pub fn parse_bool(q: &HashMap<String, String>, k: &str) -> bool {
    matches!(q.get(k).map(String::as_str), Some("true" | "1"))
}

impl ApiRequest {
    pub fn parse(method: &Method, uri: &http::Uri, headers: &HeaderMap, kinds: &Kinds) -> Self {
        let route = route::parse(uri.path());
        let query = route::query(uri.query());
        let resource = match &route {
            Some(Route::Resource(p)) => {
                let named = p.name.is_some();
                let op = match *method {
                    Method::GET | Method::HEAD if parse_bool(&query, "watch") => Operation::Watch,
                    Method::GET | Method::HEAD if named => Operation::Get,
                    Method::GET | Method::HEAD => Operation::List,
                    Method::POST => Operation::Create,
                    Method::PUT => Operation::Update,
                    Method::PATCH if media_type(headers) == "application/apply-patch+yaml" => {
                        Operation::Apply
                    }
                    Method::PATCH => Operation::Patch,
                    Method::DELETE if named => Operation::Delete,
                    Method::DELETE => Operation::DeleteCollection,
                    _ => Operation::Other,
                };
                Some(ResourceRequest {
                    kind: kinds.find(&p.group, &p.version, &p.plural),
                    path: p.clone(),
                    op,
                })
            }
            _ => None,
        };
        ApiRequest {
            method: method.clone(),
            path: uri.path().to_string(),
            route,
            query,
            resource,
        }
    }

    /// kube-apiserver's metric labels: the verb, and the resource (with its
    /// subresource). Only served resources and subresources are named (empty otherwise),
    /// so bad paths cannot grow the series.
    pub fn metric_labels(&self) -> (&'static str, String) {
        let Some(r) = &self.resource else {
            let verb = match self.method {
                Method::GET | Method::HEAD => "LIST",
                Method::POST => "POST",
                Method::PUT => "PUT",
                Method::PATCH => "PATCH",
                Method::DELETE => "DELETE",
                _ => "OTHER",
            };
            return (verb, String::new());
        };
        let verb = r.op.metric_verb();
        let Some(kind) = &r.kind else {
            return (verb, String::new());
        };
        let resource = match r.sub() {
            Some(s) if kind.info().subresource(s).is_some() => format!("{}/{s}", r.path.plural),
            Some(_) => String::new(),
            None => r.path.plural.clone(),
        };
        (verb, resource)
    }

    /// What RBAC is asked about.
    pub fn attributes(&self) -> Attributes {
        match &self.resource {
            Some(r) => crate::authz::attributes::of_resource(&self.method, &r.path, &self.query),
            None => crate::authz::attributes::of_path(&self.method, &self.path),
        }
    }

    /// Watches and the streaming subresources (kube-apiserver's long-running check: the
    /// verb, or any request for `log`, `exec`, `attach`, `portforward` or `proxy`; exec
    /// and port-forward come as GET or POST): not limited in flight nor by
    /// `--request-timeout`.
    pub fn long_running(&self) -> bool {
        let Some(r) = &self.resource else {
            return false;
        };
        r.op == Operation::Watch
            || matches!(
                r.sub(),
                Some("log" | "exec" | "attach" | "portforward" | "proxy")
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: Method, uri: &str, ct: Option<&str>) -> ApiRequest {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct {
            h.insert(http::header::CONTENT_TYPE, ct.parse().unwrap());
        }
        ApiRequest::parse(&method, &uri.parse().unwrap(), &h, &Kinds::all())
    }

    #[test]
    fn one_parse_gives_operation_labels_and_attributes() {
        let r = parse(Method::GET, "/api/v1/namespaces/d/pods?watch=true", None);
        assert_eq!(r.resource.as_ref().unwrap().op, Operation::Watch);
        assert!(r.long_running());
        assert_eq!(r.metric_labels(), ("WATCH", "pods".to_string()));
        let Attributes::Resource(a) = r.attributes() else {
            panic!("a resource request");
        };
        assert_eq!((a.verb.as_str(), a.namespace.as_str()), ("watch", "d"));

        let r = parse(
            Method::PATCH,
            "/apis/apps/v1/namespaces/d/deployments/web/scale",
            Some("application/merge-patch+json"),
        );
        assert_eq!(
            r.metric_labels(),
            ("PATCH", "deployments/scale".to_string())
        );
        let r = parse(
            Method::PATCH,
            "/api/v1/namespaces/d/pods/p",
            Some("application/apply-patch+yaml; charset=utf-8"),
        );
        assert_eq!(r.resource.as_ref().unwrap().op, Operation::Apply);
        // Unknown resources and subresources are not named.
        let r = parse(Method::GET, "/api/v1/namespaces/d/pods/p/attach", None);
        assert_eq!(r.metric_labels(), ("GET", String::new()));
        let r = parse(Method::GET, "/apis/nope/v1/things", None);
        assert!(r.resource.as_ref().unwrap().kind.is_none());
        assert_eq!(r.metric_labels(), ("LIST", String::new()));
        let r = parse(
            Method::GET,
            "/api/v1/namespaces/d/pods/p/log?follow=true",
            None,
        );
        assert!(r.long_running());
        // By verb and subresource only: `watch` on a POST is a create.
        let r = parse(Method::POST, "/api/v1/namespaces/d/pods?watch=true", None);
        assert_eq!(r.resource.as_ref().unwrap().op, Operation::Create);
        assert!(!r.long_running());
        assert!(parse(Method::POST, "/api/v1/namespaces/d/pods/p/exec", None).long_running());
        assert!(!parse(Method::POST, "/api/v1/namespaces/d/pods/p/binding", None).long_running());
    }
}
