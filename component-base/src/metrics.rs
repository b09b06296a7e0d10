//! Metrics in Prometheus' text format, and the component's secure port that serves them
//! with `/healthz` (TLS; `/metrics` authenticated and authorized by the apiserver).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use crate::secure::{self, Attributes, Body, Guard, Handler, SecurePort, Verdict};

/// Something that writes its metrics in the text exposition format.
pub trait Collect: Send + Sync {
    fn render(&self, out: &mut String);
}

/// A component's own health: `Err` says why it is not healthy (503 with that text).
pub type Health = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

#[derive(Default, Clone)]
pub struct Registry {
    collectors: Vec<Arc<dyn Collect>>,
    health: Option<Health>,
}

impl Registry {
    pub fn register(&mut self, c: Arc<dyn Collect>) {
        self.collectors.push(c);
    }
    /// What `/healthz`, `/livez` and `/readyz` answer (always ok without it).
    pub fn set_health(&mut self, h: Health) {
        self.health = Some(h);
    }
    /// Every collector's metrics, then the process's own (as Prometheus' client libraries
    /// export them by default).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.collectors {
            c.render(&mut out);
        }
        render_process(&mut out);
        out
    }
    pub fn check(&self) -> Result<(), String> {
        self.health.as_ref().map_or(Ok(()), |h| h())
    }
}

/// Writes `process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_start_time_seconds` and `process_open_fds` of this process (nothing where
/// `/proc` cannot be read).
pub fn render_process(out: &mut String) {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    if let Some(s) = flotilla_core::process::sample(
        &read("/proc/self/stat"),
        &read("/proc/self/status"),
        &read("/proc/stat"),
        fds,
    ) {
        flotilla_core::process::render(out, &s);
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
        self.render_body(out, name, labels);
    }
    /// Writes the series of `name` with `labels`, without the HELP and TYPE lines (one
    /// series among several of a family).
    pub fn render_body(&self, out: &mut String, name: &str, labels: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .render(out, name, labels);
    }
}

/// Where and how a component's secure port serves (kube-scheduler's `--bind-address`,
/// `--secure-port`, `--tls-cert-file`, `--tls-private-key-file`, `--client-ca-file`).
#[derive(Debug, Clone)]
pub struct SecureServing {
    pub addr: SocketAddr,
    pub tls: secure::TlsFlags,
}

/// Serves `/metrics` (for those the apiserver allows `get` on that path: RBAC's
/// `nonResourceURLs`) and `/healthz`, `/livez`, `/readyz` (for anyone, kube's
/// `--authorization-always-allow-paths`; the registry's health decides them) over TLS on `serving.addr` until the process
/// ends; returns the bound address (port 0 picks one). `client` asks the reviews.
pub async fn serve(
    serving: &SecureServing,
    registry: Registry,
    client: kube::Client,
) -> anyhow::Result<SocketAddr> {
    let hosts = vec!["localhost".to_string(), serving.addr.ip().to_string()];
    let port = SecurePort::bind(serving.addr, &serving.tls, hosts).await?;
    let bound = port.local_addr()?;
    let guard = Guard::new(Arc::new(secure::ApiReviewer { client }));
    let handler = Arc::new(MetricsPort { registry, guard });
    tokio::spawn(port.run(handler));
    tracing::info!(%bound, "serving /metrics and /healthz over TLS");
    Ok(bound)
}

struct MetricsPort {
    registry: Registry,
    guard: Guard,
}

/// kube's metav1.Status for an error, as the generic apiserver's delegated filters write it.
fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    secure::respond(code, "application/json", body.to_string())
}

impl Handler for MetricsPort {
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        cert_user: Option<secure::User>,
    ) -> Response<Body> {
        let path = req.uri().path().to_string();
        if matches!(path.as_str(), "/healthz" | "/livez" | "/readyz") {
            return match self.registry.check() {
                Ok(()) => secure::text(StatusCode::OK, "ok"),
                Err(why) => secure::text(StatusCode::SERVICE_UNAVAILABLE, why),
            };
        }
        let verb = match *req.method() {
            Method::GET | Method::HEAD => "get",
            Method::POST => "post",
            Method::PUT => "put",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "",
        };
        let attrs = Attributes::NonResource {
            verb: verb.to_string(),
            path: path.clone(),
        };
        match self.guard.check(&req, cert_user, &attrs).await {
            Verdict::Allowed(_) => {}
            Verdict::Unauthenticated => {
                return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
            }
            Verdict::Throttled => return secure::throttled(),
            Verdict::Forbidden(u) => {
                return status(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    &format!(
                        "forbidden: User \"{}\" cannot {verb} path \"{path}\"",
                        u.name
                    ),
                )
            }
            Verdict::Error(_, e) => {
                return status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    &format!("Internal error occurred: {e}"),
                )
            }
        }
        match path.as_str() {
            "/metrics" => secure::respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.registry.render(),
            ),
            _ => secure::text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}
