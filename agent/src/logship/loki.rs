//! The Loki push client: one `POST /loki/api/v1/push` (JSON) per spooled batch, over
//! HTTP or HTTPS (verified against `--log-sink-ca-file`), and what its answer means for the
//! batch: taken (2xx), refused for good (4xx other than 429: Loki will never take it, so
//! keeping it would stop every later line), or to be retried (429, 5xx, no answer).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// How long one push may take.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, PartialEq)]
pub enum Outcome {
    Taken,
    Refused(String),
    Retry(String),
}

pub struct Loki {
    push: Uri,
    host: String,
    port: u16,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

/// The push URL of `base`: `<base>/loki/api/v1/push`, unless `base` names it already.
fn push_url(base: &str) -> Result<Uri, String> {
    let base = base.trim_end_matches('/');
    let full = if base.ends_with("/loki/api/v1/push") {
        base.to_string()
    } else {
        format!("{base}/loki/api/v1/push")
    };
    full.parse::<Uri>().map_err(|e| format!("{base:?}: {e}"))
}

impl std::fmt::Debug for Loki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loki").field("push", &self.push).finish()
    }
}

impl Loki {
    /// A client of the Loki at `url` (`http://host:3100` or `https://...`); `ca` verifies
    /// an https server (required for one).
    pub fn new(url: &str, ca: Option<&Path>) -> Result<Loki, String> {
        let push = push_url(url)?;
        let host = push
            .host()
            .ok_or_else(|| format!("{url:?} names no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let (tls, default_port) = match push.scheme_str() {
            Some("http") => (None, 80),
            Some("https") => {
                let ca = ca.ok_or("an https log sink needs --log-sink-ca-file")?;
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
                    .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("--log-sink-ca-file {}: {e}", ca.display()))?;
                let mut roots = rustls::RootCertStore::empty();
                for c in certs {
                    roots
                        .add(c)
                        .map_err(|e| format!("--log-sink-ca-file {}: {e}", ca.display()))?;
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let cfg = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let name =
                    ServerName::try_from(host.clone()).map_err(|e| format!("{url:?}: {e}"))?;
                (
                    Some((tokio_rustls::TlsConnector::from(Arc::new(cfg)), name)),
                    443,
                )
            }
            other => return Err(format!("{url:?}: want http:// or https://, not {other:?}")),
        };
        let port = push.port_u16().unwrap_or(default_port);
        Ok(Loki {
            push,
            host,
            port,
            tls,
        })
    }

    pub fn url(&self) -> String {
        self.push.to_string()
    }

    /// Pushes one request body.
    pub async fn push(&self, body: Vec<u8>) -> Outcome {
        match tokio::time::timeout(TIMEOUT, self.send(body)).await {
            Err(_) => Outcome::Retry(format!("no answer within {TIMEOUT:?}")),
            Ok(Err(e)) => Outcome::Retry(e),
            Ok(Ok((status, text))) => classify(status, &text),
        }
    }

    async fn send(&self, body: Vec<u8>) -> Result<(StatusCode, String), String> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connecting to {}:{}: {e}", self.host, self.port))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.exchange(tcp, body).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS with {}: {e}", self.host))?;
                self.exchange(tls, body).await
            }
        }
    }

    async fn exchange<S>(&self, stream: S, body: Vec<u8>) -> Result<(StatusCode, String), String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        let conn = tokio::spawn(conn);
        let path = self
            .push
            .path_and_query()
            .map_or("/loki/api/v1/push", |p| p.as_str())
            .to_string();
        let authority = self
            .push
            .authority()
            .map_or(self.host.clone(), |a| a.to_string());
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "flotilla-agent")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let text = resp
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        conn.abort();
        Ok((status, text))
    }
}

/// What Loki's answer means for the batch.
pub fn classify(status: StatusCode, text: &str) -> Outcome {
    let why = || format!("{status}: {}", text.trim());
    if status.is_success() {
        Outcome::Taken
    } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Outcome::Retry(why())
    } else {
        Outcome::Refused(why())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_answers() {
        assert_eq!(
            push_url("http://127.0.0.1:3100").unwrap().to_string(),
            "http://127.0.0.1:3100/loki/api/v1/push"
        );
        assert_eq!(
            push_url("http://loki/loki/api/v1/push/")
                .unwrap()
                .to_string(),
            "http://loki/loki/api/v1/push"
        );
        let l = Loki::new("http://127.0.0.1:3100", None).unwrap();
        assert_eq!((l.host.as_str(), l.port), ("127.0.0.1", 3100));
        assert_eq!(Loki::new("http://loki", None).unwrap().port, 80);
        assert!(Loki::new("https://loki", None)
            .err()
            .unwrap()
            .contains("--log-sink-ca-file"));
        assert!(Loki::new("ftp://loki", None).is_err());
        assert_eq!(classify(StatusCode::NO_CONTENT, ""), Outcome::Taken);
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, "slow down"),
            Outcome::Retry(_)
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, ""),
            Outcome::Retry(_)
        ));
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, "entry too far behind\n"),
            Outcome::Refused("400 Bad Request: entry too far behind".into())
        );
    }
}
