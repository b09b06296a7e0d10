//! get of an object or of its status (the same object), as JSON or as a Table.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{ok_json, table_of, Call};
use crate::error::ApiError;
use crate::http::{json_response, Body};
use crate::kinds::served_bytes;
use crate::table;

pub async fn get(c: &Call<'_>, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let table = table_of(req, c.query)?;
    let obj = c
        .shared
        .store
        .get(
            &c.target,
            c.query.get("resourceVersion").map(String::as_str),
        )
        .await?;
    // A CRD version's columns are its own, so they read the served object; a built-in
    // kind's printer reads the stored one.
    let custom = c.info().columns.is_some();
    let obj = if custom || table.is_none() {
        served_bytes(c.target.kind.as_ref(), obj)?
    } else {
        obj
    };
    if let Some(tr) = table {
        let v: serde_json::Value = serde_json::from_slice(&obj)
            .map_err(|e| ApiError::Internal(format!("stored object: {e}")))?;
        return Ok(ok_json(&table::of_object(&tr, c.info(), v, true)));
    }
    Ok(json_response(StatusCode::OK, obj))
}
