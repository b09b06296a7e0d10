//! One call of a webhook: the review POSTed over HTTPS to its URL, or to an endpoint of
//! its Service with the Service's DNS name (`<name>.<namespace>.svc`) as the name its
//! certificate must carry, trusting only the configuration's caBundle, all within the
//! webhook's timeout. Connections are kept (up to `IDLE_PER_KEY` idle per address, name
//! and bundle) and reused, as Go's HTTP client keeps them, so a call is one request, not a
//! handshake. Failures read as kube's (`Post "<url>": context deadline exceeded`); what
//! they mean is the caller's (failurePolicy).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use k8s_openapi::api::admissionregistration::v1::WebhookClientConfig;

use crate::store::cache::Cache;

/// The most of an answer read (kube-apiserver reads webhook responses whole; a bound
/// keeps a broken webhook from using the apiserver's memory).
const MAX_ANSWER: usize = 10 << 20;

/// Where a call goes.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The URL as kube shows it in errors (with `?timeout=`).
    pub url: String,
    /// The name the server's certificate must carry (a DNS name or an IP).
    pub server_name: String,
    /// Where to connect.
    pub host: String,
    pub port: u16,
    /// Path and query sent.
    pub path: String,
}

impl Endpoint {
    /// A `clientConfig.url` (https, checked by validation), with kube's `timeout` query.
    pub fn from_url(url: &str, timeout: Duration) -> Result<Endpoint, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
        let host = uri
            .host()
            .ok_or_else(|| format!("invalid URL {url:?}: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        let path = with_timeout(
            uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
            timeout,
        );
        Ok(Endpoint {
            url: format!(
                "https://{}{}",
                uri.authority().map(|a| a.as_str()).unwrap_or(""),
                path
            ),
            server_name: host.clone(),
            host,
            port,
            path,
        })
    }

    /// A Service's endpoint `ip:port`, named as the Service.
    pub fn for_service(
        name: &str,
        namespace: &str,
        port: u16,
        path: &str,
        ip: &str,
        target: u16,
        timeout: Duration,
    ) -> Endpoint {
        let dns = format!("{name}.{namespace}.svc");
        let path = with_timeout(if path.is_empty() { "/" } else { path }, timeout);
        Endpoint {
            url: format!("https://{dns}:{port}{path}"),
            server_name: dns,
            host: ip.to_string(),
            port: target,
            path,
        }
    }
}

/// Where a webhook of `c` is called: its URL, or a ready endpoint of its Service.
pub fn resolve(
    cache: &Cache,
    c: &WebhookClientConfig,
    timeout: Duration,
) -> Result<Endpoint, String> {
    if let Some(url) = &c.url {
        return Endpoint::from_url(url, timeout);
    }
    let svc = c
        .service
        .as_ref()
        .ok_or_else(|| "the webhook names neither a url nor a service".to_string())?;
    let port = u16::try_from(svc.port.unwrap_or(443)).map_err(|e| e.to_string())?;
    let (ip, target) = service_endpoint(cache, &svc.namespace, &svc.name, port)?;
    Ok(Endpoint::for_service(
        &svc.name,
        &svc.namespace,
        port,
        svc.path.as_deref().unwrap_or(""),
        &ip,
        target,
        timeout,
    ))
}

/// A ready address of Service `ns/name` for its port `port` (what kube-apiserver's
/// `--enable-aggregator-routing` dials), from the Service and its Endpoints in the cache.
pub fn service_endpoint(
    cache: &Cache,
    ns: &str,
    name: &str,
    port: u16,
) -> Result<(String, u16), String> {
    let get = |plural: &str| -> Option<serde_json::Value> {
        let o = cache.get(&crate::store::object_key(plural, Some(ns), name))?;
        serde_json::from_slice(&o.json).ok()
    };
    let missing = || format!("service \"{ns}/{name}\" has no ready endpoint");
    let svc = get("services").ok_or_else(|| format!("service \"{ns}/{name}\" not found"))?;
    let sp = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["port"].as_u64() == Some(u64::from(port)))
        .ok_or_else(|| format!("service \"{ns}/{name}\" has no port {port}"))?;
    let port_name = sp["name"].as_str().unwrap_or("");
    let eps = get("endpoints").ok_or_else(missing)?;
    for subset in eps["subsets"].as_array().into_iter().flatten() {
        let Some(ip) = subset["addresses"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|a| a["ip"].as_str())
        else {
            continue;
        };
        let ports = subset["ports"].as_array().into_iter().flatten();
        let found = ports
            .filter(|p| p["name"].as_str().unwrap_or("") == port_name)
            .find_map(|p| p["port"].as_u64().and_then(|p| u16::try_from(p).ok()));
        if let Some(p) = found {
            return Ok((ip.to_string(), p));
        }
    }
    Err(missing())
}

fn with_timeout(path: &str, timeout: Duration) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}timeout={}s", timeout.as_secs())
}

/// The TLS configuration that trusts exactly the PEM certificates of `ca_bundle`.
fn tls(ca_bundle: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_bundle) {
        let c = c.map_err(|e| format!("caBundle: {e}"))?;
        roots.add(c).map_err(|e| format!("caBundle: {e}"))?;
    }
    if roots.is_empty() {
        return Err("caBundle: no certificate to trust".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// POSTs `body` and returns the answer's body; Err: kube's words for the failure.
pub async fn post(
    ep: &Endpoint,
    ca_bundle: &[u8],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Bytes, String> {
    let failed = |e: &dyn std::fmt::Display| format!("Post {:?}: {e}", ep.url);
    match tokio::time::timeout(timeout, exchange(ep, ca_bundle, body)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(failed(&e)),
        Err(_) => Err(failed(&"context deadline exceeded")),
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Connections are kept per address, name dialled and trusted bundle.
#[derive(Hash, PartialEq, Eq, Clone)]
struct PoolKey {
    host: String,
    port: u16,
    server_name: String,
    ca: u64,
}

/// Idle connections kept per key: a webhook called by concurrent writes reuses up to
/// this many TLS sessions instead of a handshake per call.
const IDLE_PER_KEY: usize = 8;

static POOL: std::sync::LazyLock<std::sync::Mutex<HashMap<PoolKey, Vec<Sender>>>> =
    std::sync::LazyLock::new(Default::default);

fn pool() -> std::sync::MutexGuard<'static, HashMap<PoolKey, Vec<Sender>>> {
    POOL.lock().unwrap_or_else(|p| p.into_inner())
}

/// An idle connection of `key` still open, if any.
fn take(key: &PoolKey) -> Option<Sender> {
    let mut p = pool();
    let idle = p.get_mut(key)?;
    while let Some(s) = idle.pop() {
        if !s.is_closed() && s.is_ready() {
            return Some(s);
        }
    }
    None
}

fn put(key: PoolKey, s: Sender) {
    let mut p = pool();
    let idle = p.entry(key).or_default();
    if idle.len() < IDLE_PER_KEY {
        idle.push(s);
    }
}

async fn dial(ep: &Endpoint, ca_bundle: &[u8]) -> Result<Sender, String> {
    handshake(&ep.host, ep.port, &ep.server_name, tls(ca_bundle)?).await
}

/// An HTTP/1.1 connection over TLS to `host:port`, checked for `server_name`; its driver
/// runs until the connection closes (idle in a pool, or dropped with its sender).
pub async fn handshake<B>(
    host: &str,
    port: u16,
    server_name: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<hyper::client::conn::http1::SendRequest<B>, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("dial tcp {host}:{port}: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn exchange(ep: &Endpoint, ca_bundle: &[u8], body: Vec<u8>) -> Result<Bytes, String> {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ca_bundle.hash(&mut h);
    let key = PoolKey {
        host: ep.host.clone(),
        port: ep.port,
        server_name: ep.server_name.clone(),
        ca: h.finish(),
    };
    let body = Bytes::from(body);
    let request = || {
        http::Request::post(ep.path.as_str())
            .header(http::header::HOST, &ep.server_name)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, */*")
            .body(Full::new(body.clone()))
            .map_err(|e| e.to_string())
    };
    let (mut sender, reused) = match take(&key) {
        Some(s) => (s, true),
        None => (dial(ep, ca_bundle).await?, false),
    };
    let resp = match sender.send_request(request()?).await {
        Ok(r) => r,
        // A kept connection the server closed meanwhile: once more on a new one (the
        // request was not answered, so the webhook did not act on it).
        Err(e) if reused && (e.is_closed() || e.is_canceled() || e.is_incomplete_message()) => {
            sender = dial(ep, ca_bundle).await?;
            sender
                .send_request(request()?)
                .await
                .map_err(|e| e.to_string())?
        }
        Err(e) => return Err(e.to_string()),
    };
    let status = resp.status();
    let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    put(key, sender);
    if !status.is_success() {
        return Err(format!(
            "the server responded {}: {}",
            status.as_u16(),
            String::from_utf8_lossy(&bytes[..bytes.len().min(512)])
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_carry_kubes_timeout_query() {
        let e =
            Endpoint::from_url("https://127.0.0.1:9443/validate", Duration::from_secs(5)).unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 9443));
        assert_eq!(e.path, "/validate?timeout=5s");
        assert_eq!(e.url, "https://127.0.0.1:9443/validate?timeout=5s");
        let e =
            Endpoint::from_url("https://hooks.example.com/m?x=1", Duration::from_secs(10)).unwrap();
        assert_eq!((e.server_name.as_str(), e.port), ("hooks.example.com", 443));
        assert_eq!(e.path, "/m?x=1&timeout=10s");
        let e = Endpoint::for_service(
            "hook",
            "system",
            443,
            "",
            "10.0.0.5",
            8443,
            Duration::from_secs(10),
        );
        assert_eq!(e.url, "https://hook.system.svc:443/?timeout=10s");
        assert_eq!(
            (e.host.as_str(), e.port, e.server_name.as_str()),
            ("10.0.0.5", 8443, "hook.system.svc")
        );
    }

    #[test]
    fn a_bundle_without_certificates_trusts_nothing() {
        assert!(tls(b"").is_err());
        assert!(tls(b"not pem").is_err());
    }
}
