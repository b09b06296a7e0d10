//! The agent's HTTPS port (`--port`, 10250), guarded as the kubelet's is: `/healthz` is
//! open; every other request is authenticated, then authorized by the apiserver, then
//! served (`/containerLogs/...`, `logs.rs`, for the apiserver's `pods/log`; 404 else).
//!
//! - Authentication: a client certificate that verifies against `--client-ca-file` is the
//!   user its subject names (`tls.rs`); otherwise the bearer token, as the apiserver's
//!   TokenReview says (`auth.rs`: cached, and rate-limited for tokens it does not know).
//!   Neither: 401 `Unauthorized`; too many unknown tokens: 429.
//! - Authorization: the kubelet's attributes (verb from the method, `nodes`, subresource
//!   `proxy`, this node's name; `authz.rs`) in a SubjectAccessReview (cached): 403
//!   `Forbidden (user=..., verb=..., resource=nodes, subresource(s)=[proxy])` when not
//!   allowed, 500 when the apiserver cannot be asked.
//! - `reviews.rs`: the two questions asked of the apiserver; `cache.rs`: the bounded
//!   verdict caches. The serving certificate is `--tls-cert-file`, else self-signed.

pub mod auth;
pub mod authz;
pub mod cache;
pub mod logs;
pub mod reviews;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tracing::{debug, warn};

use crate::runtime::Runtime;
use auth::{Authn, TokenAuthenticator};
use reviews::{Reviewer, User};

pub type Body = BoxBody<Bytes, Infallible>;

pub fn text(code: StatusCode, msg: impl Into<String>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(msg.into())).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

/// The port's TLS material, from the flags.
#[derive(Debug, Clone, Default)]
pub struct TlsFlags {
    /// `--tls-cert-file` and `--tls-private-key-file`.
    pub serving: Option<(PathBuf, PathBuf)>,
    /// `--client-ca-file`.
    pub client_ca: Option<PathBuf>,
}

pub struct Server {
    runtime: Arc<dyn Runtime>,
    node: String,
    tokens: TokenAuthenticator,
    authorizer: authz::Authorizer,
}

impl Server {
    pub fn new(runtime: Arc<dyn Runtime>, node: String, reviewer: Arc<dyn Reviewer>) -> Arc<Self> {
        Arc::new(Server {
            runtime,
            node,
            tokens: TokenAuthenticator::new(reviewer.clone()),
            authorizer: authz::Authorizer::new(reviewer),
        })
    }

    /// Who made `req`: its connection's certificate user, else its bearer token's.
    async fn authenticate(
        &self,
        req: &Request<Incoming>,
        cert_user: Option<User>,
        now: Instant,
    ) -> Authn {
        if let Some(u) = cert_user {
            return Authn::User(u);
        }
        let header = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match auth::bearer(header) {
            Some(token) => self.tokens.authenticate(token, now).await,
            None => Authn::Unauthenticated,
        }
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        cert_user: Option<User>,
    ) -> Response<Body> {
        if req.uri().path() == "/healthz" {
            return text(StatusCode::OK, "ok");
        }
        let now = Instant::now();
        let user = match self.authenticate(&req, cert_user, now).await {
            Authn::User(u) => u,
            Authn::Unauthenticated => return text(StatusCode::UNAUTHORIZED, "Unauthorized"),
            Authn::Throttled => {
                let mut r = text(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many requests, please try again later.",
                );
                r.headers_mut().insert(
                    hyper::header::RETRY_AFTER,
                    hyper::header::HeaderValue::from_static("1"),
                );
                return r;
            }
        };
        let attrs = authz::attributes(req.method(), req.uri().path(), &self.node);
        match self.authorizer.authorize(&user, &attrs, now).await {
            Ok(true) => {}
            Ok(false) => {
                debug!(user = %user.name, verb = %attrs.verb, "forbidden");
                return text(StatusCode::FORBIDDEN, authz::forbidden(&user, &attrs));
            }
            Err(e) => {
                warn!(user = %user.name, error = %e, "authorizing a request");
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    authz::error(&user, &attrs),
                );
            }
        }
        logs::serve(&self.runtime, req).await
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
    let identity = match &flags.serving {
        Some((cert, key)) => tls::from_files(cert, key)?,
        None => tls::self_signed(hosts)?,
    };
    let client_ca = flags
        .client_ca
        .as_deref()
        .map(tls::ClientCa::load)
        .transpose()?
        .map(Arc::new);
    let acceptor =
        tokio_rustls::TlsAcceptor::from(tls::server_config(identity, client_ca.as_deref())?);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the agent port {addr}: {e}"))?;
    tracing::info!(%addr, client_ca = client_ca.is_some(), "serving the agent port");
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let server = server.clone();
        let client_ca = client_ca.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                debug!(%peer, "TLS handshake failed");
                return;
            };
            // A connection's certificate is judged once, for all its requests.
            let cert_user = match (&client_ca, tls.get_ref().1.peer_certificates()) {
                (Some(ca), Some(chain)) => ca.user(chain),
                _ => None,
            };
            let svc = hyper::service::service_fn(move |req| {
                let server = server.clone();
                let cert_user = cert_user.clone();
                async move { Ok::<_, Infallible>(server.handle(req, cert_user).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(tls), svc).await {
                debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}
