//! A CRD's `additionalPrinterColumns`: the JSON path of each column (the simple paths
//! kube takes: `.a.b`, `.a[0]`, `.a[*].b`, `.a['x.y']`, `.a[?(@.type=="Ready")].status`),
//! and the cell of one object as kube's table convertor makes it: the first value found,
//! kept only when it has the column's type (an integer column takes a float's integer
//! part), a `string` column printing any value, a `date` column `<invalid>` unless the
//! value is an RFC 3339 time. Ages of dates are the table's to render.

use serde_json::Value;

use crate::schema::gofmt;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(i64),
    All,
    /// `[?(@.<key>=="<value>")]`: the elements whose `key` equals `value`.
    Filter(Vec<String>, Value),
}

/// A parsed column path; `None` from [`parse`] when kube's parser would refuse it.
#[derive(Debug, Clone, PartialEq)]
pub struct Path(Vec<Step>);

fn key_chars(s: &str) -> usize {
    s.find(['.', '[']).unwrap_or(s.len())
}

pub fn parse(path: &str) -> Option<Path> {
    let mut rest = path.strip_prefix('.')?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            steps.push(if inner == "*" {
                Step::All
            } else if let Some(q) = inner.strip_prefix('\'').and_then(|q| q.strip_suffix('\'')) {
                Step::Key(q.to_string())
            } else if let Some(f) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (k, v) = f.split_once("==")?;
                let v = v.trim();
                let value = match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                    Some(s) => Value::String(s.to_string()),
                    None => serde_json::from_str(v).ok()?,
                };
                Step::Filter(k.trim().split('.').map(str::to_string).collect(), value)
            } else {
                Step::Index(inner.trim().parse().ok()?)
            });
        } else {
            rest = rest.strip_prefix('.').unwrap_or(rest);
            let n = key_chars(rest);
            if n == 0 && !rest.is_empty() && !rest.starts_with('[') {
                return None;
            }
            if n > 0 {
                steps.push(Step::Key(rest[..n].to_string()));
            }
            rest = &rest[n..];
        }
    }
    Some(Path(steps))
}

fn walk<'a>(v: &'a Value, steps: &[Step], out: &mut Vec<&'a Value>) {
    let Some((step, rest)) = steps.split_first() else {
        out.push(v);
        return;
    };
    match step {
        Step::Key(k) => {
            if let Some(x) = v.get(k) {
                walk(x, rest, out);
            }
        }
        Step::Index(i) => {
            if let Value::Array(a) = v {
                let len = a.len() as i64;
                let at = if *i < 0 { len + i } else { *i };
                if let Some(x) = usize::try_from(at).ok().and_then(|at| a.get(at)) {
                    walk(x, rest, out);
                }
            }
        }
        Step::All => match v {
            Value::Array(a) => a.iter().for_each(|x| walk(x, rest, out)),
            Value::Object(m) => m.values().for_each(|x| walk(x, rest, out)),
            _ => {}
        },
        Step::Filter(key, want) => {
            if let Value::Array(a) = v {
                for x in a {
                    let got = key.iter().try_fold(x, |at, k| at.get(k));
                    if got == Some(want) {
                        walk(x, rest, out);
                    }
                }
            }
        }
    }
}

/// Go's `fmt.Print` of an unstructured value, as a `string` column shows a non-string.
fn go_print(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => gofmt::number(n),
        Value::Bool(b) => b.to_string(),
        Value::Null => "<nil>".into(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_print).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", go_print(&m[*k])))
                .collect();
            format!("map[{}]", inner.join(" "))
        }
    }
}

/// The cell of `obj` in a column of `type_` (boolean, date, integer, number, string);
/// null when the path finds nothing or the value does not fit the type.
pub fn cell(obj: &Value, path: &Path, type_: &str) -> Value {
    let mut found = Vec::new();
    walk(obj, &path.0, &mut found);
    let Some(v) = found.first().copied().filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match (type_, v) {
        ("string", v) => Value::String(go_print(v)),
        ("integer", Value::Number(n)) => match n.as_i64() {
            Some(i) => i.into(),
            None => (n.as_f64().unwrap_or(0.0) as i64).into(),
        },
        ("number", Value::Number(n)) => n.as_f64().map(Value::from).unwrap_or(Value::Null),
        ("boolean", Value::Bool(b)) => Value::Bool(*b),
        ("date", Value::String(s)) => match s.parse::<k8s_openapi::jiff::Timestamp>() {
            Ok(_) => Value::String(s.clone()),
            Err(_) => Value::String("<invalid>".into()),
        },
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(obj: &Value, p: &str, t: &str) -> Value {
        cell(obj, &parse(p).expect(p), t)
    }

    #[test]
    fn cells_as_kubes_table_convertor_makes_them() {
        let obj = json!({"spec": {"replicas": 3, "ratio": 2.5, "on": true, "image": "nginx",
            "labels": {"app.kubernetes.io/name": "web"}, "ports": [80, 443],
            "map": {"b": 1, "a": "x"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"},
                                      {"type": "Synced", "status": "False"}],
                       "at": "2024-01-02T03:04:05Z", "bad": "soon"}});
        assert_eq!(at(&obj, ".spec.replicas", "integer"), json!(3));
        assert_eq!(at(&obj, ".spec.ratio", "integer"), json!(2));
        assert_eq!(at(&obj, ".spec.replicas", "number"), json!(3.0));
        assert_eq!(at(&obj, ".spec.on", "boolean"), json!(true));
        assert_eq!(at(&obj, ".spec.image", "integer"), Value::Null);
        assert_eq!(at(&obj, ".spec.replicas", "string"), json!("3"));
        assert_eq!(at(&obj, ".spec.ports", "string"), json!("[80 443]"));
        assert_eq!(at(&obj, ".spec.map", "string"), json!("map[a:x b:1]"));
        assert_eq!(at(&obj, ".spec.ports[1]", "integer"), json!(443));
        assert_eq!(at(&obj, ".spec.ports[-1]", "integer"), json!(443));
        assert_eq!(at(&obj, ".spec.ports[*]", "integer"), json!(80));
        assert_eq!(
            at(&obj, ".spec.labels['app.kubernetes.io/name']", "string"),
            json!("web")
        );
        assert_eq!(
            at(
                &obj,
                r#".status.conditions[?(@.type=="Synced")].status"#,
                "string"
            ),
            json!("False")
        );
        assert_eq!(
            at(&obj, ".status.at", "date"),
            json!("2024-01-02T03:04:05Z")
        );
        assert_eq!(at(&obj, ".status.bad", "date"), json!("<invalid>"));
        assert_eq!(at(&obj, ".status.missing.deeper", "string"), Value::Null);
    }

    #[test]
    fn paths_kube_refuses() {
        assert!(parse("spec.x").is_none());
        assert!(parse(".spec[").is_none());
        assert!(parse(".spec[x]").is_none());
    }
}
