//! The node agent a pod's streaming subresources (`log`, `exec`, `portforward`) are
//! served by: the pod is read, checked as kube-apiserver checks it (a container it has, a
//! node it is bound to), and the node's agent dialled on the port its Node advertises in
//! `status.daemonEndpoints`, as `crate::kubelet` says: this apiserver's
//! `--kubelet-client-certificate` and nothing else (never a token), the agent's
//! certificate checked against `--kubelet-certificate-authority` when given. The agent's
//! refusals reach the client as kube-apiserver passes them on.

use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;

use crate::error::ApiError;
use crate::http::Shared;
use crate::store::Target;

/// The container asked for: the one named, or the pod's only container.
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

/// The pod `t` names, as stored.
pub async fn read_pod(shared: &Shared, t: &Target) -> Result<Value, ApiError> {
    serde_json::from_slice(&shared.store.get(t, None).await?)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// The node `pod` is bound to.
pub fn node_of(pod: &Value, name: &str) -> Result<String, ApiError> {
    pod.pointer("/spec/nodeName")
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty())
        .map(String::from)
        .ok_or_else(|| ApiError::BadRequest(format!("pod {name} does not have a host assigned")))
}

/// An HTTP/1.1 connection to a node's agent, upgradable (exec, port-forward).
pub struct AgentConn {
    pub sender: hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    /// `ip:port`, for the Host header and messages.
    pub authority: String,
}

/// Dials the agent of `node`.
pub async fn connect(shared: &Shared, node: &str) -> Result<AgentConn, ApiError> {
    let kind = shared
        .kinds
        .find("", "v1", "nodes")
        .ok_or(ApiError::NoRoute)?;
    let target = Target {
        kind,
        namespace: None,
        name: Some(node.to_string()),
    };
    let node_obj: Value = serde_json::from_slice(&shared.store.get(&target, None).await?)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (ip, port) = agent_address(&node_obj).ok_or_else(|| {
        ApiError::Internal(format!(
            "node {node} advertises no address and port for its agent"
        ))
    })?;
    let authority = format!("{ip}:{port}");
    let dial = |e: &dyn std::fmt::Display| {
        ApiError::Internal(format!("dial {authority} (node {node}): {e}"))
    };
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
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| dial(&e))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(AgentConn { sender, authority })
}

/// An agent's refusal, as kube-apiserver passes it on: at most 50,000 bytes of its
/// words (maxReadLength), under the status it answered.
pub async fn refusal(resp: http::Response<hyper::body::Incoming>, pod: &str) -> ApiError {
    let status = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), 50_000)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let msg = String::from_utf8_lossy(&body).trim().to_string();
    match status {
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
            name: pod.to_string(),
        },
        _ => ApiError::Internal(format!("the node's agent answered {status}: {msg}")),
    }
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
        assert_eq!(
            node_of(&json!({"spec": {}}), "p").unwrap_err().to_string(),
            "pod p does not have a host assigned"
        );
    }
}
