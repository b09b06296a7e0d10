//! Aggregated discovery (apidiscovery.k8s.io/v2 `APIGroupDiscoveryList`): what kubectl
//! since 1.26 asks `/api` and `/apis` for first, every group, version and resource in one
//! answer instead of one request per group-version. Built from the same per-version
//! `APIResourceList`s the legacy endpoints serve, so both always agree: subresources
//! (`deployments/scale`) nest under their resource, kinds of another group-version
//! (`autoscaling/v1` Scale) keep it. Pure.

use serde_json::{json, Value};

/// The media type of the answer (also what a client names in Accept).
pub const MEDIA: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an Accept header asks for aggregated discovery v2.
pub fn wanted(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|m| {
            let params: Vec<&str> = m.split(';').map(str::trim).collect();
            params.contains(&"g=apidiscovery.k8s.io")
                && params.contains(&"v=v2")
                && params.contains(&"as=APIGroupDiscoveryList")
        })
    })
}

/// A group's entry: `versions` are its (version, APIResourceList) in priority order.
pub fn group(name: &str, versions: &[(String, Value)]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|(v, list)| json!({"version": v, "resources": resources(name, v, list), "freshness": "Current"}))
        .collect();
    let mut g = json!({"metadata": {"creationTimestamp": null}, "versions": versions});
    if !name.is_empty() {
        g["metadata"]["name"] = name.into();
    }
    g
}

/// The whole answer.
pub fn list(groups: Vec<Value>) -> Value {
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
           "metadata": {}, "items": groups})
}

fn resources(group: &str, version: &str, list: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for r in list["resources"].as_array().into_iter().flatten() {
        let name = r["name"].as_str().unwrap_or("");
        let kind = json!({
            "group": r["group"].as_str().unwrap_or(group),
            "version": r["version"].as_str().unwrap_or(version),
            "kind": r["kind"],
        });
        match name.split_once('/') {
            None => {
                let scope = if r["namespaced"].as_bool() == Some(true) {
                    "Namespaced"
                } else {
                    "Cluster"
                };
                let mut e = json!({"resource": name, "responseKind": kind, "scope": scope,
                    "singularResource": r["singularName"], "verbs": r["verbs"]});
                for f in ["shortNames", "categories"] {
                    if let Some(v) = r.get(f) {
                        e[f] = v.clone();
                    }
                }
                out.push(e);
            }
            Some((parent, sub)) => {
                if let Some(p) = out.iter_mut().find(|e| e["resource"] == parent) {
                    let s = json!({"subresource": sub, "responseKind": kind, "verbs": r["verbs"]});
                    match p["subresources"].as_array_mut() {
                        Some(a) => a.push(s),
                        None => p["subresources"] = json!([s]),
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectls_accept_header_asks_for_it() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert!(wanted(Some(kubectl)));
        assert!(!wanted(Some(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        )));
        assert!(!wanted(Some("application/json")));
        assert!(!wanted(None));
    }

    #[test]
    fn subresources_nest_under_their_resource() {
        let list = json!({"resources": [
            {"name": "deployments", "singularName": "deployment", "namespaced": true,
             "kind": "Deployment", "verbs": ["get"], "shortNames": ["deploy"]},
            {"name": "deployments/scale", "singularName": "", "namespaced": true,
             "kind": "Scale", "group": "autoscaling", "version": "v1", "verbs": ["get"]}
        ]});
        let g = group("apps", &[("v1".into(), list)]);
        assert_eq!(g["metadata"]["name"], "apps");
        let d = &g["versions"][0]["resources"][0];
        assert_eq!(d["resource"], "deployments");
        assert_eq!(d["scope"], "Namespaced");
        assert_eq!(
            d["responseKind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        assert_eq!(d["shortNames"], json!(["deploy"]));
        assert_eq!(d["subresources"][0]["subresource"], "scale");
        assert_eq!(d["subresources"][0]["responseKind"]["group"], "autoscaling");
        assert!(group("", &[])
            .get("metadata")
            .and_then(|m| m.get("name"))
            .is_none());
    }
}
