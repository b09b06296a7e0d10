//! Priority (mutating, pods): priorityClassName → priority and preemptionPolicy, or the
//! globalDefault class, or 0; a priority given in the pod must match.

use serde_json::Value;

use super::super::{decode_stored, object_key, Store};
use crate::error::ApiError;
use crate::etcd::prefix_end;

impl Store {
    pub(super) async fn admit_priority(&self, pod: &mut Value) -> Result<(), ApiError> {
        let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
        let forbidden =
            |why: String| ApiError::Forbidden(format!("pods \"{name}\" is forbidden: {why}"));
        let class_name = pod["spec"]["priorityClassName"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let class = if class_name.is_empty() {
            self.global_default_priority_class().await?
        } else {
            // The watch cache, as kube-apiserver's admission reads a lister; the kvstore
            // when the cache does not have it (yet).
            let key = object_key("priorityclasses", None, &class_name);
            let cached = self
                .cache
                .get(&key)
                .and_then(|o| serde_json::from_slice::<Value>(&o.json).ok());
            let found = match cached {
                Some(v) => Some(v),
                None => self.read(&key).await?.map(|s| s.value),
            };
            match found {
                Some(v) => Some(v),
                None => {
                    return Err(forbidden(format!(
                        "no PriorityClass with name {class_name} was found"
                    )))
                }
            }
        };
        let value = class
            .as_ref()
            .and_then(|c| c["value"].as_i64())
            .unwrap_or(0);
        let policy = class
            .as_ref()
            .and_then(|c| c["preemptionPolicy"].as_str())
            .unwrap_or("PreemptLowerPriority")
            .to_string();
        if let Some(given) = pod["spec"]["priority"].as_i64() {
            if given != value {
                return Err(forbidden(format!(
                    "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
                )));
            }
        }
        if let Some(given) = pod["spec"]["preemptionPolicy"].as_str() {
            if given != policy {
                return Err(forbidden(format!(
                    "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
                )));
            }
        }
        let Some(spec) = pod["spec"].as_object_mut() else {
            return Ok(());
        };
        spec.insert("priority".into(), value.into());
        spec.insert("preemptionPolicy".into(), policy.into());
        if class_name.is_empty() {
            if let Some(n) = class.as_ref().and_then(|c| c["metadata"]["name"].as_str()) {
                spec.insert("priorityClassName".into(), n.into());
            }
        }
        Ok(())
    }

    /// The class with `globalDefault: true` (the lowest-valued one if several claim it).
    async fn global_default_priority_class(&self) -> Result<Option<Value>, ApiError> {
        let prefix = "/registry/priorityclasses/";
        let pick = |classes: Vec<Value>| {
            classes
                .into_iter()
                .filter(|c| c["globalDefault"].as_bool() == Some(true))
                .min_by_key(|c| c["value"].as_i64().unwrap_or(0))
        };
        if let Some((objs, _)) = self.cache.list(prefix) {
            return Ok(pick(
                objs.iter()
                    .filter_map(|o| serde_json::from_slice::<Value>(&o.json).ok())
                    .collect(),
            ));
        }
        let r = self
            .storage
            .range(prefix.as_bytes(), &prefix_end(prefix.as_bytes()), 0, 0)
            .await?;
        Ok(pick(
            r.kvs
                .iter()
                .filter_map(|kv| decode_stored(&kv.value, kv.mod_revision).ok())
                .collect(),
        ))
    }
}
