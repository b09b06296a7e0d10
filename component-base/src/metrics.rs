//! Metrics in Prometheus' text format, and the small HTTP server that serves them with
//! `/healthz`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

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

/// A histogram with fixed buckets (seconds).
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<std::sync::atomic::AtomicU64>,
    sum_micros: std::sync::atomic::AtomicU64,
    count: std::sync::atomic::AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| Default::default()).collect(),
            sum_micros: Default::default(),
            count: Default::default(),
        }
    }
    pub fn observe(&self, secs: f64) {
        use std::sync::atomic::Ordering::Relaxed;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if secs <= *b {
                c.fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((secs * 1e6) as u64, Relaxed);
    }
    /// Writes `name` with `labels` (`k="v",...` or empty).
    pub fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        use std::fmt::Write;
        use std::sync::atomic::Ordering::Relaxed;
        let sep = if labels.is_empty() { "" } else { "," };
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}",
                c.load(Relaxed)
            );
        }
        let n = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {n}");
        let lb = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{lb} {}\n{name}_count{lb} {n}",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
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
