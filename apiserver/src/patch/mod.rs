//! Patches: JSON merge patch (RFC 7386) and JSON patch (RFC 6902) here; strategic merge
//! patch in `strategic.rs`, server-side apply in `apply.rs` (with `fieldset.rs` and
//! `managed.rs` for managedFields), Kubernetes' patch strategies in `meta.rs`.

use serde_json::Value;

pub mod apply;
pub mod fieldset;
pub mod managed;
pub mod meta;
pub mod strategic;

/// The patch types `PATCH` accepts, by Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    /// Server-side apply.
    Apply,
}

impl PatchType {
    pub fn from_media_type(mt: &str) -> Option<PatchType> {
        match mt {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

/// A JSON patch may have at most this many operations, as in kube-apiserver.
pub const MAX_JSON_PATCH_OPS: usize = 10_000;

/// A server-side apply configuration as JSON: JSON passes as it is; anything else is read
/// as YAML (the media type's own form, as `curl --data-binary @manifest.yaml` sends).
pub fn apply_config_json(body: bytes::Bytes) -> Result<bytes::Bytes, crate::error::ApiError> {
    use crate::error::ApiError;
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return Ok(body);
    }
    let v: Value = serde_yaml::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::BadRequest(
            "error decoding YAML: the configuration must be a mapping".into(),
        ));
    }
    Ok(bytes::Bytes::from(
        serde_json::to_vec(&v).unwrap_or_default(),
    ))
}

/// Applies an RFC 6902 patch (`add`, `remove`, `replace`, `move`, `copy`, `test`).
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be a list of operations")?;
    for op in ops {
        let kind = op["op"].as_str().ok_or("an operation has no \"op\"")?;
        let path = op["path"]
            .as_str()
            .ok_or_else(|| format!("operation {kind} has no \"path\""))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("operation {kind} at {path} has no \"value\""))
        };
        match kind {
            "add" => add(target, path, value()?)?,
            "remove" => {
                remove(target, path)?;
            }
            "replace" => {
                remove(target, path)?;
                add(target, path, value()?)?;
            }
            "move" => {
                let from = op["from"].as_str().ok_or("move has no \"from\"")?;
                let v = remove(target, from)?;
                add(target, path, v)?;
            }
            "copy" => {
                let from = op["from"].as_str().ok_or("copy has no \"from\"")?;
                let v = get(target, from)?.clone();
                add(target, path, v)?;
            }
            "test" => {
                let want = value()?;
                // As kube's json-patch: a missing member tests equal to null, when the
                // object it would be in exists (kube-rs' finalizer helper relies on it).
                let parent_path = path.rsplit_once('/').map_or("", |(p, _)| p);
                let got = match get(target, path) {
                    Ok(v) => v,
                    Err(_) if want.is_null() && get(target, parent_path)?.is_object() => {
                        &Value::Null
                    }
                    Err(e) => return Err(e),
                };
                if *got != want {
                    return Err(format!("testing value {path} failed"));
                }
            }
            other => return Err(format!("Unexpected kind: {other}")),
        }
    }
    Ok(())
}

fn tokens(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(vec![]);
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn index(arr: &[Value], t: &str, path: &str, allow_end: bool) -> Result<usize, String> {
    let i: usize = t
        .parse()
        .map_err(|_| format!("invalid array index {t:?} in {path}"))?;
    if i > arr.len() || (i == arr.len() && !allow_end) {
        return Err(format!("index {i} out of bounds in {path}"));
    }
    Ok(i)
}

fn get<'a>(target: &'a Value, path: &str) -> Result<&'a Value, String> {
    let mut cur = target;
    for t in tokens(path)? {
        cur = match cur {
            Value::Object(m) => m.get(&t),
            Value::Array(a) => a.get(index(a, &t, path, false)?),
            _ => None,
        }
        .ok_or_else(|| format!("doc is missing path: {path:?}"))?;
    }
    Ok(cur)
}

fn parent<'a>(target: &'a mut Value, path: &str) -> Result<(&'a mut Value, String), String> {
    let mut toks = tokens(path)?;
    let last = toks
        .pop()
        .ok_or("the whole document cannot be the target")?;
    let mut cur = target;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get_mut(&t),
            Value::Array(a) => {
                let i = index(a, &t, path, false)?;
                a.get_mut(i)
            }
            _ => None,
        }
        .ok_or_else(|| format!("doc is missing path: {path:?}"))?;
    }
    Ok((cur, last))
}

fn add(target: &mut Value, path: &str, v: Value) -> Result<(), String> {
    if path.is_empty() {
        *target = v;
        return Ok(());
    }
    let (p, last) = parent(target, path)?;
    match p {
        Value::Object(m) => {
            m.insert(last, v);
            Ok(())
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                index(a, &last, path, true)?
            };
            a.insert(i, v);
            Ok(())
        }
        _ => Err(format!("doc is missing path: {path:?}")),
    }
}

fn remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (p, last) = parent(target, path)?;
    match p {
        Value::Object(m) => m
            .remove(&last)
            .ok_or_else(|| format!("unable to remove nonexistent key: {last}: missing value")),
        Value::Array(a) => {
            let i = index(a, &last, path, false)?;
            Ok(a.remove(i))
        }
        _ => Err(format!("doc is missing path: {path:?}")),
    }
}

/// Applies `patch` to `target` in place.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Some(t) = target.as_object_mut() else {
        return;
    };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_configurations_in_yaml_become_json() {
        let y = bytes::Bytes::from_static(
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"1\"\n",
        );
        let j: Value = serde_json::from_slice(&apply_config_json(y).unwrap()).unwrap();
        assert_eq!(j["metadata"]["name"], "c");
        assert_eq!(j["data"]["a"], "1");
        let same = bytes::Bytes::from_static(b" {\"a\":1}");
        assert_eq!(apply_config_json(same.clone()).unwrap(), same);
        assert_eq!(
            apply_config_json(bytes::Bytes::from_static(b"- 1\n"))
                .unwrap_err()
                .code(),
            400
        );
        assert_eq!(
            apply_config_json(bytes::Bytes::from_static(b"a: [\n"))
                .unwrap_err()
                .code(),
            400
        );
    }
    use serde_json::json;

    #[test]
    fn rfc6902_operations() {
        let mut doc = json!({"a": {"b": [1, 2]}, "c": "x"});
        json_patch(
            &mut doc,
            &json!([
                {"op": "add", "path": "/a/b/1", "value": 9},
                {"op": "add", "path": "/a/b/-", "value": 3},
                {"op": "replace", "path": "/c", "value": "y"},
                {"op": "copy", "from": "/c", "path": "/d"},
                {"op": "move", "from": "/d", "path": "/e~1f"},
                {"op": "remove", "path": "/a/b/0"},
                {"op": "test", "path": "/e~1f", "value": "y"},
            ]),
        )
        .unwrap();
        assert_eq!(doc, json!({"a": {"b": [9, 2, 3]}, "c": "y", "e/f": "y"}));
        assert!(json_patch(
            &mut doc,
            &json!([{"op": "test", "path": "/c", "value": "z"}])
        )
        .is_err());
        assert!(json_patch(&mut doc, &json!([{"op": "remove", "path": "/nope"}])).is_err());
        assert!(json_patch(
            &mut doc,
            &json!([{"op": "replace", "path": "/a/b/7", "value": 1}])
        )
        .is_err());
        assert!(json_patch(&mut doc, &json!({"op": "add"})).is_err());
        // A missing member tests equal to null (kube-rs adds a first finalizer so), not
        // when the object it would be in is missing too.
        let null = json!([{"op": "test", "path": "/meta/finalizers", "value": null}]);
        let mut m = json!({"meta": {}});
        assert!(json_patch(&mut m, &null).is_ok());
        assert!(json_patch(&mut json!({}), &null).is_err());
        assert!(json_patch(
            &mut m,
            &json!([{"op": "test", "path": "/meta/finalizers", "value": []}])
        )
        .is_err());
    }

    #[test]
    fn rfc7386_examples() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (mut target, patch, want) in cases {
            merge(&mut target, &patch);
            assert_eq!(target, want, "patch {patch}");
        }
    }
}
