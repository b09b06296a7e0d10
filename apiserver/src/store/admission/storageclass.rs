//! DefaultStorageClass (mutating, persistentvolumeclaims): a claim created without a
//! class (no `storageClassName`, not even "", and no beta annotation) gets the default
//! StorageClass; with several defaults, the newest (then the first by name), as kube's
//! `GetDefaultClass`; with none, it stays without.

use serde_json::Value;

use super::super::{decode_stored, Store};
use crate::error::ApiError;
use crate::etcd::prefix_end;
use crate::kinds::storage::is_default;

/// The default class among `classes`, if any.
pub(super) fn pick(classes: Vec<Value>) -> Option<String> {
    let mut defaults: Vec<(String, String)> = classes
        .into_iter()
        .filter(|c| {
            let a = serde_json::from_value(c["metadata"]["annotations"].clone()).ok();
            is_default(a.as_ref())
        })
        .map(|c| {
            (
                c["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                c["metadata"]["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    // Newest first (RFC 3339 in UTC sorts as time), then by name.
    defaults.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    defaults.into_iter().next().map(|(_, n)| n)
}

impl Store {
    pub(super) async fn admit_storage_class(&self, claim: &mut Value) -> Result<(), ApiError> {
        let has_class = !claim["spec"]["storageClassName"].is_null()
            || !claim["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"]
                .is_null();
        if has_class {
            return Ok(());
        }
        let prefix = "/registry/storageclasses/";
        let classes: Vec<Value> = match self.cache.list(prefix) {
            Some((objs, _)) => objs
                .iter()
                .filter_map(|o| serde_json::from_slice::<Value>(&o.json).ok())
                .collect(),
            None => self
                .storage
                .range(prefix.as_bytes(), &prefix_end(prefix.as_bytes()), 0, 0)
                .await?
                .kvs
                .iter()
                .filter_map(|kv| decode_stored(&kv.value, kv.mod_revision).ok())
                .collect(),
        };
        if let Some(name) = pick(classes) {
            if !claim["spec"].is_object() {
                claim["spec"] = serde_json::json!({});
            }
            claim["spec"]["storageClassName"] = name.into();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_newest_default_wins() {
        let class = |name: &str, created: &str, default: bool| {
            json!({"metadata": {"name": name, "creationTimestamp": created,
                "annotations": {"storageclass.kubernetes.io/is-default-class": default.to_string()}}})
        };
        assert_eq!(pick(vec![class("a", "2026-01-01T00:00:00Z", false)]), None);
        assert_eq!(
            pick(vec![
                class("old", "2026-01-01T00:00:00Z", true),
                class("new", "2026-02-01T00:00:00Z", true),
                class("other", "2026-03-01T00:00:00Z", false),
            ]),
            Some("new".into())
        );
    }
}
