//! autoscaling/v1's annotation shapes of v2 metrics (kube's v1 `MetricSpec` and
//! `MetricStatus`, the types of the `metrics` and `current-metrics` annotations), as one
//! table: for each metric source, which v2 field (a JSON pointer under the source) is
//! which v1 key. Down copies along the table; up copies back and, for a spec, names the
//! target's type from the field that is set (Utilization, AverageValue, else Value).

use serde_json::{json, Map, Value};

/// The v2 field holding each source type.
fn source_field(ty: &str) -> Option<&'static str> {
    Some(match ty {
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        "Pods" => "pods",
        "Object" => "object",
        "External" => "external",
        _ => return None,
    })
}

/// (v2 pointer under the source, v1 key) for a spec's source.
fn spec_table(ty: &str) -> &'static [(&'static str, &'static str)] {
    match ty {
        "Resource" | "ContainerResource" => &[
            ("/name", "name"),
            ("/container", "container"),
            ("/target/averageUtilization", "targetAverageUtilization"),
            ("/target/averageValue", "targetAverageValue"),
        ],
        "Pods" => &[
            ("/metric/name", "metricName"),
            ("/metric/selector", "selector"),
            ("/target/averageValue", "targetAverageValue"),
        ],
        "Object" => &[
            ("/describedObject", "target"),
            ("/metric/name", "metricName"),
            ("/metric/selector", "selector"),
            ("/target/value", "targetValue"),
            ("/target/averageValue", "averageValue"),
        ],
        "External" => &[
            ("/metric/name", "metricName"),
            ("/metric/selector", "metricSelector"),
            ("/target/value", "targetValue"),
            ("/target/averageValue", "targetAverageValue"),
        ],
        _ => &[],
    }
}

/// (v2 pointer under the source, v1 key) for a status's source.
fn status_table(ty: &str) -> &'static [(&'static str, &'static str)] {
    match ty {
        "Resource" | "ContainerResource" => &[
            ("/name", "name"),
            ("/container", "container"),
            ("/current/averageUtilization", "currentAverageUtilization"),
            ("/current/averageValue", "currentAverageValue"),
        ],
        "Pods" => &[
            ("/metric/name", "metricName"),
            ("/metric/selector", "selector"),
            ("/current/averageValue", "currentAverageValue"),
        ],
        "Object" => &[
            ("/describedObject", "target"),
            ("/metric/name", "metricName"),
            ("/metric/selector", "selector"),
            ("/current/value", "currentValue"),
            ("/current/averageValue", "averageValue"),
        ],
        "External" => &[
            ("/metric/name", "metricName"),
            ("/metric/selector", "metricSelector"),
            ("/current/value", "currentValue"),
            ("/current/averageValue", "currentAverageValue"),
        ],
        _ => &[],
    }
}

fn down(v2: &Value, table: fn(&str) -> &'static [(&'static str, &'static str)]) -> Value {
    let ty = v2["type"].as_str().unwrap_or("");
    let mut out = Map::new();
    out.insert("type".into(), json!(ty));
    if let Some(field) = source_field(ty) {
        let src = &v2[field];
        let mut o = Map::new();
        for (ptr, key) in table(ty) {
            if let Some(v) = src.pointer(ptr).filter(|v| !v.is_null()) {
                o.insert((*key).to_string(), v.clone());
            }
        }
        out.insert(field.into(), Value::Object(o));
    }
    Value::Object(out)
}

/// Sets `ptr` (of at most two levels) under `root` to `v`.
fn put(root: &mut Map<String, Value>, ptr: &str, v: Value) {
    let mut parts = ptr.trim_start_matches('/').splitn(2, '/');
    let (Some(a), b) = (parts.next(), parts.next()) else {
        return;
    };
    match b {
        None => {
            root.insert(a.to_string(), v);
        }
        Some(b) => {
            let inner = root
                .entry(a.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(m) = inner.as_object_mut() {
                m.insert(b.to_string(), v);
            }
        }
    }
}

fn up(
    v1: &Value,
    table: fn(&str) -> &'static [(&'static str, &'static str)],
    spec: bool,
) -> Option<Value> {
    let ty = v1["type"].as_str()?;
    let field = source_field(ty)?;
    let src = &v1[field];
    let mut o = Map::new();
    for (ptr, key) in table(ty) {
        if let Some(v) = src.get(*key).filter(|v| !v.is_null()) {
            put(&mut o, ptr, v.clone());
        }
    }
    if spec {
        let t = o
            .entry("target")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(t) = t.as_object_mut() {
            let kind = if t.contains_key("averageUtilization") {
                "Utilization"
            } else if t.contains_key("averageValue") {
                "AverageValue"
            } else {
                "Value"
            };
            t.insert("type".into(), json!(kind));
        }
    } else {
        o.entry("current")
            .or_insert_with(|| Value::Object(Map::new()));
    }
    Some(json!({ "type": ty, field: o }))
}

/// A v2 metric spec (as JSON) in v1's annotation shape.
pub fn spec_down(v2: &Value) -> Value {
    down(v2, spec_table)
}

/// A v1 annotation metric spec as v2's JSON; `None` for an unknown type.
pub fn spec_up(v1: &Value) -> Option<Value> {
    up(v1, spec_table, true)
}

/// A v2 current metric (as JSON) in v1's annotation shape.
pub fn status_down(v2: &Value) -> Value {
    down(v2, status_table)
}

/// A v1 annotation current metric as v2's JSON; `None` for an unknown type.
pub fn status_up(v1: &Value) -> Option<Value> {
    up(v1, status_table, false)
}
