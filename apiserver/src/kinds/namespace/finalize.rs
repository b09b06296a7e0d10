//! `namespaces/<name>/finalize`: the write that sets a namespace's `spec.finalizers`, with
//! which the namespace controller lets a terminating namespace go once it is empty.

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use crate::error::ApiError;
use crate::http::body::read_object;
use crate::http::ops::Call;
use crate::http::{json_response, Body};
use crate::store::{finished, reconcile_meta, strip_rv, Outcome, Store, Target};

/// The subresource's operation: the Namespace in, the stored Namespace out.
pub(super) fn action<'a>(
    c: &'a Call<'_>,
    req: Request<Incoming>,
) -> BoxFuture<'a, Result<Response<Body>, ApiError>> {
    Box::pin(async move {
        let body = read_object(req).await?;
        Ok(json_response(
            StatusCode::OK,
            finalize(&c.shared.store, &c.target, &body).await?,
        ))
    })
}

/// Sets spec.finalizers; a terminating namespace with none left is deleted.
async fn finalize(store: &Store, t: &Target, body: &[u8]) -> Result<Bytes, ApiError> {
    let mut new = t.kind.decode(body)?;
    reconcile_meta(&mut new, t, true)?;
    let out = store
        .guarded_update(t, None, false, |old| {
            let mut r = old.value.clone();
            if !r["spec"].is_object() {
                r["spec"] = Value::Object(Default::default());
            }
            r["spec"]["finalizers"] = new["spec"]["finalizers"].clone();
            if strip_rv(&r) == strip_rv(&old.value) {
                return Ok(Outcome::Unchanged);
            }
            if finished(&r) {
                return Ok(Outcome::Delete(r));
            }
            Ok(Outcome::Put(r))
        })
        .await?;
    Ok(Bytes::from(serde_json::to_vec(&out).unwrap_or_default()))
}
