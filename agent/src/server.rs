//! The agent's HTTPS endpoint on `--port` (10250): `GET /containerLogs/<ns>/<pod>/<container>`
//! with the kubelet's query parameters (follow, tailLines, sinceSeconds, sinceTime,
//! timestamps, previous, limitBytes), which the apiserver's `pods/log` proxies to.
//!
//! Every request needs a bearer token, checked by asking the apiserver to serve a request
//! made with it (a verdict is kept a minute), so only the cluster's own identities read
//! logs. The serving certificate is self-signed at start, as a kubelet's is without a
//! configured one; the apiserver does not verify it (kube-apiserver's default too).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::logs::LogOptions;
use crate::runtime::Runtime;

type Body = BoxBody<Bytes, Infallible>;

pub struct LogServer {
    pub runtime: Arc<dyn Runtime>,
    pub kubeconfig: PathBuf,
    /// Tokens the apiserver accepted or refused, and when that was learned.
    verdicts: Mutex<HashMap<String, (bool, Instant)>>,
}

fn text(code: StatusCode, msg: impl Into<String>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(msg.into())).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

fn query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl LogServer {
    pub fn new(runtime: Arc<dyn Runtime>, kubeconfig: PathBuf) -> Arc<Self> {
        Arc::new(LogServer {
            runtime,
            kubeconfig,
            verdicts: Mutex::new(HashMap::new()),
        })
    }

    /// Whether the apiserver accepts `token` (asked at most once a minute per token).
    async fn authenticated(&self, token: &str) -> bool {
        const KEEP: Duration = Duration::from_secs(60);
        if let Some((ok, at)) = self
            .verdicts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
        {
            if at.elapsed() < KEEP {
                return *ok;
            }
        }
        let ok = match self.ask(token).await {
            Ok(ok) => ok,
            Err(e) => {
                warn!(error = %e, "checking a token with the apiserver");
                return false;
            }
        };
        let mut v = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        v.retain(|_, (_, at)| at.elapsed() < KEEP);
        v.insert(token.to_string(), (ok, Instant::now()));
        ok
    }

    async fn ask(&self, token: &str) -> anyhow::Result<bool> {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let mut cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?;
        cfg.auth_info = kube::config::AuthInfo {
            token: Some(token.to_string().into()),
            ..Default::default()
        };
        let client = kube::Client::try_from(cfg)?;
        match client.list_core_api_versions().await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 401 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        if path == "/healthz" {
            return text(StatusCode::OK, "ok");
        }
        let token = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        match token {
            Some(t) if self.authenticated(&t).await => {}
            _ => return text(StatusCode::UNAUTHORIZED, "Unauthorized"),
        }
        let segs: Vec<String> = path.split('/').skip(1).map(percent_decode).collect();
        let [first, ns, pod, container] = segs.as_slice() else {
            return text(StatusCode::NOT_FOUND, "404 page not found");
        };
        if first != "containerLogs" || req.method() != hyper::Method::GET {
            return text(StatusCode::NOT_FOUND, "404 page not found");
        }
        let q = query(req.uri().query());
        let opts = match LogOptions::from_query(&q, jiff::Timestamp::now()) {
            Ok(o) => o,
            Err(e) => return text(StatusCode::BAD_REQUEST, e),
        };
        let previous = q.get("previous").is_some_and(|v| v == "true" || v == "1");
        self.logs(ns, pod, container, previous, opts).await
    }

    async fn logs(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        previous: bool,
        opts: LogOptions,
    ) -> Response<Body> {
        let pods = match self.runtime.pods().await {
            Ok(p) => p,
            Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
        let Some(view) = pods.into_values().find(|v| {
            v.pod
                .as_ref()
                .is_some_and(|p| p.namespace == ns && p.name == pod)
        }) else {
            return text(
                StatusCode::NOT_FOUND,
                format!("pod \"{pod}\" not found on this node"),
            );
        };
        let init = view.latest(container, false).is_none();
        let status = if previous {
            view.previous(container, init)
        } else {
            view.latest(container, init)
        };
        let Some(status) = status.cloned() else {
            let msg = if previous {
                format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
            } else {
                format!("container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating")
            };
            return text(StatusCode::BAD_REQUEST, msg);
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        let runtime = self.runtime.clone();
        tokio::spawn(async move {
            if let Err(e) = runtime.logs(&status, &opts, tx).await {
                debug!(error = %e, "streaming logs");
            }
        });
        let stream = tokio_stream_from(rx).map(|b| Ok::<_, Infallible>(Frame::data(b)));
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/plain")
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_decoding_never_splits_a_character() {
        assert_eq!(super::percent_decode("a%20b+c"), "a b c");
        assert_eq!(super::percent_decode("%é%"), "%é%");
        assert_eq!(super::percent_decode("%4"), "%4");
    }
}

fn tokio_stream_from(rx: tokio::sync::mpsc::Receiver<Bytes>) -> impl futures::Stream<Item = Bytes> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
}

/// A self-signed serving certificate for the node's names.
fn tls_config(hosts: Vec<String>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let ck = rcgen::generate_simple_self_signed(hosts)?;
    let cert = ck.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serves on `addr` until the task is dropped.
pub async fn serve(
    server: Arc<LogServer>,
    addr: SocketAddr,
    hosts: Vec<String>,
) -> anyhow::Result<()> {
    let tls = tls_config(hosts)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the agent port {addr}: {e}"))?;
    tracing::info!(%addr, "serving container logs");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
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
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                debug!(%peer, "TLS handshake failed");
                return;
            };
            let svc = hyper::service::service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(server.handle(req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(tls), svc).await {
                debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}
