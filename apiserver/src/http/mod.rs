//! The HTTPS server: TLS (HTTP/2 and HTTP/1.1) and the request span. A request is parsed
//! once (`request.rs`, over `route.rs`), authenticated, authorized and limited
//! (`handlers.rs`), and runs one operation (`ops/`, one file each) with its options
//! (`options.rs`) and body (`body.rs`).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::error::{status_body, ApiError};
use crate::kinds::Kinds;
use crate::store::Store;

pub mod body;
mod handlers;
mod health;
pub mod limits;
pub mod ops;
pub mod options;
pub mod request;
pub mod route;
mod watch;

pub use crate::response::{full, Body};

/// What every request handler shares.
pub struct Shared {
    pub store: Arc<Store>,
    /// The etcd client under the store's storage: its health and request latencies.
    pub etcd: Arc<crate::etcd::Etcd>,
    pub openapi: crate::openapi::OpenApi,
    pub authorizer: crate::authz::Authorizer,
    pub inflight: limits::Inflight,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub kinds: Kinds,
    pub auth: crate::auth::Authenticator,
    /// `--request-timeout`: how long a request that is not long-running may take.
    pub request_timeout: std::time::Duration,
    /// host:port clients reach this server at (for `/api`).
    pub advertise: String,
    /// How the nodes' agents are dialled (`pods/log`).
    pub kubelet: std::sync::Arc<crate::kubelet::KubeletClient>,
}

pub fn json_response(code: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = json_response(code, status_body(&e.to_status()));
    // Only throttling asks clients to come back: client-go and kube-rs retry a 503 with
    // Retry-After many times, which turns a lost quorum into minutes of silence for them.
    if matches!(e, ApiError::TooManyRequests(_)) {
        r.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
    }
    r
}

/// The request's id, as kube-apiserver's `Audit-ID`: the client's own when it sent a
/// sensible one, otherwise a fresh UUID. Every log line of the request carries it, and
/// the response names it, so a client's error can be found in the logs.
fn audit_id(req: &Request<Incoming>) -> String {
    req.headers()
        .get("audit-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map(String::from)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

async fn serve_request(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let id = audit_id(&req);
    let span = tracing::info_span!(
        "request",
        audit_id = %id,
        %method,
        path = %path,
        user = tracing::field::Empty,
        code = tracing::field::Empty
    );
    async move {
        let started = std::time::Instant::now();
        let mut resp = handlers::handle(shared, req).await;
        tracing::Span::current().record("code", resp.status().as_u16());
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "done");
        if let Ok(v) = http::HeaderValue::from_str(&id) {
            resp.headers_mut().insert("audit-id", v);
        }
        resp
    }
    .instrument(span)
    .await
}

/// Connections served at once; one more is closed as soon as it is accepted.
pub const MAX_CONNECTIONS: usize = 10_000;
/// How long a client has for its TLS handshake, and for each request's headers on
/// HTTP/1.1 (slowloris).
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// HTTP/2 pings find connections whose peer is gone.
const H2_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(30);

/// Accepts connections until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = MAX_CONNECTIONS, "too many connections; closing");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(serve_request(shared, req).await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            builder
                .http2()
                .timer(hyper_util::rt::TokioTimer::new())
                .keep_alive_interval(H2_KEEPALIVE)
                .keep_alive_timeout(H2_KEEPALIVE);
            if let Err(e) = builder.serve_connection(TokioIo::new(tls), svc).await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}
