//! The upgrade-aware half of the streaming subresources (`exec`, `portforward`): the
//! client's upgrade request goes to the pod's agent with the upgrade's own headers only
//! (never the client's credentials: the agent sees this apiserver's certificate), and
//! when the agent switches protocols the two connections are spliced, byte for byte in
//! both directions, until both ends have closed (kube-apiserver's UpgradeAwareHandler).
//! The protocol spoken over the splice (WebSocket channels, SPDY) is the agent's.

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::agent;
use crate::error::ApiError;
use crate::http::{full, Body, Shared};

/// The request headers an upgrade needs at the agent.
const FORWARDED: &[&str] = &[
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

/// The agent's answer headers the client needs to finish its upgrade.
const RETURNED: &[&str] = &[
    "connection",
    "upgrade",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

fn copy(
    from: &HeaderMap,
    names: &[&str],
    mut to: http::request::Builder,
) -> http::request::Builder {
    for n in names {
        for v in from.get_all(*n) {
            to = to.header(*n, v);
        }
    }
    to
}

/// Whether the request asks to upgrade its connection.
pub fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(http::header::UPGRADE)
        && h.get_all(http::header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// Sends `req`'s upgrade to `path` on `node`'s agent; on 101 answers the client with the
/// agent's switch and splices the connections.
pub async fn proxy(
    shared: &Shared,
    node: &str,
    pod: &str,
    mut req: http::Request<hyper::body::Incoming>,
    path: &str,
) -> Result<Response<Body>, ApiError> {
    if !is_upgrade(req.headers()) {
        return Err(ApiError::BadRequest("Upgrade request required".into()));
    }
    let client_side = hyper::upgrade::on(&mut req);
    let mut conn = agent::connect(shared, node).await?;
    let out = copy(
        req.headers(),
        FORWARDED,
        http::Request::builder()
            .method(req.method().clone())
            .uri(path)
            .header("host", &conn.authority),
    )
    .body(http_body_util::Empty::<Bytes>::new())
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let resp = conn.sender.send_request(out).await.map_err(|e| {
        ApiError::Internal(format!(
            "error dialing backend: https://{}{path}: {e}",
            conn.authority
        ))
    })?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(agent::refusal(resp, pod).await);
    }
    let mut answer = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for n in RETURNED {
        for v in resp.headers().get_all(*n) {
            answer = answer.header(*n, v);
        }
    }
    let agent_side = hyper::upgrade::on(resp);
    tokio::spawn(async move {
        let (Ok(client), Ok(agent)) = tokio::join!(client_side, agent_side) else {
            tracing::debug!("an upgraded connection was lost before the splice");
            return;
        };
        let (mut client, mut agent) = (TokioIo::new(client), TokioIo::new(agent));
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut agent).await {
            tracing::debug!(error = %e, "an upgraded connection ended");
        }
    });
    answer
        .body(full(Bytes::new()))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upgrade_needs_both_headers() {
        let mut h = HeaderMap::new();
        h.insert("upgrade", "websocket".parse().unwrap());
        assert!(!is_upgrade(&h));
        h.insert("connection", "keep-alive, Upgrade".parse().unwrap());
        assert!(is_upgrade(&h));
        h.remove("upgrade");
        assert!(!is_upgrade(&h));
    }
}
