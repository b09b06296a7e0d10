//! CEL validation rules (`x-kubernetes-validations`), evaluated by kube-rs' `kube-cel`
//! (kube's CEL libraries over the `cel` crate): compiled once per served version, run
//! after the structural checks passed, as apiextensions-apiserver runs them. `oldSelf`
//! rules (transition rules) run on updates only, unless `optionalOldSelf`. A failed rule
//! is a field error as kube reports it: `Invalid value: "<schema type>": <message>`, or
//! Forbidden/Required/Duplicate when the rule names that `reason`, at the rule's node or
//! its `fieldPath`. A rule that cannot be evaluated (an unsupported function, a runtime
//! error) refuses the object: a rule never passes unchecked.

use kube_cel::{compile_schema, CompiledSchema, ErrorKind, RootContext, ValidationError};
use serde_json::Value;

pub mod budget;
pub mod cost;
pub mod shape;

use super::Props;
use crate::error::{FieldError, FieldErrorKind};

/// One version's compiled rules.
pub struct Rules {
    compiled: CompiledSchema,
    root: RootContext,
    parsed: budget::Parsed,
}

thread_local! {
    /// kube's function libraries, registered once per thread (registration is not free).
    static VALIDATOR: kube_cel::Validator = kube_cel::Validator::new();
}

/// Whether a schema has a rule anywhere.
pub fn has_rules(s: &Props) -> bool {
    s.x_kubernetes_validations
        .as_ref()
        .is_some_and(|r| !r.is_empty())
        || children(s).any(has_rules)
}

fn children(s: &Props) -> impl Iterator<Item = &Props> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    };
    let props = s.properties.iter().flat_map(|p| p.values());
    let items = s.items.iter().flat_map(|i| match i {
        JSONSchemaPropsOrArray::Schema(p) => std::slice::from_ref(p.as_ref()),
        JSONSchemaPropsOrArray::Schemas(v) => v.as_slice(),
    });
    let additional = s.additional_properties.iter().filter_map(|a| match a {
        JSONSchemaPropsOrBool::Schema(p) => Some(p.as_ref()),
        JSONSchemaPropsOrBool::Bool(_) => None,
    });
    let junctions = [&s.all_of, &s.any_of, &s.one_of]
        .into_iter()
        .flat_map(|j| j.iter().flatten());
    props.chain(items).chain(additional).chain(junctions)
}

/// The rules of a version's schema, or None when it has none.
pub fn compile(s: &Props, group: &str, version: &str, kind: &str) -> Option<Rules> {
    if !has_rules(s) {
        return None;
    }
    let json = serde_json::to_value(s).ok()?;
    Some(Rules {
        compiled: compile_schema(&json),
        parsed: budget::Parsed::of(s),
        root: RootContext {
            api_version: if group.is_empty() {
                version.to_string()
            } else {
                format!("{group}/{version}")
            },
            api_group: group.to_string(),
            kind: kind.to_string(),
        },
    })
}

impl Rules {
    /// The rules' failures on `obj` (and `old`, on an update), as kube reports them; or,
    /// when their estimated cost on this object is over kube's limits, that alone and no
    /// rule run.
    pub fn check(&self, schema: &Props, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        if let Some(e) = budget::runtime_error(&self.parsed, schema, obj, old) {
            return vec![e];
        }
        let result = VALIDATOR
            .with(|v| v.validate_compiled_with_context(&self.compiled, obj, old, Some(&self.root)));
        match result {
            Ok(()) => vec![],
            Err(errs) => errs.iter().map(|e| field_error(schema, e)).collect(),
        }
    }
}

fn field_error(schema: &Props, e: &ValidationError) -> FieldError {
    // kube names the root of an object `<nil>`.
    let field = if e.field_path.is_empty() {
        "<nil>".to_string()
    } else {
        e.field_path.clone()
    };
    let ty = super::gofmt::quote(type_at(schema, &e.field_path));
    let failure = matches!(e.kind, ErrorKind::ValidationFailure);
    match e.reason.as_deref().filter(|_| failure) {
        Some("FieldValueForbidden") => FieldError::forbidden(field, &e.message),
        Some("FieldValueRequired") => FieldError::required(field, &e.message),
        Some("FieldValueDuplicate") => FieldError {
            field,
            kind: FieldErrorKind::Duplicate(ty),
            detail: String::new(),
        },
        _ => FieldError::invalid_raw(field, ty, &e.message),
    }
}

/// The schema type at a path as kube-cel writes it (`spec.items[0].name`), for the
/// "Invalid value" kube shows (the type, not the value); "object" where it is unknown.
fn type_at<'a>(mut s: &'a Props, path: &str) -> &'a str {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    };
    let mut rest = path;
    while !rest.is_empty() {
        let next = if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').map_or(r.len(), |i| i + 1);
            let item = match &s.items {
                Some(JSONSchemaPropsOrArray::Schema(p)) => Some(p.as_ref()),
                Some(JSONSchemaPropsOrArray::Schemas(v)) => v.first(),
                None => None,
            };
            rest = r.get(end..).unwrap_or("");
            item
        } else {
            let r = rest.strip_prefix('.').unwrap_or(rest);
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let (name, after) = r.split_at(end);
            rest = after;
            s.properties
                .as_ref()
                .and_then(|p| p.get(name))
                .or(match &s.additional_properties {
                    Some(JSONSchemaPropsOrBool::Schema(p)) => Some(p.as_ref()),
                    _ => None,
                })
        };
        match next {
            Some(n) => s = n,
            None => return "object",
        }
    }
    s.type_.as_deref().unwrap_or("object")
}

/// A CRD's rules that do not compile, with kube's paths
/// (`…properties[spec].x-kubernetes-validations[0].rule`) and its `compilation failed`;
/// when all compile, those whose estimated cost is over kube's limits.
pub fn compile_errors(s: &Props, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    compile_errors_into(s, path, &mut errs);
    if errs.is_empty() {
        errs = budget::static_errors(s, path);
    }
    errs
}

/// Parses an expression the interpreter can evaluate: the parser's words on a syntax
/// error; refused syntax (a message literal, on which the interpreter panics) named.
pub fn parse(expr: &str) -> Result<kube_cel::cel::Program, String> {
    let p = kube_cel::cel::Program::compile(expr).map_err(|e| e.to_string())?;
    match cost::unsupported_syntax(p.expression()) {
        Some(what) => Err(format!("ERROR: <input>: {what}")),
        None => Ok(p),
    }
}

const REASONS: [&str; 4] = [
    "FieldValueInvalid",
    "FieldValueForbidden",
    "FieldValueRequired",
    "FieldValueDuplicate",
];

fn compile_errors_into(s: &Props, path: &str, errs: &mut Vec<FieldError>) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    };
    for (i, r) in s.x_kubernetes_validations.iter().flatten().enumerate() {
        let at = format!("{path}.x-kubernetes-validations[{i}]");
        if r.rule.trim().is_empty() {
            errs.push(FieldError::required(
                format!("{at}.rule"),
                "rule is not specified",
            ));
        } else if let Err(e) = parse(&r.rule) {
            errs.push(FieldError::invalid(
                format!("{at}.rule"),
                &r.rule,
                format!("compilation failed: {e}"),
            ));
        }
        if let Some(m) = r.message_expression.as_deref().filter(|m| !m.is_empty()) {
            if let Err(e) = parse(m) {
                errs.push(FieldError::invalid(
                    format!("{at}.messageExpression"),
                    m,
                    format!("messageExpression compilation failed: {e}"),
                ));
            }
        }
        if let Some(reason) = r.reason.as_deref() {
            if !REASONS.contains(&reason) {
                errs.push(FieldError::not_supported(
                    format!("{at}.reason"),
                    reason,
                    &REASONS,
                ));
            }
        }
    }
    for (name, p) in s.properties.iter().flatten() {
        compile_errors_into(p, &format!("{path}.properties[{name}]"), errs);
    }
    match &s.items {
        Some(JSONSchemaPropsOrArray::Schema(p)) => {
            compile_errors_into(p, &format!("{path}.items"), errs)
        }
        Some(JSONSchemaPropsOrArray::Schemas(v)) => {
            for (i, p) in v.iter().enumerate() {
                compile_errors_into(p, &format!("{path}.items[{i}]"), errs);
            }
        }
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(p)) = &s.additional_properties {
        compile_errors_into(p, &format!("{path}.additionalProperties"), errs);
    }
}

#[cfg(test)]
mod tests;
