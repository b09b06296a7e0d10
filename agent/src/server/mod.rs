//! The agent's HTTPS port (`--port`, 10250), guarded as the kubelet's is: `/healthz` is
//! open; every other request is authenticated, then authorized by the apiserver, then
//! served (`/containerLogs/...`, `logs.rs`, for the apiserver's `pods/log`; 404 else).
//!
//! - Authentication: a client certificate that verifies against `--client-ca-file` is the
//!   user its subject names; otherwise the bearer token, as the apiserver's TokenReview
//!   says (cached, and rate-limited for tokens it does not know). Neither: 401
//!   `Unauthorized`; too many unknown tokens: 429.
//! - Served: `/containerLogs/...` (`logs.rs`), `/exec/...` (`exec.rs`) and
//!   `/portForward/...` (`portforward.rs`), the last two as WebSocket upgrades
//!   (`websocket.rs`); `/metrics`, `/metrics/resource`, `/metrics/cadvisor` and
//!   `/stats/summary` (`crate::stats`).
//! - Authorization: the kubelet's attributes (verb from the method, `nodes`, subresource
//!   `proxy`, this node's name; `authz.rs`) in a SubjectAccessReview (cached): 403
//!   `Forbidden (user=..., verb=..., resource=nodes, subresource(s)=[proxy])` when not
//!   allowed, 500 when the apiserver cannot be asked.
//! - The port, its TLS, the reviews and their caches are `component_base::secure`'s,
//!   shared with the scheduler's and controller-manager's secure ports. The serving
//!   certificate is `--tls-cert-file`, else self-signed.

pub mod authz;
pub mod exec;
pub mod logs;
pub mod portforward;
pub mod spdy;
pub mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;

use component_base::secure::{self, respond, Guard, Handler, Reviewer, SecurePort, User, Verdict};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::machine::Machine;
use crate::runtime::Runtime;
use crate::stats::kubelet::KubeletMetrics;
use crate::stats::Collector;

pub use component_base::secure::{text, Body, TlsFlags};

pub struct Server {
    runtime: Arc<dyn Runtime>,
    node: String,
    guard: Guard,
    stats: Arc<Collector>,
    kubelet: Arc<KubeletMetrics>,
    machine: Machine,
}

impl Server {
    pub fn new(
        runtime: Arc<dyn Runtime>,
        node: String,
        reviewer: Arc<dyn Reviewer>,
        stats: Arc<Collector>,
        kubelet: Arc<KubeletMetrics>,
        machine: Machine,
    ) -> Arc<Self> {
        Arc::new(Server {
            runtime,
            node,
            guard: Guard::new(reviewer),
            stats,
            kubelet,
            machine,
        })
    }
}

impl Handler for Server {
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        cert_user: Option<User>,
    ) -> Response<Body> {
        if req.uri().path() == "/healthz" {
            return text(StatusCode::OK, "ok");
        }
        let attrs = authz::attributes(req.method(), req.uri().path(), &self.node);
        match self.guard.check(&req, cert_user, &attrs).await {
            Verdict::Allowed(_) => self.route(req).await,
            Verdict::Unauthenticated => text(StatusCode::UNAUTHORIZED, "Unauthorized"),
            Verdict::Throttled => secure::throttled(),
            Verdict::Forbidden(user) => {
                text(StatusCode::FORBIDDEN, authz::forbidden(&user, &attrs))
            }
            Verdict::Error(user, _) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                authz::error(&user, &attrs),
            ),
        }
    }
}

impl Server {
    /// The authorized request's answer, by its first path segment.
    async fn route(&self, req: Request<Incoming>) -> Response<Body> {
        let segs: Vec<String> = req
            .uri()
            .path()
            .split('/')
            .skip(1)
            .map(logs::percent_decode)
            .collect();
        if req.method() == hyper::Method::GET {
            const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4";
            match req.uri().path() {
                "/metrics" => {
                    let text = self.kubelet.render(&self.node, &self.stats.snapshot());
                    return respond(StatusCode::OK, PROMETHEUS_TEXT, text);
                }
                "/metrics/resource" => {
                    let text = crate::stats::resource::render(&self.stats.snapshot());
                    return respond(StatusCode::OK, PROMETHEUS_TEXT, text);
                }
                "/metrics/cadvisor" => {
                    let snap = self.stats.snapshot();
                    let text = crate::stats::cadvisor::render(&snap, &self.machine);
                    return respond(StatusCode::OK, PROMETHEUS_TEXT, text);
                }
                "/stats/summary" => {
                    let v = crate::stats::summary::render(&self.node, &self.stats.snapshot());
                    return respond(StatusCode::OK, "application/json", v.to_string());
                }
                _ => {}
            }
        }
        match segs.split_first() {
            Some((first, rest)) if first == "exec" => exec::serve(&self.runtime, req, rest).await,
            Some((first, rest)) if first == "portForward" => {
                portforward::serve(&self.runtime, req, rest).await
            }
            _ => logs::serve(&self.runtime, req).await,
        }
    }
}

/// Serves on `addr` until the task is dropped. `hosts` name a self-signed certificate
/// when no `--tls-cert-file` is given.
pub async fn serve(
    server: Arc<Server>,
    addr: SocketAddr,
    flags: TlsFlags,
    hosts: Vec<String>,
) -> anyhow::Result<()> {
    let port = SecurePort::bind(addr, &flags, hosts)
        .await
        .map_err(|e| anyhow::anyhow!("the agent port: {e:#}"))?;
    tracing::info!(%addr, client_ca = flags.client_ca.is_some(), "serving the agent port");
    port.run(server).await;
    Ok(())
}
