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
    let d = c.shared.store.delete(&c.target, &opts).await?;
    let code = if d.finished {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(json_response(
        code,
        serde_json::to_vec(&d.object).unwrap_or_default(),
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
    let items = c
        .shared
        .store
        .delete_collection(&c.target, &lopts, &dopts)
        .await?;
    Ok(ok_json(
        &json!({ "kind": info.list_kind, "apiVersion": info.api_version(), "metadata": {}, "items": items }),
    ))
}
