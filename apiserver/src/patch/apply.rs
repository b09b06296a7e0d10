//! Server-side apply (`application/apply-patch+yaml`): the applied configuration is merged
//! into the live object field by field (associative lists by their keys, sets by value,
//! atomic values whole); the applier then owns exactly the configuration's fields. Taking
//! a field another manager owns, with a different value, is a conflict unless `force`;
//! a field the applier applied before and no longer does is removed, unless someone else
//! owns it too.

use serde_json::{json, Map, Value};

use super::fieldset::{
    self, compare, remove, render, to_set, ApplySchema, Child, FieldSet, ListKind,
};
use super::managed::{self, tracked, Entry, Operation, Writer};

/// A refused apply: the conflicting fields and who owns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflicts {
    /// (manager as described, field path) in order.
    pub fields: Vec<(String, String)>,
}

impl Conflicts {
    /// kube-apiserver's message for them.
    pub fn message(&self) -> String {
        let n = self.fields.len();
        if n == 1 {
            let (m, f) = &self.fields[0];
            return format!("Apply failed with 1 conflict: conflict with {m}: {f}");
        }
        let mut s = format!("Apply failed with {n} conflicts: ");
        let mut managers: Vec<&String> = self.fields.iter().map(|(m, _)| m).collect();
        managers.dedup();
        let parts: Vec<String> = managers
            .iter()
            .map(|m| {
                let fields: Vec<String> = self
                    .fields
                    .iter()
                    .filter(|(x, _)| x == *m)
                    .map(|(_, f)| format!("- {f}"))
                    .collect();
                format!("conflicts with {m}:\n{}", fields.join("\n"))
            })
            .collect();
        s.push_str(&parts.join("\n"));
        s
    }
}

/// Applies `config` by `writer` to `live` (None: the object does not exist yet). Returns
/// the new object, with its managedFields, before defaulting and validation.
pub fn apply(
    schema: &dyn ApplySchema,
    ty: Option<&str>,
    has_status: bool,
    live: Option<&Value>,
    config: &Value,
    writer: &Writer,
    force: bool,
) -> Result<Value, Conflicts> {
    let sub = writer.subresource.as_deref();
    let empty = json!({});
    let live_v = live.unwrap_or(&empty);
    let mut entries = managed::read(live_v);
    if live.is_some() && entries.is_empty() {
        // What was there before the first apply belongs to a manager of its own.
        entries.push(Entry {
            manager: "before-first-apply".into(),
            operation: Operation::Update,
            api_version: writer.api_version.clone(),
            time: None,
            subresource: writer.subresource.clone(),
            fields: to_set(schema, ty, &tracked(live_v, sub, has_status)),
        });
    }
    let config_set = to_set(schema, ty, &tracked(config, sub, has_status));
    let mut merged = merge(schema, ty, live_v, config);
    let (changed, _) = compare(
        schema,
        ty,
        &tracked(live_v, sub, has_status),
        &tracked(&merged, sub, has_status),
    );
    let me = Entry {
        manager: writer.manager.clone(),
        operation: Operation::Apply,
        api_version: writer.api_version.clone(),
        time: None,
        subresource: writer.subresource.clone(),
        fields: FieldSet::default(),
    };
    let mut conflicts = Vec::new();
    for e in entries.iter_mut().filter(|e| !e.same_manager(&me)) {
        let taken = e.fields.intersection(&changed);
        if taken.is_empty() {
            continue;
        }
        if force {
            e.fields = e.fields.difference(&taken);
        } else {
            for p in taken.paths() {
                conflicts.push((e.describe(), render(&p)));
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(Conflicts { fields: conflicts });
    }
    // Prune what this applier applied before and nobody else owns.
    let previous = entries
        .iter()
        .find(|e| e.same_manager(&me))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let others = entries
        .iter()
        .filter(|e| !e.same_manager(&me))
        .fold(FieldSet::default(), |acc, e| acc.union(&e.fields));
    let gone = previous.difference(&config_set).difference(&others);
    let mut paths = gone.paths();
    paths.sort_by(|a, b| b.cmp(a));
    for p in &paths {
        remove(&mut merged, p);
    }
    for e in entries.iter_mut() {
        e.fields = e.fields.difference(&gone);
    }
    let unchanged = changed.is_empty() && paths.is_empty();
    let old_time = entries
        .iter()
        .find(|e| e.same_manager(&me))
        .and_then(|e| e.time.clone());
    entries.retain(|e| !e.same_manager(&me));
    let mut mine = Entry {
        fields: config_set,
        ..me
    };
    mine.time = if unchanged && old_time.is_some() {
        old_time
    } else {
        Some(managed::now())
    };
    mine.api_version = writer.api_version.clone();
    entries.push(mine);
    managed::write(&mut merged, entries);
    Ok(merged)
}

/// `live` with `config` merged in.
pub fn merge(schema: &dyn ApplySchema, ty: Option<&str>, live: &Value, config: &Value) -> Value {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) => Value::Object(merge_map(schema, ty, l, c)),
        (_, c) => c.clone(),
    }
}

fn merge_map(
    schema: &dyn ApplySchema,
    ty: Option<&str>,
    live: &Map<String, Value>,
    config: &Map<String, Value>,
) -> Map<String, Value> {
    let mut out = live.clone();
    for (k, c) in config {
        if c.is_null() {
            out.remove(k);
            continue;
        }
        let child = schema.child(ty, k);
        let merged = match out.get(k) {
            Some(l) => merge_value(schema, &child, l, c),
            None => c.clone(),
        };
        out.insert(k.clone(), merged);
    }
    out
}

fn merge_value(schema: &dyn ApplySchema, child: &Child, live: &Value, config: &Value) -> Value {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) if !child.atomic => {
            Value::Object(merge_map(schema, child.ty.as_deref(), l, c))
        }
        (Value::Array(l), Value::Array(c)) => match &child.list {
            ListKind::Atomic => config.clone(),
            ListKind::Set => {
                let id = |v: &Value| Some(fieldset::value_element(v));
                Value::Array(merge_items(l, c.clone(), id))
            }
            ListKind::Map(keys) => {
                let id = |v: &Value| fieldset::key_element(v, keys);
                let merged: Vec<Value> = c
                    .iter()
                    .map(
                        |ci| match l.iter().find(|li| id(li).is_some() && id(li) == id(ci)) {
                            Some(li) => merge_value(
                                schema,
                                &Child {
                                    ty: child.ty.clone(),
                                    list: ListKind::Atomic,
                                    atomic: false,
                                },
                                li,
                                ci,
                            ),
                            None => ci.clone(),
                        },
                    )
                    .collect();
                Value::Array(merge_items(l, merged, id))
            }
        },
        _ => config.clone(),
    }
}

/// Live-only items keep their places among the configuration's items, which come in the
/// configuration's order (structured-merge-diff's list merge).
fn merge_items(
    live: &[Value],
    config: Vec<Value>,
    id: impl Fn(&Value) -> Option<String>,
) -> Vec<Value> {
    let config_ids: Vec<Option<String>> = config.iter().map(&id).collect();
    let live_only: Vec<Value> = live
        .iter()
        .filter(|l| id(l).is_none_or(|i| !config_ids.contains(&Some(i))))
        .cloned()
        .collect();
    super::strategic::merge_sorted(live_only, config, live, id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::fieldset::Child;

    struct S;
    impl ApplySchema for S {
        fn child(&self, _: Option<&str>, f: &str) -> Child {
            Child {
                ty: None,
                list: match f {
                    "containers" => ListKind::Map(vec!["name".into()]),
                    "finalizers" => ListKind::Set,
                    _ => ListKind::Atomic,
                },
                atomic: false,
            }
        }
    }

    fn w(m: &str) -> Writer {
        Writer {
            manager: m.into(),
            api_version: "apps/v1".into(),
            subresource: None,
        }
    }

    fn deploy(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    #[test]
    fn apply_creates_then_conflicts_then_forces() {
        let created = apply(
            &S,
            None,
            true,
            None,
            &deploy(2, "nginx"),
            &w("kubectl"),
            false,
        )
        .unwrap_or_else(|c| panic!("{}", c.message()));
        let e = managed::read(&created);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].operation, Operation::Apply);
        // Another manager changes replicas with an update.
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = 5.into();
        managed::record_update(&S, None, true, Some(&created), &mut scaled, &w("scaler"));
        // Applying replicas 2 again conflicts with the scaler ...
        let err = apply(
            &S,
            None,
            true,
            Some(&scaled),
            &deploy(2, "nginx"),
            &w("kubectl"),
            false,
        )
        .err()
        .map(|c| c.message());
        assert_eq!(
            err.as_deref(),
            Some("Apply failed with 1 conflict: conflict with \"scaler\" using apps/v1: .spec.replicas")
        );
        // ... applying the scaler's value is shared ownership, no conflict ...
        assert!(apply(
            &S,
            None,
            true,
            Some(&scaled),
            &deploy(5, "nginx"),
            &w("kubectl"),
            false
        )
        .is_ok());
        // ... and force takes the field.
        let forced = apply(
            &S,
            None,
            true,
            Some(&scaled),
            &deploy(2, "nginx"),
            &w("kubectl"),
            true,
        )
        .unwrap_or_else(|c| panic!("{}", c.message()));
        assert_eq!(forced["spec"]["replicas"], 2);
        assert!(managed::read(&forced).iter().all(|e| e.manager != "scaler"));
    }

    #[test]
    fn fields_dropped_from_the_configuration_are_removed() {
        let mut cfg = deploy(2, "nginx");
        cfg["spec"]["paused"] = true.into();
        cfg["metadata"]["finalizers"] = json!(["a/b"]);
        let live = apply(&S, None, true, None, &cfg, &w("kubectl"), false)
            .unwrap_or_else(|c| panic!("{}", c.message()));
        let again = apply(
            &S,
            None,
            true,
            Some(&live),
            &deploy(2, "nginx:2"),
            &w("kubectl"),
            false,
        )
        .unwrap_or_else(|c| panic!("{}", c.message()));
        assert!(again["spec"].get("paused").is_none(), "{again}");
        assert!(
            again["metadata"]
                .get("finalizers")
                .is_none_or(|f| f == &json!([])),
            "{again}"
        );
        assert_eq!(
            again["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:2"
        );
    }

    #[test]
    fn list_merge_keeps_live_only_items_in_place() {
        let live = [json!("a"), json!("b"), json!("c")];
        let id = |v: &Value| Some(v.to_string());
        let got = merge_items(&live, vec![json!("c"), json!("d"), json!("a")], id);
        assert_eq!(got, [json!("b"), json!("c"), json!("d"), json!("a")]);
    }
}
