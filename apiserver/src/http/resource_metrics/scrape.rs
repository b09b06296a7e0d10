//! Reading every node's agent: `/stats/summary` over the apiserver's client certificate
//! to the agents (as `pods/log` dials them), all nodes at once (at most 64 in flight,
//! 5 s each), the result kept for the metric resolution (`--metric-resolution`, 15 s as
//! the metrics-server's) and
//! shared by the requests that come meanwhile. A node that does not answer is left out
//! of that round.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::Value;

use super::convert::{self, PodKey};
use crate::error::ApiError;
use crate::http::Shared;

const PER_NODE: Duration = Duration::from_secs(5);
const IN_FLIGHT: usize = 64;
/// The largest summary read from an agent.
const MAX_SUMMARY: usize = 64 << 20;

/// One round's metrics.
#[derive(Debug, Default)]
pub struct Round {
    pub nodes: BTreeMap<String, Value>,
    pub pods: BTreeMap<PodKey, Value>,
}

pub struct Scraper {
    /// How long one round's numbers are served.
    resolution: Duration,
    last: tokio::sync::Mutex<Option<(Instant, Arc<Round>)>>,
}

fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(obj["metadata"]["labels"].clone()).unwrap_or_default()
}

fn cached(shared: &Shared, prefix: &str) -> Result<Vec<Value>, ApiError> {
    let (objs, _) = shared
        .store
        .cache
        .list(prefix)
        .ok_or_else(|| ApiError::Unavailable("the watch cache is not ready".into()))?;
    Ok(objs
        .iter()
        .filter_map(|o| serde_json::from_slice(&o.json).ok())
        .collect())
}

impl Scraper {
    pub fn new(resolution: Duration) -> Self {
        Scraper {
            resolution,
            last: Default::default(),
        }
    }

    /// The current round, made now if the last is older than the resolution.
    pub async fn round(&self, shared: &Shared) -> Result<Arc<Round>, ApiError> {
        let mut last = self.last.lock().await;
        if let Some((at, r)) = last.as_ref() {
            if at.elapsed() < self.resolution {
                return Ok(r.clone());
            }
        }
        let r = Arc::new(scrape(shared).await?);
        *last = Some((Instant::now(), r.clone()));
        Ok(r)
    }
}

async fn scrape(shared: &Shared) -> Result<Round, ApiError> {
    let nodes = cached(shared, "/registry/nodes/")?;
    let pod_labels: BTreeMap<PodKey, BTreeMap<String, String>> = cached(shared, "/registry/pods/")?
        .iter()
        .filter_map(|p| {
            let m = &p["metadata"];
            let key = (
                m["namespace"].as_str()?.to_string(),
                m["name"].as_str()?.to_string(),
            );
            Some((key, labels_of(p)))
        })
        .collect();
    let fetches: Vec<_> = nodes
        .iter()
        .filter_map(|n| {
            let name = n["metadata"]["name"].as_str()?.to_string();
            Some(fetch(shared, name, labels_of(n)))
        })
        .collect();
    let summaries: Vec<(BTreeMap<String, String>, Option<Value>)> = futures::stream::iter(fetches)
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let mut round = Round::default();
    for (labels, s) in summaries {
        let Some(s) = s else { continue };
        if let Some((name, v)) = convert::node_metrics(&s, &labels) {
            round.nodes.insert(name, v);
        }
        round.pods.extend(convert::pod_metrics(&s, &pod_labels));
    }
    Ok(round)
}

/// One node's summary with its labels; `None` when it did not answer in time.
async fn fetch(
    shared: &Shared,
    name: String,
    labels: BTreeMap<String, String>,
) -> (BTreeMap<String, String>, Option<Value>) {
    let v = match tokio::time::timeout(PER_NODE, summary(shared, &name)).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::debug!(node = %name, error = %e, "no summary from the node");
            None
        }
        Err(_) => {
            tracing::debug!(node = %name, "the node's summary timed out");
            None
        }
    };
    (labels, v)
}

async fn summary(shared: &Shared, node: &str) -> Result<Value, ApiError> {
    let mut conn = crate::kinds::pod::agent::connect(shared, node).await?;
    let req = http::Request::builder()
        .method("GET")
        .uri("/stats/summary")
        .header("host", &conn.authority)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let resp = conn
        .sender
        .send_request(req)
        .await
        .map_err(|e| ApiError::Internal(format!("node {node}: {e}")))?;
    if !resp.status().is_success() {
        return Err(ApiError::Internal(format!(
            "node {node} answered {}",
            resp.status()
        )));
    }
    let body = http_body_util::Limited::new(resp.into_body(), MAX_SUMMARY)
        .collect()
        .await
        .map_err(|e| ApiError::Internal(format!("node {node}: {e}")))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| ApiError::Internal(format!("node {node}: {e}")))
}
