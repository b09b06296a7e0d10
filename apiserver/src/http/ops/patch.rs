//! patch of an object or of its status: JSON patch, merge patch, strategic merge patch
//! and server-side apply (the patch type from the Content-Type).

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{with_warnings, Call};
use crate::error::ApiError;
use crate::http::body::read_body;
use crate::http::request::{media_type, parse_bool};
use crate::http::{json_response, Body};
use crate::kinds::served_bytes;
use crate::patch::PatchType;

pub async fn patch(c: &Call<'_>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let Some(pt) = PatchType::from_media_type(&media_type(req.headers())) else {
        return Err(ApiError::UnsupportedMediaType(
            "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml",
        ));
    };
    if pt == PatchType::Strategic && !c.info().strategic_merge {
        return Err(ApiError::UnsupportedMediaType(
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        ));
    }
    let apply = pt == PatchType::Apply;
    let mut w = c.write_options(&req, apply)?;
    w.validation =
        crate::fieldcheck::Directive::parse(c.query.get("fieldValidation").map(String::as_str))
            .map_err(ApiError::BadRequest)?;
    let force = parse_bool(c.query, "force");
    let mut body = read_body(req).await?;
    if apply {
        body = crate::patch::apply_config_json(body)?;
    }
    let mut p = c
        .shared
        .store
        .patch(&c.target, pt, &body, c.req.sub(), &w, force)
        .await?;
    p.warnings.extend(w.warnings.take());
    let code = if p.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let obj = served_bytes(c.target.kind.as_ref(), p.object)?;
    Ok(with_warnings(json_response(code, obj), &p.warnings))
}
