//! A custom resource checked against its schema, with the errors kube-apiserver gives: the
//! checks and messages of kube-openapi's validator (values "in body"), turned into field
//! errors as apiextensions-apiserver turns them (`kubeOpenAPIResultToFieldErrors`).
//!
//! As there, each check applies by the kind of the value, not the schema's type (a
//! `minimum` checks any number), a type error does not stop the others, and the errors of
//! `allOf`/`anyOf`/`oneOf`/`not` alternatives are not reported, only that they failed
//! (under the path `<nil>`, as kube reports them). Properties are visited in name order;
//! kube's order is Go's random map order.

use super::{formats, gofmt, Props};
use crate::error::{FieldError, FieldErrorKind};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::{Map, Value};

/// The errors of `value`, found at `path` in its object ("" for the whole object,
/// "status" for what a status write sets).
pub fn validate(schema: &Props, value: &Value, path: &str) -> Vec<FieldError> {
    let mut v = Validator { errors: Vec::new() };
    v.node(schema, value, path);
    v.errors
}

/// Whether `value` passes `schema` (what the alternatives of a junction need).
fn passes(schema: &Props, value: &Value, path: &str) -> bool {
    validate(schema, value, path).is_empty()
}

struct Validator {
    errors: Vec<FieldError>,
}

/// The JSON type of a value as kube-openapi names it; a number is an integer when Go's
/// unstructured decoding would hold it as an int64.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Within 1e-9 of a whole number (go-openapi's `IsFloat64AJSONInteger`).
fn is_integral(f: f64) -> bool {
    f.is_finite() && (f - f.round()).abs() <= 1e-9 * f.abs().max(1.0)
}

/// Equality of JSON values with numbers compared by value (Go converts the data to the
/// enum value's type before comparing).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// The field path of an error named `name` (kube trims the leading dot; no name is the
/// nil path).
fn field(name: &str) -> String {
    match name.trim_start_matches('.') {
        "" => "<nil>".to_string(),
        f => f.to_string(),
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl Validator {
    fn invalid(&mut self, name: &str, value: String, message: String) {
        self.errors.push(FieldError {
            field: field(name),
            kind: FieldErrorKind::Invalid(value),
            detail: message,
        });
    }

    fn type_error(&mut self, name: &str, want: &str, got: &str) {
        let q = gofmt::quote(got);
        self.invalid(
            name,
            q.clone(),
            format!("{name} in body must be of type {want}: {q}"),
        );
    }

    /// An alternative's failure: not a field's, so under the nil path with an empty value.
    fn junction(&mut self, message: String) {
        self.invalid("", "\"\"".to_string(), message);
    }

    fn node(&mut self, s: &Props, v: &Value, path: &str) {
        let types: Vec<&str> = if s.x_kubernetes_int_or_string == Some(true) {
            vec!["integer", "string"]
        } else {
            s.type_
                .as_deref()
                .filter(|t| !t.is_empty())
                .into_iter()
                .collect()
        };
        if v.is_null() {
            if !types.is_empty() && s.nullable != Some(true) {
                self.type_error(path, &types.join(","), "null");
            }
            self.enumeration(s, v, path);
            return;
        }
        if !types.is_empty() {
            let got = json_type(v);
            let float_int = got == "number"
                && types.contains(&"integer")
                && v.as_f64().is_some_and(is_integral);
            let int_float = got == "integer" && types.contains(&"number");
            if !(types.contains(&got) || float_int || int_float) {
                self.type_error(path, &types.join(","), got);
            }
        }
        self.junctions(s, v, path);
        match v {
            Value::String(text) => self.string(s, text, path),
            Value::Number(_) => self.number(s, v, path),
            Value::Array(items) => self.array(s, items, path),
            _ => {}
        }
        self.enumeration(s, v, path);
        if let Value::Object(map) = v {
            self.object(s, map, path);
        }
    }

    fn junctions(&mut self, s: &Props, v: &Value, path: &str) {
        let q = gofmt::quote(path);
        if let Some(all) = s.all_of.as_deref().filter(|a| !a.is_empty()) {
            let valid = all.iter().filter(|a| passes(a, v, path)).count();
            if valid != all.len() {
                let none = if valid == 0 { ". None validated" } else { "" };
                self.junction(format!("{q} must validate all the schemas (allOf){none}"));
            }
        }
        if let Some(any) = s.any_of.as_deref().filter(|a| !a.is_empty()) {
            if !any.iter().any(|a| passes(a, v, path)) {
                self.junction(format!("{q} must validate at least one schema (anyOf)"));
            }
        }
        if let Some(one) = s.one_of.as_deref().filter(|a| !a.is_empty()) {
            match one.iter().filter(|a| passes(a, v, path)).count() {
                1 => {}
                0 => self.junction(format!(
                    "{q} must validate one and only one schema (oneOf). Found none valid"
                )),
                n => self.junction(format!(
                    "{q} must validate one and only one schema (oneOf). Found {n} valid alternatives"
                )),
            }
        }
        if let Some(not) = &s.not {
            if passes(not, v, path) {
                self.junction(format!("{q} must not validate the schema (not)"));
            }
        }
    }

    fn string(&mut self, s: &Props, text: &str, path: &str) {
        let len = text.chars().count() as i64;
        if let Some(max) = s.max_length.filter(|m| len > *m) {
            self.errors.push(FieldError {
                field: field(path),
                kind: FieldErrorKind::TooLong(usize::try_from(max).unwrap_or(0)),
                detail: String::new(),
            });
        }
        if let Some(min) = s.min_length.filter(|m| len < *m) {
            self.invalid(
                path,
                gofmt::quote(text),
                format!("{path} in body should be at least {min} chars long"),
            );
        }
        if let Some(pattern) = s.pattern.as_deref().filter(|p| !p.is_empty()) {
            let matched = super::patterns::is_match(pattern, text);
            let shown = match &matched {
                Err(e) => format!("{pattern}, but pattern is invalid: {e}"),
                Ok(_) => pattern.to_string(),
            };
            if matched != Ok(true) {
                self.invalid(
                    path,
                    gofmt::quote(text),
                    format!("{path} in body should match '{shown}'"),
                );
            }
        }
        if let Some(format) = s.format.as_deref() {
            if formats::check(format, text) == Some(false) {
                let q = gofmt::quote(text);
                self.invalid(
                    path,
                    q.clone(),
                    format!("{path} in body must be of type {format}: {q}"),
                );
            }
        }
    }

    fn number(&mut self, s: &Props, v: &Value, path: &str) {
        let shown = gofmt::bad_value(v);
        let int = v.as_i64();
        let f = v.as_f64().unwrap_or(f64::NAN);
        // A bound is shown as Go shows it: an int64 beside integer data, else a float64.
        let bound = |b: f64| match int {
            Some(_) => (b as i64).to_string(),
            None => gofmt::float(b),
        };
        if let Some(factor) = s.multiple_of {
            let by_int = int
                .filter(|_| is_integral(factor))
                .map(|i| (i, factor as i64));
            let fails = match by_int {
                Some((_, k)) if k <= 0 => None,
                Some((i, k)) => Some(i % k != 0),
                None if factor <= 0.0 => None,
                None => Some(!is_integral(f / factor)),
            };
            match fails {
                None => self.invalid(
                    path,
                    shown.clone(),
                    format!(
                        "factor MultipleOf declared for {path} must be positive: {}",
                        bound(factor)
                    ),
                ),
                Some(true) => self.invalid(
                    path,
                    shown.clone(),
                    format!("{path} in body should be a multiple of {}", bound(factor)),
                ),
                Some(false) => {}
            }
        }
        if let Some(max) = s.maximum {
            let exclusive = s.exclusive_maximum == Some(true);
            let over = match int {
                Some(i) if exclusive => i >= max as i64,
                Some(i) => i > max as i64,
                None if exclusive => f >= max,
                None => f > max,
            };
            if over {
                let rel = if exclusive {
                    "less than"
                } else {
                    "less than or equal to"
                };
                self.invalid(
                    path,
                    shown.clone(),
                    format!("{path} in body should be {rel} {}", bound(max)),
                );
            }
        }
        if let Some(min) = s.minimum {
            let exclusive = s.exclusive_minimum == Some(true);
            let under = match int {
                Some(i) if exclusive => i <= min as i64,
                Some(i) => i < min as i64,
                None if exclusive => f <= min,
                None => f < min,
            };
            if under {
                let rel = if exclusive {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                self.invalid(
                    path,
                    shown,
                    format!("{path} in body should be {rel} {}", bound(min)),
                );
            }
        }
    }

    fn array(&mut self, s: &Props, items: &[Value], path: &str) {
        match &s.items {
            Some(JSONSchemaPropsOrArray::Schema(item)) => {
                for (i, v) in items.iter().enumerate() {
                    self.node(item, v, &format!("{path}[{i}]"));
                }
            }
            Some(JSONSchemaPropsOrArray::Schemas(each)) => {
                for (i, (item, v)) in each.iter().zip(items).enumerate() {
                    self.node(item, v, &format!("{path}[{i}]"));
                }
            }
            None => {}
        }
        let n = items.len();
        if let Some(min) = s.min_items.filter(|m| (n as i64) < *m) {
            self.invalid(
                path,
                n.to_string(),
                format!("{path} in body should have at least {min} items"),
            );
        }
        if let Some(max) = s.max_items.filter(|m| (n as i64) > *m) {
            self.errors.push(FieldError {
                field: field(path),
                kind: FieldErrorKind::TooMany(n, usize::try_from(max).unwrap_or(0)),
                detail: String::new(),
            });
        }
        if s.unique_items == Some(true) {
            let dup = (0..n).any(|i| (i + 1..n).any(|j| json_eq(&items[i], &items[j])));
            if dup {
                self.invalid(
                    path,
                    "\"\"".into(),
                    format!("{path} in body shouldn't contain duplicates"),
                );
            }
        }
    }

    fn enumeration(&mut self, s: &Props, v: &Value, path: &str) {
        let Some(allowed) = s.enum_.as_deref().filter(|e| !e.is_empty()) else {
            return;
        };
        if allowed.iter().any(|a| json_eq(&a.0, v)) {
            return;
        }
        let values = allowed
            .iter()
            .map(|a| match &a.0 {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        self.errors.push(FieldError {
            field: field(path),
            kind: FieldErrorKind::NotSupported(gofmt::bad_value(v), values),
            detail: String::new(),
        });
    }

    fn object(&mut self, s: &Props, map: &Map<String, Value>, path: &str) {
        let n = map.len();
        if let Some(min) = s.min_properties.filter(|m| (n as i64) < *m) {
            self.invalid(
                path,
                n.to_string(),
                format!("{path} in body should have at least {min} properties"),
            );
        }
        if let Some(max) = s.max_properties.filter(|m| (n as i64) > *m) {
            self.errors.push(FieldError {
                field: field(path),
                kind: FieldErrorKind::TooMany(n, usize::try_from(max).unwrap_or(0)),
                detail: String::new(),
            });
        }
        let props = s.properties.as_ref();
        let known = |k: &str| props.is_some_and(|p| p.contains_key(k));
        match &s.additional_properties {
            Some(JSONSchemaPropsOrBool::Bool(false)) => {
                for k in map.keys().filter(|k| !known(k)) {
                    self.invalid(
                        path,
                        gofmt::quote(k),
                        format!("{path}.{k} in body is a forbidden property"),
                    );
                }
            }
            Some(JSONSchemaPropsOrBool::Schema(extra)) => {
                for (k, v) in map.iter().filter(|(k, _)| !known(k)) {
                    self.node(extra, v, &format!("{path}.{k}"));
                }
            }
            _ => {}
        }
        if let Some(props) = props {
            for (k, sub) in props {
                if let Some(v) = map.get(k) {
                    self.node(sub, v, &child(path, k));
                }
            }
        }
        for k in s.required.iter().flatten() {
            if !map.contains_key(k) {
                self.errors
                    .push(FieldError::required(field(&format!("{path}.{k}")), ""));
            }
        }
    }
}

#[cfg(test)]
mod tests;
