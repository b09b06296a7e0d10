//! `GET /containerLogs/<ns>/<pod>/<container>` with the kubelet's query parameters
//! (follow, tailLines, sinceSeconds, sinceTime, timestamps, previous, limitBytes), which
//! the apiserver's `pods/log` proxies to. Reached only once the request is authorized.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use tracing::debug;

use super::{text, Body};
use crate::logs::LogOptions;
use crate::runtime::Runtime;

fn query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), percent_decode(v))
        })
        .collect()
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Serves the request's path: a container's log, or 404.
pub async fn serve(runtime: &Arc<dyn Runtime>, req: Request<Incoming>) -> Response<Body> {
    let segs: Vec<String> = req
        .uri()
        .path()
        .split('/')
        .skip(1)
        .map(percent_decode)
        .collect();
    let [first, ns, pod, container] = segs.as_slice() else {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    };
    if first != "containerLogs" || req.method() != hyper::Method::GET {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    }
    let q = query(req.uri().query());
    let opts = match LogOptions::from_query(&q, jiff::Timestamp::now()) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let previous = q.get("previous").is_some_and(|v| v == "true" || v == "1");
    logs(runtime, ns, pod, container, previous, opts).await
}

async fn logs(
    runtime: &Arc<dyn Runtime>,
    ns: &str,
    pod: &str,
    container: &str,
    previous: bool,
    opts: LogOptions,
) -> Response<Body> {
    let pods = match runtime.pods().await {
        Ok(p) => p,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let Some(view) = pods.into_values().find(|v| {
        v.pod
            .as_ref()
            .is_some_and(|p| p.namespace == ns && p.name == pod)
    }) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod \"{pod}\" not found on this node"),
        );
    };
    let init = view.latest(container, false).is_none();
    let status = if previous {
        view.previous(container, init)
    } else {
        view.latest(container, init)
    };
    let Some(status) = status.cloned() else {
        let msg = if previous {
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
        } else {
            format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            )
        };
        return text(StatusCode::BAD_REQUEST, msg);
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let runtime = runtime.clone();
    tokio::spawn(async move {
        if let Err(e) = runtime.logs(&status, &opts, tx).await {
            debug!(error = %e, "streaming logs");
        }
    });
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
            .map(|b| Ok::<_, Infallible>(Frame::data(b)));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, ""))
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_decoding_never_splits_a_character() {
        assert_eq!(super::percent_decode("a%20b+c"), "a b c");
        assert_eq!(super::percent_decode("%é%"), "%é%");
        assert_eq!(super::percent_decode("%4"), "%4");
    }
}
