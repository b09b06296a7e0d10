//! Server-side tables (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`): the rows
//! `kubectl get` prints, with the columns kube-apiserver gives each kind (`printers`), or
//! NAME and CREATED AT for a kind without a printer.
//!
//! As kube-apiserver does, every table carries the wide columns (priority 1) and kubectl
//! hides them unless `-o wide`; each row's `object` is the item's metadata as a
//! PartialObjectMetadata unless `includeObject` asks for the whole object or nothing.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::kinds::ResourceInfo;

pub mod custom;
pub mod duration;
pub(crate) mod printers;

/// One column of a table.
pub struct Column {
    pub name: &'static str,
    pub ty: &'static str,
    pub format: &'static str,
    pub priority: i32,
    pub description: &'static str,
}

impl Column {
    pub const fn new(name: &'static str, description: &'static str) -> Column {
        Column {
            name,
            ty: "string",
            format: "",
            priority: 0,
            description,
        }
    }
    pub const fn of(self, ty: &'static str) -> Column {
        Column { ty, ..self }
    }
    pub const fn wide(self) -> Column {
        Column {
            priority: 1,
            ..self
        }
    }
    pub const fn name_format(self) -> Column {
        Column {
            format: "name",
            ..self
        }
    }
    pub(crate) fn json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.ty,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

pub const NAME: Column =
    Column::new("Name", "Name of the object, unique in its namespace.").name_format();
pub const AGE: Column = Column::new("Age", "Time since the object was created.");

/// How a kind becomes rows.
pub struct Printer {
    pub columns: &'static [Column],
    /// The cells of one object, as of `now` (Unix seconds); always every column.
    pub cells: fn(&Value, i64) -> Vec<Value>,
    /// A row's conditions (a finished pod's `Completed`).
    pub conditions: fn(&Value) -> Option<Value>,
}

impl std::fmt::Debug for Printer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Printer")
            .field("columns", &self.columns.len())
            .finish()
    }
}

/// What each row's `object` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

/// A request for a table rather than the objects themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableRequest {
    /// meta.k8s.io's version the client asked for: `v1` or `v1beta1`.
    pub version: &'static str,
    pub include: Include,
}

impl TableRequest {
    fn api_version(&self) -> String {
        format!("meta.k8s.io/{}", self.version)
    }
}

/// Whether the request asks for a table: the first media range in `Accept` that the
/// server can produce decides. `Ok(None)` means plain objects.
pub fn negotiate(
    accept: Option<&str>,
    q: &HashMap<String, String>,
) -> Result<Option<TableRequest>, ApiError> {
    let Some(version) = accept.and_then(table_version) else {
        return Ok(None);
    };
    let include = match q.get("includeObject").map(String::as_str) {
        None | Some("") | Some("Metadata") => Include::Metadata,
        Some("Object") => Include::Object,
        Some("None") => Include::None,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "Unable to convert to Table as requested: includeObject: Invalid value: {other:?}: must be 'Metadata', 'Object', 'None', or empty"
            )))
        }
    };
    Ok(Some(TableRequest { version, include }))
}

/// The table version of the first acceptable media range, if that range is a table.
fn table_version(accept: &str) -> Option<&'static str> {
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let mt = parts.next().unwrap_or("").to_ascii_lowercase();
        let params: HashMap<String, String> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        if !matches!(mt.as_str(), "application/json" | "application/*" | "*/*") {
            continue;
        }
        match params.get("as").map(String::as_str) {
            None => return None,
            Some("Table") if params.get("g").map(String::as_str) == Some("meta.k8s.io") => {
                match params.get("v").map(String::as_str) {
                    Some("v1") => return Some("v1"),
                    Some("v1beta1") => return Some("v1beta1"),
                    _ => continue,
                }
            }
            // Other transformations (PartialObjectMetadata) are not served: fall through
            // to the next range, as kube-apiserver skips what it cannot produce.
            Some(_) => continue,
        }
    }
    None
}

/// How a kind's objects become rows: a built-in printer, or a custom kind's columns.
enum Rows<'a> {
    Printer(&'static Printer),
    Custom(&'a [custom::PathColumn]),
}

impl Rows<'_> {
    fn of(info: &ResourceInfo) -> Rows<'_> {
        match (&info.columns, info.printer) {
            (Some(c), _) => Rows::Custom(c),
            (None, Some(p)) => Rows::Printer(p),
            (None, None) => Rows::Printer(&printers::DEFAULT),
        }
    }

    fn definitions(&self) -> Vec<Value> {
        match self {
            Rows::Printer(p) => p.columns.iter().map(Column::json).collect(),
            Rows::Custom(c) => custom::definitions(c),
        }
    }

    fn row(&self, req: &TableRequest, obj: Value, now: i64) -> Value {
        let mut row = Map::new();
        let (cells, conditions) = match self {
            Rows::Printer(p) => ((p.cells)(&obj, now), (p.conditions)(&obj)),
            Rows::Custom(c) => (custom::cells(c, &obj, now), None),
        };
        row.insert("cells".into(), Value::Array(cells));
        if let Some(c) = conditions {
            row.insert("conditions".into(), c);
        }
        let object = match req.include {
            Include::None => Value::Null,
            Include::Object => obj,
            Include::Metadata => json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": req.api_version(),
                "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
            }),
        };
        row.insert("object".into(), object);
        Value::Object(row)
    }

    fn table(&self, req: &TableRequest, headers: bool, meta: Value, rows: Vec<Value>) -> Value {
        let columns = if headers {
            Value::Array(self.definitions())
        } else {
            Value::Null
        };
        json!({
            "kind": "Table",
            "apiVersion": req.api_version(),
            "metadata": meta,
            "columnDefinitions": columns,
            "rows": rows,
        })
    }
}

/// The table of a list: `meta` is the list's metadata (resourceVersion, continue,
/// remainingItemCount), which kubectl needs to start its watch.
pub fn of_list(req: &TableRequest, info: &ResourceInfo, items: Vec<Value>, meta: Value) -> Value {
    let p = Rows::of(info);
    let now = crate::store::unix_now();
    let rows = items.into_iter().map(|o| p.row(req, o, now)).collect();
    p.table(req, true, meta, rows)
}

/// The table of one object (a GET, or one watch event; only a watch's first event carries
/// the column definitions).
pub fn of_object(req: &TableRequest, info: &ResourceInfo, obj: Value, headers: bool) -> Value {
    let p = Rows::of(info);
    let rv = obj
        .pointer("/metadata/resourceVersion")
        .cloned()
        .unwrap_or(Value::Null);
    let meta = json!({ "resourceVersion": rv });
    let row = p.row(req, obj, crate::store::unix_now());
    p.table(req, headers, meta, vec![row])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_accept_header_asks_for_a_v1_table() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(table_version(kubectl), Some("v1"));
        assert_eq!(table_version("application/json"), None);
        assert_eq!(
            table_version("application/json;as=Table;v=v2;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io"),
            Some("v1beta1")
        );
        assert_eq!(
            table_version(
                "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"
            ),
            None
        );
        let q = HashMap::from([("includeObject".to_string(), "Bogus".to_string())]);
        assert!(negotiate(Some(kubectl), &q).is_err());
        let q = HashMap::from([("includeObject".to_string(), "None".to_string())]);
        assert_eq!(
            negotiate(Some(kubectl), &q)
                .ok()
                .flatten()
                .map(|t| t.include),
            Some(Include::None)
        );
    }
}
