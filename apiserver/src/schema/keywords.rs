//! The OpenAPI keywords a CRD's schema may use and how they combine, as
//! `ValidateCustomResourceDefinitionOpenAPISchema` checks them: no `$ref`, `id`,
//! `patternProperties`, `definitions`, `dependencies` or `additionalItems`; no `type:
//! null`; `additionalProperties` beside `properties` only as `true`; defaults nowhere in
//! the root's `metadata`, `apiVersion` and `kind`; list and map types that fit their
//! node; the static fields of `x-kubernetes-validations` rules.

use super::prune::items;
use super::structural::{key, type_of, yes, META_FIELDS};
use super::{gofmt, Props};
use crate::error::{FieldError, FieldErrorKind};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::Value;

const TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

/// The keyword errors of a CRD version's schema at `path`.
pub fn check(s: &Props, path: &str, errs: &mut Vec<FieldError>) {
    let ctx = Ctx {
        allow_defaults: true,
        reason: String::new(),
        inside_meta: false,
    };
    openapi(s, path, &ctx, true, errs);
}

#[derive(Clone)]
struct Ctx {
    allow_defaults: bool,
    reason: String,
    inside_meta: bool,
}

impl Ctx {
    fn no_defaults(&self, reason: String) -> Ctx {
        Ctx {
            allow_defaults: false,
            reason,
            inside_meta: self.inside_meta,
        }
    }
}

/// `ValidateCustomResourceDefinitionOpenAPISchema`: the keywords Kubernetes supports.
fn openapi(s: &Props, path: &str, ctx: &Ctx, root: bool, errs: &mut Vec<FieldError>) {
    let t = type_of(s);
    let forbid = |field: &str, why: &str| FieldError::forbidden(format!("{path}.{field}"), why);
    if !t.is_empty() && !TYPES.contains(&t) {
        errs.push(FieldError {
            field: format!("{path}.type"),
            kind: FieldErrorKind::NotSupported(
                gofmt::quote(t),
                TYPES.iter().map(|s| s.to_string()).collect(),
            ),
            detail: String::new(),
        });
    }
    if s.default.is_some() && !ctx.allow_defaults {
        let mut why = "must not be set".to_string();
        if !ctx.reason.is_empty() {
            why = format!("{why} {}", ctx.reason);
        }
        errs.push(forbid("default", &why));
    }
    if s.id.as_deref().is_some_and(|i| !i.is_empty()) {
        errs.push(forbid("id", "id is not supported"));
    }
    if s.additional_items.is_some() {
        errs.push(forbid(
            "additionalItems",
            "additionalItems is not supported",
        ));
    }
    if s.pattern_properties.as_ref().is_some_and(|p| !p.is_empty()) {
        errs.push(forbid(
            "patternProperties",
            "patternProperties is not supported",
        ));
    }
    if s.definitions.as_ref().is_some_and(|p| !p.is_empty()) {
        errs.push(forbid("definitions", "definitions is not supported"));
    }
    if s.dependencies.is_some() {
        errs.push(forbid("dependencies", "dependencies is not supported"));
    }
    if s.ref_path.is_some() {
        errs.push(forbid("$ref", "$ref is not supported"));
    }
    if t == "null" {
        errs.push(forbid(
            "type",
            "type cannot be set to null, use nullable as an alternative",
        ));
    }
    if matches!(s.items, Some(JSONSchemaPropsOrArray::Schemas(_))) {
        errs.push(forbid(
            "items",
            "items must be a schema object and not an array",
        ));
    }
    if ctx.inside_meta && yes(s.x_kubernetes_embedded_resource) {
        errs.push(forbid(
            "x-kubernetes-embedded-resource",
            "must not be used inside of resource meta",
        ));
    }
    if yes(s.unique_items) {
        errs.push(forbid(
            "uniqueItems",
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    if let Some(extra) = &s.additional_properties {
        let allows_all = matches!(extra, JSONSchemaPropsOrBool::Bool(true));
        if s.properties.as_ref().is_some_and(|p| !p.is_empty()) && !allows_all {
            errs.push(forbid(
                "additionalProperties",
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        if let JSONSchemaPropsOrBool::Schema(extra) = extra {
            let sub = if ctx.inside_meta {
                ctx.no_defaults("inside additionalProperties applying to object metadata".into())
            } else {
                ctx.clone()
            };
            openapi(
                extra,
                &format!("{path}.additionalProperties"),
                &sub,
                false,
                errs,
            );
        }
    }
    let resource = root || yes(s.x_kubernetes_embedded_resource);
    for (k, p) in s.properties.iter().flatten() {
        let mut sub = ctx.clone();
        if resource && META_FIELDS.contains(&k.as_str()) {
            sub.inside_meta = true;
            if root {
                sub = sub.no_defaults(format!("in top-level {k}"));
            }
        }
        openapi(p, &key(path, k), &sub, false, errs);
    }
    if let Some(not) = &s.not {
        openapi(not, &format!("{path}.not"), ctx, false, errs);
    }
    for (name, list) in [
        ("allOf", &s.all_of),
        ("oneOf", &s.one_of),
        ("anyOf", &s.any_of),
    ] {
        for (i, a) in list.iter().flatten().enumerate() {
            openapi(a, &format!("{path}.{name}[{i}]"), ctx, false, errs);
        }
    }
    if let Some(item) = items(s) {
        openapi(item, &format!("{path}.items"), ctx, false, errs);
    }
    if s.x_kubernetes_preserve_unknown_fields == Some(false) {
        errs.push(FieldError::invalid_raw(
            format!("{path}.x-kubernetes-preserve-unknown-fields"),
            "false".into(),
            "must be true or undefined",
        ));
    }
    list_and_map_types(s, path, errs);
    for (i, rule) in s.x_kubernetes_validations.iter().flatten().enumerate() {
        let rpath = format!("{path}.x-kubernetes-validations[{i}]");
        let message = rule.message.as_deref().unwrap_or("");
        if rule.rule.trim().is_empty() {
            errs.push(FieldError::required(
                format!("{rpath}.rule"),
                "rule is not specified",
            ));
        } else if !message.is_empty() && message.trim().is_empty() {
            errs.push(FieldError::invalid(
                format!("{rpath}.message"),
                message,
                "message must be non-empty if specified",
            ));
        } else if message.trim().contains(['\n', '\r']) {
            errs.push(FieldError::invalid(
                format!("{rpath}.message"),
                message,
                "message must not contain line breaks",
            ));
        } else if rule.rule.trim().contains(['\n', '\r']) && message.trim().is_empty() {
            errs.push(FieldError::required(
                format!("{rpath}.message"),
                "message must be specified if rule contains line breaks",
            ));
        }
    }
}

fn list_and_map_types(s: &Props, path: &str, errs: &mut Vec<FieldError>) {
    let t = type_of(s);
    let typed = |why: &str| {
        if t.is_empty() {
            FieldError::required(format!("{path}.type"), why)
        } else {
            FieldError::invalid(format!("{path}.type"), t, why)
        }
    };
    if let Some(m) = &s.x_kubernetes_map_type {
        if t != "object" {
            errs.push(typed(
                "must be object if x-kubernetes-map-type is specified",
            ));
        }
        if m != "atomic" && m != "granular" {
            errs.push(FieldError {
                field: format!("{path}.x-kubernetes-map-type"),
                kind: FieldErrorKind::NotSupported(
                    gofmt::quote(m),
                    vec!["atomic".into(), "granular".into()],
                ),
                detail: String::new(),
            });
        }
    }
    let list_type = s.x_kubernetes_list_type.as_deref();
    if let Some(l) = list_type {
        if t != "array" {
            errs.push(typed(
                "must be array if x-kubernetes-list-type is specified",
            ));
        }
        if !["atomic", "set", "map"].contains(&l) {
            errs.push(FieldError {
                field: format!("{path}.x-kubernetes-list-type"),
                kind: FieldErrorKind::NotSupported(
                    gofmt::quote(l),
                    vec!["atomic".into(), "set".into(), "map".into()],
                ),
                detail: String::new(),
            });
        }
    }
    let keys = s.x_kubernetes_list_map_keys.as_deref().unwrap_or(&[]);
    if !keys.is_empty() {
        match list_type {
            None => errs.push(FieldError::required(
                format!("{path}.x-kubernetes-list-type"),
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
            Some(l) if l != "map" => errs.push(FieldError::invalid(
                format!("{path}.x-kubernetes-list-type"),
                l,
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
            _ => {}
        }
    }
    if list_type == Some("map") {
        if keys.is_empty() {
            errs.push(FieldError::required(
                format!("{path}.x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        match &s.items {
            None => errs.push(FieldError::required(
                format!("{path}.items"),
                "must have a schema if x-kubernetes-list-type is map",
            )),
            Some(JSONSchemaPropsOrArray::Schemas(_)) => errs.push(FieldError::invalid_raw(
                format!("{path}.items"),
                "[...]".into(),
                "must only have a single schema if x-kubernetes-list-type is map",
            )),
            Some(JSONSchemaPropsOrArray::Schema(item)) if type_of(item) != "object" => {
                errs.push(FieldError::invalid(
                    format!("{path}.items.type"),
                    type_of(item),
                    "must be object if parent array's x-kubernetes-list-type is map",
                ))
            }
            Some(JSONSchemaPropsOrArray::Schema(item)) => {
                let shown = Value::from(keys.to_vec());
                let mut seen = std::collections::HashSet::new();
                for k in keys {
                    match item.properties.as_ref().and_then(|p| p.get(k)) {
                        Some(p) if matches!(type_of(p), "array" | "object") => {
                            errs.push(FieldError::invalid(
                                format!("{}.type", key(&format!("{path}.items"), k)),
                                type_of(item),
                                "must be a scalar type if parent array's x-kubernetes-list-type is map",
                            ))
                        }
                        Some(_) => {}
                        None => errs.push(FieldError::invalid_raw(
                            format!("{path}.x-kubernetes-list-map-keys"),
                            gofmt::sharp_v(&shown),
                            "entries must all be names of item properties",
                        )),
                    }
                    if !seen.insert(k) {
                        errs.push(FieldError::invalid_raw(
                            format!("{path}.x-kubernetes-list-map-keys"),
                            gofmt::sharp_v(&shown),
                            "must not contain duplicate entries",
                        ));
                    }
                }
            }
        }
    }
}
