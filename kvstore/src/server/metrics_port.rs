//! `--listen-metrics-urls`: `/metrics` (Prometheus text, etcd's names; `crate::metrics`)
//! and `/health` (etcd's JSON: healthy while this member knows a leader), over HTTP/1.1
//! or HTTP/2, as etcd serves them there.
//!
//! Who may read: an https:// URL takes the client port's TLS and needs
//! `--client-cert-auth` (config refuses it otherwise), so only holders of a certificate
//! of the client CA get past the handshake; an http:// URL is refused unless the client
//! URLs are plain too (a member that serves its data without TLS guards nothing here).

use openraft::async_runtime::WatchReceiver;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio_stream::StreamExt;
use tracing::debug;

use super::listener;
use super::node::Node;
use crate::metrics::{self, RaftView};

/// etcd's answer to `/health`.
fn health(view: &RaftView) -> (StatusCode, String) {
    if view.has_leader {
        (
            StatusCode::OK,
            r#"{"health":"true","reason":""}"#.to_string(),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"health":"false","reason":"RAFT NO LEADER"}"#.to_string(),
        )
    }
}

fn view(node: &Node) -> RaftView {
    let m = node.raft.metrics();
    let m = m.borrow_watched();
    let election = node.config.election;
    RaftView {
        has_leader: m.current_leader.is_some() && !super::leadership::quorum_lost(&m, election),
        is_leader: super::leadership::leads(&m, election),
        applied: m.last_applied.map_or(0, |l| l.index),
        db_size: node.store.db_size(),
    }
}

fn answer(node: &Node, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let (code, ty, body) = match (req.method().as_str(), req.uri().path()) {
        ("GET", "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics::render(metrics::global(), view(node)),
        ),
        ("GET", "/health") => {
            let (c, b) = health(&view(node));
            (c, "application/json", b)
        }
        ("GET", _) => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "404 page not found\n".into(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "Method Not Allowed\n".into(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ty) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// The client TLS configuration with HTTP/1.1 offered beside HTTP/2 (scrapers speak
/// either).
pub fn tls_for_metrics(
    client: &Option<Arc<rustls::ServerConfig>>,
) -> Option<Arc<rustls::ServerConfig>> {
    client.as_ref().map(|c| {
        let mut c = (**c).clone();
        c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(c)
    })
}

/// Serves one listener until `stop`.
pub async fn serve(
    l: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    node: Arc<Node>,
    mut stop: signal::Receiver<bool>,
) {
    let mut incoming = listener::incoming(l, tls);
    loop {
        let conn = tokio::select! {
            c = incoming.next() => match c {
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    debug!(error = %e, "metrics connection");
                    continue;
                }
                None => return,
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let node = node.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let r = answer(&node, &req);
                async move { Ok::<_, Infallible>(r) }
            });
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection(hyper_util::rt::TokioIo::new(conn), svc)
                .await
            {
                debug!(error = %e, "metrics connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_etcds() {
        let (c, b) = health(&RaftView::default());
        assert_eq!(c, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(b, r#"{"health":"false","reason":"RAFT NO LEADER"}"#);
        let (c, _) = health(&RaftView {
            has_leader: true,
            ..Default::default()
        });
        assert_eq!(c, StatusCode::OK);
    }
}
