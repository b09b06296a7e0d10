//! A small client of the Docker Engine API over its unix socket: HTTP/1.1 with hyper, one
//! connection per request, JSON bodies as `serde_json::Value`, and the multiplexed
//! stdout/stderr stream of attach, exec and logs. Only what the runtime uses.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// The API version requested: Docker 20.10 and later speak it.
const API: &str = "/v1.41";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach the Docker daemon at {socket}: {message}")]
    Unreachable { socket: String, message: String },
    /// The daemon answered with an error: its status and message.
    #[error("{message}")]
    Api { status: u16, message: String },
    #[error("docker: {0}")]
    Protocol(String),
}

impl DockerError {
    pub fn status(&self) -> Option<u16> {
        match self {
            DockerError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, DockerError>;

#[derive(Clone, Debug)]
pub struct Docker {
    socket: PathBuf,
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Docker {
    pub fn new(socket: PathBuf) -> Docker {
        Docker { socket }
    }

    fn unreachable(&self, e: &dyn std::fmt::Display) -> DockerError {
        DockerError::Unreachable {
            socket: self.socket.display().to_string(),
            message: e.to_string(),
        }
    }

    /// A new HTTP/1.1 connection to the daemon; with `upgrades` it can be handed over
    /// as a raw stream (exec's hijack).
    async fn connect(
        &self,
        upgrades: bool,
    ) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| self.unreachable(&e))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.unreachable(&e))?;
        if upgrades {
            tokio::spawn(async move {
                let _ = conn.with_upgrades().await;
            });
        } else {
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
        Ok(sender)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        content_type: &str,
    ) -> Result<Response<Incoming>> {
        let mut sender = self.connect(false).await?;
        let req = Request::builder()
            .method(method)
            .uri(format!("{API}{path}"))
            .header("host", "docker")
            .header("content-type", content_type)
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| DockerError::Protocol(e.to_string()))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| self.unreachable(&e))
    }

    async fn check(resp: Response<Incoming>) -> Result<Response<Incoming>> {
        let status = resp.status();
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            return Ok(resp);
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        Err(DockerError::Api {
            status: status.as_u16(),
            message,
        })
    }

    /// A request whose answer is JSON (or empty: `Value::Null`).
    pub async fn json(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let bytes = body.map(|b| Bytes::from(b.to_string()));
        let resp = Self::check(self.send(method, path, bytes, "application/json").await?).await?;
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| DockerError::Protocol(e.to_string()))?
            .to_bytes();
        if body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body).map_err(|e| DockerError::Protocol(format!("{path}: {e}")))
    }

    /// A request answered with a stream of JSON messages (pull, import): reads it to the
    /// end and fails with the first `error` message in it.
    pub async fn progress(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        content_type: &str,
    ) -> Result<Vec<Value>> {
        let resp = Self::check(self.send(method, path, body, content_type).await?).await?;
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| DockerError::Protocol(e.to_string()))?
            .to_bytes();
        let mut out = Vec::new();
        for v in serde_json::Deserializer::from_slice(&body).into_iter::<Value>() {
            let v = v.map_err(|e| DockerError::Protocol(e.to_string()))?;
            if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
                return Err(DockerError::Api {
                    status: 500,
                    message: err.to_string(),
                });
            }
            out.push(v);
        }
        Ok(out)
    }

    /// A request answered with the multiplexed stdout/stderr stream of a container without
    /// a tty (exec start, logs): each frame's payload goes to `tx` with its stream (1
    /// stdout, 2 stderr) as it arrives, until the stream ends or `tx` is closed. (Daemons
    /// before API 1.42 label this stream `raw-stream` too, so that header is not trusted.)
    pub async fn stream(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        tx: tokio::sync::mpsc::Sender<(u8, Bytes)>,
    ) -> Result<()> {
        let bytes = body.map(|b| Bytes::from(b.to_string()));
        let resp = Self::check(self.send(method, path, bytes, "application/json").await?).await?;
        let mut body = resp.into_body();
        let mut demux = crate::runtime::attach::Demux::default();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| DockerError::Protocol(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            demux.push(&data);
            while let Some(f) = demux.next_frame() {
                if tx.send(f).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// A request the daemon answers by handing over the connection as a raw stream
    /// (`Upgrade: tcp`, 101; exec start with stdin attached). The stream is the command's
    /// stdin one way and its output the other: multiplexed frames without a tty, the
    /// terminal's bytes with one.
    pub async fn upgrade(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<TokioIo<hyper::upgrade::Upgraded>> {
        let mut sender = self.connect(true).await?;
        let req = Request::builder()
            .method(method)
            .uri(format!("{API}{path}"))
            .header("host", "docker")
            .header("content-type", "application/json")
            .header("connection", "Upgrade")
            .header("upgrade", "tcp")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| DockerError::Protocol(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| self.unreachable(&e))?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let status = resp.status();
            Self::check(resp).await?;
            return Err(DockerError::Protocol(format!(
                "{path}: answered {status} instead of upgrading"
            )));
        }
        let upgraded = hyper::upgrade::on(resp)
            .await
            .map_err(|e| DockerError::Protocol(format!("{path}: {e}")))?;
        Ok(TokioIo::new(upgraded))
    }

    /// `GET /version`, within `timeout`.
    pub async fn version(&self, timeout: Duration) -> Result<Value> {
        tokio::time::timeout(timeout, self.json(Method::GET, "/version", None))
            .await
            .unwrap_or_else(|_| {
                Err(DockerError::Unreachable {
                    socket: self.socket.display().to_string(),
                    message: format!("no answer within {timeout:?}"),
                })
            })
    }
}

/// One frame of the multiplexed stream (header and payload), as the daemon sends it.
#[cfg(test)]
pub fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![stream, 0, 0, 0];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(enc("a b/c:d"), "a%20b%2Fc%3Ad");
        assert_eq!(
            enc(r#"{"label":["x=y"]}"#),
            "%7B%22label%22%3A%5B%22x%3Dy%22%5D%7D"
        );
        assert_eq!(frame(2, b"hi"), vec![2, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
    }
}
