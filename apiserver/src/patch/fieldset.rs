//! Field sets, as server-side apply tracks ownership: a tree of path elements (`f:<field>`,
//! `k:<key fields as JSON>` for an item of an associative list, `v:<value>` for an item of
//! a set), serialized as `managedFields[].fieldsV1`. A node that is itself a member (a
//! leaf, a list item, an empty object) has `"."` in the serialized form, unless it is a
//! leaf, which is just `{}`.
//!
//! How a field's value is walked (granular map, atomic value, set, associative list) comes
//! from an [`ApplySchema`].

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// How a list merges under server-side apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListKind {
    /// Replaced and owned as a whole.
    Atomic,
    /// Scalars, by value.
    Set,
    /// Objects, by these key fields.
    Map(Vec<String>),
}

/// What the schema says about one field.
#[derive(Debug, Clone)]
pub struct Child {
    /// The field's type (of its items, for a list).
    pub ty: Option<String>,
    pub list: ListKind,
    /// The value (a struct or map) is replaced and owned as a whole.
    pub atomic: bool,
}

pub trait ApplySchema {
    fn child(&self, ty: Option<&str>, field: &str) -> Child;
}

/// A set of fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// The node itself is in the set.
    pub member: bool,
    pub children: BTreeMap<String, FieldSet>,
}

/// A path of elements (`f:spec`, `k:{"name":"c"}`, ...).
pub type Path = Vec<String>;

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    pub fn insert(&mut self, path: &[String]) {
        match path.split_first() {
            None => self.member = true,
            Some((head, rest)) => self.children.entry(head.clone()).or_default().insert(rest),
        }
    }

    pub fn contains(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => self.member,
            Some((head, rest)) => self.children.get(head).is_some_and(|c| c.contains(rest)),
        }
    }

    /// Every member's path.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (k, c) in &self.children {
            prefix.push(k.clone());
            c.collect(prefix, out);
            prefix.pop();
        }
    }

    pub fn from_paths<'a>(paths: impl IntoIterator<Item = &'a Path>) -> FieldSet {
        let mut s = FieldSet::default();
        for p in paths {
            s.insert(p);
        }
        s
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut s = self.clone();
        for p in other.paths() {
            s.insert(&p);
        }
        s
    }

    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        FieldSet::from_paths(self.paths().iter().filter(|p| !other.contains(p)))
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet::from_paths(self.paths().iter().filter(|p| other.contains(p)))
    }

    /// The `fieldsV1` form.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (k, c) in &self.children {
            if c.is_empty() {
                continue;
            }
            m.insert(k.clone(), c.to_json_node());
        }
        Value::Object(m)
    }

    fn to_json_node(&self) -> Value {
        let mut m = Map::new();
        let has_children = self.children.values().any(|c| !c.is_empty());
        if self.member && has_children {
            m.insert(".".into(), json!({}));
        }
        for (k, c) in &self.children {
            if !c.is_empty() {
                m.insert(k.clone(), c.to_json_node());
            }
        }
        Value::Object(m)
    }

    /// Parses a `fieldsV1` object (anything else is an empty set).
    pub fn from_json(v: &Value) -> FieldSet {
        let mut s = FieldSet::default();
        if let Value::Object(m) = v {
            for (k, c) in m {
                if k == "." {
                    s.member = true;
                    continue;
                }
                let mut child = FieldSet::from_json(c);
                if c.as_object().is_some_and(Map::is_empty) {
                    child.member = true;
                }
                s.children.insert(k.clone(), child);
            }
        }
        s
    }
}

/// The element naming field `name`.
pub fn field(name: &str) -> String {
    format!("f:{name}")
}

/// The element naming an associative-list item by its keys (sorted, as kube sorts them).
pub fn key_element(item: &Value, keys: &[String]) -> Option<String> {
    let mut m = BTreeMap::new();
    for k in keys {
        let v = match item.get(k) {
            Some(v) if !v.is_null() => v.clone(),
            // The one key field with a default: ports' protocol.
            _ if k == "protocol" => json!("TCP"),
            _ => return None,
        };
        m.insert(k.clone(), v);
    }
    serde_json::to_string(&m).ok().map(|s| format!("k:{s}"))
}

/// The element naming a set item.
pub fn value_element(v: &Value) -> String {
    format!("v:{v}")
}

/// Every member path of `obj` with the value at it: leaves and atomic values with their
/// value, structural members (list items, empty objects) with `None`.
pub fn flatten(
    schema: &dyn ApplySchema,
    ty: Option<&str>,
    obj: &Value,
) -> BTreeMap<Path, Option<Value>> {
    let mut out = BTreeMap::new();
    if let Value::Object(m) = obj {
        walk_map(schema, ty, m, &mut Vec::new(), &mut out);
    }
    out
}

fn walk_map(
    schema: &dyn ApplySchema,
    ty: Option<&str>,
    m: &Map<String, Value>,
    path: &mut Path,
    out: &mut BTreeMap<Path, Option<Value>>,
) {
    for (k, v) in m {
        let child = schema.child(ty, k);
        path.push(field(k));
        walk_value(schema, &child, v, path, out);
        path.pop();
    }
}

fn walk_value(
    schema: &dyn ApplySchema,
    child: &Child,
    v: &Value,
    path: &mut Path,
    out: &mut BTreeMap<Path, Option<Value>>,
) {
    match v {
        Value::Object(m) if !child.atomic => {
            if m.is_empty() {
                out.insert(path.clone(), None);
            } else {
                walk_map(schema, child.ty.as_deref(), m, path, out);
            }
        }
        Value::Array(items) => match &child.list {
            ListKind::Atomic => {
                out.insert(path.clone(), Some(v.clone()));
            }
            ListKind::Set => {
                if items.is_empty() {
                    out.insert(path.clone(), Some(v.clone()));
                }
                for i in items {
                    path.push(value_element(i));
                    out.insert(path.clone(), None);
                    path.pop();
                }
            }
            ListKind::Map(keys) => {
                if items.is_empty() {
                    out.insert(path.clone(), Some(v.clone()));
                }
                for i in items {
                    let Some(el) = key_element(i, keys) else {
                        continue;
                    };
                    path.push(el);
                    out.insert(path.clone(), None);
                    if let Value::Object(im) = i {
                        walk_map(schema, child.ty.as_deref(), im, path, out);
                    }
                    path.pop();
                }
            }
        },
        other => {
            out.insert(path.clone(), Some(other.clone()));
        }
    }
}

/// The field set of an object.
pub fn to_set(schema: &dyn ApplySchema, ty: Option<&str>, obj: &Value) -> FieldSet {
    FieldSet::from_paths(flatten(schema, ty, obj).keys())
}

/// What changed from `old` to `new`: (added or modified, removed).
pub fn compare(
    schema: &dyn ApplySchema,
    ty: Option<&str>,
    old: &Value,
    new: &Value,
) -> (FieldSet, FieldSet) {
    let a = flatten(schema, ty, old);
    let b = flatten(schema, ty, new);
    let changed = b
        .iter()
        .filter(|(p, v)| a.get(*p) != Some(*v))
        .map(|(p, _)| p);
    let removed = a.keys().filter(|p| !b.contains_key(*p));
    (FieldSet::from_paths(changed), FieldSet::from_paths(removed))
}

/// A path as conflict messages print it: `.spec.containers[name="c"].image`.
pub fn render(path: &[String]) -> String {
    let mut s = String::new();
    for el in path {
        if let Some(f) = el.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = el.strip_prefix("k:") {
            let m: BTreeMap<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = el.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        } else if let Some(i) = el.strip_prefix("i:") {
            s.push_str(&format!("[{i}]"));
        }
    }
    s
}

/// Removes the value at `path` from `obj` (a field, a list item or a set item).
pub fn remove(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for el in parents {
        let next = step(cur, el);
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Value::Object(m) = cur {
            m.remove(f);
        }
    } else if let Value::Array(items) = cur {
        items.retain(|i| !matches_element(i, last));
    }
}

fn step<'a>(v: &'a mut Value, el: &str) -> Option<&'a mut Value> {
    if let Some(f) = el.strip_prefix("f:") {
        return v.get_mut(f);
    }
    match v {
        Value::Array(items) => items.iter_mut().find(|i| matches_element(i, el)),
        _ => None,
    }
}

fn matches_element(item: &Value, el: &str) -> bool {
    if let Some(k) = el.strip_prefix("k:") {
        let keys: BTreeMap<String, Value> = serde_json::from_str(k).unwrap_or_default();
        let names: Vec<String> = keys.keys().cloned().collect();
        return key_element(item, &names).as_deref() == Some(el);
    }
    if el.starts_with("v:") {
        return value_element(item) == el;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `containers` is keyed by name, `ports` by containerPort+protocol, `finalizers` a
    /// set, `selector` atomic; the rest granular maps and atomic lists.
    pub struct TestSchema;
    impl ApplySchema for TestSchema {
        fn child(&self, _ty: Option<&str>, f: &str) -> Child {
            let list = match f {
                "containers" => ListKind::Map(vec!["name".into()]),
                "ports" => ListKind::Map(vec!["containerPort".into(), "protocol".into()]),
                "finalizers" => ListKind::Set,
                _ => ListKind::Atomic,
            };
            Child {
                ty: None,
                list,
                atomic: f == "selector",
            }
        }
    }

    #[test]
    fn fields_v1_of_an_applied_deployment() {
        let d = json!({
            "metadata": {"labels": {"app": "web"}, "finalizers": ["x/y"]},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [
                    {"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}]}
                ]}}
            }
        });
        let s = to_set(&TestSchema, None, &d);
        let want = json!({
            "f:metadata": {"f:finalizers": {"v:\"x/y\"": {}}, "f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                    ".": {},
                    "f:image": {},
                    "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                }}}}
            }
        });
        assert_eq!(s.to_json(), want);
        assert_eq!(FieldSet::from_json(&want), s);
        let p: Path = vec![
            "f:spec".into(),
            "f:template".into(),
            "f:spec".into(),
            "f:containers".into(),
            "k:{\"name\":\"nginx\"}".into(),
            "f:image".into(),
        ];
        assert!(s.contains(&p));
        assert_eq!(
            render(&p),
            ".spec.template.spec.containers[name=\"nginx\"].image"
        );
    }

    #[test]
    fn compare_and_remove() {
        let old = json!({"spec": {"replicas": 1, "paused": false, "containers": [{"name": "a", "image": "x"}]}});
        let new = json!({"spec": {"replicas": 2, "containers": [{"name": "a", "image": "x"}, {"name": "b"}]}});
        let (changed, removed) = compare(&TestSchema, None, &old, &new);
        let r = |p: &Path| render(p);
        let changed: Vec<String> = changed.paths().iter().map(r).collect();
        assert_eq!(
            changed,
            [
                ".spec.containers[name=\"b\"]",
                ".spec.containers[name=\"b\"].name",
                ".spec.replicas"
            ]
        );
        let removed: Vec<String> = removed.paths().iter().map(r).collect();
        assert_eq!(removed, [".spec.paused"]);
        let mut v = new.clone();
        remove(
            &mut v,
            &[
                "f:spec".into(),
                "f:containers".into(),
                "k:{\"name\":\"b\"}".into(),
            ],
        );
        remove(&mut v, &["f:spec".into(), "f:replicas".into()]);
        assert_eq!(
            v,
            json!({"spec": {"containers": [{"name": "a", "image": "x"}]}})
        );
    }
}
