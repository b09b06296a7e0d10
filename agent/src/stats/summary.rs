//! `/stats/summary`: the kubelet's stats/v1alpha1 Summary (node and per-pod, per-container
//! CPU and memory with the sample's time; `usageNanoCores` once two samples give a
//! rate). Pods are the sums of their running containers.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{ContainerStats, Series, Snapshot};

fn cpu(s: &Series) -> Value {
    let mut v = json!({
        "time": s.latest.at.to_string(),
        "usageCoreNanoSeconds": s.latest.usage.cpu_ns,
    });
    if let Some(n) = s.nanocores() {
        v["usageNanoCores"] = n.into();
    }
    v
}

fn memory(s: &Series) -> Value {
    let u = &s.latest.usage;
    let mut v = json!({
        "time": s.latest.at.to_string(),
        "usageBytes": u.memory_bytes,
        "workingSetBytes": u.working_set_bytes,
    });
    if let Some(r) = u.rss_bytes {
        v["rssBytes"] = r.into();
    }
    v
}

/// The Summary of `snap` for node `node`.
pub fn render(node: &str, snap: &Snapshot) -> Value {
    let mut n = json!({ "nodeName": node });
    if let Some(t) = snap.node_started {
        n["startTime"] = t.to_string().into();
    }
    if let Some(s) = &snap.node {
        n["cpu"] = cpu(s);
        n["memory"] = memory(s);
    }
    let mut pods: BTreeMap<&str, Vec<&ContainerStats>> = BTreeMap::new();
    for c in snap.containers.values() {
        pods.entry(c.pod.uid.as_str()).or_default().push(c);
    }
    let pods: Vec<Value> = pods
        .values()
        .map(|cs| {
            let p = &cs[0].pod;
            let (mut cpu_ns, mut mem, mut ws, mut rate) = (0u64, 0u64, 0u64, Some(0u64));
            for c in cs {
                let u = &c.series.latest.usage;
                cpu_ns = cpu_ns.saturating_add(u.cpu_ns);
                mem = mem.saturating_add(u.memory_bytes);
                ws = ws.saturating_add(u.working_set_bytes);
                rate = rate
                    .zip(c.series.nanocores())
                    .map(|(a, b)| a.saturating_add(b));
            }
            let time = cs
                .iter()
                .map(|c| c.series.latest.at)
                .max()
                .map(|t| t.to_string());
            let started = cs.iter().map(|c| c.started).min().map(|t| t.to_string());
            let mut pod_cpu = json!({"time": time, "usageCoreNanoSeconds": cpu_ns});
            if let Some(r) = rate {
                pod_cpu["usageNanoCores"] = r.into();
            }
            json!({
                "podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
                "startTime": started,
                "containers": cs.iter().map(|c| json!({
                    "name": c.name,
                    "startTime": c.started.to_string(),
                    "cpu": cpu(&c.series),
                    "memory": memory(&c.series),
                })).collect::<Vec<_>>(),
                "cpu": pod_cpu,
                "memory": {"time": time, "usageBytes": mem, "workingSetBytes": ws},
            })
        })
        .collect();
    json!({ "node": n, "pods": pods })
}

#[cfg(test)]
mod tests {
    use super::super::{Sample, Usage};
    use super::*;
    use crate::runtime::PodRef;
    use jiff::Timestamp;

    #[test]
    fn the_summary_has_rates_once_two_samples_exist() {
        let at = |s: i64| Timestamp::from_second(1_700_000_000 + s).unwrap();
        let sample = |s, cpu_ns| Sample {
            at: at(s),
            usage: Usage {
                cpu_ns,
                memory_bytes: 2048,
                working_set_bytes: 1024,
                rss_bytes: Some(512),
            },
        };
        let pod = PodRef {
            uid: "u1".into(),
            namespace: "ns".into(),
            name: "p".into(),
        };
        let mut snap = Snapshot::default();
        snap.containers.insert(
            "a".into(),
            ContainerStats {
                pod: pod.clone(),
                name: "a".into(),
                image: "busybox".into(),
                started: at(-100),
                series: Series {
                    latest: sample(10, 3_000_000_000),
                    previous: Some(sample(0, 1_000_000_000)),
                },
            },
        );
        snap.containers.insert(
            "b".into(),
            ContainerStats {
                pod,
                name: "b".into(),
                image: "busybox".into(),
                started: at(-50),
                series: Series {
                    latest: sample(10, 0),
                    previous: None,
                },
            },
        );
        let v = render("n1", &snap);
        assert_eq!(v["node"]["nodeName"], "n1");
        let p = &v["pods"][0];
        assert_eq!(p["podRef"]["uid"], "u1");
        assert_eq!(p["containers"][0]["cpu"]["usageNanoCores"], 200_000_000);
        assert!(p["containers"][1]["cpu"].get("usageNanoCores").is_none());
        assert!(
            p["cpu"].get("usageNanoCores").is_none(),
            "a container has no rate yet"
        );
        assert_eq!(p["cpu"]["usageCoreNanoSeconds"], 3_000_000_000u64);
        assert_eq!(p["memory"]["workingSetBytes"], 2048);
        assert_eq!(p["containers"][0]["memory"]["rssBytes"], 512);
        assert_eq!(p["startTime"], at(-100).to_string());
    }
}
