//! One object as the watch cache holds and serves it: its JSON with the resourceVersion
//! set, and what selectors look at (labels, selectable fields), each part kept without
//! spare capacity since every object of the cluster is held like this.

use bytes::Bytes;
use serde_json::Value;

use super::super::{decode_stored, set_rv};
use crate::kinds::Kinds;

/// One object as served: JSON with its resourceVersion, and what selectors look at.
/// Every object of the cluster is held like this, so each part takes no more memory than
/// it needs (no spare capacity, labels in one sorted slice).
#[derive(Debug)]
pub struct CachedObj {
    pub key: String,
    pub rev: i64,
    pub json: Bytes,
    pub labels: Labels,
    pub fields: Vec<(&'static str, String)>,
}

/// An object's labels, sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(Box<[(Box<str>, Box<str>)]>);

impl Labels {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.0[i].1)
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for Labels {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(it: I) -> Self {
        let mut v: Vec<(Box<str>, Box<str>)> =
            it.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.dedup_by(|a, b| a.0 == b.0);
        Labels(v.into_boxed_slice())
    }
}

/// What selectors look at in an object's previous version, kept instead of the whole
/// version: an event needs the old labels and fields to tell a watcher with a selector
/// that the object left (or entered) its view, never the old JSON.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub labels: Labels,
    pub fields: Vec<(&'static str, String)>,
}

impl CachedObj {
    pub fn selection(&self) -> Selection {
        Selection {
            labels: self.labels.clone(),
            fields: self.fields.clone(),
        }
    }

    /// Builds the served form of a stored value; None for keys that are not objects of a
    /// served kind (allocations, other tools' keys).
    pub fn from_kv(kinds: &Kinds, key: &[u8], value: &[u8], rev: i64) -> Option<Self> {
        let key = String::from_utf8(key.to_vec()).ok()?;
        let kind = kinds.by_storage(crate::kinds::storage_of(&key)?)?;
        let v = decode_stored(value, rev).ok()?;
        Some(Self::from_value(key.clone(), &v, rev, kind.fields(&v)))
    }

    fn from_value(
        key: String,
        v: &Value,
        rev: i64,
        mut fields: Vec<(&'static str, String)>,
    ) -> Self {
        let labels = v["metadata"]["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        let mut json = serde_json::to_vec(v).unwrap_or_default();
        json.shrink_to_fit();
        fields.shrink_to_fit();
        Self {
            key,
            rev,
            json: Bytes::from(json),
            labels,
            fields,
        }
    }

    /// The same object with another resourceVersion (a DELETED event carries the revision
    /// of the delete).
    pub fn at_rev(&self, rev: i64) -> Self {
        let mut v: Value = serde_json::from_slice(&self.json).unwrap_or_default();
        set_rv(&mut v, rev);
        Self::from_value(self.key.clone(), &v, rev, self.fields.clone())
    }
}

#[cfg(test)]
mod labels_tests {
    use super::*;

    #[test]
    fn labels_are_looked_up_by_key() {
        let l: Labels = [("tier", "web"), ("app", "a"), ("zone", "")]
            .into_iter()
            .collect();
        assert_eq!(l.get("app"), Some("a"));
        assert_eq!(l.get("tier"), Some("web"));
        assert_eq!(l.get("zone"), Some(""));
        assert_eq!(l.get("nope"), None);
        assert_eq!(Labels::default().get("app"), None);
        let o = CachedObj::from_value(
            "/registry/pods/d/p".into(),
            &serde_json::json!({"metadata": {"labels": {"b": "2", "a": "1"}}}),
            7,
            vec![],
        );
        assert_eq!(
            (o.labels.get("a"), o.labels.get("b")),
            (Some("1"), Some("2"))
        );
        assert_eq!(
            o.json.len(),
            serde_json::to_vec(&serde_json::json!({"metadata": {"labels": {"a": "1", "b": "2"}}}))
                .unwrap()
                .len()
        );
    }
}
