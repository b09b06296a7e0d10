//! Metrics in Prometheus' text format, and the small HTTP server that serves them with
//! `/healthz`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};

/// Something that writes its metrics in the text exposition format.
pub trait Collect: Send + Sync {
    fn render(&self, out: &mut String);
}

#[derive(Default, Clone)]
pub struct Registry(Vec<Arc<dyn Collect>>);

impl Registry {
    pub fn register(&mut self, c: Arc<dyn Collect>) {
        self.0.push(c);
    }
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.0 {
            c.render(&mut out);
        }
        out
    }
}

/// A histogram with fixed buckets (seconds) that any thread may observe into: a
/// [`flotilla_core::histogram::Histogram`] behind a lock.
pub struct Histogram(Mutex<flotilla_core::histogram::Histogram>);

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self(Mutex::new(flotilla_core::histogram::Histogram::new(bounds)))
    }
    pub fn observe(&self, secs: f64) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(secs);
    }
    /// Writes `name` with `labels` (`k="v",...` or empty).
    pub fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        flotilla_core::histogram::Histogram::render_header(out, name, help);
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .render(out, name, labels);
    }
}

/// Serves `/metrics` and `/healthz` on `addr` until the process ends; returns the bound
/// address (port 0 picks one).
pub async fn serve(addr: SocketAddr, registry: Registry) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let registry = Arc::new(registry);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let registry = registry.clone();
                    async move { Ok::<_, Infallible>(respond(req.uri().path(), &registry)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    tracing::info!(%bound, "serving /metrics and /healthz");
    Ok(bound)
}

fn respond(path: &str, registry: &Registry) -> Response<Full<Bytes>> {
    let (code, ctype, body) = match path {
        "/metrics" => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            registry.render(),
        ),
        "/healthz" | "/livez" | "/readyz" => (200, "text/plain", "ok".to_string()),
        _ => (404, "text/plain", "not found\n".to_string()),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::OK);
    if let Ok(v) = http::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}
