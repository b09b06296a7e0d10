//! delete of one object, and deletecollection.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::{ok_json, Call};
use crate::error::ApiError;
use crate::http::body::read_object;
use crate::http::options::{delete_options, list_options};
use crate::http::{json_response, Body};

pub async fn delete(c: &Call<'_>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let body = read_object(req).await?;
    let opts = delete_options(c.query, &body)?;
    let external = c.shared.webhooks.for_request(c.user);
    let warnings = crate::store::Warnings::default();
    let d = c
        .shared
        .store
        .delete_admitted(&c.target, &opts, external.as_ref(), &warnings)
        .await?;
    let code = if d.finished {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let obj = served(c, d.object)?;
    Ok(super::with_warnings(
        json_response(code, serde_json::to_vec(&obj).unwrap_or_default()),
        &warnings.take(),
    ))
}

pub async fn delete_collection(
    c: &Call<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let info = c.info();
    let lopts = list_options(c.query, &info.selectable_fields())?;
    let body = read_object(req).await?;
    let dopts = delete_options(c.query, &body)?;
    let external = c.shared.webhooks.for_request(c.user);
    let warnings = crate::store::Warnings::default();
    let items = c
        .shared
        .store
        .delete_collection(&c.target, &lopts, &dopts, external.as_ref(), &warnings)
        .await?;
    let items = items
        .into_iter()
        .map(|o| served(c, o))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(super::with_warnings(
        ok_json(
            &json!({ "kind": info.list_kind, "apiVersion": info.api_version(), "metadata": {}, "items": items }),
        ),
        &warnings.take(),
    ))
}

/// An object a delete returns, as the request's version serves it (a Status as it is).
fn served(c: &Call<'_>, obj: serde_json::Value) -> Result<serde_json::Value, ApiError> {
    if !c.target.kind.needs_conversion() || obj["kind"] != c.info().kind {
        return Ok(obj);
    }
    c.target.kind.to_served(obj)
}
