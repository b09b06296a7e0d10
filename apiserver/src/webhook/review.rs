//! AdmissionReview v1: the request a webhook is sent and what its answer means, as
//! kube-apiserver builds and reads them. Pure.
//!
//! An answer is checked before it is believed: `admission.k8s.io/v1` `AdmissionReview`,
//! a `response` with the request's uid. A denial becomes the status the webhook gave,
//! with at least code 400 and the message `admission webhook "<name>" denied the
//! request: <message>`. A patch is a base64 JSON patch (`patchType: JSONPatch`) and
//! counts only from a mutating webhook.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::error::ApiError;

const API_VERSION: &str = "admission.k8s.io/v1";

/// What a request carries besides the objects.
#[derive(Debug, Clone)]
pub struct Meta<'a> {
    pub uid: &'a str,
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub name: &'a str,
    pub namespace: Option<&'a str>,
    pub operation: &'a str,
    pub username: &'a str,
    pub user_uid: &'a str,
    pub groups: &'a [String],
    pub dry_run: bool,
}

/// The options kind of an operation, as the review's `options` names it.
fn options_kind(operation: &str) -> Option<&'static str> {
    match operation {
        "CREATE" => Some("CreateOptions"),
        "UPDATE" => Some("UpdateOptions"),
        "DELETE" => Some("DeleteOptions"),
        _ => None,
    }
}

/// The `request` of an AdmissionReview (also what matchConditions see as `request`).
pub fn request(m: &Meta, object: Option<&Value>, old: Option<&Value>) -> Value {
    let kind = json!({"group": m.group, "version": m.version, "kind": m.kind});
    let resource = json!({"group": m.group, "version": m.version, "resource": m.resource});
    let mut r = json!({
        "uid": m.uid,
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "name": m.name,
        "operation": m.operation,
        "userInfo": {"username": m.username, "uid": m.user_uid, "groups": m.groups},
        "object": object.cloned().unwrap_or(Value::Null),
        "oldObject": old.cloned().unwrap_or(Value::Null),
        "dryRun": m.dry_run,
    });
    if !m.subresource.is_empty() {
        r["subResource"] = m.subresource.into();
        r["requestSubResource"] = m.subresource.into();
    }
    if let Some(ns) = m.namespace {
        r["namespace"] = ns.into();
    }
    if let Some(k) = options_kind(m.operation) {
        r["options"] = json!({"apiVersion": "meta.k8s.io/v1", "kind": k});
    }
    r
}

/// The whole AdmissionReview sent.
pub fn review(request: Value) -> Value {
    json!({"apiVersion": API_VERSION, "kind": "AdmissionReview", "request": request})
}

/// What a webhook answered.
#[derive(Debug)]
pub struct Answer {
    /// Allowed, with the JSON patch to apply (mutating webhooks only), or the refusal.
    pub verdict: Result<Option<Value>, ApiError>,
    pub warnings: Vec<String>,
}

/// Reads a webhook's answer to the review with `uid`; Err: the answer is not one (kube
/// calls the webhook failed, and its failurePolicy decides).
pub fn answer(body: &[u8], uid: &str, hook: &str, mutating: bool) -> Result<Answer, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("failed to decode response: {e}"))?;
    let (av, kind) = (v["apiVersion"].as_str(), v["kind"].as_str());
    if av != Some(API_VERSION) || kind != Some("AdmissionReview") {
        return Err(format!(
            "expected webhook response of {API_VERSION}, Kind=AdmissionReview, got {}, Kind={}",
            av.unwrap_or(""),
            kind.unwrap_or("")
        ));
    }
    let r = &v["response"];
    if !r.is_object() {
        return Err("webhook response was absent".into());
    }
    let got = r["uid"].as_str().unwrap_or("");
    if got != uid {
        return Err(format!("expected response.uid={uid:?}, got {got:?}"));
    }
    let warnings = r["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w.as_str())
        .map(str::to_string)
        .collect();
    if r["allowed"].as_bool() != Some(true) {
        return Ok(Answer {
            verdict: Err(denial(hook, &r["status"])),
            warnings,
        });
    }
    let patch = match (mutating, r["patch"].as_str()) {
        (true, Some(p)) if !p.is_empty() => {
            match r["patchType"].as_str() {
                Some("JSONPatch") => {}
                other => return Err(format!("unsupported patch type {:?}", other.unwrap_or(""))),
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(p)
                .map_err(|e| format!("the patch is not base64: {e}"))?;
            let patch: Value = serde_json::from_slice(&raw)
                .map_err(|e| format!("the patch is not a JSON patch: {e}"))?;
            if !patch.is_array() {
                return Err("the patch is not a JSON patch: not an array".into());
            }
            Some(patch)
        }
        _ => None,
    };
    Ok(Answer {
        verdict: Ok(patch),
        warnings,
    })
}

/// kube's `ToStatusErr`: the webhook's status with a code of at least 400 and its
/// message prefixed with who denied.
fn denial(hook: &str, status: &Value) -> ApiError {
    let denied_by = format!("admission webhook {hook:?} denied the request");
    let code = status["code"]
        .as_u64()
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c))
        .unwrap_or(400);
    let reason = status["reason"].as_str().unwrap_or("").to_string();
    let message = match status["message"].as_str().filter(|m| !m.is_empty()) {
        Some(m) => format!("{denied_by}: {m}"),
        None if !reason.is_empty() => format!("{denied_by}: {reason}"),
        None => format!("{denied_by} without explanation"),
    };
    ApiError::Denied {
        code,
        reason,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta<'static> {
        Meta {
            uid: "u1",
            group: "",
            version: "v1",
            kind: "ConfigMap",
            resource: "configmaps",
            subresource: "",
            name: "c",
            namespace: Some("default"),
            operation: "CREATE",
            username: "alice",
            user_uid: "",
            groups: &[],
            dry_run: false,
        }
    }

    #[test]
    fn requests_carry_what_kube_sends() {
        let r = request(&meta(), Some(&json!({"a": 1})), None);
        assert_eq!(
            r["kind"],
            json!({"group": "", "version": "v1", "kind": "ConfigMap"})
        );
        assert_eq!(r["resource"]["resource"], "configmaps");
        assert_eq!(r["namespace"], "default");
        assert_eq!(r["oldObject"], Value::Null);
        assert_eq!(r["options"]["kind"], "CreateOptions");
        assert!(r.get("subResource").is_none());
        assert_eq!(review(r)["apiVersion"], API_VERSION);
    }

    fn body(response: Value) -> Vec<u8> {
        serde_json::to_vec(
            &json!({"apiVersion": API_VERSION, "kind": "AdmissionReview",
            "response": response}),
        )
        .unwrap()
    }

    #[test]
    fn allowed_with_a_patch_and_warnings() {
        let p = base64::engine::general_purpose::STANDARD
            .encode(r#"[{"op":"add","path":"/metadata/labels/x","value":"y"}]"#);
        let b = body(
            json!({"uid": "u1", "allowed": true, "patchType": "JSONPatch",
            "patch": p, "warnings": ["careful"]}),
        );
        let a = answer(&b, "u1", "m.example.com", true).unwrap();
        assert_eq!(a.warnings, ["careful"]);
        assert_eq!(a.verdict.unwrap().unwrap()[0]["path"], "/metadata/labels/x");
        // A validating webhook's patch is ignored.
        let a = answer(&b, "u1", "v.example.com", false).unwrap();
        assert!(matches!(a.verdict, Ok(None)));
    }

    #[test]
    fn denials_in_kubes_words() {
        let b = body(json!({"uid": "u1", "allowed": false,
            "status": {"code": 403, "reason": "Forbidden", "message": "no bad names"}}));
        let a = answer(&b, "u1", "deny.example.com", false).unwrap();
        let e = a.verdict.unwrap_err();
        assert_eq!(e.code(), 403);
        assert_eq!(
            e.to_string(),
            r#"admission webhook "deny.example.com" denied the request: no bad names"#
        );
        let b = body(json!({"uid": "u1", "allowed": false, "status": {"code": 200}}));
        let e = answer(&b, "u1", "d.example.com", false)
            .unwrap()
            .verdict
            .unwrap_err();
        assert_eq!(e.code(), 400);
        assert_eq!(
            e.to_string(),
            r#"admission webhook "d.example.com" denied the request without explanation"#
        );
    }

    #[test]
    fn answers_that_are_not_answers() {
        let b = body(json!({"uid": "other", "allowed": true}));
        assert_eq!(
            answer(&b, "u1", "x.y.z", false).unwrap_err(),
            r#"expected response.uid="u1", got "other""#
        );
        assert!(answer(b"{}", "u1", "x.y.z", false)
            .unwrap_err()
            .starts_with("expected webhook response of admission.k8s.io/v1"));
        assert!(answer(b"not json", "u1", "x.y.z", false).is_err());
    }
}
