//! What a CRD's schema must be, as apiextensions-apiserver checks it on a CRD's create and
//! update (v1 CRDs must be structural): the OpenAPI keywords Kubernetes supports and how
//! they combine (`ValidateCustomResourceDefinitionOpenAPISchema`), the structural rules
//! (every field typed, junctions (`allOf`, `anyOf`, `oneOf`, `not`) only constraining
//! what the structure already specifies, `metadata` at the root only naming `name` and
//! `generateName`; `ValidateStructural`), the status subresource's root, and defaults
//! that are valid and pruned. Paths are kube's: `…openAPIV3Schema.properties[spec].type`.
//! Not checked: CEL rules beyond their static fields (`x-kubernetes-validations` are not
//! evaluated; see ARCHITECTURE.md), list-map keys' nullability and defaults.

use super::prune::{additional, items};
use super::{gofmt, keywords, validate, Props};
use crate::error::{FieldError, FieldErrorKind};

pub(super) const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// The errors of a CRD version's `openAPIV3Schema` found at `path`; `status`: the version
/// has the status subresource.
pub fn check(s: &Props, path: &str, status: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if status {
        root_with_status(s, path, &mut errs);
    }
    if s.nullable == Some(true) {
        errs.push(FieldError::forbidden(
            format!("{path}.nullable"),
            "nullable cannot be true at the root",
        ));
    }
    let mut structural = Vec::new();
    invariants(s, Level::Root, path, &mut structural);
    completeness(s, s, path, path, &mut structural);
    structural.sort_by_key(|e| e.to_string());
    let clean = structural.is_empty();
    errs.extend(structural);
    if clean {
        defaults(s, path, true, &mut errs);
    }
    keywords::check(s, path, &mut errs);
    errs
}

/// Whether a schema is structural: what the NonStructuralSchema condition reports.
pub fn violations(s: &Props, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    invariants(s, Level::Root, path, &mut errs);
    completeness(s, s, path, path, &mut errs);
    errs.sort_by_key(|e| e.to_string());
    errs
}

pub(super) fn key(path: &str, k: &str) -> String {
    format!("{path}.properties[{k}]")
}

pub(super) fn type_of(s: &Props) -> &str {
    s.type_.as_deref().unwrap_or("")
}

pub(super) fn yes(b: Option<bool>) -> bool {
    b == Some(true)
}

/// Only these fields may be set at the root when status is a subresource (so that
/// `properties[status]` holds all of the status's validation).
fn root_with_status(s: &Props, path: &str, errs: &mut Vec<FieldError>) {
    let t = type_of(s);
    if !t.is_empty() && t != "object" {
        errs.push(FieldError::invalid(
            format!("{path}.type"),
            t,
            r#"only "object" is allowed as the type at the root of the schema if the status subresource is enabled"#,
        ));
        return;
    }
    let others = s.ref_path.is_some()
        || s.schema.is_some()
        || s.additional_items.is_some()
        || s.additional_properties.is_some()
        || s.all_of.is_some()
        || s.any_of.is_some()
        || s.one_of.is_some()
        || s.not.is_some()
        || s.default.is_some()
        || s.definitions.is_some()
        || s.dependencies.is_some()
        || s.enum_.is_some()
        || s.id.is_some()
        || s.max_properties.is_some()
        || s.min_properties.is_some()
        || yes(s.nullable)
        || s.pattern_properties.is_some()
        || yes(s.x_kubernetes_embedded_resource)
        || yes(s.x_kubernetes_int_or_string)
        || s.x_kubernetes_list_map_keys.is_some()
        || s.x_kubernetes_list_type.is_some()
        || s.x_kubernetes_map_type.is_some();
    if others {
        errs.push(FieldError {
            field: path.to_string(),
            kind: FieldErrorKind::Invalid("v1.JSONSchemaProps{...}".into()),
            detail: "only [Description Type Format Title Maximum ExclusiveMaximum Minimum \
                     ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems \
                     MultipleOf Required Items Properties ExternalDocs Example \
                     XPreserveUnknownFields XValidations] fields are allowed at the root of the \
                     schema if the status subresource is enabled"
                .into(),
        });
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Root,
    Item,
    Field,
}

/// `validateStructuralInvariants`: the structure itself (types, items, metadata).
fn invariants(s: &Props, lvl: Level, path: &str, errs: &mut Vec<FieldError>) {
    let t = type_of(s);
    let embedded = yes(s.x_kubernetes_embedded_resource);
    let preserve = yes(s.x_kubernetes_preserve_unknown_fields);
    let int_or_string = yes(s.x_kubernetes_int_or_string);
    if t == "array" && s.items.is_none() {
        errs.push(FieldError::required(
            format!("{path}.items"),
            "must be specified",
        ));
    }
    if let Some(item) = items(s) {
        invariants(item, Level::Item, &format!("{path}.items"), errs);
    }
    for (k, p) in s.properties.iter().flatten() {
        invariants(p, Level::Field, &key(path, k), errs);
    }
    if let Some(extra) = additional(s) {
        if lvl == Level::Root {
            errs.push(FieldError::forbidden(
                format!("{path}.additionalProperties"),
                "must not be used at the root",
            ));
        }
        if let Some(extra) = extra {
            invariants(
                extra,
                Level::Field,
                &format!("{path}.additionalProperties"),
                errs,
            );
        }
    }
    if int_or_string && preserve {
        errs.push(FieldError::invalid_raw(
            format!("{path}.x-kubernetes-preserve-unknown-fields"),
            "true".into(),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if int_or_string && embedded {
        errs.push(FieldError::invalid_raw(
            format!("{path}.x-kubernetes-embedded-resource"),
            "true".into(),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    junctions(s, lvl, path, false, errs);
    if embedded && t != "object" {
        let why = "must be object if x-kubernetes-embedded-resource is true";
        errs.push(if t.is_empty() {
            FieldError::required(format!("{path}.type"), why)
        } else {
            FieldError::invalid(format!("{path}.type"), t, why)
        });
    } else if t.is_empty() && !int_or_string && !preserve {
        let why = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        errs.push(FieldError::required(format!("{path}.type"), why));
    }
    if embedded && s.additional_properties.is_some() {
        errs.push(FieldError::forbidden(
            format!("{path}.additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if lvl == Level::Root && !t.is_empty() && t != "object" {
        errs.push(FieldError::invalid(
            format!("{path}.type"),
            t,
            "must be object at the root",
        ));
    }
    let resource = lvl == Level::Root || embedded;
    let props = s.properties.as_ref();
    for name in ["kind", "apiVersion"] {
        if let Some(p) = props.and_then(|p| p.get(name)).filter(|_| resource) {
            if type_of(p) != "string" {
                errs.push(FieldError::invalid(
                    format!("{}.type", key(path, name)),
                    type_of(p),
                    "must be string",
                ));
            }
        }
    }
    if let Some(meta) = props.and_then(|p| p.get("metadata")) {
        let mpath = key(path, "metadata");
        if resource && type_of(meta) != "object" {
            errs.push(FieldError::invalid(
                format!("{mpath}.type"),
                type_of(meta),
                "must be object",
            ));
        }
        if lvl == Level::Root && !only_names(meta) {
            errs.push(FieldError::forbidden(
                mpath,
                "must not specify anything other than name and generateName, but metadata is implicitly specified",
            ));
        }
    }
    if embedded && !preserve && props.is_none_or(|p| p.is_empty()) {
        errs.push(FieldError::required(
            format!("{path}.properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
}

/// The root's `metadata` may only say it is an object (its default is checked elsewhere)
/// and constrain `name` and `generateName`.
fn only_names(meta: &Props) -> bool {
    let mut rest = meta.clone();
    rest.type_ = None;
    rest.default = None;
    if let Some(p) = &rest.properties {
        if p.keys().all(|k| k == "name" || k == "generateName") {
            rest.properties = None;
        }
    }
    // Descriptions and other annotations are still "something other": kube compares
    // the whole remaining node with an empty one.
    rest == Props::default()
}

/// The value validations of a node: junctions must not re-specify structure, and a
/// `pattern` must compile.
/// `skip_any`: the node is the first `allOf` of an int-or-string node, whose `anyOf` is
/// the int-or-string pattern and allowed.
fn junctions(s: &Props, lvl: Level, path: &str, skip_any: bool, errs: &mut Vec<FieldError>) {
    let skip_any = skip_any || is_int_or_string_any_of(s.any_of.as_deref());
    let skip_first_all = s
        .all_of
        .as_deref()
        .and_then(|a| a.first())
        .is_some_and(|first| is_int_or_string_any_of(first.any_of.as_deref()));
    if !skip_any {
        for (i, a) in s.any_of.iter().flatten().enumerate() {
            nested(a, lvl, &format!("{path}.anyOf[{i}]"), false, errs);
        }
    }
    for (i, a) in s.all_of.iter().flatten().enumerate() {
        nested(
            a,
            lvl,
            &format!("{path}.allOf[{i}]"),
            skip_first_all && i == 0,
            errs,
        );
    }
    for (i, a) in s.one_of.iter().flatten().enumerate() {
        nested(a, lvl, &format!("{path}.oneOf[{i}]"), false, errs);
    }
    if let Some(not) = &s.not {
        nested(not, lvl, &format!("{path}.not"), false, errs);
    }
    if let Some(p) = s.pattern.as_deref().filter(|p| !p.is_empty()) {
        if let Err(e) = super::patterns::compile(p) {
            errs.push(FieldError::invalid(
                format!("{path}.pattern"),
                p,
                format!("must be a valid regular expression, but isn't: {e}"),
            ));
        }
    }
}

/// `anyOf: [{type: integer}, {type: string}]`, which int-or-string fields may carry.
fn is_int_or_string_any_of(any: Option<&[Props]>) -> bool {
    let typed = |p: &Props, t: &str| {
        *p == Props {
            type_: Some(t.to_string()),
            ..Props::default()
        }
    };
    matches!(any, Some([a, b]) if typed(a, "integer") && typed(b, "string"))
}

/// A schema inside a junction: value validations only.
fn nested(s: &Props, lvl: Level, path: &str, skip_any: bool, errs: &mut Vec<FieldError>) {
    junctions(s, lvl, path, skip_any, errs);
    if let Some(item) = items(s) {
        nested(item, lvl, &format!("{path}.items"), false, errs);
    }
    for (k, p) in s.properties.iter().flatten() {
        nested(p, Level::Field, &key(path, k), false, errs);
    }
    let forbid = |field: &str, why: &str| FieldError::forbidden(format!("{path}.{field}"), why);
    if s.type_.as_deref().is_some_and(|t| !t.is_empty()) {
        errs.push(forbid("type", "must be empty to be structural"));
    }
    if s.additional_properties.is_some() {
        errs.push(forbid(
            "additionalProperties",
            "must be undefined to be structural",
        ));
    }
    if s.default.is_some() {
        errs.push(forbid("default", "must be undefined to be structural"));
    }
    if s.title.as_deref().is_some_and(|t| !t.is_empty()) {
        errs.push(forbid("title", "must be empty to be structural"));
    }
    if s.description.as_deref().is_some_and(|t| !t.is_empty()) {
        errs.push(forbid("description", "must be empty to be structural"));
    }
    if yes(s.nullable) {
        errs.push(forbid("nullable", "must be false to be structural"));
    }
    if yes(s.x_kubernetes_preserve_unknown_fields) {
        errs.push(forbid(
            "x-kubernetes-preserve-unknown-fields",
            "must be false to be structural",
        ));
    }
    if yes(s.x_kubernetes_embedded_resource) {
        errs.push(forbid(
            "x-kubernetes-embedded-resource",
            "must be false to be structural",
        ));
    }
    if yes(s.x_kubernetes_int_or_string) {
        errs.push(forbid(
            "x-kubernetes-int-or-string",
            "must be false to be structural",
        ));
    }
    if s.x_kubernetes_list_map_keys
        .as_ref()
        .is_some_and(|k| !k.is_empty())
    {
        errs.push(forbid(
            "x-kubernetes-list-map-keys",
            "must be empty to be structural",
        ));
    }
    if s.x_kubernetes_list_type.is_some() {
        errs.push(forbid(
            "x-kubernetes-list-type",
            "must be undefined to be structural",
        ));
    }
    if s.x_kubernetes_map_type.is_some() {
        errs.push(forbid(
            "x-kubernetes-map-type",
            "must be undefined to be structural",
        ));
    }
    if s.x_kubernetes_validations
        .as_ref()
        .is_some_and(|v| !v.is_empty())
    {
        errs.push(forbid(
            "x-kubernetes-validations",
            "must be empty to be structural",
        ));
    }
    if s.properties
        .as_ref()
        .is_some_and(|p| p.contains_key("metadata"))
    {
        errs.push(FieldError::forbidden(
            key(path, "metadata"),
            "must not be specified in a nested context",
        ));
    }
}

/// Every property and item a junction names must be in the structure too.
fn completeness(v: &Props, s: &Props, spath: &str, vpath: &str, errs: &mut Vec<FieldError>) {
    let mut alts: Vec<(&Props, String)> = Vec::new();
    if let Some(not) = &v.not {
        alts.push((not, format!("{vpath}.not")));
    }
    for (name, list) in [
        ("allOf", &v.all_of),
        ("anyOf", &v.any_of),
        ("oneOf", &v.one_of),
    ] {
        for (i, a) in list.iter().flatten().enumerate() {
            alts.push((a, format!("{vpath}.{name}[{i}]")));
        }
    }
    for (a, apath) in alts {
        nested_completeness(a, Some(s), spath, &apath, errs);
    }
}

fn nested_completeness(
    v: &Props,
    s: Option<&Props>,
    spath: &str,
    vpath: &str,
    errs: &mut Vec<FieldError>,
) {
    let Some(s) = s else {
        errs.push(FieldError::required(
            spath,
            format!("because it is defined in {vpath}"),
        ));
        return;
    };
    completeness(v, s, spath, vpath, errs);
    if let Some(vi) = items(v) {
        nested_completeness(
            vi,
            items(s),
            &format!("{spath}.items"),
            &format!("{vpath}.items"),
            errs,
        );
    }
    for (k, vp) in v.properties.iter().flatten() {
        match s.properties.as_ref().and_then(|p| p.get(k)) {
            Some(sp) => nested_completeness(vp, Some(sp), &key(spath, k), &key(vpath, k), errs),
            None => errs.push(FieldError::required(
                key(spath, k),
                format!("because it is defined in {}", key(vpath, k)),
            )),
        }
    }
}

/// Defaults must be valid values of their node, and already pruned.
fn defaults(s: &Props, path: &str, root: bool, errs: &mut Vec<FieldError>) {
    if let Some(d) = s.default.as_ref().map(|d| &d.0) {
        let dpath = format!("{path}.default");
        for mut e in validate::validate(s, d, "") {
            e.field = match e.field.as_str() {
                "<nil>" => dpath.clone(),
                f => format!("{dpath}.{f}"),
            };
            errs.push(e);
        }
        let mut pruned = d.clone();
        if !super::prune::prune_value(&mut pruned, s).is_empty() {
            errs.push(FieldError::invalid_raw(
                dpath,
                gofmt::bad_value(d),
                "must not have unknown fields",
            ));
        }
    }
    for (k, p) in s.properties.iter().flatten() {
        // The root's metadata, apiVersion and kind get no defaults (checked in openapi()).
        if !(root && META_FIELDS.contains(&k.as_str())) {
            defaults(p, &key(path, k), false, errs);
        }
    }
    if let Some(Some(extra)) = additional(s) {
        defaults(extra, &format!("{path}.additionalProperties"), false, errs);
    }
    if let Some(item) = items(s) {
        defaults(item, &format!("{path}.items"), false, errs);
    }
}

#[cfg(test)]
mod tests;
