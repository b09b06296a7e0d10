//! Strategic merge patch, as kube-apiserver applies it: maps merge key by key, lists whose
//! field has the `merge` strategy merge element by element (by the merge key for lists of
//! objects, by value for lists of scalars), every other list is replaced; and the
//! directives `$patch` (replace, delete), `$retainKeys`, `$setElementOrder/<field>` and
//! `$deleteFromPrimitiveList/<field>`.
//!
//! Which strategy a field has comes from a [`PatchSchema`]: the kinds' OpenAPI schemas
//! with Kubernetes' patch strategies (`patch::meta`).

use serde_json::{Map, Value};

/// How one field of an object patches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldMeta {
    /// The schema type of the field's value (of its items, for a list); `None`: untyped.
    pub ty: Option<String>,
    /// Lists merge instead of being replaced.
    pub merge: bool,
    /// The whole value is replaced, even a map.
    pub replace: bool,
    /// The key that identifies an item of a merged list of objects.
    pub merge_key: Option<String>,
}

/// Where the patch strategies of fields come from.
pub trait PatchSchema {
    /// The strategy of field `field` of an object of schema type `ty` (`None`: untyped,
    /// which merges maps and replaces lists).
    fn field(&self, ty: Option<&str>, field: &str) -> FieldMeta;
}

/// Why a strategic merge patch could not be applied, by the HTTP code it answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmpError {
    /// 400: the patch is malformed.
    BadRequest(String),
    /// 422: the patch is well formed but cannot apply.
    Invalid(String),
    /// 500 in Kubernetes (a plain error): for example an item without its merge key.
    Internal(String),
}

const RETAIN_KEYS: &str = "$retainKeys";
const PATCH: &str = "$patch";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

/// Applies `patch` (an object) to `original` (an object) of schema type `ty`.
pub fn apply(
    schema: &dyn PatchSchema,
    ty: Option<&str>,
    original: &mut Value,
    patch: &Value,
) -> Result<(), SmpError> {
    let Value::Object(p) = patch else {
        return Err(SmpError::BadRequest(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    if !original.is_object() {
        *original = Value::Object(Map::new());
    }
    if let Value::Object(o) = original {
        merge_map(schema, ty, o, p.clone())?;
    }
    Ok(())
}

fn merge_map(
    schema: &dyn PatchSchema,
    ty: Option<&str>,
    original: &mut Map<String, Value>,
    mut patch: Map<String, Value>,
) -> Result<(), SmpError> {
    if let Some(d) = patch.remove(PATCH) {
        match d.as_str() {
            Some("replace") => {
                *original = patch;
                return Ok(());
            }
            Some("delete") => {
                original.clear();
                return Ok(());
            }
            _ => {
                return Err(SmpError::Internal(format!(
                    "unknown patch type: {d} in map: {}",
                    Value::Object(patch)
                )))
            }
        }
    }
    if let Some(keep) = patch.remove(RETAIN_KEYS) {
        retain_keys(original, &patch, &keep)?;
    }
    // `$setElementOrder/<field>`: merge that field first, then order it.
    let orders: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ORDER))
        .cloned()
        .collect();
    for key in orders {
        let order = patch.remove(&key).unwrap_or(Value::Null);
        let field = &key[SET_ORDER.len()..];
        let Value::Array(order) = order else {
            return Err(SmpError::BadRequest(
                "invalid patch format of setElementOrder list".into(),
            ));
        };
        let meta = schema.field(ty, field);
        let live: Vec<Value> = match original.get(field) {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        };
        let list = match (original.remove(field), patch.remove(field)) {
            (Some(Value::Array(o)), Some(Value::Array(pl))) if meta.merge => {
                merge_list(schema, &meta, o, pl)?
            }
            (_, Some(Value::Array(pl))) => strip_list(&pl),
            (Some(Value::Array(o)), None) => o,
            (o, p) => {
                // Not a list on either side: nothing to order; the value merges below.
                if let Some(o) = o {
                    original.insert(field.to_string(), o);
                }
                if let Some(p) = p {
                    patch.insert(field.to_string(), p);
                }
                continue;
            }
        };
        let sorted = order_by(&meta, list, &order, &live);
        original.insert(field.to_string(), Value::Array(sorted));
    }
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix(DELETE_PRIMITIVE) {
            let Value::Array(gone) = v else {
                return Err(SmpError::BadRequest(
                    "invalid patch format of primitive list".into(),
                ));
            };
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|x| !gone.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            return Err(SmpError::BadRequest(format!(
                "unknown directive {k:?} in the patch"
            )));
        }
        if v.is_null() {
            original.remove(&k);
            continue;
        }
        let meta = schema.field(ty, &k);
        let Some(cur) = original.get_mut(&k) else {
            original.insert(k, strip(&v));
            continue;
        };
        match (cur, v) {
            (Value::Object(o), Value::Object(pm)) if !meta.replace => {
                merge_map(schema, meta.ty.as_deref(), o, pm)?;
            }
            (cur @ Value::Array(_), Value::Array(pl)) if meta.merge => {
                let o = std::mem::take(cur).as_array().cloned().unwrap_or_default();
                *cur = Value::Array(merge_list(schema, &meta, o, pl)?);
            }
            (cur, v) => *cur = strip(&v),
        }
    }
    Ok(())
}

/// `$retainKeys`: keys of the original not in the list go; the patch may set only keys in it.
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    keep: &Value,
) -> Result<(), SmpError> {
    let Value::Array(keep) = keep else {
        return Err(SmpError::BadRequest(
            "invalid patch format of retainKeys".into(),
        ));
    };
    let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
    for (k, v) in patch {
        if v.is_null() || k.starts_with(DELETE_PRIMITIVE) || k.starts_with(SET_ORDER) {
            continue;
        }
        if !keep.contains(&k.as_str()) {
            return Err(SmpError::Invalid(format!(
                "the patch has key {k:?} that is not in $retainKeys"
            )));
        }
    }
    original.retain(|k, _| keep.contains(&k.as_str()));
    Ok(())
}

/// The identity of a list item: its merge key's value, or the value itself.
fn identity<'a>(meta: &FieldMeta, item: &'a Value) -> Option<&'a Value> {
    match (&meta.merge_key, item) {
        (Some(k), Value::Object(m)) => m.get(k),
        (None, v) if !v.is_object() => Some(v),
        _ => None,
    }
}

fn is_directive(v: &Value) -> bool {
    v.get(PATCH).is_some()
}

fn merge_list(
    schema: &dyn PatchSchema,
    meta: &FieldMeta,
    original: Vec<Value>,
    patch: Vec<Value>,
) -> Result<Vec<Value>, SmpError> {
    if patch
        .iter()
        .any(|p| p.get(PATCH).and_then(Value::as_str) == Some("replace"))
    {
        return Ok(patch.into_iter().filter(|p| !is_directive(p)).collect());
    }
    if patch.iter().any(Value::is_array) || original.iter().any(Value::is_array) {
        return Err(SmpError::Invalid("lists of lists are not supported".into()));
    }
    let of_maps = patch.iter().chain(original.iter()).any(Value::is_object);
    let mut merged = original.clone();
    // Identities of the patch's items, in the patch's order.
    let mut patched: Vec<Value> = Vec::new();
    if !of_maps || meta.merge_key.is_none() {
        if patch.iter().any(Value::is_object) {
            return Err(SmpError::Internal(
                "list element types are not identical".into(),
            ));
        }
        for p in patch {
            if !merged.contains(&p) {
                merged.push(p.clone());
            }
            if !patched.contains(&p) {
                patched.push(p);
            }
        }
    } else {
        let key = meta.merge_key.clone().unwrap_or_default();
        for p in patch {
            let Value::Object(mut pm) = p else {
                return Err(SmpError::Internal(
                    "list element types are not identical".into(),
                ));
            };
            let directive = pm.get(PATCH).and_then(Value::as_str).map(String::from);
            let Some(id) = pm.get(&key).cloned() else {
                return Err(SmpError::Internal(format!(
                    "map: {} does not contain declared merge key: {key}",
                    Value::Object(pm)
                )));
            };
            match directive.as_deref() {
                Some("delete") => {
                    merged.retain(|o| o.get(&key) != Some(&id));
                    continue;
                }
                Some("merge") => {
                    return Err(SmpError::Internal(
                        "merging lists cannot yet be specified in the patch".into(),
                    ))
                }
                Some(other) => {
                    return Err(SmpError::Internal(format!("unknown patch type: {other}")))
                }
                None => {}
            }
            match merged.iter_mut().find(|o| o.get(&key) == Some(&id)) {
                Some(Value::Object(o)) => {
                    merge_map(schema, meta.ty.as_deref(), o, std::mem::take(&mut pm))?
                }
                _ => merged.push(strip(&Value::Object(pm))),
            }
            if !patched.contains(&id) {
                patched.push(id);
            }
        }
    }
    // The patch's items in the patch's order, the others where they were.
    let (mut in_patch, server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|m| identity(meta, m).is_some_and(|id| patched.contains(id)));
    in_patch.sort_by_key(|m| {
        identity(meta, m)
            .and_then(|id| patched.iter().position(|p| p == id))
            .unwrap_or(usize::MAX)
    });
    Ok(interleave(meta, server_only, in_patch, &original))
}

/// kube's mergeSortedSlice: take the server-only head when both heads were in the original
/// and it came first there; otherwise the other head.
fn interleave(
    meta: &FieldMeta,
    server_only: Vec<Value>,
    ordered: Vec<Value>,
    original: &[Value],
) -> Vec<Value> {
    merge_sorted(server_only, ordered, original, |v| {
        identity(meta, v).cloned()
    })
}

/// Merges `kept` (items in their original order) with `ordered` (items in a requested
/// order): a kept head goes first only when both heads were in `original` and it came
/// first there. Strategic merge (mergeSortedSlice) and server-side apply order lists so.
pub(super) fn merge_sorted<K: PartialEq>(
    kept: Vec<Value>,
    ordered: Vec<Value>,
    original: &[Value],
    id: impl Fn(&Value) -> Option<K>,
) -> Vec<Value> {
    let pos = |v: &Value| {
        let i = id(v)?;
        original.iter().position(|o| id(o).as_ref() == Some(&i))
    };
    let mut out = Vec::with_capacity(kept.len() + ordered.len());
    let (mut l, mut r) = (kept.into_iter().peekable(), ordered.into_iter().peekable());
    loop {
        match (l.peek(), r.peek()) {
            (Some(a), Some(b)) => {
                let take_left = matches!((pos(a), pos(b)), (Some(x), Some(y)) if x < y);
                out.extend(if take_left { l.next() } else { r.next() });
            }
            (Some(_), None) => out.extend(l.next()),
            (None, Some(_)) => out.extend(r.next()),
            (None, None) => return out,
        }
    }
}

/// Orders a merged list by a `$setElementOrder` list; items not in it keep their place.
fn order_by(meta: &FieldMeta, list: Vec<Value>, order: &[Value], live: &[Value]) -> Vec<Value> {
    let order_ids: Vec<&Value> = order.iter().filter_map(|o| identity(meta, o)).collect();
    let (mut listed, rest): (Vec<Value>, Vec<Value>) = list
        .into_iter()
        .partition(|m| identity(meta, m).is_some_and(|id| order_ids.contains(&id)));
    listed.sort_by_key(|m| {
        identity(meta, m)
            .and_then(|id| order_ids.iter().position(|o| *o == id))
            .unwrap_or(usize::MAX)
    });
    interleave(meta, rest, listed, live)
}

/// A patch value taken as it is: nulls dropped, directive maps removed.
fn strip(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| !v.is_null() && !k.starts_with('$'))
                .filter(|(_, v)| !is_directive(v))
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(strip_list(a)),
        other => other.clone(),
    }
}

fn strip_list(a: &[Value]) -> Vec<Value> {
    a.iter().filter(|x| !is_directive(x)).map(strip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A schema for the test cases: `mergingList` merges by `name`, `mergingIntList` and
    /// `finalizers` merge by value, `containers` by name, `nonMergingIntList` replaces.
    struct TestSchema;
    impl PatchSchema for TestSchema {
        fn field(&self, _ty: Option<&str>, field: &str) -> FieldMeta {
            match field {
                "mergingList" | "containers" => FieldMeta {
                    merge: true,
                    merge_key: Some("name".into()),
                    ..Default::default()
                },
                "mergingIntList" | "finalizers" => FieldMeta {
                    merge: true,
                    ..Default::default()
                },
                _ => FieldMeta::default(),
            }
        }
    }

    fn run(original: Value, patch: Value) -> Value {
        let mut o = original;
        apply(&TestSchema, None, &mut o, &patch).unwrap_or_else(|e| panic!("{e:?}"));
        o
    }

    #[test]
    fn merged_lists_keep_the_patch_order_and_new_items_come_first() {
        // kubectl patch docs: a container added by a strategic patch comes first.
        let got = run(
            json!({"containers": [{"name": "patch-demo-ctr", "image": "nginx"}], "tolerations": [{"key": "dedicated"}]}),
            json!({"containers": [{"name": "patch-demo-ctr-2", "image": "redis"}], "tolerations": [{"key": "disktype"}]}),
        );
        assert_eq!(
            got,
            json!({"containers": [{"name": "patch-demo-ctr-2", "image": "redis"}, {"name": "patch-demo-ctr", "image": "nginx"}],
                   "tolerations": [{"key": "disktype"}]})
        );
        let got = run(
            json!({"mergingList": [{"name": "1"}, {"name": "2", "value": "b"}, {"name": "3"}]}),
            json!({"mergingList": [{"name": "3", "value": "c"}, {"name": "1", "value": "a"}]}),
        );
        assert_eq!(
            got,
            json!({"mergingList": [{"name": "2", "value": "b"}, {"name": "3", "value": "c"}, {"name": "1", "value": "a"}]})
        );
        assert_eq!(
            run(
                json!({"mergingIntList": [1, 2, 3]}),
                json!({"mergingIntList": [3, 1]})
            ),
            json!({"mergingIntList": [2, 3, 1]})
        );
        assert_eq!(
            run(
                json!({"mergingIntList": [1, 2]}),
                json!({"mergingIntList": [2, 3]})
            ),
            json!({"mergingIntList": [1, 2, 3]})
        );
    }

    #[test]
    fn delete_and_replace_directives() {
        let got = run(
            json!({"mergingList": [{"name": "1"}, {"name": "2", "other": "b"}]}),
            json!({"$setElementOrder/mergingList": [{"name": "2"}], "mergingList": [{"name": "1", "$patch": "delete"}]}),
        );
        assert_eq!(got, json!({"mergingList": [{"name": "2", "other": "b"}]}));
        let got = run(
            json!({"mergingList": [{"name": "1"}, {"name": "1"}, {"name": "2", "value": "a"}, {"name": "3"}, {"name": "3"}]}),
            json!({"mergingList": [{"name": "1", "$patch": "delete"}, {"name": "3", "$patch": "delete"}]}),
        );
        assert_eq!(got, json!({"mergingList": [{"name": "2", "value": "a"}]}));
        assert_eq!(
            run(
                json!({"mergingList": [{"name": "1"}, {"name": "2"}]}),
                json!({"mergingList": [{"$patch": "replace"}]})
            ),
            json!({"mergingList": []})
        );
        assert_eq!(
            run(
                json!({"name": 1, "value": 1}),
                json!({"$patch": "replace", "other": "a"})
            ),
            json!({"other": "a"})
        );
        assert_eq!(
            run(
                json!({"simpleMap": {"key1": 1, "key2": 1}}),
                json!({"simpleMap": {"$patch": "delete"}})
            ),
            json!({"simpleMap": {}})
        );
        let got = run(
            json!({"mergingIntList": [1, 2, 3, 4]}),
            json!({"$setElementOrder/mergingIntList": [1, 2, 4], "$deleteFromPrimitiveList/mergingIntList": [3]}),
        );
        assert_eq!(got, json!({"mergingIntList": [1, 2, 4]}));
        assert_eq!(
            run(
                json!({"nonMergingIntList": [1, 2, 3]}),
                json!({"$deleteFromPrimitiveList/nonMergingIntList": [2]})
            ),
            json!({"nonMergingIntList": [1, 3]})
        );
    }

    #[test]
    fn element_order_with_server_only_items() {
        let got = run(
            json!({"mergingList": [{"name": "1", "other": "a"}, {"name": "2", "value": "2"}, {"name": "9"}, {"name": "3", "value": "3"}, {"name": "4", "value": "4"}]}),
            json!({"$setElementOrder/mergingList": [{"name": "2"}, {"name": "1"}, {"name": "4"}, {"name": "3"}]}),
        );
        let names: Vec<&str> = got["mergingList"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["name"].as_str())
            .collect();
        assert_eq!(names, ["2", "1", "9", "4", "3"]);
        assert_eq!(got["mergingList"][1], json!({"name": "1", "other": "a"}));
        let got = run(
            json!({"mergingIntList": [1, 2, 7, 9, 8, 3, 4]}),
            json!({"$setElementOrder/mergingIntList": [2, 1, 4, 3]}),
        );
        assert_eq!(got, json!({"mergingIntList": [2, 1, 7, 9, 8, 4, 3]}));
    }

    #[test]
    fn retain_keys_clears_what_is_not_listed() {
        let got = run(
            json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "30%"}}}),
            json!({"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}),
        );
        assert_eq!(got, json!({"strategy": {"type": "Recreate"}}));
        let got = run(
            json!({"retainKeysMap": {"name": "foo", "other": "a"}}),
            json!({"retainKeysMap": {"$retainKeys": ["name", "value"], "value": "bar"}}),
        );
        assert_eq!(
            got,
            json!({"retainKeysMap": {"name": "foo", "value": "bar"}})
        );
        assert_eq!(
            run(
                json!({"retainKeysMap": {"name": "foo", "value": "a"}}),
                json!({"retainKeysMap": {"value": null}})
            ),
            json!({"retainKeysMap": {"name": "foo"}})
        );
    }

    #[test]
    fn bad_patches_are_errors_of_the_right_kind() {
        let mut o = json!({"mergingList": [{"name": "1"}]});
        let e = apply(
            &TestSchema,
            None,
            &mut o,
            &json!({"mergingList": [{"value": "x"}]}),
        );
        assert!(matches!(e, Err(SmpError::Internal(m)) if m.contains("merge key: name")));
        let e = apply(&TestSchema, None, &mut o, &json!({"$retainKeys": "x"}));
        assert!(matches!(e, Err(SmpError::BadRequest(_))));
        let e = apply(
            &TestSchema,
            None,
            &mut o,
            &json!({"$retainKeys": ["a"], "b": 1}),
        );
        assert!(matches!(e, Err(SmpError::Invalid(_))));
        let e = apply(&TestSchema, None, &mut o, &json!([1]));
        assert!(matches!(e, Err(SmpError::BadRequest(_))));
    }
}
