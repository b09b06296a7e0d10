//! metrics.k8s.io/v1beta1 (NodeMetrics and PodMetrics, what `kubectl top` and the
//! HorizontalPodAutoscaler read), served by the apiserver itself rather than by a
//! metrics-server behind API aggregation: the numbers come from the agents' summaries
//! (`scrape.rs`), read when requests need them and kept for the metric resolution, so
//! an idle cluster costs nothing and three apiserver replicas cost three reads per 15 s
//! only while somebody asks. Get and list only (with label selectors), authorized by RBAC
//! as `get`/`list` on `nodes` and `pods` of the group, as kube authorizes the aggregated
//! API; like the reviews (`crate::reviews`) it is a table of resources, not a stored kind.

pub mod convert;
pub mod scrape;

use std::collections::HashMap;

use hyper::Method;
use serde_json::{json, Value};

use crate::error::{ApiError, GroupResource};
use crate::http::route::ResourcePath;
use crate::http::Shared;
use crate::selector::LabelSelector;
use convert::{GROUP, VERSION};

/// `(plural, kind, namespaced)` of the served resources.
const RESOURCES: &[(&str, &str, bool)] = &[
    ("nodes", "NodeMetrics", false),
    ("pods", "PodMetrics", true),
];

pub fn serves(p: &ResourcePath) -> bool {
    p.group == GROUP && p.version == VERSION && p.sub.is_none()
}

fn group_json() -> Value {
    let gv = json!({ "groupVersion": format!("{GROUP}/{VERSION}"), "version": VERSION });
    json!({ "name": GROUP, "versions": [gv.clone()], "preferredVersion": gv })
}

/// Adds the group to an `APIGroupList`.
pub fn add_group(list: &mut Value) {
    if let Some(groups) = list.get_mut("groups").and_then(Value::as_array_mut) {
        if !groups.iter().any(|g| g["name"] == GROUP) {
            groups.push(group_json());
        }
    }
}

pub fn group(name: &str) -> Option<Value> {
    (name == GROUP).then(|| {
        let mut doc = group_json();
        doc["kind"] = "APIGroup".into();
        doc["apiVersion"] = "v1".into();
        doc
    })
}

pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    (group == GROUP && version == VERSION).then(|| {
        let resources: Vec<Value> = RESOURCES
            .iter()
            .map(|(plural, kind, namespaced)| {
                json!({"name": plural, "singularName": "", "namespaced": namespaced,
                       "kind": kind, "verbs": ["get", "list"]})
            })
            .collect();
        json!({"kind": "APIResourceList", "apiVersion": "v1",
               "groupVersion": format!("{GROUP}/{VERSION}"), "resources": resources})
    })
}

fn not_found(resource: &'static str, name: &str) -> ApiError {
    ApiError::NotFound {
        gr: GroupResource {
            group: GROUP,
            resource,
        },
        name: name.to_string(),
    }
}

/// A GET of `p`: one object, or a list filtered by the `labelSelector` in `q`.
pub async fn serve(
    shared: &std::sync::Arc<Shared>,
    method: &Method,
    p: &ResourcePath,
    q: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    if method != Method::GET {
        return Err(ApiError::MethodNotAllowed);
    }
    let selector = match q.get("labelSelector").filter(|s| !s.is_empty()) {
        Some(s) => Some(LabelSelector::parse(s).map_err(ApiError::BadRequest)?),
        None => None,
    };
    let selected = |v: &Value| {
        let labels: std::collections::BTreeMap<String, String> =
            serde_json::from_value(v["metadata"]["labels"].clone()).unwrap_or_default();
        selector.as_ref().is_none_or(|s| s.matches(&labels))
    };
    let round = shared.resource_metrics.round(shared).await?;
    let (items, list_kind): (Vec<Value>, &str) = match (p.plural.as_str(), &p.namespace, &p.name) {
        ("nodes", None, Some(n)) => {
            return round
                .nodes
                .get(n)
                .cloned()
                .ok_or_else(|| not_found("nodes", n));
        }
        ("nodes", None, None) => (
            round
                .nodes
                .values()
                .filter(|v| selected(v))
                .cloned()
                .collect(),
            "NodeMetricsList",
        ),
        ("pods", Some(ns), Some(n)) => {
            return round
                .pods
                .get(&(ns.clone(), n.clone()))
                .cloned()
                .ok_or_else(|| not_found("pods", n));
        }
        ("pods", ns, None) => (
            round
                .pods
                .iter()
                .filter(|((pns, _), _)| ns.as_ref().is_none_or(|n| n == pns))
                .map(|(_, v)| v)
                .filter(|v| selected(v))
                .cloned()
                .collect(),
            "PodMetricsList",
        ),
        _ => return Err(ApiError::NoRoute),
    };
    Ok(json!({
        "kind": list_kind,
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {},
        "items": items,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_lists_nodes_and_pods_for_get_and_list() {
        let mut list = json!({"groups": [{"name": "apps"}]});
        add_group(&mut list);
        add_group(&mut list);
        assert_eq!(list["groups"].as_array().unwrap().len(), 2);
        assert_eq!(
            list["groups"][1]["preferredVersion"]["groupVersion"],
            "metrics.k8s.io/v1beta1"
        );
        let r = resource_list("metrics.k8s.io", "v1beta1").unwrap();
        assert_eq!(r["resources"][0]["kind"], "NodeMetrics");
        assert_eq!(r["resources"][1]["namespaced"], true);
        assert!(resource_list("metrics.k8s.io", "v1").is_none());
        assert_eq!(group("metrics.k8s.io").unwrap()["kind"], "APIGroup");
    }
}
