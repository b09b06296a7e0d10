//! `GET .../pods/<name>/log`: checks the pod and container as kube-apiserver does, then
//! streams the answer of the pod's node agent (`/containerLogs/...` on the port the Node
//! advertises in `status.daemonEndpoints`) back to the client. The agent is dialled as
//! `crate::kubelet` says: this apiserver's `--kubelet-client-certificate` and nothing
//! else (never a token), its certificate checked against `--kubelet-certificate-authority`
//! when given. The agent's refusals reach the client as kube-apiserver passes them on.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;

use crate::error::ApiError;
use crate::http::ops::Call;
use crate::http::{full, Body, Shared};
use crate::store::Target;

/// The query parameters passed on to the agent.
const PASSED: &[&str] = &[
    "follow",
    "previous",
    "sinceSeconds",
    "sinceTime",
    "timestamps",
    "tailLines",
    "limitBytes",
];

/// The container whose log is asked for: the one named, or the pod's only container.
pub fn container_name(pod: &Value, name: &str, asked: Option<&str>) -> Result<String, ApiError> {
    let names = |key: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{key}"))
            .and_then(|c| c.as_array())
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("name").and_then(|n| n.as_str()).map(String::from))
            .collect()
    };
    let apps = names("containers");
    let inits = names("initContainers");
    match asked.filter(|c| !c.is_empty()) {
        Some(c) if apps.iter().chain(&inits).any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::BadRequest(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if apps.len() == 1 => Ok(apps[0].clone()),
        None => Err(ApiError::BadRequest(format!(
            "a container name must be specified for pod {name}, choose one of: [{}] or one of the init containers: [{}]",
            apps.join(" "),
            inits.join(" ")
        ))),
    }
}

/// Where the agent of `node` answers: its InternalIP (else any address) and port.
pub fn agent_address(node: &Value) -> Option<(String, u16)> {
    let addrs = node.pointer("/status/addresses")?.as_array()?;
    let pick = |t: &str| {
        addrs
            .iter()
            .find(|a| a.get("type").and_then(|x| x.as_str()) == Some(t))
            .and_then(|a| a.get("address")?.as_str().map(String::from))
    };
    let ip = pick("InternalIP")
        .or_else(|| pick("ExternalIP"))
        .or_else(|| pick("Hostname"))?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(|p| p.as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)?;
    Some((ip, port))
}

/// The subresource's operation.
pub(super) fn action<'a>(
    c: &'a Call<'_>,
    _req: http::Request<hyper::body::Incoming>,
) -> futures::future::BoxFuture<'a, Result<Response<Body>, ApiError>> {
    Box::pin(proxy(c.shared, &c.target, c.query))
}

pub async fn proxy(
    shared: &Shared,
    t: &Target,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let pod: Value = serde_json::from_slice(&shared.store.get(t, None).await?)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let name = t.name().to_string();
    let container = container_name(&pod, &name, q.get("container").map(String::as_str))?;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("pod {name} does not have a host assigned")))?
        .to_string();
    let kind = shared
        .kinds
        .find("", "v1", "nodes")
        .ok_or(ApiError::NoRoute)?;
    let node_obj: Value = serde_json::from_slice(
        &shared
            .store
            .get(
                &Target {
                    kind,
                    namespace: None,
                    name: Some(node.clone()),
                },
                None,
            )
            .await?,
    )
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (ip, port) = agent_address(&node_obj).ok_or_else(|| {
        ApiError::Internal(format!(
            "node {node} advertises no address and port for its agent"
        ))
    })?;
    let mut query: Vec<String> = Vec::new();
    for k in PASSED {
        if let Some(v) = q.get(*k) {
            query.push(format!("{k}={}", crate::http::route::percent_encode(v)));
        }
    }
    let ns = t.namespace.clone().unwrap_or_default();
    let path = format!(
        "/containerLogs/{ns}/{name}/{container}{}{}",
        if query.is_empty() { "" } else { "?" },
        query.join("&")
    );
    let url = format!("https://{ip}:{port}{path}");
    let dial = |e: &dyn std::fmt::Display| ApiError::Internal(format!("Get \"{url}\": {e}"));
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect((ip.as_str(), port)),
    )
    .await
    .map_err(|_| dial(&"dial tcp: i/o timeout"))?
    .map_err(|e| dial(&format!("dial tcp {ip}:{port}: {e}")))?;
    let server_name = ServerName::try_from(ip.clone()).map_err(|e| dial(&e))?;
    let tls = tokio_rustls::TlsConnector::from(shared.kubelet.tls())
        .connect(server_name, tcp)
        .await
        .map_err(|e| dial(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| dial(&e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::builder()
        .method("GET")
        .uri(&path)
        .header("host", format!("{ip}:{port}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let resp = sender.send_request(req).await.map_err(|e| dial(&e))?;
    let status = resp.status();
    if !status.is_success() {
        // At most what kube-apiserver reads of an error (maxReadLength).
        let body = http_body_util::Limited::new(resp.into_body(), 50_000)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let msg = String::from_utf8_lossy(&body).trim().to_string();
        return Err(match status {
            StatusCode::BAD_REQUEST => ApiError::BadRequest(msg),
            // The agent's own words say who was refused what (kube-apiserver keeps them).
            StatusCode::FORBIDDEN => ApiError::Forbidden(msg),
            StatusCode::UNAUTHORIZED => ApiError::Unauthorized,
            StatusCode::TOO_MANY_REQUESTS => ApiError::TooManyRequests(msg),
            StatusCode::NOT_FOUND => ApiError::NotFound {
                gr: crate::error::GroupResource {
                    group: "",
                    resource: "pods",
                },
                name,
            },
            _ => ApiError::Internal(format!("the node's agent answered {status}: {msg}")),
        });
    }
    let stream = http_body_util::BodyStream::new(resp.into_body())
        .take_while(|f| futures::future::ready(f.is_ok()))
        .filter_map(|f| async move { f.ok().and_then(|f| f.into_data().ok()) })
        .map(|b| Ok::<_, Infallible>(Frame::data(b)));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_else(|_| Response::new(full(Bytes::new()))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_choice_follows_kube_apiserver() {
        let one = json!({"spec": {"containers": [{"name": "c"}]}});
        assert_eq!(container_name(&one, "p", None).unwrap(), "c");
        let two = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        let e = container_name(&two, "p", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        assert_eq!(container_name(&two, "p", Some("i")).unwrap(), "i");
        assert_eq!(
            container_name(&two, "p", Some("x"))
                .unwrap_err()
                .to_string(),
            "container x is not valid for pod p"
        );
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
                          "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        assert_eq!(agent_address(&node), Some(("10.0.0.5".into(), 10250)));
    }
}
