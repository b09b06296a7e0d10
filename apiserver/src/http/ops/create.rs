//! create (POST to a collection): the body checked against the node restriction and
//! `fieldValidation`, then the registry's create.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{with_warnings, Call};
use crate::error::ApiError;
use crate::http::body::read_object;
use crate::http::options::field_validation;
use crate::http::{json_response, Body};
use crate::kinds::served_bytes;

pub async fn create(c: &Call<'_>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let w = c.write_options(&req, false)?;
    let body = read_object(req).await?;
    if let Some((n, a)) = &c.node {
        let v = serde_json::from_slice(&body).unwrap_or_default();
        crate::authz::node::check_create(n, a, &v)?;
    }
    let mut warnings = field_validation(c.target.kind.as_ref(), c.query, &body)?;
    let obj = c.shared.store.create(&c.target, &body, &w).await?;
    warnings.extend(w.warnings.take());
    Ok(with_warnings(
        json_response(
            StatusCode::CREATED,
            served_bytes(c.target.kind.as_ref(), obj)?,
        ),
        &warnings,
    ))
}
