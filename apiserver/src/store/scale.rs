//! The `scale` subresource of Deployments and ReplicaSets: the object seen as an
//! autoscaling/v1 Scale (desired replicas, current replicas, the selector as a string),
//! and writes to it that change only `spec.replicas`. This is what `kubectl scale` and
//! autoscalers use.

use bytes::Bytes;
use serde_json::{json, Value};

use super::{parse_rv, update::Outcome, Store, Stored, Target, Write};
use crate::error::{ApiError, FieldError};
use crate::patch::PatchType;

/// The Scale view of a stored object.
fn scale_of(obj: &Value) -> Value {
    let m = &obj["metadata"];
    let mut meta = serde_json::Map::new();
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = m.get(f).filter(|v| !v.is_null()) {
            meta.insert(f.into(), v.clone());
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": { "replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1) },
        "status": {
            "replicas": obj["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": crate::selector::format_label_selector(obj["spec"].get("selector")),
        },
    })
}

fn invalid(name: &str, causes: Vec<FieldError>) -> ApiError {
    ApiError::Invalid {
        kind: "Scale",
        group: "autoscaling",
        name: name.to_string(),
        causes,
    }
}

/// The replicas a Scale asks for, checked.
fn desired(t: &Target, scale: &Value) -> Result<i64, ApiError> {
    match &scale["spec"]["replicas"] {
        Value::Null => Ok(0),
        v => match v.as_i64() {
            Some(n) if n >= 0 && n <= i32::MAX as i64 => Ok(n),
            Some(n) => Err(invalid(
                t.name(),
                vec![FieldError::invalid(
                    "spec.replicas",
                    &n.to_string(),
                    "must be greater than or equal to 0",
                )],
            )),
            None => Err(ApiError::BadRequest(format!(
                "Scale in version \"v1\" cannot be handled as a Scale: spec.replicas: {v} is not an integer"
            ))),
        },
    }
}

impl Store {
    pub async fn get_scale(&self, t: &Target) -> Result<Bytes, ApiError> {
        let obj: Value = serde_json::from_slice(&self.get(t, None).await?)
            .map_err(|e| ApiError::Internal(format!("stored object: {e}")))?;
        Ok(Bytes::from(
            serde_json::to_vec(&scale_of(&obj)).unwrap_or_default(),
        ))
    }

    /// PUT of a Scale: a resourceVersion in it is a precondition.
    pub async fn update_scale(
        &self,
        t: &Target,
        body: &[u8],
        w: &Write,
    ) -> Result<Bytes, ApiError> {
        let scale: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::BadRequest(format!(
                "Scale in version \"v1\" cannot be handled as a Scale: {e}"
            ))
        })?;
        if let Some(n) = scale["metadata"]["name"].as_str() {
            if n != t.name() {
                return Err(ApiError::BadRequest(format!(
                    "the name of the object ({n}) does not match the name on the URL ({})",
                    t.name()
                )));
            }
        }
        let replicas = desired(t, &scale)?;
        let precondition = match scale["metadata"]["resourceVersion"].as_str() {
            Some(rv) if !rv.is_empty() => Some(parse_rv(rv)?),
            _ => None,
        };
        let out = self
            .guarded_update(t, precondition, w.dry_run, |old| {
                with_replicas(t, old, replicas, w)
            })
            .await?;
        Ok(Bytes::from(
            serde_json::to_vec(&scale_of(&out)).unwrap_or_default(),
        ))
    }

    /// PATCH of a Scale (what `kubectl scale` sends): the patch applies to the Scale view.
    pub async fn patch_scale(
        &self,
        t: &Target,
        kind: PatchType,
        patch: &[u8],
        w: &Write,
    ) -> Result<Bytes, ApiError> {
        let patch: Value = serde_json::from_slice(patch)
            .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?;
        let out = self
            .guarded_update(t, None, w.dry_run, |old| {
                let mut scale = scale_of(&old.value);
                match kind {
                    PatchType::Json => crate::patch::json_patch(&mut scale, &patch)
                        .map_err(ApiError::PatchRejected)?,
                    // A Scale has no lists: a strategic merge is a merge.
                    PatchType::Merge | PatchType::Strategic => {
                        crate::patch::merge(&mut scale, &patch)
                    }
                    PatchType::Apply => {
                        return Err(ApiError::UnsupportedMediaType(
                            "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json",
                        ))
                    }
                }
                if let Some(rv) = scale["metadata"]["resourceVersion"].as_str() {
                    if parse_rv(rv)? != old.mod_revision {
                        return Err(super::update::conflict(t));
                    }
                }
                with_replicas(t, old, desired(t, &scale)?, w)
            })
            .await?;
        Ok(Bytes::from(
            serde_json::to_vec(&scale_of(&out)).unwrap_or_default(),
        ))
    }
}

fn with_replicas(t: &Target, old: &Stored, replicas: i64, w: &Write) -> Result<Outcome, ApiError> {
    if old.value["spec"]["replicas"].as_i64() == Some(replicas) {
        return Ok(Outcome::Unchanged);
    }
    let mut new = old.value.clone();
    new["spec"]["replicas"] = replicas.into();
    super::update::next_state_of(t, &new, old, w, "scale")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_view_of_a_deployment() {
        let d = json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "tier": "fe"}}},
            "status": {"replicas": 2}
        });
        let s = scale_of(&d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "app=web,tier=fe");
        assert_eq!(s["metadata"]["resourceVersion"], "7");
    }
}
