//! Custom resources: each served version of a CustomResourceDefinition as a kind of the
//! table, over plain JSON (no typed struct). A body is decoded as apiextensions-apiserver
//! decodes one: `apiVersion` and `kind` checked and set, `metadata` read as an ObjectMeta,
//! fields the schema does not specify pruned (and reported as unknown fields), then the
//! schema's defaults applied. Validation is ObjectMeta's and the schema's (`crate::schema`).
//! `metadata.generation` counts every change but metadata's (and the status's, when
//! `status` is a subresource), as kube counts it for custom resources.

use std::sync::Arc;

pub mod columns;
pub mod conversion;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize as _;
use serde_json::Value;

use super::info::{ResourceInfo, ScaleSpec, SelectorAt, Subresource};
use super::intern::{intern, intern_list};
use super::kind::{Claim, Env};
use super::typed::{decode_as, Strategy};
use crate::error::ApiError;
use crate::schema::{self, Props};
use crate::validation::{self, NameRule};

/// One served version of a CRD.
pub struct CustomKind {
    info: ResourceInfo,
    /// The CRD's name (`<plural>.<group>`): its versions are replaced and removed together.
    crd: String,
    /// The version's `openAPIV3Schema`.
    schema: Option<Props>,
    /// Its CEL rules, compiled, if it has any.
    rules: Option<schema::cel::Rules>,
    /// The API version objects are stored in, when not this one (conversion `None`: only
    /// `apiVersion` changes).
    stored_as: Option<String>,
    /// The storage version's schema, when objects are converted to it by a webhook.
    stored_schema: Option<Props>,
    /// Whether stored objects may be of another version than the storage one
    /// (`status.storedVersions` names more than it).
    mixed: bool,
    /// The CRD's conversion webhook, and what calls it.
    webhook: Option<(conversion::Hook, conversion::SharedCaller)>,
    /// The CRD is being deleted: no new objects.
    terminating: bool,
}

/// Whether the CRD's names were accepted (NamesAccepted or Established true): only then
/// are its resources served, under the accepted names.
pub fn served(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                (c.type_ == "NamesAccepted" || c.type_ == "Established") && c.status == "True"
            })
        })
}

/// The kinds a CRD defines: one per served version, none until its names are accepted or
/// while it is being deleted.
pub fn build(
    crd: &CustomResourceDefinition,
    caller: &conversion::SharedCaller,
) -> Vec<Arc<dyn Strategy>> {
    if !served(crd) {
        return vec![];
    }
    crd.spec
        .versions
        .iter()
        .filter(|v| v.served)
        .map(|v| Arc::new(CustomKind::new(crd, v, caller)) as Arc<dyn Strategy>)
        .collect()
}

/// kube's OpenAPI name of a custom kind: the group reversed, the version, the kind
/// (`com.example.stable.v1.CronTab`).
pub fn schema_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// A version's selectable fields as field selectors name them (`spec.color`).
fn selectable(v: &CustomResourceDefinitionVersion) -> &'static [&'static str] {
    let paths: Vec<String> = v
        .selectable_fields
        .iter()
        .flatten()
        .map(|f| f.json_path.trim_start_matches('.').to_string())
        .collect();
    intern_list(&paths)
}

/// A selectable field's value as kube gives it to field selectors: strings as they are,
/// integers and booleans printed, anything else or nothing as "".
fn field_value(obj: &Value, field: &str) -> String {
    let mut at = obj;
    for seg in field.split('.') {
        match at.get(seg) {
            Some(v) => at = v,
            None => return String::new(),
        }
    }
    match at {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// A CRD's scale path (`.spec.replicas`, checked by CRD validation) as a JSON pointer.
fn pointer(path: &str) -> &'static str {
    intern(&path.replace('.', "/"))
}

impl CustomKind {
    pub fn new(
        crd: &CustomResourceDefinition,
        v: &CustomResourceDefinitionVersion,
        caller: &conversion::SharedCaller,
    ) -> Self {
        let names = crd
            .status
            .as_ref()
            .and_then(|s| s.accepted_names.clone())
            .filter(|n| !n.plural.is_empty() && !n.kind.is_empty())
            .unwrap_or_else(|| crd.spec.names.clone());
        let kind = intern(&names.kind);
        let storage = crd.spec.versions.iter().find(|s| s.storage);
        let webhook = conversion::hook_of(crd);
        let status = v.subresources.as_ref().is_some_and(|s| s.status.is_some());
        let list_kind = names
            .list_kind
            .unwrap_or_else(|| format!("{}List", names.kind));
        let singular = names.singular.unwrap_or_else(|| names.kind.to_lowercase());
        let scale = v
            .subresources
            .as_ref()
            .and_then(|s| s.scale.as_ref())
            .map(|s| ScaleSpec {
                spec_replicas: pointer(&s.spec_replicas_path),
                status_replicas: pointer(&s.status_replicas_path),
                selector: SelectorAt::Text(pointer(s.label_selector_path.as_deref().unwrap_or(""))),
            });
        CustomKind {
            info: ResourceInfo {
                group: intern(&crd.spec.group),
                version: intern(&v.name),
                kind,
                list_kind: intern(&list_kind),
                plural: intern(&names.plural),
                storage: intern(&format!("{}/{}", crd.spec.group, names.plural)),
                singular: intern(&singular),
                namespaced: crd.spec.scope == "Namespaced",
                short_names: intern_list(names.short_names.as_deref().unwrap_or(&[])),
                categories: intern_list(names.categories.as_deref().unwrap_or(&[])),
                status,
                // Counted by prepare_create/prepare_update, not by spec changes alone.
                generation: false,
                orphan_by_default: false,
                name_rule: NameRule::Subdomain,
                fields: selectable(v),
                schema_name: schema_name(&crd.spec.group, &v.name, &names.kind),
                subresources: status
                    .then(|| Subresource::status(kind))
                    .into_iter()
                    .chain(scale.map(|_| Subresource::SCALE))
                    .collect(),
                scale,
                strategic_merge: false,
                printer: None,
                columns: Some(std::sync::Arc::new(crate::table::custom::columns(
                    v.additional_printer_columns.as_deref(),
                ))),
            },
            crd: crd.metadata.name.clone().unwrap_or_default(),
            schema: v.schema.as_ref().and_then(|s| s.open_api_v3_schema.clone()),
            rules: v
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .and_then(|s| schema::cel::compile(s, &crd.spec.group, &v.name, &names.kind)),
            stored_as: storage
                .filter(|s| s.name != v.name)
                .map(|s| format!("{}/{}", crd.spec.group, s.name)),
            stored_schema: webhook
                .as_ref()
                .and(storage)
                .and_then(|s| s.schema.as_ref())
                .and_then(|s| s.open_api_v3_schema.clone()),
            mixed: crd
                .status
                .as_ref()
                .and_then(|s| s.stored_versions.as_ref())
                .is_some_and(|sv| sv.iter().any(|n| Some(n) != storage.map(|s| &s.name))),
            webhook: webhook.map(|h| (h, caller.clone())),
            terminating: crd
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Terminating" && c.status == "True")
                }),
        }
    }

    /// The name of the CRD this kind comes from.
    pub fn crd(&self) -> &str {
        &self.crd
    }

    /// Converts objects to `desired` by the CRD's conversion webhook.
    fn convert(&self, objects: Vec<Value>, desired: &str) -> Result<Vec<Value>, ApiError> {
        let Some((hook, caller)) = &self.webhook else {
            return Ok(objects);
        };
        let caller = caller.get().ok_or_else(|| {
            ApiError::Unavailable("conversion webhooks are not reachable yet".into())
        })?;
        conversion::convert(caller.as_ref(), hook, objects, desired)
            .map_err(|e| ApiError::Internal(format!("Internal error occurred: {e}")))
    }

    /// The object without what does not count for its generation.
    fn counted(&self, v: &Value) -> Value {
        let mut c = v.clone();
        if let Some(m) = c.as_object_mut() {
            m.remove("metadata");
            if self.info.status {
                m.remove("status");
            }
        }
        c
    }
}

impl Strategy for CustomKind {
    fn info(&self) -> &ResourceInfo {
        &self.info
    }

    fn decode(&self, body: &[u8]) -> Result<Value, ApiError> {
        let mut v: Value = decode_as(&self.info, body)?;
        let meta = ObjectMeta::deserialize(&v["metadata"]).map_err(|e| {
            ApiError::BadRequest(format!(
                "{} in version \"{}\" cannot be handled as a {}: metadata: {e}",
                self.info.kind, self.info.version, self.info.kind
            ))
        })?;
        v["metadata"] = serde_json::to_value(meta).unwrap_or_default();
        if let Some(s) = &self.schema {
            schema::prune::prune(&mut v, s);
            schema::default::apply(&mut v, s);
        }
        match (&self.stored_as, &self.webhook) {
            (Some(api_version), None) => v["apiVersion"] = api_version.as_str().into(),
            (Some(api_version), Some(_)) => {
                v = self
                    .convert(vec![v], api_version)?
                    .pop()
                    .unwrap_or_default();
                if let Some(s) = &self.stored_schema {
                    schema::prune::prune(&mut v, s);
                    schema::default::apply(&mut v, s);
                }
            }
            (None, _) => {}
        }
        Ok(v)
    }

    fn prepare_create(&self, obj: &mut Value) -> Result<(), ApiError> {
        if self.terminating {
            return Err(ApiError::MethodNotSupported(
                "create not allowed while custom resource definition is terminating".into(),
            ));
        }
        if let Some(m) = obj.as_object_mut() {
            if self.info.status {
                m.remove("status");
            }
        }
        obj["metadata"]["generation"] = 1.into();
        Ok(())
    }

    fn prepare_update(&self, new: &mut Value, old: &Value) -> Result<(), ApiError> {
        let g = old["metadata"]["generation"].as_i64().unwrap_or(0);
        let next = if self.counted(new) != self.counted(old) {
            g.saturating_add(1)
        } else {
            g
        };
        new["metadata"]["generation"] = next.into();
        Ok(())
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
        let meta = ObjectMeta::deserialize(&obj["metadata"])
            .map_err(|e| ApiError::Internal(format!("metadata does not decode: {e}")))?;
        let mut errs = validation::object_meta(&meta, self.info.namespaced, self.info.name_rule);
        if let Some(s) = &self.schema {
            errs.extend(schema::validate::validate(s, obj, ""));
            // Rules run on objects of the schema's shape only, as in kube.
            if let (Some(rules), true) = (&self.rules, errs.is_empty()) {
                errs.extend(rules.check(s, obj, old));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(self.info.invalid(meta.name.as_deref().unwrap_or(""), errs))
        }
    }

    fn fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        let meta = &obj["metadata"];
        let mut out = vec![
            (
                "metadata.name",
                meta["name"].as_str().unwrap_or("").to_string(),
            ),
            (
                "metadata.namespace",
                meta["namespace"].as_str().unwrap_or("").to_string(),
            ),
        ];
        out.extend(self.info.fields.iter().map(|f| (*f, field_value(obj, f))));
        out
    }

    fn unknown_fields(&self, body: &[u8]) -> Vec<String> {
        let Ok(mut v) = serde_json::from_slice::<Value>(body) else {
            return vec![];
        };
        let mut out = Vec::new();
        if let Some(m) = v.get("metadata") {
            if let Ok(meta) = ObjectMeta::deserialize(m) {
                let known = serde_json::to_value(meta).unwrap_or_default();
                out.extend(
                    crate::fieldcheck::unknown_fields(m, &known)
                        .into_iter()
                        .map(|p| format!("metadata.{p}")),
                );
            }
        }
        if let Some(s) = &self.schema {
            out.extend(schema::prune::prune(&mut v, s));
        }
        out.sort();
        out
    }

    fn add_schema(&self, generator: &mut k8s_openapi::schemars::SchemaGenerator) -> String {
        let meta = generator.subschema_for::<ObjectMeta>();
        let meta = serde_json::to_value(meta).unwrap_or_default();
        let def = openapi_schema(self.schema.as_ref(), meta);
        generator
            .definitions_mut()
            .insert(self.info.schema_name.clone(), def);
        self.info.schema_name.clone()
    }

    fn stored_here(&self) -> bool {
        self.stored_as.is_none()
    }

    fn needs_conversion(&self) -> bool {
        self.stored_as.is_some() || self.mixed
    }

    fn to_served(&self, stored: Value) -> Result<Value, ApiError> {
        Ok(self.to_served_all(vec![stored])?.pop().unwrap_or_default())
    }

    fn to_served_all(&self, mut stored: Vec<Value>) -> Result<Vec<Value>, ApiError> {
        let api_version = self.info.api_version();
        if stored
            .iter()
            .all(|o| o["apiVersion"].as_str() == Some(api_version.as_str()))
        {
            return Ok(stored);
        }
        if self.webhook.is_some() {
            stored = self.convert(stored, &api_version)?;
        }
        for o in stored.iter_mut() {
            // Conversion None: only apiVersion changes.
            o["apiVersion"] = api_version.as_str().into();
            if let Some(s) = &self.schema {
                if self.webhook.is_some() {
                    schema::prune::prune(o, s);
                }
                schema::default::apply(o, s);
            }
        }
        Ok(stored)
    }

    fn claims(&self, _obj: &mut Value, _env: &Env) -> Result<Vec<Claim>, ApiError> {
        Ok(vec![])
    }

    fn released(&self, _obj: &Value) -> Vec<String> {
        vec![]
    }

    fn check_delete(&self, _name: &str) -> Result<(), ApiError> {
        Ok(())
    }

    fn grace_period(&self, _obj: &Value, _requested: Option<i64>) -> Result<Option<i64>, ApiError> {
        Ok(None)
    }

    fn mark_deleting(&self, _obj: &mut Value) -> Result<(), ApiError> {
        Ok(())
    }
}

/// The OpenAPI schema of a custom kind: the version's schema with `apiVersion`, `kind`
/// and `metadata` (a reference to ObjectMeta, `meta`) as kube publishes it.
fn openapi_schema(schema: Option<&Props>, meta: Value) -> Value {
    let mut def = schema
        .and_then(|s| serde_json::to_value(s).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| serde_json::json!({"type": "object"}));
    if def.get("type").is_none() {
        def["type"] = "object".into();
    }
    if !def["properties"].is_object() {
        def["properties"] = Value::Object(Default::default());
    }
    let props = &mut def["properties"];
    props["apiVersion"] = serde_json::json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"});
    props["kind"] = serde_json::json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"});
    let mut m = serde_json::json!({"description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"});
    if let (Some(o), Some(r)) = (m.as_object_mut(), meta.get("$ref")) {
        o.insert("allOf".into(), serde_json::json!([{"$ref": r}]));
    }
    props["metadata"] = m;
    def
}

#[cfg(test)]
mod tests;
