//! A CRD's conversion webhook (`spec.conversion.strategy: Webhook`), as
//! apiextensions-apiserver's webhook converter uses it: the objects not yet in the desired
//! version go in one ConversionReview (apiextensions.k8s.io/v1), the answer must carry the
//! request's uid, `result.status: Success` and as many objects as were sent, each of the
//! desired version, the same kind, name, namespace and uid; of their metadata only labels
//! and annotations (checked as kube checks them) are taken, the rest is the original's.
//! Errors read as kube's (`conversion webhook for <gvk> failed: …`). The call itself is a
//! [`Caller`]'s (`webhook/conversion.rs`); this part is pure.

use std::sync::Arc;

use k8s_openapi::api::admissionregistration::v1::WebhookClientConfig;
use serde_json::{json, Value};

/// kube's timeout of a conversion webhook call.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Where a CRD's conversion webhook is.
#[derive(Clone, Debug)]
pub struct Hook {
    /// The CRD's name, for logs.
    pub crd: String,
    pub client: WebhookClientConfig,
}

/// Posts a review and returns the answer's body, or kube's words for the failure.
pub trait Caller: Send + Sync {
    fn post(&self, hook: &Hook, review: Vec<u8>) -> Result<bytes::Bytes, String>;
}

/// The hook of a CRD with the Webhook strategy, None otherwise.
pub fn hook_of(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Option<Hook> {
    let c = crd.spec.conversion.as_ref()?;
    if c.strategy != "Webhook" {
        return None;
    }
    let client = c.webhook.as_ref()?.client_config.as_ref()?;
    Some(Hook {
        crd: crd.metadata.name.clone().unwrap_or_default(),
        client: serde_json::from_value(serde_json::to_value(client).ok()?).ok()?,
    })
}

/// Go's `GroupVersionKind.String()` of an object: `g/v, Kind=K`.
fn gvk(obj: &Value) -> String {
    format!(
        "{}, Kind={}",
        obj["apiVersion"].as_str().unwrap_or(""),
        obj["kind"].as_str().unwrap_or("")
    )
}

/// Converts `objects` to `desired` (`group/version`) through `caller`; objects already in
/// that version are not sent.
pub fn convert(
    caller: &dyn Caller,
    hook: &Hook,
    mut objects: Vec<Value>,
    desired: &str,
) -> Result<Vec<Value>, String> {
    let todo: Vec<usize> = (0..objects.len())
        .filter(|&i| objects[i]["apiVersion"].as_str() != Some(desired))
        .collect();
    let Some(&first) = todo.first() else {
        return Ok(objects);
    };
    let what = gvk(&objects[first]);
    let uid = uuid::Uuid::new_v4().to_string();
    let review = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {
            "uid": uid,
            "desiredAPIVersion": desired,
            "objects": todo.iter().map(|&i| &objects[i]).collect::<Vec<_>>(),
        },
    });
    let body = serde_json::to_vec(&review).unwrap_or_default();
    let failed = |e: String| format!("conversion webhook for {what} failed: {e}");
    let answer = caller.post(hook, body).map_err(failed)?;
    let converted = converted_objects(&answer, &uid).map_err(failed)?;
    if converted.len() != todo.len() {
        return Err(format!(
            "conversion webhook for {what} returned {} objects, expected {}",
            converted.len(),
            todo.len()
        ));
    }
    for (n, (&i, mut out)) in todo.iter().zip(converted).enumerate() {
        let original = &objects[i];
        let invalid = |e: String| {
            format!(
                "conversion webhook for {what} returned invalid converted object at index {n}: {e}"
            )
        };
        if out["apiVersion"].as_str() != Some(desired) {
            return Err(invalid(format!(
                "invalid groupVersion (expected {desired}, received {})",
                out["apiVersion"].as_str().unwrap_or("")
            )));
        }
        same_identity(original, &out).map_err(invalid)?;
        restore_meta(original, &mut out).map_err(|e| {
            format!("conversion webhook for {what} returned invalid metadata in object at index {n}: {e}")
        })?;
        objects[i] = out;
    }
    Ok(objects)
}

/// The converted objects of a ConversionReview answer.
fn converted_objects(body: &[u8], uid: &str) -> Result<Vec<Value>, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the answer is not a ConversionReview: {e}"))?;
    let got = format!(
        "{}, Kind={}",
        v["apiVersion"].as_str().unwrap_or(""),
        v["kind"].as_str().unwrap_or("")
    );
    if got != "apiextensions.k8s.io/v1, Kind=ConversionReview" {
        return Err(format!(
            "expected webhook response of apiextensions.k8s.io/v1, Kind=ConversionReview, got {got}"
        ));
    }
    let r = v
        .get("response")
        .filter(|r| r.is_object())
        .ok_or("no response provided")?;
    let got_uid = r["uid"].as_str().unwrap_or("");
    if got_uid != uid {
        return Err(format!("expected response.uid={uid:?}, got {got_uid:?}"));
    }
    let status = r["result"]["status"].as_str().unwrap_or("");
    if status != "Success" {
        let message = r["result"]["message"].as_str().unwrap_or("");
        return Err(if message.is_empty() {
            format!("response.result.status was '{status}', not 'Success'")
        } else {
            message.to_string()
        });
    }
    Ok(r["convertedObjects"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn same_identity(a: &Value, b: &Value) -> Result<(), String> {
    let kind = |v: &Value| v["kind"].as_str().unwrap_or("").to_string();
    if kind(a) != kind(b) {
        return Err(format!(
            "invalid kind (expected {}, received {})",
            kind(a),
            kind(b)
        ));
    }
    for field in ["name", "namespace", "uid"] {
        let get = |v: &Value| v["metadata"][field].as_str().unwrap_or("").to_string();
        if get(a) != get(b) {
            let what = if field == "uid" { "UID" } else { field };
            return Err(format!(
                "must have the same {what}: {} != {}",
                get(a),
                get(b)
            ));
        }
    }
    Ok(())
}

/// The original's metadata with the converted object's labels and annotations.
fn restore_meta(original: &Value, out: &mut Value) -> Result<(), String> {
    let theirs = match out.get("metadata") {
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            return Err(format!(
                "invalid metadata of type {} in converted object",
                json_type(other)
            ))
        }
        None => return Err("missing metadata in converted object".into()),
    };
    let mut meta = original["metadata"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for field in ["labels", "annotations"] {
        match theirs.get(field) {
            None | Some(Value::Null) => {
                meta.remove(field);
            }
            Some(Value::Object(m)) => {
                let mut map = std::collections::BTreeMap::new();
                for (k, v) in m {
                    let Some(s) = v.as_str() else {
                        return Err(format!(
                            "metadata.{field}[{k}] must be a string, but is {} in converted object",
                            json_type(v)
                        ));
                    };
                    map.insert(k.clone(), s.to_string());
                }
                let errs = if field == "labels" {
                    crate::validation::labels("metadata.labels", &map)
                } else {
                    crate::validation::annotations("metadata.annotation", &map)
                };
                if !errs.is_empty() {
                    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
                    return Err(text.join(", "));
                }
                meta.insert(field.to_string(), Value::Object(m.clone()));
            }
            Some(other) => {
                return Err(format!(
                    "invalid metadata.{field} of type {} in converted object",
                    json_type(other)
                ))
            }
        }
    }
    out["metadata"] = Value::Object(meta);
    Ok(())
}

/// Go's name for a JSON value's type, as kube's `%T` prints it.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// A shared caller, set once the apiserver can reach Services (its watch cache is up).
pub type SharedCaller = Arc<std::sync::OnceLock<Arc<dyn Caller>>>;

#[cfg(test)]
#[path = "conversion_tests.rs"]
mod tests;
