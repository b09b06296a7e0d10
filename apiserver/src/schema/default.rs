//! Defaulting of a custom resource from its schema's `default`s, as apiextensions-apiserver
//! does on every decode (requests and reads from storage alike): first a null where the
//! schema allows no null and has no default is dropped (`PruneNonNullableNullsWithoutDefaults`),
//! then a missing field, or a null one the schema does not allow, takes its default, and
//! defaults are applied inside every value (a default's own fields included).

use super::prune::{field_schema, items};
use super::Props;
use serde_json::Value;

fn default_of(s: &Props) -> Option<&Value> {
    s.default.as_ref().map(|d| &d.0)
}

fn non_nullable_null(x: &Value, s: Option<&Props>) -> bool {
    x.is_null() && s.is_some_and(|s| s.nullable != Some(true))
}

/// Drops nulls the schema forbids and cannot replace with a default, then applies defaults.
pub fn apply(obj: &mut Value, s: &Props) {
    prune_nulls(obj, Some(s));
    default(obj, Some(s));
}

fn prune_nulls(x: &mut Value, s: Option<&Props>) {
    match x {
        Value::Object(map) => {
            map.retain(|k, v| {
                let sub = s.and_then(|s| field_schema(s, k)).flatten();
                !(non_nullable_null(v, sub) && sub.is_some_and(|p| default_of(p).is_none()))
            });
            for (k, v) in map.iter_mut() {
                let sub = s.and_then(|s| field_schema(s, k)).flatten();
                prune_nulls(v, sub);
            }
        }
        Value::Array(list) => {
            let item = s.and_then(items);
            for v in list {
                prune_nulls(v, item);
            }
        }
        _ => {}
    }
}

fn default(x: &mut Value, s: Option<&Props>) {
    let Some(s) = s else { return };
    match x {
        Value::Object(map) => {
            for (k, prop) in s.properties.iter().flatten() {
                let Some(d) = default_of(prop) else { continue };
                let missing = map.get(k).is_none_or(|v| non_nullable_null(v, Some(prop)));
                if missing {
                    map.insert(k.clone(), d.clone());
                }
            }
            for (k, v) in map.iter_mut() {
                let Some(Some(sub)) = field_schema(s, k) else {
                    continue;
                };
                // A value under additionalProperties: a forbidden null takes its default.
                let named = s.properties.as_ref().is_some_and(|p| p.contains_key(k));
                if !named && non_nullable_null(v, Some(sub)) {
                    if let Some(d) = default_of(sub) {
                        *v = d.clone();
                    }
                }
                default(v, Some(sub));
            }
        }
        Value::Array(list) => {
            let item = items(s);
            for v in list {
                if let Some(d) = item
                    .filter(|i| non_nullable_null(v, Some(i)))
                    .and_then(default_of)
                {
                    *v = d.clone();
                }
                default(v, item);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::apply;
    use crate::schema::Props;
    use serde_json::{json, Value};

    fn schema(v: Value) -> Props {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_fill_missing_and_forbidden_null_fields() {
        let s = schema(json!({"type": "object", "properties": {"spec": {
        "type": "object", "default": {},
        "properties": {
            "replicas": {"type": "integer", "default": 1},
            "image": {"type": "string", "default": "busybox"},
            "note": {"type": "string", "nullable": true, "default": "n"},
            "drop": {"type": "string"},
            "ports": {"type": "array", "items": {"type": "object",
                "properties": {"protocol": {"type": "string", "default": "TCP"}}}},
            "limits": {"type": "object", "additionalProperties": {
                "type": "object", "properties": {"unit": {"type": "string", "default": "Mi"}}}}
        }}}}));
        let mut obj = json!({"metadata": {"name": "x"}});
        apply(&mut obj, &s);
        // The default {} of spec is defaulted in turn.
        assert_eq!(
            obj,
            json!({"metadata": {"name": "x"},
                   "spec": {"replicas": 1, "image": "busybox", "note": "n"}})
        );
        let mut obj = json!({"spec": {"replicas": 3, "image": null, "note": null, "drop": null,
            "ports": [{"port": 80}, {"protocol": "UDP"}], "limits": {"cpu": {}}}});
        apply(&mut obj, &s);
        assert_eq!(
            obj,
            json!({"spec": {"replicas": 3, "image": "busybox", "note": null,
                "ports": [{"port": 80, "protocol": "TCP"}, {"protocol": "UDP"}],
                "limits": {"cpu": {"unit": "Mi"}}}})
        );
    }
}
