//! One call of a webhook: the review POSTed over HTTPS to its URL, or to an endpoint of
//! its Service with the Service's DNS name (`<name>.<namespace>.svc`) as the name its
//! certificate must carry, trusting only the configuration's caBundle, all within the
//! webhook's timeout. Failures read as kube's (`Post "<url>": context deadline
//! exceeded`); what they mean is the caller's (failurePolicy).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

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

async fn exchange(ep: &Endpoint, ca_bundle: &[u8], body: Vec<u8>) -> Result<Bytes, String> {
    let config = tls(ca_bundle)?;
    let name = ServerName::try_from(ep.server_name.clone()).map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect((ep.host.as_str(), ep.port))
        .await
        .map_err(|e| format!("dial tcp {}:{}: {e}", ep.host, ep.port))?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::post(ep.path.as_str())
        .header(http::header::HOST, &ep.server_name)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json, */*")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let result = async {
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "the server responded {}: {}",
                status.as_u16(),
                String::from_utf8_lossy(&bytes[..bytes.len().min(512)])
            ));
        }
        Ok(bytes)
    }
    .await;
    driver.abort();
    result
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
