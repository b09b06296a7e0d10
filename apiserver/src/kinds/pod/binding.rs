//! `pods/<name>/binding`, and the `bindings` collection of a namespace that names the pod
//! in its body: the scheduler's write, which assigns a pod to a node once (the rules are
//! [`super::bind`]'s).

use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use k8s_openapi::api::core::v1::{Binding, Pod};

use super::BindRefusal;
use crate::error::{ApiError, GroupResource};
use crate::http::body::read_object;
use crate::http::ops::{success_status, Call};
use crate::http::options::dry_run;
use crate::http::{json_response, Body};
use crate::store::{Outcome, Store, Target};

/// The subresource's operation (and the `bindings` collection's, with no name in the
/// target): a Binding in, 201 and a success Status out.
pub(super) fn action<'a>(
    c: &'a Call<'_>,
    req: Request<Incoming>,
) -> BoxFuture<'a, Result<Response<Body>, ApiError>> {
    Box::pin(async move {
        let body = read_object(req).await?;
        bind(&c.shared.store, &c.target, &body, dry_run(c.query)?).await?;
        Ok(json_response(StatusCode::CREATED, success_status()))
    })
}

/// Assigns the pod to a node, once.
async fn bind(store: &Store, t: &Target, body: &[u8], dry_run: bool) -> Result<(), ApiError> {
    let b: Binding = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "Binding in version \"v1\" cannot be handled as a Binding: {e}"
        ))
    })?;
    let name = match (&t.name, b.metadata.name.as_deref()) {
        (Some(url), Some(body)) if url != body => {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({body}) does not match the name on the URL ({url})"
            )))
        }
        (Some(url), _) => url.clone(),
        (None, Some(body)) if !body.is_empty() => body.to_string(),
        _ => {
            return Err(ApiError::BadRequest(
                "name is required for a binding".into(),
            ))
        }
    };
    let gr = GroupResource {
        group: "",
        resource: "pods/binding",
    };
    let invalid = |field: &str, why: &str| ApiError::Invalid {
        kind: "Binding",
        group: "",
        name: name.clone(),
        causes: vec![crate::error::FieldError::required(field, why)],
    };
    if b.target.name.as_deref().unwrap_or("").is_empty() {
        return Err(invalid("target.name", ""));
    }
    if b.target
        .kind
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != "Node")
    {
        return Err(ApiError::Invalid {
            kind: "Binding",
            group: "",
            name: name.clone(),
            causes: vec![crate::error::FieldError::not_supported(
                "target.kind",
                b.target.kind.as_deref().unwrap_or(""),
                &["Node"],
            )],
        });
    }
    let node = b.target.name.clone().unwrap_or_default();
    let pod_target = Target {
        name: Some(name.clone()),
        ..t.clone()
    };
    let uid_pre = b.metadata.uid.clone();
    store
        .guarded_update(&pod_target, None, dry_run, |old| {
            let mut p: Pod = serde_json::from_value(old.value.clone())
                .map_err(|e| ApiError::Internal(format!("stored pod does not decode: {e}")))?;
            if let Some(uid) = uid_pre.as_deref().filter(|u| !u.is_empty()) {
                if p.metadata.uid.as_deref() != Some(uid) {
                    return Err(ApiError::Conflict {
                        gr: gr.clone(),
                        name: name.clone(),
                        message: "the UID in the binding does not match the pod's".into(),
                    });
                }
            }
            match super::bind(&mut p, &node, crate::store::now()) {
                Ok(()) => {
                    // As kube: the binding's annotations are copied onto the pod (the
                    // scheduler records there who bound it, under which lease).
                    if let Some(a) = b.metadata.annotations.as_ref().filter(|a| !a.is_empty()) {
                        p.metadata
                            .annotations
                            .get_or_insert_with(Default::default)
                            .extend(a.iter().map(|(k, v)| (k.clone(), v.clone())));
                        let bad: Vec<_> = crate::validation::object_meta(
                            &p.metadata,
                            true,
                            crate::validation::NameRule::Subdomain,
                        )
                        .into_iter()
                        .filter(|e| e.field.starts_with("metadata.annotations"))
                        .collect();
                        if !bad.is_empty() {
                            return Err(ApiError::Invalid {
                                kind: "Binding",
                                group: "",
                                name: name.clone(),
                                causes: bad,
                            });
                        }
                    }
                    Ok(Outcome::Put(
                        serde_json::to_value(&p).map_err(|e| ApiError::Internal(e.to_string()))?,
                    ))
                }
                Err(BindRefusal::AlreadyAssigned(n)) => Err(ApiError::Conflict {
                    gr: gr.clone(),
                    name: name.clone(),
                    message: format!("pod {name} is already assigned to node {n:?}"),
                }),
                Err(BindRefusal::Terminating) => Err(ApiError::Conflict {
                    gr: gr.clone(),
                    name: name.clone(),
                    message: format!("pod {name} is being deleted, cannot be assigned to a host"),
                }),
            }
        })
        .await?;
    Ok(())
}
