//! update (PUT) of an object or of its status.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{with_warnings, Call};
use crate::error::ApiError;
use crate::http::body::read_object;
use crate::http::options::field_validation;
use crate::http::{json_response, Body};
use crate::kinds::served_bytes;

pub async fn update(c: &Call<'_>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let w = c.write_options(&req, false)?;
    let body = read_object(req).await?;
    let mut warnings = field_validation(c.target.kind.as_ref(), c.query, &body)?;
    let obj = c
        .shared
        .store
        .update(&c.target, &body, c.req.sub(), &w)
        .await?;
    warnings.extend(w.warnings.take());
    let obj = served_bytes(c.target.kind.as_ref(), obj)?;
    Ok(with_warnings(json_response(StatusCode::OK, obj), &warnings))
}
