//! `metadata.managedFields`: who owns which fields. Every write records its manager's
//! fields: an Update entry for create, update and patch (the fields it added or changed),
//! an Apply entry for server-side apply (exactly the fields of the applied configuration).
//! A field changed by one manager is taken from the others; a removed field from everyone.

use serde_json::{json, Map, Value};

use super::fieldset::{compare, ApplySchema, FieldSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One entry of `managedFields`.
#[derive(Debug, Clone)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl Entry {
    /// Entries are the same manager's when these match (an Apply entry's apiVersion does
    /// not count: one applier owns its fields whatever version it applied in).
    pub fn same_manager(&self, other: &Entry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == Operation::Apply || self.api_version == other.api_version)
    }

    /// The manager as conflict messages name it.
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

/// The writer of a request.
#[derive(Debug, Clone)]
pub struct Writer {
    pub manager: String,
    pub api_version: String,
    pub subresource: Option<String>,
}

impl Writer {
    fn entry(&self, operation: Operation, fields: FieldSet) -> Entry {
        Entry {
            manager: self.manager.clone(),
            operation,
            api_version: self.api_version.clone(),
            time: Some(now()),
            subresource: self.subresource.clone(),
            fields,
        }
    }
}

/// The manager of a write that named none: the User-Agent up to its first `/`, as
/// kube-apiserver derives it (`kubectl/v1.32.0 (linux/amd64) ...` is `kubectl`).
pub fn manager_from_user_agent(ua: Option<&str>) -> String {
    let name: String = ua
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(128)
        .collect();
    if name.is_empty() {
        "unknown".into()
    } else {
        name
    }
}

pub(crate) fn now() -> String {
    crate::store::time_value(&crate::store::now())
        .as_str()
        .unwrap_or("")
        .to_string()
}

pub fn read(obj: &Value) -> Vec<Entry> {
    let Some(list) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return vec![];
    };
    list.iter()
        .filter_map(|e| {
            let operation = match e["operation"].as_str()? {
                "Apply" => Operation::Apply,
                "Update" => Operation::Update,
                _ => return None,
            };
            Some(Entry {
                manager: e["manager"].as_str().unwrap_or("").to_string(),
                operation,
                api_version: e["apiVersion"].as_str().unwrap_or("").to_string(),
                time: e["time"].as_str().map(String::from),
                subresource: e["subresource"].as_str().map(String::from),
                fields: FieldSet::from_json(&e["fieldsV1"]),
            })
        })
        .collect()
}

/// Writes `entries` (without empty ones, in kube's order) into `obj`.
pub fn write(obj: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.fields.is_empty());
    entries.sort_by(|a, b| {
        (
            a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let list: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut m = Map::new();
            m.insert("manager".into(), e.manager.clone().into());
            m.insert("operation".into(), e.operation.as_str().into());
            m.insert("apiVersion".into(), e.api_version.clone().into());
            if let Some(t) = &e.time {
                m.insert("time".into(), t.clone().into());
            }
            m.insert("fieldsType".into(), "FieldsV1".into());
            m.insert("fieldsV1".into(), e.fields.to_json());
            if let Some(s) = &e.subresource {
                m.insert("subresource".into(), s.clone().into());
            }
            Value::Object(m)
        })
        .collect();
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// The part of an object whose fields are tracked: not the identity and system metadata,
/// and only the half (spec or status) the subresource writes.
pub fn tracked(obj: &Value, subresource: Option<&str>, has_status: bool) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        match subresource {
            Some("status") => {
                m.remove("spec");
            }
            _ if has_status => {
                m.remove("status");
            }
            _ => {}
        }
    }
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in [
            "name",
            "namespace",
            "creationTimestamp",
            "selfLink",
            "uid",
            "generation",
            "managedFields",
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            meta.remove(f);
        }
        if subresource == Some("status") {
            meta.remove("labels");
        }
        if meta.is_empty() {
            if let Some(m) = v.as_object_mut() {
                m.remove("metadata");
            }
        }
    }
    v
}

/// Records a create, update or patch by `writer` that turned `live` (None on create)
/// into `new`, in `new`'s managedFields.
pub fn record_update(
    schema: &dyn ApplySchema,
    ty: Option<&str>,
    has_status: bool,
    live: Option<&Value>,
    new: &mut Value,
    writer: &Writer,
) {
    let sub = writer.subresource.as_deref();
    // A client may rewrite managedFields; otherwise they carry over from the stored object.
    let sent = read(new);
    let mut entries = match live {
        Some(l)
            if sent.is_empty()
                || new["metadata"]["managedFields"] == l["metadata"]["managedFields"] =>
        {
            read(l)
        }
        _ => sent,
    };
    // An object never tracked stays untracked until it is applied to.
    if live.is_some() && entries.is_empty() {
        write(new, entries);
        return;
    }
    let empty = json!({});
    let old = tracked(live.unwrap_or(&empty), sub, has_status);
    let (changed, removed) = compare(schema, ty, &old, &tracked(new, sub, has_status));
    if changed.is_empty() && removed.is_empty() {
        write(new, entries);
        return;
    }
    let me = writer.entry(Operation::Update, FieldSet::default());
    let mut mine = FieldSet::default();
    for e in entries.iter_mut() {
        if e.same_manager(&me) {
            mine = e.fields.difference(&removed);
            e.fields = FieldSet::default();
        } else {
            e.fields = e.fields.difference(&changed).difference(&removed);
        }
    }
    entries.retain(|e| !e.same_manager(&me));
    entries.push(writer.entry(Operation::Update, mine.union(&changed)));
    write(new, entries);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::fieldset::{Child, ListKind};

    struct Plain;
    impl ApplySchema for Plain {
        fn child(&self, _: Option<&str>, _: &str) -> Child {
            Child {
                ty: None,
                list: ListKind::Atomic,
                atomic: false,
            }
        }
    }

    fn writer(m: &str) -> Writer {
        Writer {
            manager: m.into(),
            api_version: "apps/v1".into(),
            subresource: None,
        }
    }

    #[test]
    fn updates_move_ownership_to_the_writer() {
        let mut obj = json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "spec": {"replicas": 1, "paused": false}});
        record_update(
            &Plain,
            None,
            true,
            None,
            &mut obj,
            &writer("kubectl-create"),
        );
        let e = read(&obj);
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].fields.to_json(),
            json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:spec": {"f:paused": {}, "f:replicas": {}}})
        );
        let live = obj.clone();
        obj["spec"]["replicas"] = 3.into();
        record_update(&Plain, None, true, Some(&live), &mut obj, &writer("scaler"));
        let e = read(&obj);
        let by = |m: &str| {
            e.iter()
                .find(|x| x.manager == m)
                .map(|x| x.fields.to_json())
        };
        assert_eq!(by("scaler"), Some(json!({"f:spec": {"f:replicas": {}}})));
        assert_eq!(
            by("kubectl-create"),
            Some(json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:spec": {"f:paused": {}}}))
        );
        assert_eq!(
            manager_from_user_agent(Some("kubectl/v1.32.0 (linux/amd64) kubernetes/abc")),
            "kubectl"
        );
        assert_eq!(manager_from_user_agent(None), "unknown");
    }
}
