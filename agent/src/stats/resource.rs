//! `/metrics/resource`: the kubelet's resource metrics endpoint in Prometheus text, the
//! names and help the metrics-server and dashboards read (node, pod and container CPU
//! seconds and working set, container start times, `resource_scrape_error`), each sample
//! with the time it was taken. Pods are the sums of their running containers.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{Sample, Snapshot};

/// A label value with `\`, `"` and newlines escaped.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn millis(s: &Sample) -> i64 {
    s.at.as_millisecond()
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} [STABLE] {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The exposition of `snap`.
pub fn render(snap: &Snapshot) -> String {
    let mut out = String::new();
    let containers: Vec<_> = snap.containers.values().collect();
    let c_labels = |c: &super::ContainerStats| {
        format!(
            "container=\"{}\",namespace=\"{}\",pod=\"{}\"",
            esc(&c.name),
            esc(&c.pod.namespace),
            esc(&c.pod.name)
        )
    };
    header(
        &mut out,
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the container in core-seconds",
    );
    for c in &containers {
        let s = &c.series.latest;
        let _ = writeln!(
            out,
            "container_cpu_usage_seconds_total{{{}}} {} {}",
            c_labels(c),
            seconds(s.usage.cpu_ns),
            millis(s)
        );
    }
    header(
        &mut out,
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set of the container in bytes",
    );
    for c in &containers {
        let s = &c.series.latest;
        let _ = writeln!(
            out,
            "container_memory_working_set_bytes{{{}}} {} {}",
            c_labels(c),
            s.usage.working_set_bytes,
            millis(s)
        );
    }
    header(
        &mut out,
        "container_start_time_seconds",
        "gauge",
        "Start time of the container since unix epoch in seconds",
    );
    for c in &containers {
        let _ = writeln!(
            out,
            "container_start_time_seconds{{{}}} {} {}",
            c_labels(c),
            c.started.as_second(),
            millis(&c.series.latest)
        );
    }
    header(
        &mut out,
        "node_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the node in core-seconds",
    );
    if let Some(n) = &snap.node {
        let _ = writeln!(
            out,
            "node_cpu_usage_seconds_total {} {}",
            seconds(n.latest.usage.cpu_ns),
            millis(&n.latest)
        );
    }
    header(
        &mut out,
        "node_memory_working_set_bytes",
        "gauge",
        "Current working set of the node in bytes",
    );
    if let Some(n) = &snap.node {
        let _ = writeln!(
            out,
            "node_memory_working_set_bytes {} {}",
            n.latest.usage.working_set_bytes,
            millis(&n.latest)
        );
    }
    // Pods: the sums of their containers, at the latest of their samples.
    let mut pods: BTreeMap<(&str, &str), (u64, u64, i64)> = BTreeMap::new();
    for c in &containers {
        let s = &c.series.latest;
        let e = pods
            .entry((c.pod.namespace.as_str(), c.pod.name.as_str()))
            .or_default();
        e.0 = e.0.saturating_add(s.usage.cpu_ns);
        e.1 = e.1.saturating_add(s.usage.working_set_bytes);
        e.2 = e.2.max(millis(s));
    }
    header(
        &mut out,
        "pod_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the pod in core-seconds",
    );
    for ((ns, name), (cpu, _, at)) in &pods {
        let _ = writeln!(
            out,
            "pod_cpu_usage_seconds_total{{namespace=\"{}\",pod=\"{}\"}} {} {at}",
            esc(ns),
            esc(name),
            seconds(*cpu)
        );
    }
    header(
        &mut out,
        "pod_memory_working_set_bytes",
        "gauge",
        "Current working set of the pod in bytes",
    );
    for ((ns, name), (_, ws, at)) in &pods {
        let _ = writeln!(
            out,
            "pod_memory_working_set_bytes{{namespace=\"{}\",pod=\"{}\"}} {ws} {at}",
            esc(ns),
            esc(name)
        );
    }
    header(
        &mut out,
        "resource_scrape_error",
        "gauge",
        "1 if there was an error while getting container metrics, 0 otherwise",
    );
    let _ = writeln!(
        out,
        "resource_scrape_error {}",
        u8::from(snap.node.is_none())
    );
    out
}

#[cfg(test)]
mod tests {
    use super::super::{ContainerStats, Series, Usage};
    use super::*;
    use crate::runtime::PodRef;
    use jiff::Timestamp;

    #[test]
    fn the_kubelets_names_with_labels_escaped_and_pods_summed() {
        let at = Timestamp::from_second(1_700_000_000).unwrap();
        let sample = |cpu_ns, ws| Sample {
            at,
            usage: Usage {
                cpu_ns,
                working_set_bytes: ws,
                ..Default::default()
            },
        };
        let pod = PodRef {
            uid: "u".into(),
            namespace: "default".into(),
            name: "we\"b".into(),
        };
        let c = |name: &str, cpu, ws| ContainerStats {
            pod: pod.clone(),
            name: name.into(),
            image: "busybox".into(),
            started: Timestamp::from_second(1_699_999_000).unwrap(),
            series: Series {
                latest: sample(cpu, ws),
                previous: None,
            },
        };
        let mut snap = Snapshot::default();
        snap.containers
            .insert("1".into(), c("app", 1_500_000_000, 1000));
        snap.containers
            .insert("2".into(), c("side", 500_000_000, 24));
        snap.node = Some(Series {
            latest: sample(2_000_000_000_000, 1 << 30),
            previous: None,
        });
        let text = render(&snap);
        for line in [
            "container_cpu_usage_seconds_total{container=\"app\",namespace=\"default\",pod=\"we\\\"b\"} 1.5 1700000000000",
            "container_memory_working_set_bytes{container=\"side\",namespace=\"default\",pod=\"we\\\"b\"} 24 1700000000000",
            "container_start_time_seconds{container=\"app\",namespace=\"default\",pod=\"we\\\"b\"} 1699999000 1700000000000",
            "node_cpu_usage_seconds_total 2000 1700000000000",
            "node_memory_working_set_bytes 1073741824 1700000000000",
            "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"we\\\"b\"} 2 1700000000000",
            "pod_memory_working_set_bytes{namespace=\"default\",pod=\"we\\\"b\"} 1024 1700000000000",
            "resource_scrape_error 0",
            "# TYPE container_cpu_usage_seconds_total counter",
            "# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(render(&Snapshot::default()).contains("resource_scrape_error 1"));
    }
}
