//! The printers (each kind names its own in its `PRINTER`), the default one, and helpers
//! the printers share. The columns and the way each cell is computed follow
//! kube-apiserver's printers.

use serde_json::Value;

use super::{duration, Column, Printer, NAME};

pub mod apps;
pub mod batch;
pub mod core;
pub mod hpa;
pub mod other;
pub mod pod;
pub mod storage;

/// Rows of most kinds have no conditions.
pub fn no_conditions(_obj: &Value) -> Option<Value> {
    None
}

/// Kinds without a printer: NAME and CREATED AT (a `date` column, RFC 3339 in UTC).
pub static DEFAULT: Printer = Printer {
    conditions: no_conditions,
    columns: &[
        NAME,
        Column::new("Created At", "When the object was created.").of("date"),
    ],
    cells: |o, _| {
        let created = str_at(o, "/metadata/creationTimestamp")
            .unwrap_or("0001-01-01T00:00:00Z")
            .to_string();
        vec![name(o), created.into()]
    },
};

pub fn str_at<'a>(o: &'a Value, ptr: &str) -> Option<&'a str> {
    o.pointer(ptr).and_then(Value::as_str)
}

pub fn int_at(o: &Value, ptr: &str) -> i64 {
    o.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

pub fn arr_at<'a>(o: &'a Value, ptr: &str) -> &'a [Value] {
    o.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub fn name(o: &Value) -> Value {
    str_at(o, "/metadata/name").unwrap_or("").into()
}

pub fn age(o: &Value, now: i64) -> Value {
    duration::since(str_at(o, "/metadata/creationTimestamp"), now).into()
}

/// A string or `<none>` when empty.
pub fn or_none(s: &str) -> Value {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.into()
    }
}

/// `k=v` pairs sorted by key, joined with commas (labels.FormatLabels); `<none>` if empty.
pub fn format_labels(m: Option<&Value>) -> String {
    let Some(m) = m.and_then(Value::as_object).filter(|m| !m.is_empty()) else {
        return "<none>".into();
    };
    let mut pairs: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    pairs.join(",")
}

pub use crate::selector::format_label_selector as format_selector;

/// Container names and images of a pod template, each joined with commas.
pub fn containers_and_images(o: &Value, spec_ptr: &str) -> (Value, Value) {
    let cs = arr_at(o, &format!("{spec_ptr}/containers"));
    let names: Vec<&str> = cs.iter().filter_map(|c| str_at(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().filter_map(|c| str_at(c, "/image")).collect();
    (names.join(",").into(), images.join(",").into())
}

/// Up to three items, then " + N more..."; `<unset>` when empty.
pub fn list_with_more(items: &[String]) -> String {
    if items.is_empty() {
        return "<unset>".into();
    }
    let shown = items.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    if items.len() > 3 {
        format!("{shown} + {} more...", items.len() - 3)
    } else {
        shown
    }
}
