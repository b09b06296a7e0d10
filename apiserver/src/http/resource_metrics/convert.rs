//! Pure: the agents' stats/v1alpha1 summaries turned into metrics.k8s.io/v1beta1
//! NodeMetrics and PodMetrics as the metrics-server shapes them (CPU in nanocores, `n`;
//! memory working set in `Ki`), with the node's or pod's labels for selectors. A pod or
//! node with no CPU rate yet (its agent has one sample) is left out, as the
//! metrics-server leaves out what it has no rate for.

use std::collections::BTreeMap;

use serde_json::{json, Value};

fn now() -> Value {
    crate::store::time_value(&crate::store::now())
}

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";

fn cpu(v: &Value) -> Option<String> {
    Some(format!("{}n", v.get("usageNanoCores")?.as_u64()?))
}

fn memory(v: &Value) -> Option<String> {
    let bytes = v.get("workingSetBytes")?.as_u64()?;
    Some(format!("{}Ki", bytes / 1024))
}

/// The rate window: the agents sample every 10 s by default (`--housekeeping-interval`).
pub const WINDOW: &str = "10s";

fn usage(cpu_v: &Value, mem_v: &Value) -> Option<Value> {
    Some(json!({ "cpu": cpu(cpu_v)?, "memory": memory(mem_v)? }))
}

/// The NodeMetrics of a node's summary.
pub fn node_metrics(summary: &Value, labels: &BTreeMap<String, String>) -> Option<(String, Value)> {
    let node = summary.get("node")?;
    let name = node.get("nodeName")?.as_str()?.to_string();
    let u = usage(node.get("cpu")?, node.get("memory")?)?;
    let time = node["cpu"].get("time").cloned().unwrap_or(Value::Null);
    let v = json!({
        "kind": "NodeMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {"name": name, "labels": labels, "creationTimestamp": now()},
        "timestamp": time,
        "window": WINDOW,
        "usage": u,
    });
    Some((name, v))
}

/// Where a pod is: (namespace, name).
pub type PodKey = (String, String);

/// The PodMetrics of every pod in a node's summary whose containers all have a rate;
/// `labels` gives each pod's labels (a pod not in it, deleted meanwhile, is left out).
pub fn pod_metrics(
    summary: &Value,
    labels: &BTreeMap<PodKey, BTreeMap<String, String>>,
) -> Vec<(PodKey, Value)> {
    let mut out = Vec::new();
    for p in summary
        .get("pods")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let r = &p["podRef"];
        let (Some(ns), Some(name)) = (r["namespace"].as_str(), r["name"].as_str()) else {
            continue;
        };
        let key = (ns.to_string(), name.to_string());
        let Some(l) = labels.get(&key) else { continue };
        let containers: Option<Vec<Value>> = p["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                Some(json!({
                    "name": c.get("name")?.as_str()?,
                    "usage": usage(c.get("cpu")?, c.get("memory")?)?,
                }))
            })
            .collect();
        let Some(containers) = containers.filter(|c| !c.is_empty()) else {
            continue;
        };
        let v = json!({
            "kind": "PodMetrics",
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "metadata": {"name": name, "namespace": ns, "labels": l,
                         "creationTimestamp": now()},
            "timestamp": p["cpu"].get("time").cloned().unwrap_or(Value::Null),
            "window": WINDOW,
            "containers": containers,
        });
        out.push((key, v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Value {
        json!({
            "node": {"nodeName": "n1",
                     "cpu": {"time": "2026-12-05T10:00:00Z", "usageNanoCores": 250_000_000u64, "usageCoreNanoSeconds": 9},
                     "memory": {"time": "2026-12-05T10:00:00Z", "workingSetBytes": 1_048_576u64}},
            "pods": [
                {"podRef": {"namespace": "default", "name": "web", "uid": "u"},
                 "cpu": {"time": "2026-12-05T10:00:00Z", "usageNanoCores": 5},
                 "containers": [
                    {"name": "app", "cpu": {"usageNanoCores": 200_000_000u64}, "memory": {"workingSetBytes": 4096}},
                    {"name": "side", "cpu": {"usageNanoCores": 1000}, "memory": {"workingSetBytes": 2047}}]},
                {"podRef": {"namespace": "default", "name": "young", "uid": "v"},
                 "containers": [{"name": "c", "cpu": {"usageCoreNanoSeconds": 1}, "memory": {"workingSetBytes": 1}}]},
                {"podRef": {"namespace": "default", "name": "gone", "uid": "w"},
                 "containers": [{"name": "c", "cpu": {"usageNanoCores": 1}, "memory": {"workingSetBytes": 1}}]}
            ]
        })
    }

    #[test]
    fn node_metrics_are_nanocores_and_kibibytes() {
        let labels = BTreeMap::from([("role".to_string(), "worker".to_string())]);
        let (name, v) = node_metrics(&summary(), &labels).unwrap();
        assert_eq!(name, "n1");
        assert_eq!(v["usage"], json!({"cpu": "250000000n", "memory": "1024Ki"}));
        assert_eq!(v["metadata"]["labels"]["role"], "worker");
        assert_eq!(v["timestamp"], "2026-12-05T10:00:00Z");
        assert_eq!(v["window"], "10s");
        let mut no_rate = summary();
        no_rate["node"]["cpu"] = json!({"usageCoreNanoSeconds": 9});
        assert!(node_metrics(&no_rate, &labels).is_none());
    }

    #[test]
    fn pods_with_rates_and_known_labels_only() {
        let mut labels = BTreeMap::new();
        for n in ["web", "young"] {
            labels.insert(
                ("default".to_string(), n.to_string()),
                BTreeMap::from([("app".to_string(), n.to_string())]),
            );
        }
        let pods = pod_metrics(&summary(), &labels);
        assert_eq!(
            pods.len(),
            1,
            "young has no rate yet, gone is not a pod any more"
        );
        let (key, v) = &pods[0];
        assert_eq!(key, &("default".to_string(), "web".to_string()));
        assert_eq!(
            v["containers"][0],
            json!({"name": "app", "usage": {"cpu": "200000000n", "memory": "4Ki"}})
        );
        assert_eq!(v["containers"][1]["usage"]["memory"], "1Ki");
        assert_eq!(v["metadata"]["labels"]["app"], "web");
    }
}
