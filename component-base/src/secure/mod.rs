//! Secure serving with delegated authentication and authorization, as the kubelet's port
//! and kube-scheduler's and kube-controller-manager's secure ports: TLS always, and every
//! request but the health checks authenticated and authorized by the apiserver.
//!
//! - `tls.rs`: the serving certificate (`--tls-cert-file`, else self-signed) and client
//!   certificates (`--client-ca-file`: CN is the user, O its groups).
//! - `authn.rs`: bearer tokens by TokenReview, cached, unknown tokens rate-limited (429).
//! - `authz.rs`: SubjectAccessReview, cached.
//! - `reviews.rs`: the two questions asked of the apiserver; `cache.rs`: the bounded
//!   verdict caches.
//!
//! A server binds a [`SecurePort`] and runs it with its [`Handler`], which asks its
//! [`Guard`] about each request with the attributes the request means to it (the agent:
//! a subresource of its Node; a metrics port: a path) and words the refusal as the
//! component it imitates does.

pub mod authn;
pub mod authz;
pub mod cache;
pub mod reviews;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
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

pub use authn::{Authn, TokenAuthenticator};
pub use reviews::{ApiReviewer, Attributes, ReviewError, Reviewer, User};

pub type Body = BoxBody<Bytes, Infallible>;

/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; past that a new connection is closed at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// A plain-text response.
pub fn text(code: StatusCode, msg: impl Into<String>) -> Response<Body> {
    respond(code, "text/plain; charset=utf-8", msg.into())
}

/// A response with `content_type`.
pub fn respond(code: StatusCode, content_type: &str, body: String) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

/// A secure port's TLS flags, with the kubelet's and kube-scheduler's names; flattened
/// into each component's flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServingFlags {
    /// The port's serving certificate (PEM, with its chain); without it one is
    /// self-signed at start.
    #[arg(long, requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert-file.
    #[arg(long, requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// CA certificates (PEM): a client certificate one of them signed authenticates on the
    /// port as its common name, in the groups its organizations name. Bearer tokens are
    /// checked with the apiserver (TokenReview) either way.
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
}

impl ServingFlags {
    pub fn tls(&self) -> TlsFlags {
        TlsFlags {
            serving: self
                .tls_cert_file
                .clone()
                .zip(self.tls_private_key_file.clone()),
            client_ca: self.client_ca_file.clone(),
        }
    }
}

/// The port's TLS material, from the flags.
#[derive(Debug, Clone, Default)]
pub struct TlsFlags {
    /// `--tls-cert-file` and `--tls-private-key-file`.
    pub serving: Option<(PathBuf, PathBuf)>,
    /// `--client-ca-file`.
    pub client_ca: Option<PathBuf>,
}

/// What authentication and authorization made of a request.
#[derive(Debug)]
pub enum Verdict {
    Allowed(User),
    /// No credentials, or none the apiserver accepts: 401.
    Unauthenticated,
    /// Unknown tokens arrive faster than they may be checked: 429.
    Throttled,
    /// Authenticated, not allowed: 403.
    Forbidden(User),
    /// The apiserver could not be asked: 500.
    Error(User, ReviewError),
}

/// Authentication (client certificate, else bearer token) and authorization, both
/// delegated to the apiserver.
pub struct Guard {
    tokens: TokenAuthenticator,
    authorizer: authz::Authorizer,
}

impl Guard {
    pub fn new(reviewer: Arc<dyn Reviewer>) -> Self {
        Guard {
            tokens: TokenAuthenticator::new(reviewer.clone()),
            authorizer: authz::Authorizer::new(reviewer),
        }
    }

    /// Who made `req`: its connection's certificate user, else its bearer token's.
    pub async fn authenticate(
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
        match authn::bearer(header) {
            Some(token) => self.tokens.authenticate(token, now).await,
            None => Authn::Unauthenticated,
        }
    }

    /// Authenticates `req`, then asks whether its user may do `attrs`.
    pub async fn check(
        &self,
        req: &Request<Incoming>,
        cert_user: Option<User>,
        attrs: &Attributes,
    ) -> Verdict {
        let now = Instant::now();
        let user = match self.authenticate(req, cert_user, now).await {
            Authn::User(u) => u,
            Authn::Unauthenticated => return Verdict::Unauthenticated,
            Authn::Throttled => return Verdict::Throttled,
        };
        match self.authorizer.authorize(&user, attrs, now).await {
            Ok(true) => Verdict::Allowed(user),
            Ok(false) => {
                debug!(user = %user.name, verb = attrs.verb(), "forbidden");
                Verdict::Forbidden(user)
            }
            Err(e) => {
                warn!(user = %user.name, error = %e, "authorizing a request");
                Verdict::Error(user, e)
            }
        }
    }
}

/// The 429 every delegating port answers when unknown tokens come too fast.
pub fn throttled() -> Response<Body> {
    let mut r = text(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests, please try again later.",
    );
    r.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("1"),
    );
    r
}

/// What serves the requests of a [`SecurePort`]: each with the user its connection's
/// client certificate names, if any.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        cert_user: Option<User>,
    ) -> impl Future<Output = Response<Body>> + Send;
}

/// A bound TLS port, not yet serving.
pub struct SecurePort {
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    client_ca: Option<Arc<tls::ClientCa>>,
}

impl SecurePort {
    /// Binds `addr` with the flags' certificate, else one self-signed for `hosts`.
    pub async fn bind(
        addr: SocketAddr,
        flags: &TlsFlags,
        hosts: Vec<String>,
    ) -> anyhow::Result<SecurePort> {
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
            .map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))?;
        Ok(SecurePort {
            listener,
            acceptor,
            client_ca,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the task is dropped: at most [`MAX_CONNECTIONS`] at once, each with
    /// [`HANDSHAKE_TIMEOUT`] for its handshake and [`HEADER_READ_TIMEOUT`] for each
    /// request's headers.
    pub async fn run<H: Handler>(self, handler: Arc<H>) {
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                debug!(%peer, "too many connections; closing");
                continue;
            };
            let acceptor = self.acceptor.clone();
            let handler = handler.clone();
            let client_ca = self.client_ca.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let Ok(Ok(tls)) =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
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
                    let handler = handler.clone();
                    let cert_user = cert_user.clone();
                    async move { Ok::<_, Infallible>(handler.handle(req, cert_user).await) }
                });
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT);
                if let Err(e) = builder
                    .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                    .await
                {
                    debug!(%peer, error = %e, "connection ended");
                }
            });
        }
    }
}
