//! The kubelet's WebSocket channel protocols (`v4.channel.k8s.io`, `v5.channel.k8s.io`):
//! the server side of the handshake over hyper's upgrade, and the framing: every binary
//! message is one channel's bytes, the channel number first. v5 adds a message
//! `[255, channel]` by which the client closes its side of a channel (stdin's EOF).

use bytes::Bytes;
use hyper::{HeaderMap, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use super::{text, Body};

pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";
/// The message by which a v5 client closes a channel: `[CLOSE, channel]`.
pub const CLOSE: u8 = 255;
/// The largest message taken from a client (kubectl writes stdin in 32 KiB pieces).
const MAX_MESSAGE: usize = 1 << 20;

pub type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// What a client's upgrade request agreed to.
#[derive(Debug, PartialEq, Eq)]
pub struct Handshake {
    pub accept: String,
    pub protocol: &'static str,
}

fn header_has(h: &HeaderMap, name: &str, token: &str) -> bool {
    h.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Checks a WebSocket upgrade and picks the first of the client's protocols that is one
/// of `ours`. The error is the answer to give instead.
pub fn handshake(h: &HeaderMap, ours: &[&'static str]) -> Result<Handshake, Response<Body>> {
    if !header_has(h, "upgrade", "websocket") || !header_has(h, "connection", "upgrade") {
        let spdy = h
            .get("upgrade")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("spdy"));
        let why = if spdy {
            "this agent serves exec and port-forward over WebSocket only, not SPDY (kubectl 1.31 and later use WebSocket)"
        } else {
            "Upgrade request required"
        };
        return Err(text(StatusCode::BAD_REQUEST, why));
    }
    let Some(key) = h.get("sec-websocket-key") else {
        return Err(text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key"));
    };
    if h.get("sec-websocket-version").and_then(|v| v.to_str().ok()) != Some("13") {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "unsupported Sec-WebSocket-Version",
        ));
    }
    let offered = h
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    let protocol = offered
        .filter_map(|p| ours.iter().find(|o| **o == p))
        .next()
        .copied()
        .ok_or_else(|| {
            text(
                StatusCode::BAD_REQUEST,
                format!(
                    "none of the offered WebSocket protocols is served: use one of {}",
                    ours.join(", ")
                ),
            )
        })?;
    Ok(Handshake {
        accept: derive_accept_key(key.as_bytes()),
        protocol,
    })
}

/// The 101 answer that completes `hs`.
pub fn switching(hs: &Handshake) -> Response<Body> {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", &hs.accept)
        .header("sec-websocket-protocol", hs.protocol)
        .body(http_body_util::BodyExt::boxed(
            http_body_util::Empty::<Bytes>::new(),
        ))
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, ""))
}

/// The server's side of the socket, once hyper has handed over the connection.
pub async fn accept(on: hyper::upgrade::OnUpgrade) -> Option<Socket> {
    let io = on.await.ok()?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    Some(WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, Some(config)).await)
}

/// One channel's message.
pub fn frame(channel: u8, data: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(data.len().saturating_add(1));
    b.push(channel);
    b.extend_from_slice(data);
    Bytes::from(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_first_offered_protocol_we_serve_wins() {
        let h = headers(&[
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            (
                "sec-websocket-protocol",
                "v6.channel.k8s.io, v5.channel.k8s.io",
            ),
            ("sec-websocket-protocol", "v4.channel.k8s.io"),
        ]);
        let hs = handshake(&h, &[V4, V5]).unwrap();
        assert_eq!(hs.protocol, V5);
        // RFC 6455's example.
        assert_eq!(hs.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let spdy = headers(&[("upgrade", "SPDY/3.1"), ("connection", "Upgrade")]);
        assert_eq!(handshake(&spdy, &[V5]).unwrap_err().status(), 400);
        let none = headers(&[
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "x"),
            ("sec-websocket-protocol", "base64.channel.k8s.io"),
        ]);
        assert_eq!(handshake(&none, &[V5]).unwrap_err().status(), 400);
        assert_eq!(&frame(3, b"x")[..], &[3, b'x']);
    }
}
