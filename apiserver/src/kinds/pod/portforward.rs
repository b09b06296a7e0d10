//! `.../pods/<name>/portforward` (PodPortForwardOptions): checks the pod and the ports,
//! then hands the upgrade to the pod's agent at the kubelet's
//! `/portForward/<ns>/<pod>` (`upgrade.rs`), `ports` passed on.

use http::Response;

use super::{agent, upgrade};
use crate::error::ApiError;
use crate::http::ops::Call;
use crate::http::route::{percent_decode, percent_encode};
use crate::http::Body;

/// The `ports` of a query, each 1-65535.
pub fn ports(query: Option<&str>) -> Result<Vec<u16>, ApiError> {
    let mut out = Vec::new();
    for kv in query.unwrap_or("").split('&') {
        let Some(v) = kv.strip_prefix("ports=") else {
            continue;
        };
        for p in percent_decode(v).split(',').filter(|p| !p.is_empty()) {
            match p.trim().parse::<u16>() {
                Ok(n) if n > 0 => out.push(n),
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "ports: Invalid value: {p:?}: must be a valid port number (1-65535)"
                    )))
                }
            }
        }
    }
    Ok(out)
}

/// The subresource's operation.
pub(super) fn action<'a>(
    c: &'a Call<'_>,
    req: http::Request<hyper::body::Incoming>,
) -> futures::future::BoxFuture<'a, Result<Response<Body>, ApiError>> {
    Box::pin(async move {
        let ports = ports(req.uri().query())?;
        let pod = agent::read_pod(c.shared, &c.target).await?;
        let name = c.target.name().to_string();
        let node = agent::node_of(&pod, &name)?;
        let ns = c.target.namespace.clone().unwrap_or_default();
        let mut path = format!(
            "/portForward/{}/{}",
            percent_encode(&ns),
            percent_encode(&name)
        );
        let q: Vec<String> = ports.iter().map(|p| format!("ports={p}")).collect();
        if !q.is_empty() {
            path = format!("{path}?{}", q.join("&"));
        }
        upgrade::proxy(c.shared, &node, &name, req, &path).await
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_repeat_or_separate_by_commas() {
        assert_eq!(
            super::ports(Some("ports=80&ports=8080%2C9090&x=1")).unwrap(),
            [80, 8080, 9090]
        );
        assert!(super::ports(Some("ports=0")).is_err());
        assert!(super::ports(Some("ports=70000")).is_err());
        assert_eq!(super::ports(None).unwrap(), Vec::<u16>::new());
    }
}
