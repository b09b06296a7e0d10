//! The `scale` subresource of any kind with a [`ScaleSpec`] (Deployments, ReplicaSets,
//! ReplicationControllers; custom resources later): the object seen as an autoscaling/v1
//! Scale (desired replicas, current replicas, the selector as a string), and writes to it
//! that change only the desired replicas. This is what `kubectl scale` and autoscalers use.

use bytes::Bytes;
use serde_json::{json, Value};

use super::{parse_rv, update::Outcome, Store, Stored, Target, Write};
use crate::error::{ApiError, FieldError};
use crate::kinds::{ScaleSpec, SelectorAt};
use crate::patch::PatchType;

fn spec_of(t: &Target) -> Result<ScaleSpec, ApiError> {
    t.kind.info().scale.ok_or(ApiError::NoRoute)
}

/// The selector at `at`, as a label selector string.
fn selector_text(obj: &Value, at: SelectorAt) -> String {
    match at {
        SelectorAt::LabelSelector(p) => crate::selector::format_label_selector(obj.pointer(p)),
        SelectorAt::Map(p) => {
            let mut pairs: Vec<String> = obj
                .pointer(p)
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            pairs.sort();
            pairs.join(",")
        }
        SelectorAt::Text("") => String::new(),
        SelectorAt::Text(p) => obj
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    }
}

/// Sets the value at a JSON pointer, creating objects on the way.
fn set_at(obj: &mut Value, pointer: &str, v: Value) {
    let mut cur = obj;
    for part in pointer.split('/').skip(1) {
        if !cur.is_object() {
            *cur = Value::Object(Default::default());
        }
        let Some(m) = cur.as_object_mut() else {
            return;
        };
        cur = m.entry(part.to_string()).or_insert(Value::Null);
    }
    *cur = v;
}

/// The Scale view of a stored object.
fn scale_of(spec: &ScaleSpec, obj: &Value) -> Value {
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
    let unset = match spec.selector {
        SelectorAt::Text(_) => 0,
        _ => 1,
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": { "replicas": obj.pointer(spec.spec_replicas).and_then(Value::as_i64).unwrap_or(unset) },
        "status": {
            "replicas": obj.pointer(spec.status_replicas).and_then(Value::as_i64).unwrap_or(0),
            "selector": selector_text(obj, spec.selector),
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
        let spec = spec_of(t)?;
        let obj: Value = serde_json::from_slice(&self.get(t, None).await?)
            .map_err(|e| ApiError::Internal(format!("stored object: {e}")))?;
        Ok(Bytes::from(
            serde_json::to_vec(&scale_of(&spec, &obj)).unwrap_or_default(),
        ))
    }

    /// PUT of a Scale: a resourceVersion in it is a precondition.
    pub async fn update_scale(
        &self,
        t: &Target,
        body: &[u8],
        w: &Write,
    ) -> Result<Bytes, ApiError> {
        let spec = spec_of(t)?;
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
        let precondition = match scale["metadata"]["resourceVersion"].as_str() {
            Some(rv) if !rv.is_empty() => Some(parse_rv(rv)?),
            _ => None,
        };
        let out = self
            .scale_to(t, &spec, w, precondition, |_| Ok(scale.clone()))
            .await?;
        Ok(Bytes::from(
            serde_json::to_vec(&scale_of(&spec, &out)).unwrap_or_default(),
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
        let spec = spec_of(t)?;
        let patch: Value = serde_json::from_slice(patch)
            .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?;
        let out = self
            .scale_to(t, &spec, w, None, |old| {
                let mut scale = scale_of(&spec, &old.value);
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
                Ok(scale)
            })
            .await?;
        Ok(Bytes::from(
            serde_json::to_vec(&scale_of(&spec, &out)).unwrap_or_default(),
        ))
    }

    /// Writes the replicas of the Scale `want` makes of the stored object. With webhooks
    /// configured, they see that Scale (autoscaling/v1, subresource `scale`) as kube
    /// sends it: mutating ones may change it, validating ones decide on it; the write is
    /// made only if the object is still the one the Scale was made from, else all is
    /// done again on the new one.
    async fn scale_to(
        &self,
        t: &Target,
        spec: &ScaleSpec,
        w: &Write,
        precondition: Option<i64>,
        want: impl Fn(&Stored) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let Some(x) = &w.external else {
            return self
                .guarded_update(t, precondition, w.dry_run, |old| {
                    let scale = want(old)?;
                    with_replicas(t, spec, old, desired(t, &scale)?, w)
                })
                .await;
        };
        for _ in 0..super::update::MAX_ATTEMPTS {
            let old = self.read(&t.key()).await?.ok_or_else(|| t.not_found())?;
            if precondition.is_some_and(|rv| rv != old.mod_revision) {
                return Err(super::update::conflict(t));
            }
            let old_scale = scale_of(spec, &old.value);
            let mut scale = want(&old)?;
            let a = super::Attributes {
                operation: "UPDATE",
                target: t,
                name: t.name(),
                sub: Some("scale"),
                old: Some(&old_scale),
                dry_run: w.dry_run,
                warnings: &w.warnings,
            };
            x.mutate(a, &mut scale).await?;
            let replicas = desired(t, &scale)?;
            x.validate(a, &scale).await?;
            let moved = std::sync::atomic::AtomicBool::new(false);
            let r = self
                .guarded_update(t, None, w.dry_run, |now| {
                    if now.mod_revision != old.mod_revision {
                        moved.store(true, std::sync::atomic::Ordering::Relaxed);
                        return Err(super::update::conflict(t));
                    }
                    with_replicas(t, spec, now, replicas, w)
                })
                .await;
            match r {
                Err(_) if moved.load(std::sync::atomic::Ordering::Relaxed) => continue,
                r => return r,
            }
        }
        Err(super::update::conflict(t))
    }
}

fn with_replicas(
    t: &Target,
    spec: &ScaleSpec,
    old: &Stored,
    replicas: i64,
    w: &Write,
) -> Result<Outcome, ApiError> {
    if old
        .value
        .pointer(spec.spec_replicas)
        .and_then(Value::as_i64)
        == Some(replicas)
    {
        return Ok(Outcome::Unchanged);
    }
    let mut new = old.value.clone();
    set_at(&mut new, spec.spec_replicas, replicas.into());
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
        let apps = ScaleSpec {
            spec_replicas: "/spec/replicas",
            status_replicas: "/status/replicas",
            selector: SelectorAt::LabelSelector("/spec/selector"),
        };
        let s = scale_of(&apps, &d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "app=web,tier=fe");
        assert_eq!(s["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn scale_view_of_a_plain_map_selector_and_a_write_path() {
        let rc = json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {"tier": "fe", "app": "web"}},
        });
        let spec = ScaleSpec {
            spec_replicas: "/spec/replicas",
            status_replicas: "/status/replicas",
            selector: SelectorAt::Map("/spec/selector"),
        };
        let s = scale_of(&spec, &rc);
        assert_eq!(s["status"]["selector"], "app=web,tier=fe");
        assert_eq!(s["status"]["replicas"], 0);
        let custom = ScaleSpec {
            selector: SelectorAt::Text("/status/selector"),
            ..spec
        };
        let cr = json!({"metadata": {"name": "c"}, "status": {"selector": "app=x"}});
        let s = scale_of(&custom, &cr);
        assert_eq!(
            s["spec"]["replicas"], 0,
            "unset replicas of a custom resource"
        );
        assert_eq!(s["status"]["selector"], "app=x");
        let mut v = json!({"metadata": {}});
        set_at(&mut v, "/spec/replicas", 4.into());
        assert_eq!(v["spec"]["replicas"], 4);
    }
}
