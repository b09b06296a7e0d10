//! Serving a watch: the store's lines as a streamed body until the client's
//! `timeoutSeconds` (or a random 30-60 minutes) runs out, as tables when asked, counted in
//! `/metrics` while open.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use super::request::parse_bool;
use super::{full, Body, Shared};
use crate::error::ApiError;
use crate::kinds::ResourceInfo;
use crate::store::watch::WatchOptions;
use crate::store::{ListOptions, Target};
use crate::table;

/// Counts an open watch while it lives.
struct WatchOpen(Arc<crate::metrics::Metrics>);

impl WatchOpen {
    fn new(m: Arc<crate::metrics::Metrics>) -> Self {
        m.watches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        WatchOpen(m)
    }
}

impl Drop for WatchOpen {
    fn drop(&mut self) {
        self.0
            .watches
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One watch event with its object as a one-row table (the first with the columns).
/// Status objects (ERROR events) and bookmarks pass unchanged.
fn table_event(
    tr: &table::TableRequest,
    info: &ResourceInfo,
    frame: Bytes,
    headers: &mut bool,
) -> Bytes {
    let Ok(mut ev) = serde_json::from_slice::<serde_json::Value>(&frame) else {
        return frame;
    };
    let ty = ev.get("type").and_then(|t| t.as_str()).unwrap_or("");
    if matches!(ty, "ERROR" | "BOOKMARK") {
        return frame;
    }
    let Some(obj) = ev.get_mut("object").map(serde_json::Value::take) else {
        return frame;
    };
    ev["object"] = table::of_object(tr, info, obj, *headers);
    *headers = false;
    let mut out = serde_json::to_vec(&ev).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

/// One watch event with its object as `kind` serves it (for a version served by
/// conversion); ERROR and BOOKMARK events pass unchanged.
fn served_event(kind: &dyn crate::kinds::Strategy, frame: Bytes) -> Bytes {
    let Ok(mut ev) = serde_json::from_slice::<serde_json::Value>(&frame) else {
        return frame;
    };
    if matches!(ev["type"].as_str(), Some("ERROR" | "BOOKMARK") | None) {
        return frame;
    }
    let Some(obj) = ev.get_mut("object").map(serde_json::Value::take) else {
        return frame;
    };
    match kind.to_served(obj) {
        Ok(o) => ev["object"] = o,
        Err(e) => {
            tracing::warn!(error = %e, "watch event not converted");
            return frame;
        }
    }
    let mut out = serde_json::to_vec(&ev).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

pub async fn watch(
    shared: &Shared,
    t: &Target,
    list: ListOptions,
    q: &HashMap<String, String>,
    table: Option<table::TableRequest>,
) -> Result<Response<Body>, ApiError> {
    let timeout = match q.get("timeoutSeconds").filter(|s| !s.is_empty()) {
        Some(s) => Duration::from_secs(
            s.parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid timeoutSeconds: {s:?}")))?,
        ),
        // As kube-apiserver: between 30 and 60 minutes, so reconnects spread out.
        None => Duration::from_secs(1800 + rand::random::<u64>() % 1800),
    };
    let bookmarks = parse_bool(q, "allowWatchBookmarks");
    let rx = shared
        .store
        .watch(t, WatchOptions { list, bookmarks })
        .await?;
    let deadline = tokio::time::Instant::now() + timeout;
    let info = t.kind.info().clone();
    let kind = t.kind.clone();
    let open = WatchOpen::new(shared.metrics.clone());
    let mut headers = true;
    let stream = futures::stream::unfold(rx, move |mut rx| async move {
        tokio::select! {
            item = rx.recv() => item.map(|b| (b, rx)),
            _ = tokio::time::sleep_until(deadline) => None,
        }
    })
    .map(move |b| {
        let _open = &open;
        let b = match &table {
            Some(tr) => table_event(tr, &info, b, &mut headers),
            None if kind.needs_conversion() => served_event(kind.as_ref(), b),
            None => b,
        };
        Ok::<_, std::convert::Infallible>(Frame::data(b))
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CACHE_CONTROL, "no-cache, private")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_else(|_| Response::new(full(Bytes::new()))))
}
