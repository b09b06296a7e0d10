//! The OpenAPI v3 documents kubectl reads before it writes: the index (`/openapi/v3`) and
//! one document per group-version naming each kind's operations, with the
//! `x-kubernetes-group-version-kind` extension and the query parameters each accepts. From
//! them kubectl learns that the server validates fields itself (`fieldValidation`), so
//! `kubectl create`/`apply` need no `--validate=false`. Schemas of the types are not
//! included yet.

use serde_json::{json, Map, Value};

use crate::kinds::{Kinds, ResourceInfo};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn hash(v: &Value) -> String {
    // FNV-1a over the document: changes whenever the document does.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in serde_json::to_vec(v).unwrap_or_default() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

pub fn index(kinds: &Kinds) -> Value {
    let mut paths = Map::new();
    let mut seen = Vec::new();
    for k in kinds.iter() {
        let i = k.info();
        if seen.contains(&(i.group, i.version)) {
            continue;
        }
        seen.push((i.group, i.version));
        let p = gv_path(i.group, i.version);
        let doc = group_version(kinds, i.group, i.version).unwrap_or_default();
        paths.insert(
            p.clone(),
            json!({ "serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(&doc)) }),
        );
    }
    json!({ "paths": paths })
}

fn param(name: &str) -> Value {
    json!({ "name": name, "in": "query", "schema": { "type": "string", "uniqueItems": true } })
}

fn op(i: &ResourceInfo, action: &str, params: &[&str]) -> Value {
    let gvk = json!({ "group": i.group, "version": i.version, "kind": i.kind });
    let params: Vec<Value> = params.iter().map(|p| param(p)).collect();
    json!({
        "operationId": format!("{action}{}", i.kind),
        "parameters": params,
        "responses": { "200": { "description": "OK" } },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    })
}

const WRITE_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "pretty"];

pub fn group_version(kinds: &Kinds, group: &str, version: &str) -> Option<Value> {
    let mut paths = Map::new();
    for k in kinds.iter() {
        let i = k.info();
        if i.group != group || i.version != version {
            continue;
        }
        let base = format!("/{}", gv_path(group, version));
        let coll = if i.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", i.plural)
        } else {
            format!("{base}/{}", i.plural)
        };
        let mut patch_params = WRITE_PARAMS.to_vec();
        patch_params.push("force");
        paths.insert(
            coll.clone(),
            json!({
                "get": op(i, "list", &["labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "resourceVersionMatch", "watch", "timeoutSeconds", "allowWatchBookmarks"]),
                "post": op(i, "post", WRITE_PARAMS),
                "delete": op(i, "deletecollection", &["labelSelector", "fieldSelector", "gracePeriodSeconds", "propagationPolicy", "dryRun"]),
            }),
        );
        let item = json!({
            "get": op(i, "get", &["pretty"]),
            "put": op(i, "put", WRITE_PARAMS),
            "patch": op(i, "patch", &patch_params),
            "delete": op(i, "delete", &["gracePeriodSeconds", "propagationPolicy", "dryRun"]),
        });
        paths.insert(format!("{coll}/{{name}}"), item);
        if i.status {
            paths.insert(
                format!("{coll}/{{name}}/status"),
                json!({ "get": op(i, "get", &["pretty"]), "put": op(i, "put", WRITE_PARAMS), "patch": op(i, "patch", &patch_params) }),
            );
        }
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": format!("v1.{}.0", crate::discovery::KUBE_MINOR) },
        "paths": paths,
        "components": { "schemas": {} },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_patch_operation_accepting_field_validation() {
        let kinds = Kinds::all();
        let idx = index(&kinds);
        assert!(idx["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .starts_with("/openapi/v3/api/v1?hash="));
        let doc = group_version(&kinds, "apps", "v1").unwrap();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
        let core = group_version(&kinds, "", "v1").unwrap();
        assert!(core["paths"]["/api/v1/nodes/{name}"]["patch"].is_object());
    }
}
