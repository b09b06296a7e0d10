//! `/openapi/v2`: the same API as one Swagger 2.0 document, derived from the v3 documents
//! (schemas become `definitions`, request bodies `in: body` parameters, response content
//! a response schema), for tools that read only v2. Served as JSON; kubectl reads v3.

use serde_json::{json, Map, Value};

/// Rewrites every `$ref` to a v3 component into a v2 definition reference, and drops
/// what Swagger 2.0 has no word for (`nullable`).
fn rewrite(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/components/schemas/") {
                    *r = format!("#/definitions/{name}");
                }
            }
            m.remove("nullable");
            for (_, x) in m.iter_mut() {
                rewrite(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(rewrite),
        _ => {}
    }
}

/// One v3 operation as a v2 operation.
fn operation(op: &Value) -> Value {
    let mut out = op.as_object().cloned().unwrap_or_default();
    let mut params: Vec<Value> = op["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let mut q = p.as_object().cloned().unwrap_or_default();
                    if let Some(Value::Object(s)) = q.remove("schema") {
                        q.extend(s);
                    }
                    Value::Object(q)
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(body) = out.remove("requestBody") {
        let consumes: Vec<String> = body["content"]
            .as_object()
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default();
        params.push(json!({ "name": "body", "in": "body", "required": true, "schema": { "type": "object" } }));
        out.insert("consumes".into(), json!(consumes));
    }
    out.insert("parameters".into(), Value::Array(params));
    let mut responses = Map::new();
    if let Some(rs) = op["responses"].as_object() {
        for (code, r) in rs {
            let mut v2 = json!({ "description": r["description"].as_str().unwrap_or("OK") });
            if let Some(s) = r["content"]["application/json"].get("schema") {
                v2["schema"] = s.clone();
            }
            responses.insert(code.clone(), v2);
        }
    }
    out.insert("responses".into(), Value::Object(responses));
    out.insert("produces".into(), json!(["application/json"]));
    Value::Object(out)
}

/// The v2 document of the given v3 group-version documents.
pub fn document(v3: &[Value], version: &str) -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    for doc in v3 {
        if let Some(ps) = doc["paths"].as_object() {
            for (path, item) in ps {
                let ops: Map<String, Value> = item
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(verb, op)| (verb.clone(), operation(op)))
                            .collect()
                    })
                    .unwrap_or_default();
                paths.insert(path.clone(), Value::Object(ops));
            }
        }
        if let Some(ds) = doc["components"]["schemas"].as_object() {
            for (name, d) in ds {
                definitions.entry(name.clone()).or_insert_with(|| d.clone());
            }
        }
    }
    let mut out = json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": version },
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": { "BearerToken": { "type": "apiKey", "name": "authorization", "in": "header" } },
        "security": [{ "BearerToken": [] }],
    });
    rewrite(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Kinds;

    #[test]
    fn v2_has_every_kind_and_only_v2_references() {
        let kinds = Kinds::all();
        let docs: Vec<Value> = [("", "v1"), ("apps", "v1")]
            .iter()
            .filter_map(|(g, v)| crate::openapi::paths::group_version(&kinds, g, v))
            .collect();
        let d = document(&docs, "v1.33.0");
        assert_eq!(d["swagger"], "2.0");
        let deploy = &d["definitions"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deploy["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
        let patch = &d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert!(patch["consumes"]
            .as_array()
            .unwrap()
            .contains(&"application/strategic-merge-patch+json".into()));
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["in"] == "body")
                && patch.get("requestBody").is_none()
        );
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["type"] == "string"));
        assert_eq!(
            patch["responses"]["200"]["schema"]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.Deployment"
        );
        let text = d.to_string();
        assert!(!text.contains("#/components/schemas/"));
        for r in text.split("\"$ref\":\"#/definitions/").skip(1) {
            let name = r.split('"').next().unwrap_or("");
            assert!(
                d["definitions"].get(name).is_some(),
                "{name} is not defined"
            );
        }
    }
}
