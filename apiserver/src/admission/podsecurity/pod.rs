//! The pod (or pod template) a check reads: its metadata and spec as JSON, every container
//! of it, and the wording helpers the checks' messages share (kube's `joinQuote` and
//! `pluralize`).
//!
//! Absent and `null` are the same here, as a Go pointer field decoded from either is nil.

use serde_json::Value;

/// A pod's metadata and spec, or a template's.
#[derive(Debug, Clone, Copy)]
pub struct Pod<'a> {
    pub meta: &'a Value,
    pub spec: &'a Value,
}

impl<'a> Pod<'a> {
    pub fn new(meta: &'a Value, spec: &'a Value) -> Self {
        Pod { meta, spec }
    }

    /// Init containers, then containers, then ephemeral containers (kube's
    /// `visitContainers` order, which is the order names appear in messages).
    pub fn containers(&self) -> impl Iterator<Item = &'a Value> {
        let spec = self.spec;
        ["initContainers", "containers", "ephemeralContainers"]
            .into_iter()
            .flat_map(move |k| spec[k].as_array().into_iter().flatten())
    }

    /// The pod-level security context (`Null` when unset).
    pub fn security_context(&self) -> &'a Value {
        &self.spec["securityContext"]
    }

    /// The value of annotation `key`, if set.
    pub fn annotation(&self, key: &str) -> Option<&'a str> {
        self.meta["annotations"][key].as_str()
    }

    /// Every annotation that is a string.
    pub fn annotations(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.meta["annotations"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
    }

    /// `spec.os.name == "windows"`: checks of Linux-only fields exempt such pods.
    pub fn windows(&self) -> bool {
        self.spec["os"]["name"].as_str() == Some("windows")
    }
}

/// A container's name.
pub fn name(c: &Value) -> String {
    c["name"].as_str().unwrap_or("").to_string()
}

/// Whether a JSON field is set (present and not null).
pub fn set(v: &Value) -> bool {
    !v.is_null()
}

/// A field's strings (a list of capabilities), non-strings skipped.
pub fn strings(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str)
}

/// `"a", "b"`: each item in double quotes, as kube's `joinQuote` (no escaping).
pub fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let inner: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    format!("\"{}\"", inner.join("\", \""))
}

pub fn pluralize(singular: &'static str, plural: &'static str, n: usize) -> &'static str {
    if n == 1 {
        singular
    } else {
        plural
    }
}

/// `container "a"` / `containers "a", "b"`.
pub fn containers_phrase(names: &[String]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

/// Go's `%q` of a string: double-quoted with Go's escapes. Label and annotation values
/// are printable in practice; control characters and non-ASCII are escaped as Go does
/// for the common cases.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_come_init_first_then_regular_then_ephemeral() {
        let spec = json!({
            "containers": [{"name": "b"}],
            "ephemeralContainers": [{"name": "c"}],
            "initContainers": [{"name": "a"}],
        });
        let meta = json!({});
        let names: Vec<String> = Pod::new(&meta, &spec).containers().map(name).collect();
        assert_eq!(names, ["a", "b", "c"]);
        // Odd input reads as nothing rather than failing.
        let spec = json!({"containers": "x", "initContainers": null});
        assert_eq!(Pod::new(&meta, &spec).containers().count(), 0);
    }

    #[test]
    fn wording_helpers_match_kube() {
        assert_eq!(join_quote::<&str>(&[]), "");
        assert_eq!(join_quote(&["a"]), "\"a\"");
        assert_eq!(join_quote(&["a", "b"]), "\"a\", \"b\"");
        assert_eq!(containers_phrase(&["c".into()]), "container \"c\"");
        assert_eq!(
            containers_phrase(&["c".into(), "d".into()]),
            "containers \"c\", \"d\""
        );
        assert_eq!(go_quote("un\"conf\tined"), "\"un\\\"conf\\tined\"");
    }
}
