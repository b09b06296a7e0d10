//! The HPA's view of the resource metrics API (kube's `resourceMetricsClient`): one list of
//! PodMetrics for the target's selector, read per metric as a usage per pod (millicores
//! for `cpu`, bytes for anything else), summed over the pod's containers or taken from
//! one container. A pod that lacks the resource in any container it is read from is left
//! out, as kube leaves it out.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::replicas::Metric;

/// The window a PodMetrics names when it does not parse (metrics-server's default).
const DEFAULT_WINDOW: Duration = Duration::from_secs(30);

/// Usage of `resource` per pod name, from a `PodMetricsList`.
pub fn usage(list: &Value, resource: &str, container: Option<&str>) -> BTreeMap<String, Metric> {
    let mut out = BTreeMap::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let Some(name) = item["metadata"]["name"].as_str() else {
            continue;
        };
        let Some(timestamp) = item["timestamp"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        else {
            continue;
        };
        let window = item["window"]
            .as_str()
            .and_then(|w| flotilla_core::duration::parse_duration(w).ok())
            .unwrap_or(DEFAULT_WINDOW);
        let mut total = 0i64;
        let mut found = false;
        let mut complete = true;
        for c in item["containers"].as_array().into_iter().flatten() {
            if container.is_some_and(|n| c["name"].as_str() != Some(n)) {
                continue;
            }
            let q = c["usage"][resource].as_str();
            let v = q.and_then(|q| {
                if resource == "cpu" {
                    flotilla_core::quantity::milli(q)
                } else {
                    flotilla_core::quantity::units(q)
                }
            });
            match v {
                Some(v) => {
                    total = total.saturating_add(v);
                    found = true;
                }
                None => complete = false,
            }
        }
        if found && complete {
            out.insert(
                name.to_string(),
                Metric {
                    value: total,
                    timestamp,
                    window,
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_is_summed_per_pod_or_read_from_one_container() {
        let list = json!({"items": [
            {"metadata": {"name": "a"}, "timestamp": "2026-12-05T10:00:00Z", "window": "10s",
             "containers": [{"name": "app", "usage": {"cpu": "150000000n", "memory": "1Ki"}},
                            {"name": "side", "usage": {"cpu": "50m", "memory": "1Mi"}}]},
            {"metadata": {"name": "b"}, "timestamp": "2026-12-05T10:00:00Z", "window": "10s",
             "containers": [{"name": "app", "usage": {"memory": "2Ki"}}]},
            {"metadata": {"name": "c"}, "timestamp": "bad", "containers": []}
        ]});
        let cpu = usage(&list, "cpu", None);
        assert_eq!(
            cpu.keys().collect::<Vec<_>>(),
            ["a"],
            "b lacks cpu, c has no time"
        );
        assert_eq!(cpu["a"].value, 200);
        assert_eq!(cpu["a"].window, Duration::from_secs(10));
        let mem = usage(&list, "memory", Some("app"));
        assert_eq!((mem["a"].value, mem["b"].value), (1024, 2048));
    }
}
