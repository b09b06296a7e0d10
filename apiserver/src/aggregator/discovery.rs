//! Aggregated backends' resource lists (`/apis/<group>/<version>`), fetched when the
//! aggregated discovery document is asked for and kept for `FRESH`, failures too, so a
//! backend that is down costs discovery at most one `TIMEOUT` per `FRESH`. A version
//! whose list could not be fetched is listed without resources, as kube lists a stale one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Aggregator, Backend};

const FRESH: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(2);
/// The most of a resource list read.
const LIMIT: usize = 4 << 20;

#[derive(Default)]
pub struct Fetched {
    lists: Mutex<HashMap<String, (Instant, Option<Value>)>>,
}

impl Fetched {
    pub async fn get(&self, agg: &Aggregator, b: &Backend) -> Option<Value> {
        {
            let lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, v)) = lists.get(&b.name) {
                if at.elapsed() < FRESH {
                    return v.clone();
                }
            }
        }
        let path = format!("/apis/{}/{}", b.group, b.version);
        let fetched = match tokio::time::timeout(TIMEOUT, super::proxy::get(agg, b, &path, LIMIT))
            .await
        {
            Ok(Ok((status, body))) if status.is_success() => serde_json::from_slice::<Value>(&body)
                .ok()
                .filter(|v| v["resources"].is_array()),
            Ok(Ok((status, _))) => {
                tracing::debug!(apiservice = %b.name, %status, "aggregated discovery refused");
                None
            }
            Ok(Err(e)) => {
                tracing::debug!(apiservice = %b.name, error = %e, "aggregated discovery failed");
                None
            }
            Err(_) => None,
        };
        let mut lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        lists.insert(b.name.clone(), (Instant::now(), fetched.clone()));
        fetched
    }
}
