//! Pruning: fields a custom resource's schema does not specify are dropped before the
//! object is stored, as apiextensions-apiserver's pruning does (a schema node with
//! `x-kubernetes-preserve-unknown-fields` keeps what it does not know, but its known
//! fields are still pruned inside). The object's root, and any node marked
//! `x-kubernetes-embedded-resource`, keep `apiVersion`, `kind` and `metadata` (the
//! registry handles those). The paths of what was dropped come back sorted, for the
//! `unknown field "spec.x"` warnings and field validation's Strict errors.

use super::Props;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::Value;

const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// What a node says of the values of keys it does not name: nothing (`None`), or that any
/// key is allowed with this schema for its values (`Some(None)`: any value, pruned of
/// everything inside it, as kube prunes under `additionalProperties: true`).
pub(super) fn additional(s: &Props) -> Option<Option<&Props>> {
    match &s.additional_properties {
        None => None,
        Some(JSONSchemaPropsOrBool::Bool(_)) => Some(None),
        Some(JSONSchemaPropsOrBool::Schema(b)) => Some(Some(b)),
    }
}

pub(super) fn items(s: &Props) -> Option<&Props> {
    match &s.items {
        Some(JSONSchemaPropsOrArray::Schema(b)) => Some(b),
        _ => None,
    }
}

/// The schema for `key` of an object of schema `s`: its property, else what
/// `additionalProperties` says, else nothing.
pub(super) fn field_schema<'a>(s: &'a Props, key: &str) -> Option<Option<&'a Props>> {
    match s.properties.as_ref().and_then(|p| p.get(key)) {
        Some(p) => Some(Some(p)),
        None => additional(s),
    }
}

/// Prunes the whole object `obj` (its root treated as an embedded resource) and returns
/// the sorted paths of the fields dropped.
pub fn prune(obj: &mut Value, s: &Props) -> Vec<String> {
    let mut p = Pruner {
        path: String::new(),
        unknown: Vec::new(),
    };
    p.node(obj, Some(s), true, false);
    p.unknown.sort();
    p.unknown
}

/// Prunes a value that sits at schema node `s` inside an object (a default), and returns
/// the sorted paths dropped, relative to the value.
pub fn prune_value(v: &mut Value, s: &Props) -> Vec<String> {
    let mut p = Pruner {
        path: String::new(),
        unknown: Vec::new(),
    };
    p.node(v, Some(s), false, false);
    p.unknown.sort();
    p.unknown
}

struct Pruner {
    path: String,
    unknown: Vec<String>,
}

impl Pruner {
    fn enter_key(&mut self, key: &str) -> usize {
        let len = self.path.len();
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(key);
        len
    }

    fn enter_index(&mut self, i: usize) -> usize {
        let len = self.path.len();
        self.path.push_str(&format!("[{i}]"));
        len
    }

    fn record(&mut self, key: &str) {
        let len = self.enter_key(key);
        self.unknown.push(self.path.clone());
        self.path.truncate(len);
    }

    /// `root`: the object itself (a resource, as nodes marked embedded are). `skip`: an
    /// element of a preserving array, which preserves as its array does (kube's
    /// `skipPrune` goes on into items, not into fields).
    fn node(&mut self, x: &mut Value, s: Option<&Props>, root: bool, skip: bool) {
        let Some(s) = s else {
            if !skip {
                self.unspecified(x);
            }
            return;
        };
        let preserve = skip || s.x_kubernetes_preserve_unknown_fields == Some(true);
        let embedded = root || s.x_kubernetes_embedded_resource == Some(true);
        match x {
            Value::Object(map) => {
                let keys: Vec<String> = map.keys().cloned().collect();
                for k in keys {
                    if embedded && META_FIELDS.contains(&k.as_str()) {
                        continue;
                    }
                    match field_schema(s, &k) {
                        Some(sub) => {
                            let len = self.enter_key(&k);
                            if let Some(v) = map.get_mut(&k) {
                                self.node(v, sub, false, false);
                            }
                            self.path.truncate(len);
                        }
                        None if preserve => {}
                        None => {
                            self.record(&k);
                            map.remove(&k);
                        }
                    }
                }
            }
            Value::Array(list) => {
                let item = items(s);
                for (i, v) in list.iter_mut().enumerate() {
                    let len = self.enter_index(i);
                    self.node(v, item, false, preserve);
                    self.path.truncate(len);
                }
            }
            _ => {}
        }
    }

    /// A value no schema specifies: every key of every object in it goes.
    fn unspecified(&mut self, x: &mut Value) {
        match x {
            Value::Object(map) => {
                let keys: Vec<String> = map.keys().cloned().collect();
                for k in keys {
                    self.record(&k);
                }
                map.clear();
            }
            Value::Array(list) => {
                for (i, v) in list.iter_mut().enumerate() {
                    let len = self.enter_index(i);
                    self.unspecified(v);
                    self.path.truncate(len);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::prune;
    use crate::schema::Props;
    use serde_json::{json, Value};

    fn schema(v: Value) -> Props {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn unknown_fields_go_and_are_listed() {
        let s = schema(json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "a": {"type": "string"},
            "list": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "integer"}}}},
            "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"y": {"type": "string"}}}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                     "properties": {"known": {"type": "object", "properties": {"z": {"type": "string"}}}}}
        }}}}));
        let mut obj = json!({
            "apiVersion": "a.example.com/v1", "kind": "A", "metadata": {"name": "n", "odd": 1},
            "top": 1,
            "spec": {"a": "x", "b": "y",
                     "list": [{"x": 1, "q": 2}, {"x": 2}],
                     "map": {"k": {"y": "v", "w": 1}},
                     "free": {"anything": {"deep": true}, "known": {"z": "1", "gone": 2}}}
        });
        let dropped = prune(&mut obj, &s);
        assert_eq!(
            dropped,
            vec![
                "spec.b",
                "spec.free.known.gone",
                "spec.list[0].q",
                "spec.map.k.w",
                "top"
            ]
        );
        assert_eq!(
            obj,
            json!({
                "apiVersion": "a.example.com/v1", "kind": "A", "metadata": {"name": "n", "odd": 1},
                "spec": {"a": "x", "list": [{"x": 1}, {"x": 2}], "map": {"k": {"y": "v"}},
                         "free": {"anything": {"deep": true}, "known": {"z": "1"}}}
            })
        );
    }

    #[test]
    fn embedded_resources_keep_their_type_and_metadata() {
        let s = schema(
            json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                         "properties": {"spec": {"type": "object", "properties": {}}}}}}}}),
        );
        let mut obj = json!({"spec": {"template": {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p"}, "spec": {"x": 1}, "other": 2}}});
        assert_eq!(
            prune(&mut obj, &s),
            vec!["spec.template.other", "spec.template.spec.x"]
        );
        assert_eq!(
            obj,
            json!({"spec": {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}}})
        );
    }

    #[test]
    fn a_preserving_root_keeps_everything_it_does_not_know() {
        let s = schema(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
        let mut obj = json!({"spec": {"a": [1, {"b": 2}]}, "status": "x"});
        let before = obj.clone();
        assert!(prune(&mut obj, &s).is_empty());
        assert_eq!(obj, before);
    }
}
