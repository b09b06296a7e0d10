//! Tables of custom resources, as apiextensions-apiserver's table convertor makes them: a
//! `Name` column, then the version's `additionalPrinterColumns` (or `Age`, from
//! `.metadata.creationTimestamp`, when it has none), each cell the first value its JSON
//! path finds (`kinds::custom::columns`), dates shown as ages.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceColumnDefinition;
use serde_json::{json, Value};

use crate::kinds::custom::columns::{self, Path};

/// One column of a custom kind's table.
#[derive(Debug, Clone)]
pub struct PathColumn {
    pub name: String,
    pub ty: String,
    pub format: String,
    pub description: String,
    pub priority: i32,
    /// None: kube could not parse it; the cells are empty.
    pub path: Option<Path>,
}

/// The columns of a version with these `additionalPrinterColumns`.
pub fn columns(defined: Option<&[CustomResourceColumnDefinition]>) -> Vec<PathColumn> {
    let age = CustomResourceColumnDefinition {
        name: "Age".into(),
        type_: "date".into(),
        json_path: ".metadata.creationTimestamp".into(),
        description: Some("CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata".into()),
        ..Default::default()
    };
    let defined = match defined {
        Some(d) if !d.is_empty() => d.to_vec(),
        _ => vec![age],
    };
    defined
        .into_iter()
        .map(|c| PathColumn {
            path: columns::parse(&c.json_path),
            name: c.name,
            ty: c.type_,
            format: c.format.unwrap_or_default(),
            description: c.description.unwrap_or_default(),
            priority: c.priority.unwrap_or(0),
        })
        .collect()
}

pub fn definitions(cols: &[PathColumn]) -> Vec<Value> {
    let mut out = vec![super::NAME.json()];
    out.extend(cols.iter().map(|c| {
        json!({
            "name": c.name, "type": c.ty, "format": c.format,
            "description": c.description, "priority": c.priority,
        })
    }));
    out
}

/// The cells of one object, as of `now` (Unix seconds).
pub fn cells(cols: &[PathColumn], obj: &Value, now: i64) -> Vec<Value> {
    let mut out = vec![obj["metadata"]["name"].clone()];
    for c in cols {
        let Some(path) = &c.path else {
            out.push(Value::Null);
            continue;
        };
        let v = columns::cell(obj, path, &c.ty);
        out.push(match (c.ty.as_str(), &v) {
            ("date", Value::String(s)) => match s.parse::<k8s_openapi::jiff::Timestamp>() {
                Ok(t) => Value::String(super::duration::human(now.saturating_sub(t.as_second()))),
                Err(_) => v,
            },
            _ => v,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_then_the_columns_or_age() {
        let obj = json!({"metadata": {"name": "c", "creationTimestamp": "2024-01-01T00:00:00Z"},
                         "spec": {"cronSpec": "* * * * */5", "replicas": 2}});
        let now = k8s_openapi::jiff::Timestamp::from_second(1_704_067_200 + 90)
            .unwrap()
            .as_second();
        let plain = columns(None);
        assert_eq!(
            definitions(&plain)
                .iter()
                .map(|d| d["name"].clone())
                .collect::<Vec<_>>(),
            vec![json!("Name"), json!("Age")]
        );
        assert_eq!(cells(&plain, &obj, now), vec![json!("c"), json!("90s")]);
        let defined: Vec<CustomResourceColumnDefinition> = serde_json::from_value(json!([
            {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas", "priority": 1},
            {"name": "Missing", "type": "string", "jsonPath": ".status.nothing"},
        ]))
        .unwrap();
        let cols = columns(Some(&defined));
        assert_eq!(definitions(&cols)[2]["priority"], 1);
        assert_eq!(
            cells(&cols, &obj, now),
            vec![json!("c"), json!("* * * * */5"), json!(2), Value::Null]
        );
    }
}
