//! The HTTPS server: TLS (HTTP/2 and HTTP/1.1), the connection limits
//! (`limits::ConnectionLimits`), the request span and its audit record (`crate::audit`).
//! A request is parsed once (`request.rs`, over `route.rs`), authenticated, authorized
//! and limited (`handlers.rs`), and runs one operation (`ops/`, one file each) with its
//! options (`options.rs`) and body (`body.rs`). `resource_metrics/`: metrics.k8s.io from
//! the agents' summaries.

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
pub mod resource_metrics;
pub mod route;
mod watch;

pub use crate::response::{full, Body};

/// What every request handler shares.
pub struct Shared {
    pub store: Arc<Store>,
    /// The admission webhooks configured (from the watch cache).
    pub webhooks: Arc<crate::webhook::Webhooks>,
    /// The aggregated APIs (APIServices with a service, from the watch cache).
    pub aggregator: Arc<crate::aggregator::Aggregator>,
    /// The etcd client under the store's storage: its health and request latencies.
    pub etcd: Arc<crate::etcd::Etcd>,
    pub openapi: crate::openapi::Live,
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
    /// `--audit-policy-file` and `--audit-log-path`, when both are given.
    pub audit: Option<Arc<crate::audit::Auditor>>,
    /// The last round of the nodes' usage (metrics.k8s.io).
    pub resource_metrics: crate::http::resource_metrics::scrape::Scraper,
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
    let retry_after = match e {
        ApiError::TooManyRequests(_) => Some(1),
        // As kube: only a refusal that names a delay asks the client to retry by itself.
        ApiError::TooManyRequestsBecause {
            retry_after_seconds,
            ..
        } => Some(*retry_after_seconds).filter(|s| *s > 0),
        _ => None,
    };
    if let Some(s) = retry_after {
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(s));
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

async fn serve_request(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
    peer: Option<std::net::SocketAddr>,
) -> Response<Body> {
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
        // The audit record travels with the request (`handlers.rs` and `body.rs` report
        // to it) and sees the answer before it leaves.
        let recorder = shared
            .audit
            .as_ref()
            .map(|a| crate::audit::Recorder::new(a.clone(), &id, req.uri(), req.headers(), peer));
        let mut resp = match &recorder {
            None => handlers::handle(shared, req).await,
            Some(r) => {
                req.extensions_mut().insert(r.clone());
                let handled = std::panic::AssertUnwindSafe(handlers::handle(shared, req));
                match futures::FutureExt::catch_unwind(handled).await {
                    Ok(resp) => r.respond(resp).await,
                    Err(panic) => {
                        let msg = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        r.panicked(&msg).await;
                        std::panic::resume_unwind(panic)
                    }
                }
            }
        };
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

/// HTTP/2 pings find connections whose peer is gone.
const H2_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(30);

/// Accepts connections until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    limits: limits::ConnectionLimits,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    serve_with(listener, tls, limits, shutdown, move |req, peer| {
        serve_request(shared.clone(), req, peer)
    })
    .await
}

/// The accept loop under [`serve`], with any request handler (the server's tests run
/// it with a trivial one). Each connection holds one of `max_connections` slots; beyond
/// them a connection is closed at once. A connection must complete its TLS handshake
/// within `handshake_timeout` and send its first request's headers within
/// `header_read_timeout` (HTTP/2 too: until then the server only waits, so a client that
/// never speaks would hold its slot for ever); HTTP/1.1 requests after the first have
/// `header_read_timeout` each from hyper, HTTP/2 connections are pinged.
pub async fn serve_with<H, F>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: limits::ConnectionLimits,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    handler: H,
) where
    H: Fn(Request<Incoming>, Option<std::net::SocketAddr>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
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
            tracing::warn!(%peer, max = limits.max_connections, "too many connections; closing");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let handler = handler.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let tls =
                match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let first = Arc::new(tokio::sync::Notify::new());
            let seen = first.clone();
            let svc = hyper::service::service_fn(move |req| {
                seen.notify_one();
                let served = handler(req, Some(peer));
                async move { Ok::<_, Infallible>(served.await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            builder
                .http2()
                .timer(hyper_util::rt::TokioTimer::new())
                .keep_alive_interval(H2_KEEPALIVE)
                .keep_alive_timeout(H2_KEEPALIVE);
            let mut conn =
                std::pin::pin!(builder.serve_connection_with_upgrades(TokioIo::new(tls), svc));
            // hyper's header timeout starts only once it knows the protocol, which takes
            // the client's first bytes: the first request is timed here.
            let first_request = async {
                tokio::select! {
                    r = conn.as_mut() => Err(r),
                    _ = first.notified() => Ok(()),
                }
            };
            let outcome = tokio::time::timeout(limits.header_read_timeout, first_request).await;
            let ended = match outcome {
                Err(_) => {
                    tracing::debug!(%peer, "no request headers in time; closing");
                    return;
                }
                Ok(Err(ended)) => ended,
                Ok(Ok(())) => conn.await,
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}

#[cfg(test)]
mod server_tests;
