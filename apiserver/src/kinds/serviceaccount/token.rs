//! `POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token`: an authentication.k8s.io/v1
//! TokenRequest in, the same with `status.token` and `status.expirationTimestamp` out, as
//! `kubectl create token` asks. The token is bound to the account's uid, and to a Pod's or
//! Secret's when `spec.boundObjectRef` names one.

use futures::future::BoxFuture;
use http::{Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::auth::serviceaccount::{Claims, Issuer, Named};
use crate::error::{ApiError, FieldError, GroupResource};
use crate::http::body::read_object;
use crate::http::ops::Call;
use crate::http::{json_response, Body};
use crate::store::{object_key, Store};

/// kube-apiserver's default `spec.expirationSeconds`.
const DEFAULT_EXPIRATION: i64 = 3600;
const MIN_EXPIRATION: i64 = 600;
const MAX_EXPIRATION: i64 = 1 << 32;

/// A validated request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    /// (kind, plural, name, uid if given)
    pub bound: Option<(String, &'static str, String, Option<String>)>,
}

fn invalid(name: &str, causes: Vec<FieldError>) -> ApiError {
    ApiError::Invalid {
        kind: "TokenRequest",
        group: "authentication.k8s.io",
        name: name.to_string(),
        causes,
    }
}

/// Parses and validates a TokenRequest body for the account `name`.
pub fn parse(body: &[u8], name: &str) -> Result<Request, ApiError> {
    let v: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("decoding the TokenRequest: {e}")))?
    };
    if !v.is_object() {
        return Err(ApiError::BadRequest(
            "a TokenRequest must be an object".into(),
        ));
    }
    let spec = &v["spec"];
    let mut causes = Vec::new();
    let audiences: Vec<String> = match &spec["audiences"] {
        Value::Null => vec![],
        Value::Array(a) => a
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect(),
        other => {
            causes.push(FieldError::invalid_raw(
                "spec.audiences",
                other.to_string(),
                "must be a list of strings",
            ));
            vec![]
        }
    };
    let expiration_seconds = match &spec["expirationSeconds"] {
        Value::Null => DEFAULT_EXPIRATION,
        e => match e.as_i64() {
            Some(n) if n < MIN_EXPIRATION => {
                causes.push(FieldError::invalid_raw(
                    "spec.expirationSeconds",
                    n.to_string(),
                    "may not specify a duration less than 10 minutes",
                ));
                n
            }
            Some(n) if n > MAX_EXPIRATION => {
                causes.push(FieldError::invalid_raw(
                    "spec.expirationSeconds",
                    n.to_string(),
                    "may not specify a duration larger than 2^32 seconds",
                ));
                n
            }
            Some(n) => n,
            None => {
                causes.push(FieldError::invalid_raw(
                    "spec.expirationSeconds",
                    e.to_string(),
                    "must be an integer",
                ));
                0
            }
        },
    };
    let bound = match &spec["boundObjectRef"] {
        Value::Null => None,
        r => {
            let kind = r["kind"].as_str().unwrap_or_default();
            let plural = match kind {
                "Pod" => Some("pods"),
                "Secret" => Some("secrets"),
                _ => {
                    causes.push(FieldError::not_supported(
                        "spec.boundObjectRef.kind",
                        kind,
                        &["Pod", "Secret"],
                    ));
                    None
                }
            };
            let api_version = r["apiVersion"].as_str().unwrap_or("v1");
            if api_version != "v1" {
                causes.push(FieldError::not_supported(
                    "spec.boundObjectRef.apiVersion",
                    api_version,
                    &["v1"],
                ));
            }
            let obj = r["name"].as_str().unwrap_or_default();
            if obj.is_empty() {
                causes.push(FieldError::required("spec.boundObjectRef.name", ""));
            }
            plural.map(|p| {
                (
                    kind.to_string(),
                    p,
                    obj.to_string(),
                    r["uid"]
                        .as_str()
                        .filter(|u| !u.is_empty())
                        .map(String::from),
                )
            })
        }
    };
    if !causes.is_empty() {
        return Err(invalid(name, causes));
    }
    Ok(Request {
        audiences,
        expiration_seconds,
        bound,
    })
}

fn uid_of(v: &Value) -> String {
    v["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The subresource's operation: a TokenRequest in, the same with its token out (201).
pub(super) fn action<'a>(
    c: &'a Call<'_>,
    req: http::Request<Incoming>,
) -> BoxFuture<'a, Result<Response<Body>, ApiError>> {
    Box::pin(async move {
        let body = read_object(req).await?;
        let ns = c.target.namespace.as_deref().unwrap_or_default();
        let out = issue(
            &c.shared.store,
            &c.shared.auth.service_accounts,
            ns,
            c.target.name(),
            &body,
        )
        .await?;
        Ok(json_response(
            StatusCode::CREATED,
            serde_json::to_vec(&out).unwrap_or_default(),
        ))
    })
}

/// Issues the token a TokenRequest asks for; returns the TokenRequest with its status.
pub async fn issue(
    store: &Store,
    issuer: &Issuer,
    namespace: &str,
    name: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let req = parse(body, name)?;
    let not_found = |resource: &'static str, n: &str| ApiError::NotFound {
        gr: GroupResource {
            group: "",
            resource,
        },
        name: n.to_string(),
    };
    let sa = store
        .read(&object_key("serviceaccounts", Some(namespace), name))
        .await?
        .ok_or_else(|| not_found("serviceaccounts", name))?;
    let mut claims = Claims {
        namespace: namespace.to_string(),
        service_account: Named {
            name: name.to_string(),
            uid: uid_of(&sa.value),
        },
        pod: None,
        secret: None,
        expires: 0,
    };
    if let Some((kind, plural, obj, want_uid)) = &req.bound {
        let o = store
            .read(&object_key(plural, Some(namespace), obj))
            .await?
            .ok_or_else(|| not_found(plural, obj))?;
        let uid = uid_of(&o.value);
        if want_uid.as_ref().is_some_and(|w| *w != uid) {
            return Err(ApiError::Conflict {
                gr: GroupResource {
                    group: "",
                    resource: plural,
                },
                name: obj.clone(),
                message: format!(
                    "the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated",
                    want_uid.as_deref().unwrap_or_default()
                ),
            });
        }
        let named = Some(Named {
            name: obj.clone(),
            uid,
        });
        if kind == "Pod" {
            claims.pod = named;
        } else {
            claims.secret = named;
        }
    }
    let now = crate::store::unix_now();
    claims.expires = now + req.expiration_seconds;
    let audiences = if req.audiences.is_empty() {
        issuer.audiences.clone()
    } else {
        req.audiences.clone()
    };
    let token = issuer
        .issue(&claims, &audiences, now)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let expires = k8s_openapi::jiff::Timestamp::from_second(claims.expires)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let mut spec = json!({ "audiences": audiences, "expirationSeconds": req.expiration_seconds });
    if let Some((kind, _, obj, _)) = &req.bound {
        let uid = claims
            .pod
            .as_ref()
            .or(claims.secret.as_ref())
            .map(|n| n.uid.clone());
        spec["boundObjectRef"] =
            json!({ "kind": kind, "apiVersion": "v1", "name": obj, "uid": uid });
    }
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": crate::store::time_value(&crate::store::now()),
        },
        "spec": spec,
        "status": { "token": token, "expirationTimestamp": expires },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_limits() {
        let r = parse(b"", "sa").unwrap();
        assert_eq!(r.expiration_seconds, 3600);
        assert!(r.audiences.is_empty() && r.bound.is_none());
        let r = parse(
            br#"{"spec":{"audiences":["a"],"expirationSeconds":7200,"boundObjectRef":{"kind":"Pod","apiVersion":"v1","name":"p"}}}"#,
            "sa",
        )
        .unwrap();
        assert_eq!(r.audiences, ["a"]);
        assert_eq!(r.bound, Some(("Pod".into(), "pods", "p".into(), None)));
        let e = parse(br#"{"spec":{"expirationSeconds":60}}"#, "sa").unwrap_err();
        assert_eq!(
            e.to_string(),
            "TokenRequest.authentication.k8s.io \"sa\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
        );
        assert_eq!(e.code(), 422);
        let e = parse(
            br#"{"spec":{"boundObjectRef":{"kind":"Node","name":"n"}}}"#,
            "sa",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("spec.boundObjectRef.kind: Unsupported value: \"Node\""),
            "{e}"
        );
        assert_eq!(parse(b"[1]", "sa").unwrap_err().code(), 400);
    }
}
