//! Reading every node's agent: `/stats/summary` over the apiserver's client certificate
//! to the agents (as `pods/log` dials them), all nodes at once (at most 64 in flight,
//! 5 s each), the result kept for the metric resolution (`--metric-resolution`, 15 s as
//! the metrics-server's) and shared by the requests that come meanwhile. A node that does
//! not answer is left out of that round.
//!
//! Requests do not wait for a round while the last one is younger than twice the
//! resolution: they get it, and the first of them starts the next round in the
//! background (a round of 1,000 nodes takes seconds; the metrics-server likewise answers
//! from its last scrape). So numbers are at most two resolutions old while someone asks
//! at least once per resolution (the HPA does), and a request after a longer silence
//! waits for a fresh round. One round runs at a time.

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
    last: std::sync::Mutex<Last>,
    /// Held while a round is made.
    making: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Last {
    round: Option<(Instant, Arc<Round>)>,
    /// A background round has been started and has not ended.
    refreshing: bool,
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
            making: Default::default(),
        }
    }

    fn last(&self) -> std::sync::MutexGuard<'_, Last> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last round if it is younger than `max_age`.
    fn fresh(&self, max_age: Duration) -> Option<Arc<Round>> {
        let last = self.last();
        let (at, r) = last.round.as_ref()?;
        (at.elapsed() < max_age).then(|| r.clone())
    }

    fn store(&self, r: Arc<Round>) {
        let mut last = self.last();
        last.round = Some((Instant::now(), r));
        last.refreshing = false;
    }

    /// The round to answer from (see the module contract).
    pub async fn round(&self, shared: &Arc<Shared>) -> Result<Arc<Round>, ApiError> {
        if let Some(r) = self.fresh(self.resolution) {
            return Ok(r);
        }
        if let Some(r) = self.fresh(self.resolution.saturating_mul(2)) {
            let start = {
                let mut last = self.last();
                !std::mem::replace(&mut last.refreshing, true)
            };
            if start {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let me = &shared.resource_metrics;
                    let _making = me.making.lock().await;
                    if me.fresh(me.resolution).is_some() {
                        // A waiting request made one meanwhile.
                        me.last().refreshing = false;
                        return;
                    }
                    match scrape(&shared).await {
                        Ok(r) => me.store(Arc::new(r)),
                        Err(e) => {
                            tracing::warn!(error = %e, "a background metrics round failed");
                            me.last().refreshing = false;
                        }
                    }
                });
            }
            return Ok(r);
        }
        let _making = self.making.lock().await;
        // Another request may have made one while this one waited.
        if let Some(r) = self.fresh(self.resolution) {
            return Ok(r);
        }
        let r = Arc::new(scrape(shared).await?);
        self.store(r.clone());
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
