//! The subresources that are operations of their own: a pod's `binding` (and the
//! `bindings` collection, which names the pod in its body) and `log`, a service account's
//! `token`, a namespace's `finalize`.

use std::collections::HashMap;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{success_status, Call};
use crate::error::ApiError;
use crate::http::body::read_object;
use crate::http::options::dry_run;
use crate::http::request::ResourceRequest;
use crate::http::{json_response, Body, Shared};
use crate::store::Target;

/// `POST /api/v1/namespaces/<ns>/bindings`.
pub async fn bindings(
    shared: &Shared,
    r: &ResourceRequest,
    q: &HashMap<String, String>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if req.method() != http::Method::POST || r.path.name.is_some() || r.path.namespace.is_none() {
        return Err(ApiError::MethodNotAllowed);
    }
    let kind = shared
        .kinds
        .find("", "v1", "pods")
        .ok_or(ApiError::NoRoute)?;
    let body = read_object(req).await?;
    let t = Target {
        kind,
        namespace: r.path.namespace.clone(),
        name: None,
    };
    shared.store.bind(&t, &body, dry_run(q)?).await?;
    Ok(json_response(StatusCode::CREATED, success_status()))
}

pub async fn binding(c: &Call<'_>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let body = read_object(req).await?;
    c.shared
        .store
        .bind(&c.target, &body, dry_run(c.query)?)
        .await?;
    Ok(json_response(StatusCode::CREATED, success_status()))
}

pub async fn log(c: &Call<'_>) -> Result<Response<Body>, ApiError> {
    crate::http::podlog::proxy(c.shared, &c.target, c.query).await
}

pub async fn token(c: &Call<'_>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let body = read_object(req).await?;
    let ns = c.target.namespace.as_deref().unwrap_or_default();
    let out = crate::auth::tokenrequest::issue(
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
}

pub async fn finalize(c: &Call<'_>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let body = read_object(req).await?;
    Ok(json_response(
        StatusCode::OK,
        c.shared.store.finalize(&c.target, &body).await?,
    ))
}
