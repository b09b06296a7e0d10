//! Unknown fields: what a request body holds that the kind's type does not. Decoding drops
//! them; `fieldValidation=Strict` refuses the request, `Warn` (the default) answers with a
//! `Warning` header per field.

use serde_json::Value;

/// Paths in `input` absent from `known` (the same object decoded and encoded again).
pub fn unknown_fields(input: &Value, known: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(input, known, "", &mut out);
    out
}

fn walk(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, v) in i {
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    Some(kv) => walk(v, kv, &p, out),
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (n, (a, b)) in i.iter().zip(k).enumerate() {
                walk(a, b, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

/// The `fieldValidation` directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    Ignore,
    Warn,
    Strict,
}

impl Directive {
    pub fn parse(s: Option<&str>) -> Result<Self, String> {
        match s {
            None | Some("") | Some("Warn") => Ok(Directive::Warn),
            Some("Ignore") => Ok(Directive::Ignore),
            Some("Strict") => Ok(Directive::Strict),
            Some(other) => Err(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Warn\", \"Strict\""
            )),
        }
    }
}

/// The unknown fields of a body (`unknown`, asked only when the directive looks) of
/// `kind` in `version`, under directive `d`: an error under Strict, in kube-apiserver's
/// words; the warnings to send under Warn.
pub fn check(
    d: Directive,
    kind: &str,
    version: &str,
    unknown: impl FnOnce() -> Vec<String>,
) -> Result<Vec<String>, crate::error::ApiError> {
    if d == Directive::Ignore {
        return Ok(vec![]);
    }
    let unknown: Vec<String> = unknown()
        .into_iter()
        .map(|f| format!("unknown field {f:?}"))
        .collect();
    if unknown.is_empty() || d == Directive::Warn {
        return Ok(unknown);
    }
    Err(crate::error::ApiError::BadRequest(format!(
        "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
        unknown.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_nested_unknown_fields() {
        let input = json!({"spec": {"containers": [{"name": "c", "imagee": "x"}], "bogus": 1, "nodeName": null}, "metadata": {"name": "p"}});
        let known = json!({"spec": {"containers": [{"name": "c"}]}, "metadata": {"name": "p"}});
        let mut found = unknown_fields(&input, &known);
        found.sort();
        assert_eq!(found, ["spec.bogus", "spec.containers[0].imagee"]);
        assert!(unknown_fields(&known, &known).is_empty());
        assert_eq!(Directive::parse(None), Ok(Directive::Warn));
        assert!(Directive::parse(Some("strict")).is_err());
    }
}
