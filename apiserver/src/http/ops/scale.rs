//! The scale subresource: get, update and patch of the Scale view (what `kubectl scale`
//! and autoscalers use).

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::Call;
use crate::error::ApiError;
use crate::http::body::{read_body, read_object};
use crate::http::request::media_type;
use crate::http::{json_response, Body};

pub async fn get(c: &Call<'_>) -> Result<Response<Body>, ApiError> {
    Ok(json_response(
        StatusCode::OK,
        c.shared.store.get_scale(&c.target).await?,
    ))
}

pub async fn update(c: &Call<'_>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let w = c.write_options(&req, false)?;
    let body = read_object(req).await?;
    let out = c.shared.store.update_scale(&c.target, &body, &w).await?;
    Ok(json_response(StatusCode::OK, out))
}

pub async fn patch(c: &Call<'_>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let kind = crate::patch::PatchType::from_media_type(&media_type(req.headers())).ok_or(
        ApiError::UnsupportedMediaType(
            "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json",
        ),
    )?;
    let w = c.write_options(&req, false)?;
    let body = read_body(req).await?;
    let out = c
        .shared
        .store
        .patch_scale(&c.target, kind, &body, &w)
        .await?;
    Ok(json_response(StatusCode::OK, out))
}
