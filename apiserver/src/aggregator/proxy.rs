//! One request proxied to an aggregated API's backend, streamed both ways (a watch stays
//! open as long as both ends do). The client's credentials and any `X-Remote-*` headers
//! it sent are dropped; the authenticated user goes in kube's front-proxy headers.
//! Upgrades (exec, port-forward) are not proxied.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};

use super::{Aggregator, Backend};
use crate::auth::User;
use crate::error::ApiError;
use crate::response::Body;

/// How long dialling a backend (TCP and TLS) may take.
const DIAL: Duration = Duration::from_secs(10);

/// Request headers that are the connection's or the client's own credentials.
const DROPPED: [&str; 8] = [
    "authorization",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Response headers that are the connection's.
const HOP: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

fn dropped(name: &HeaderName) -> bool {
    let n = name.as_str();
    DROPPED.contains(&n) || n.starts_with("impersonate-") || n.starts_with("x-remote-")
}

/// The front-proxy headers of `user`.
pub fn user_headers(user: &User) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    if let Ok(v) = HeaderValue::from_str(&user.name) {
        out.push((HeaderName::from_static("x-remote-user"), v));
    }
    for g in &user.groups {
        if let Ok(v) = HeaderValue::from_str(g) {
            out.push((HeaderName::from_static("x-remote-group"), v));
        }
    }
    if !user.uid.is_empty() {
        // kube sends the uid as an extra since 1.32 (`X-Remote-Uid` is newer still).
        if let Ok(v) = HeaderValue::from_str(&user.uid) {
            out.push((
                HeaderName::from_static(
                    "x-remote-extra-authentication.kubernetes.io%2fcredential-id",
                ),
                v.clone(),
            ));
        }
    }
    out
}

/// A connection to `b`'s backend, over TLS for its Service's name; Err: why not.
async fn dial<B>(
    agg: &Aggregator,
    b: &Backend,
) -> Result<hyper::client::conn::http1::SendRequest<B>, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (ip, port) =
        crate::webhook::call::service_endpoint(agg.cache(), &b.namespace, &b.service, b.port)?;
    let name = b.server_name();
    let dial = crate::webhook::call::handshake(&ip, port, &name, b.tls.clone());
    tokio::time::timeout(DIAL, dial)
        .await
        .map_err(|_| format!("dial tcp {ip}:{port}: i/o timeout"))?
}

/// kube-aggregator's answer when the backend cannot be reached: 503 with a plain-text
/// body, which kubectl reports as "the server is currently unable to handle the request".
fn unavailable(b: &Backend, why: &str) -> Response<Body> {
    tracing::debug!(apiservice = %b.name, error = %why, "aggregated API unavailable");
    let mut r = Response::new(crate::response::full(Bytes::from_static(
        b"service unavailable\n",
    )));
    *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Proxies `req` from `user` to `b`'s backend and streams its answer back.
pub async fn forward(
    agg: &Aggregator,
    b: &Backend,
    req: Request<Incoming>,
    user: &User,
) -> Result<Response<Body>, ApiError> {
    let mut sender = match dial::<Incoming>(agg, b).await {
        Ok(s) => s,
        Err(why) => return Ok(unavailable(b, &why)),
    };
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    let mut out = Request::builder().method(parts.method).uri(&path);
    if let Some(h) = out.headers_mut() {
        for (k, v) in parts.headers.iter().filter(|(k, _)| !dropped(k)) {
            h.append(k.clone(), v.clone());
        }
        h.insert(
            http::header::HOST,
            HeaderValue::from_str(&format!("{}:{}", b.server_name(), b.port))
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
        );
        for (k, v) in user_headers(user) {
            h.append(k, v);
        }
    }
    let out = out
        .body(body)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let resp = match sender.send_request(out).await {
        Ok(r) => r,
        Err(e) => return Ok(unavailable(b, &e.to_string())),
    };
    let (parts, body) = resp.into_parts();
    let stream = http_body_util::BodyStream::new(body)
        .take_while(|f| futures::future::ready(f.is_ok()))
        .filter_map(|f| async move { f.ok().and_then(|f| f.into_data().ok()) })
        .map(|b: Bytes| Ok::<_, Infallible>(Frame::data(b)));
    let mut r = Response::builder().status(parts.status);
    if let Some(h) = r.headers_mut() {
        for (k, v) in parts.headers.iter() {
            if !HOP.contains(&k.as_str()) {
                h.append(k.clone(), v.clone());
            }
        }
    }
    r.body(BodyExt::boxed(StreamBody::new(stream)))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// A GET of `path` from `b`'s backend as this apiserver itself (no user headers): its
/// status and body (at most `limit` bytes), for discovery and the availability check.
pub async fn get(
    agg: &Aggregator,
    b: &Backend,
    path: &str,
    limit: usize,
) -> Result<(http::StatusCode, Bytes), String> {
    let mut sender = dial(agg, b).await?;
    let req = Request::get(path)
        .header(http::header::HOST, b.server_name())
        .header(http::header::ACCEPT, "application/json")
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), limit)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_credentials_and_remote_headers_stay_here() {
        for h in [
            "authorization",
            "impersonate-user",
            "impersonate-group",
            "x-remote-user",
            "x-remote-group",
            "x-remote-extra-scopes",
            "connection",
            "host",
        ] {
            assert!(dropped(&HeaderName::from_static(h)), "{h}");
        }
        for h in ["accept", "content-type", "user-agent", "audit-id"] {
            assert!(!dropped(&HeaderName::from_static(h)), "{h}");
        }
    }

    #[test]
    fn the_user_goes_in_front_proxy_headers() {
        let user = User {
            name: "alice".into(),
            uid: String::new(),
            groups: vec!["dev".into(), "system:authenticated".into()],
        };
        let h: Vec<(String, String)> = user_headers(&user)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        assert_eq!(
            h,
            [
                ("x-remote-user".into(), "alice".into()),
                ("x-remote-group".into(), "dev".into()),
                ("x-remote-group".into(), "system:authenticated".into()),
            ]
        );
    }
}
