//! A CustomResourceDefinition's checks, as apiextensions-apiserver's
//! `ValidateCustomResourceDefinition` makes them on a v1 CRD (schemas required and
//! structural, defaults allowed and pruned). kube validates its internal form, into which
//! a v1 CRD whose versions all carry the same schema, subresources or columns is
//! converted with them at the top level; so are the paths of these errors
//! (`spec.validation.openAPIV3Schema…`, `spec.subresources…`,
//! `spec.additionalPrinterColumns[0]…`), else per version (`spec.versions[1].schema…`).

use flotilla_core::names::dns1035_label;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionVersion, CustomResourceSubresources,
};

use crate::error::{FieldError, FieldErrorKind};
use crate::schema::{cel, gofmt, structural, Props};

mod conversion;

const COLUMN_TYPES: &str = "boolean,date,integer,number,string";
const COLUMN_FORMATS: &str = "byte,date,date-time,double,float,int32,int64,password";

/// Where a version's schema, subresources and columns are reported: at the top level
/// when every version has the same, else under the version.
pub struct Paths {
    schema: bool,
    subresources: bool,
    columns: bool,
}

impl Paths {
    pub fn of(versions: &[CustomResourceDefinitionVersion]) -> Paths {
        Paths {
            schema: versions.windows(2).all(|w| w[0].schema == w[1].schema),
            subresources: versions
                .windows(2)
                .all(|w| w[0].subresources == w[1].subresources),
            columns: versions
                .windows(2)
                .all(|w| w[0].additional_printer_columns == w[1].additional_printer_columns),
        }
    }
    pub fn schema(&self, i: usize) -> String {
        if self.schema {
            "spec.validation.openAPIV3Schema".into()
        } else {
            format!("spec.versions[{i}].schema.openAPIV3Schema")
        }
    }
    pub fn subresources(&self, i: usize) -> String {
        if self.subresources {
            "spec.subresources".into()
        } else {
            format!("spec.versions[{i}].subresources")
        }
    }
    pub fn columns(&self, i: usize) -> String {
        if self.columns {
            "spec.additionalPrinterColumns".into()
        } else {
            format!("spec.versions[{i}].additionalPrinterColumns")
        }
    }
}

fn versions_value(versions: &[CustomResourceDefinitionVersion]) -> String {
    // kube prints the Go struct; a short stand-in keeps the message readable.
    format!(
        "[]apiextensions.CustomResourceDefinitionVersion{{... {} versions}}",
        versions.len()
    )
}

/// Every error of a CRD about to be stored (created, updated or its status written).
pub fn validate(crd: &CustomResourceDefinition) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = &crd.spec;
    let want = format!("{}.{}", spec.names.plural, spec.group);
    if let Some(name) = crd.metadata.name.as_deref().filter(|n| !n.is_empty()) {
        if name != want {
            errs.push(FieldError::invalid(
                "metadata.name",
                name,
                r#"must be spec.names.plural+"."+spec.group"#,
            ));
        }
    }
    if spec.group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else {
        let bad = flotilla_core::names::dns1123_subdomain(&spec.group);
        if !bad.is_empty() {
            errs.push(FieldError::invalid(
                "spec.group",
                &spec.group,
                bad.join(","),
            ));
        } else if !spec.group.contains('.') {
            errs.push(FieldError::invalid(
                "spec.group",
                &spec.group,
                "should be a domain with at least one dot",
            ));
        }
    }
    match spec.scope.as_str() {
        "Cluster" | "Namespaced" => {}
        "" => errs.push(FieldError::required("spec.scope", "")),
        other => errs.push(FieldError {
            field: "spec.scope".into(),
            kind: FieldErrorKind::NotSupported(
                gofmt::quote(other),
                vec!["Cluster".into(), "Namespaced".into()],
            ),
            detail: String::new(),
        }),
    }
    if spec.preserve_unknown_fields == Some(true) {
        errs.push(FieldError::invalid_raw(
            "spec.preserveUnknownFields",
            "true".into(),
            "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
        ));
    }
    errs.extend(conversion::errors(spec.conversion.as_ref()));
    let paths = Paths::of(&spec.versions);
    let mut storage = 0;
    let mut names = std::collections::HashSet::new();
    let mut unique = true;
    for (i, v) in spec.versions.iter().enumerate() {
        storage += usize::from(v.storage);
        unique &= names.insert(v.name.as_str());
        let bad = dns1035_label(&v.name);
        if !bad.is_empty() {
            errs.push(FieldError::invalid(
                format!("spec.versions[{i}].name"),
                &v.name,
                bad.join(","),
            ));
        }
        errs.extend(version(v, i, &paths));
    }
    if !unique {
        errs.push(FieldError::invalid_raw(
            "spec.versions",
            versions_value(&spec.versions),
            "must contain unique version names",
        ));
    }
    if storage != 1 {
        errs.push(FieldError::invalid_raw(
            "spec.versions",
            versions_value(&spec.versions),
            "must have exactly one version marked as storage version",
        ));
    }
    let n = &spec.names;
    for (field, value) in [
        ("plural", n.plural.as_str()),
        ("singular", n.singular.as_deref().unwrap_or("")),
        ("kind", n.kind.as_str()),
        ("listKind", n.list_kind.as_deref().unwrap_or("")),
    ] {
        if value.is_empty() {
            errs.push(FieldError::required(format!("spec.names.{field}"), ""));
        }
    }
    errs.extend(names_errors(n, "spec.names"));
    if let Some(status) = &crd.status {
        if let Some(accepted) = &status.accepted_names {
            errs.extend(names_errors(accepted, "status.acceptedNames"));
        }
        errs.extend(stored_versions(
            status.stored_versions.as_deref(),
            &spec.versions,
        ));
    }
    errs
}

/// On an update: the group and scope stay (kube refuses `field is immutable` once
/// established; here always, as nothing migrates stored objects between scopes).
pub fn validate_update(
    new: &CustomResourceDefinition,
    old: &CustomResourceDefinition,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if new.spec.group != old.spec.group {
        errs.push(FieldError::invalid(
            "spec.group",
            &new.spec.group,
            "field is immutable",
        ));
    }
    if new.spec.scope != old.spec.scope {
        errs.push(FieldError::invalid(
            "spec.scope",
            &new.spec.scope,
            "field is immutable",
        ));
    }
    errs
}

fn version(v: &CustomResourceDefinitionVersion, i: usize, paths: &Paths) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let status = v.subresources.as_ref().is_some_and(|s| s.status.is_some());
    match v
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
    {
        None => errs.push(FieldError::required(
            format!("spec.versions[{i}].schema.openAPIV3Schema"),
            "schemas are required",
        )),
        // With identical schemas kube reports each error once, at the top level.
        Some(_) if paths.schema && i > 0 => {}
        Some(s) => {
            errs.extend(structural::check(s, &paths.schema(i), status));
            errs.extend(cel::compile_errors(s, &paths.schema(i)));
        }
    }
    if !(paths.subresources && i > 0) {
        if let Some(sub) = &v.subresources {
            errs.extend(subresources(sub, &paths.subresources(i)));
        }
    }
    let schema = v
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref());
    errs.extend(selectable_fields(v, schema, i));
    if !(paths.columns && i > 0) {
        let base = paths.columns(i);
        for (c, col) in v.additional_printer_columns.iter().flatten().enumerate() {
            errs.extend(column(col, &format!("{base}[{c}]")));
        }
    }
    errs
}

fn names_errors(n: &CustomResourceDefinitionNames, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let label = |errs: &mut Vec<FieldError>, field: String, v: &str, mixed: bool| {
        if v.is_empty() {
            return;
        }
        let bad = dns1035_label(&if mixed {
            v.to_lowercase()
        } else {
            v.to_string()
        });
        if !bad.is_empty() {
            let why = if mixed {
                format!(
                    "may have mixed case, but should otherwise match: {}",
                    bad.join(",")
                )
            } else {
                bad.join(",")
            };
            errs.push(FieldError::invalid(field, v, why));
        }
    };
    label(&mut errs, format!("{path}.plural"), &n.plural, false);
    label(
        &mut errs,
        format!("{path}.singular"),
        n.singular.as_deref().unwrap_or(""),
        false,
    );
    label(&mut errs, format!("{path}.kind"), &n.kind, true);
    let list_kind = n.list_kind.as_deref().unwrap_or("");
    label(&mut errs, format!("{path}.listKind"), list_kind, true);
    for (i, s) in n.short_names.iter().flatten().enumerate() {
        label(&mut errs, format!("{path}.shortNames[{i}]"), s, false);
    }
    if !n.kind.is_empty() && n.kind == list_kind {
        errs.push(FieldError::invalid(
            format!("{path}.listKind"),
            list_kind,
            "kind and listKind may not be the same",
        ));
    }
    for (i, c) in n.categories.iter().flatten().enumerate() {
        label(&mut errs, format!("{path}.categories[{i}]"), c, false);
    }
    errs
}

fn stored_versions(
    stored: Option<&[String]>,
    versions: &[CustomResourceDefinitionVersion],
) -> Vec<FieldError> {
    let path = "status.storedVersions";
    let stored = stored.unwrap_or(&[]);
    let shown = gofmt::sharp_v(&serde_json::json!(stored)).replace("[]interface {}", "[]string");
    if stored.is_empty() {
        return vec![FieldError::invalid_raw(
            path,
            shown,
            "must have at least one stored version",
        )];
    }
    let mut errs = Vec::new();
    if let Some(v) = versions.iter().find(|v| v.storage) {
        if !stored.contains(&v.name) {
            errs.push(FieldError::invalid_raw(
                path,
                shown.clone(),
                format!("must have the storage version {}", v.name),
            ));
        }
    }
    for (i, s) in stored.iter().enumerate() {
        if !versions.iter().any(|v| &v.name == s) {
            errs.push(FieldError::invalid(
                format!("{path}[{i}]"),
                s,
                format!("missing from spec.versions; {s} was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in {s} and removes {s} from status.storedVersions"),
            ));
        }
    }
    errs
}

fn simple_json_path(s: &str, field: &str) -> Option<FieldError> {
    if s.is_empty() {
        Some(FieldError::invalid(field, s, "must not be empty"))
    } else if !s.starts_with('.') {
        Some(FieldError::invalid(
            field,
            s,
            "must be a simple json path starting with .",
        ))
    } else {
        None
    }
}

/// The most selectable fields a version may have, as kube allows.
const MAX_SELECTABLE: usize = 8;

/// `selectableFields`: at most eight simple JSON paths, none under metadata, each to a
/// string, integer or boolean the schema specifies, none twice.
fn selectable_fields(
    v: &CustomResourceDefinitionVersion,
    schema: Option<&Props>,
    i: usize,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let fields = v.selectable_fields.as_deref().unwrap_or(&[]);
    let base = format!("spec.versions[{i}].selectableFields");
    if fields.len() > MAX_SELECTABLE {
        errs.push(FieldError::too_many(&base, fields.len(), MAX_SELECTABLE));
    }
    let mut seen = std::collections::HashSet::new();
    for (j, f) in fields.iter().enumerate() {
        let field = format!("{base}[{j}].jsonPath");
        let path = f.json_path.as_str();
        if path.is_empty() {
            errs.push(FieldError::required(field, ""));
            continue;
        }
        if let Some(e) = simple_json_path(path, &field) {
            errs.push(e);
            continue;
        }
        if path.contains('[') {
            errs.push(FieldError::invalid(
                field,
                path,
                "array notation is not allowed",
            ));
        } else if path == ".metadata" || path.starts_with(".metadata.") {
            errs.push(FieldError::invalid(
                field,
                path,
                "must not point to metadata fields",
            ));
        } else if !seen.insert(path) {
            errs.push(FieldError::duplicate(field, path));
        } else if let Some(s) = schema {
            match schema_at(s, path).map(|p| p.type_.as_deref().unwrap_or("")) {
                None => errs.push(FieldError::invalid(
                    field,
                    path,
                    "is an invalid path: the schema does not specify it",
                )),
                Some("string" | "integer" | "boolean") => {}
                Some(t) => errs.push(FieldError::invalid(
                    field,
                    path,
                    format!("must point to a field of type string, boolean or integer, not {t:?}"),
                )),
            }
        }
    }
    errs
}

/// The schema of the field a simple JSON path (`.spec.color`) names, if it specifies one.
fn schema_at<'a>(mut s: &'a Props, path: &str) -> Option<&'a Props> {
    for seg in path.trim_start_matches('.').split('.') {
        s = s.properties.as_ref()?.get(seg)?;
    }
    Some(s)
}

fn subresources(sub: &CustomResourceSubresources, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(scale) = &sub.scale else { return errs };
    let paths = [
        (
            "specReplicasPath",
            scale.spec_replicas_path.as_str(),
            ".spec.",
            "should be a json path under .spec",
        ),
        (
            "statusReplicasPath",
            scale.status_replicas_path.as_str(),
            ".status.",
            "should be a json path under .status",
        ),
    ];
    for (name, value, prefix, why) in paths {
        let field = format!("{path}.scale.{name}");
        if value.is_empty() {
            errs.push(FieldError::required(field, ""));
        } else if let Some(e) = simple_json_path(value, &field) {
            errs.push(e);
        } else if !value.starts_with(prefix) {
            errs.push(FieldError::invalid(field, value, why));
        }
    }
    if let Some(sel) = scale
        .label_selector_path
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        let field = format!("{path}.scale.labelSelectorPath");
        if let Some(e) = simple_json_path(sel, &field) {
            errs.push(e);
        } else if !sel.starts_with(".spec.") && !sel.starts_with(".status.") {
            errs.push(FieldError::invalid(
                field,
                sel,
                "should be a json path under either .spec or .status",
            ));
        }
    }
    errs
}

fn column(col: &CustomResourceColumnDefinition, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if col.name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    }
    let types_why = format!("must be one of {COLUMN_TYPES}");
    if col.type_.is_empty() {
        errs.push(FieldError::required(format!("{path}.type"), types_why));
    } else if !COLUMN_TYPES.split(',').any(|t| t == col.type_) {
        errs.push(FieldError::invalid(
            format!("{path}.type"),
            &col.type_,
            types_why,
        ));
    }
    if let Some(f) = col.format.as_deref().filter(|f| !f.is_empty()) {
        if !COLUMN_FORMATS.split(',').any(|x| x == f) {
            errs.push(FieldError::invalid(
                format!("{path}.format"),
                f,
                format!("must be one of {COLUMN_FORMATS}"),
            ));
        }
    }
    if col.json_path.is_empty() {
        errs.push(FieldError::required(format!("{path}.JSONPath"), ""));
    } else if let Some(e) = simple_json_path(&col.json_path, &format!("{path}.JSONPath")) {
        errs.push(e);
    }
    errs
}

#[cfg(test)]
mod tests;
