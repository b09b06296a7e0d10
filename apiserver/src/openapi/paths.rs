//! The paths of a group-version's document: each kind's operations, with the
//! `x-kubernetes-group-version-kind` extension on every one (kubectl explain finds kinds
//! through them), the query parameters each accepts (kubectl sees `fieldValidation` on
//! `patch` and leaves validation to the server), and the patch media types.

use serde_json::{json, Map, Value};

use crate::kinds::{Kinds, ResourceInfo};

use super::schemas;

pub fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn param(name: &str) -> Value {
    json!({ "name": name, "in": "query", "schema": { "type": "string", "uniqueItems": true } })
}

fn op(i: &ResourceInfo, action: &str, params: &[&str]) -> Value {
    let gvk = json!({ "group": i.group, "version": i.version, "kind": i.kind });
    let params: Vec<Value> = params.iter().map(|p| param(p)).collect();
    let schema = json!({ "$ref": format!("#/components/schemas/{}", i.schema_name) });
    let mut op = json!({
        "operationId": format!("{action}{}", i.kind),
        "parameters": params,
        "responses": { "200": { "description": "OK", "content": { "application/json": { "schema": schema } } } },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    });
    let body = match action {
        "patch" if !i.strategic_merge => Some(&PATCH_TYPES[..3]),
        "patch" => Some(PATCH_TYPES),
        "post" | "put" => Some(&["application/json"][..]),
        _ => None,
    };
    if let Some(types) = body {
        let content: Map<String, Value> = types
            .iter()
            .map(|t| (t.to_string(), json!({ "schema": { "type": "object" } })))
            .collect();
        op["requestBody"] = json!({ "content": content, "required": true });
    }
    op
}

/// What `PATCH` accepts; kubectl computes strategic merge patches for kinds whose patch
/// operation lists it.
pub const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

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
        "components": { "schemas": schemas::definitions(
            kinds
                .iter()
                .filter(|k| k.info().group == group && k.info().version == version)
                .collect::<Vec<_>>()
                .iter()
                .map(|k| k.as_ref()),
        ) },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_patch_operation_accepting_field_validation() {
        let kinds = Kinds::all();
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
