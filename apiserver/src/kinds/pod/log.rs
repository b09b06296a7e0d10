//! `GET .../pods/<name>/log`: checks the pod and container as kube-apiserver does, then
//! streams the answer of the pod's node agent (`/containerLogs/...`, dialled as
//! `agent.rs` says) back to the client.

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use futures::StreamExt;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use super::agent;
use crate::error::ApiError;
use crate::http::ops::Call;
use crate::http::{full, Body, Shared};
use crate::store::Target;

/// The query parameters passed on to the agent.
const PASSED: &[&str] = &[
    "follow",
    "previous",
    "sinceSeconds",
    "sinceTime",
    "timestamps",
    "tailLines",
    "limitBytes",
];

/// The subresource's operation.
pub(super) fn action<'a>(
    c: &'a Call<'_>,
    _req: http::Request<hyper::body::Incoming>,
) -> futures::future::BoxFuture<'a, Result<Response<Body>, ApiError>> {
    Box::pin(proxy(c.shared, &c.target, c.query))
}

pub async fn proxy(
    shared: &Shared,
    t: &Target,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let pod = agent::read_pod(shared, t).await?;
    let name = t.name().to_string();
    let container = agent::container_name(&pod, &name, q.get("container").map(String::as_str))?;
    let node = agent::node_of(&pod, &name)?;
    let mut query: Vec<String> = Vec::new();
    for k in PASSED {
        if let Some(v) = q.get(*k) {
            query.push(format!("{k}={}", crate::http::route::percent_encode(v)));
        }
    }
    let ns = t.namespace.clone().unwrap_or_default();
    let path = format!(
        "/containerLogs/{ns}/{name}/{container}{}{}",
        if query.is_empty() { "" } else { "?" },
        query.join("&")
    );
    let mut conn = agent::connect(shared, &node).await?;
    let req = http::Request::builder()
        .method("GET")
        .uri(&path)
        .header("host", &conn.authority)
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let resp = conn.sender.send_request(req).await.map_err(|e| {
        ApiError::Internal(format!("Get \"https://{}{path}\": {e}", conn.authority))
    })?;
    if !resp.status().is_success() {
        return Err(agent::refusal(resp, &name).await);
    }
    let stream = http_body_util::BodyStream::new(resp.into_body())
        .take_while(|f| futures::future::ready(f.is_ok()))
        .filter_map(|f| async move { f.ok().and_then(|f| f.into_data().ok()) })
        .map(|b| Ok::<_, Infallible>(Frame::data(b)));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_else(|_| Response::new(full(Bytes::new()))))
}
