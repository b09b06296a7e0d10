//! `/metrics/cadvisor`: the collector's samples in cAdvisor's names and labels, as the
//! kubelet serves them to Prometheus, so dashboards and alerts written for kube's
//! `container_*` series apply. Each running container is one series per metric with
//! cAdvisor's labels (`container`, `id`, `image`, `name`, `namespace`, `pod`; CPU also
//! `cpu="total"`) and the time of its sample; `machine_*` describe the node.

use std::fmt::Write;

use super::{ContainerStats, Snapshot};
use crate::machine::Machine;

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// cAdvisor's labels of a container: `id` is the runtime's container ID and `name` the
/// runtime's name for it (the ID here), as cAdvisor reports them for its Docker handler.
fn labels(id: &str, c: &ContainerStats) -> String {
    format!(
        "container=\"{}\",id=\"{}\",image=\"{}\",name=\"{}\",namespace=\"{}\",pod=\"{}\"",
        esc(&c.name),
        esc(id),
        esc(&c.image),
        esc(id),
        esc(&c.pod.namespace),
        esc(&c.pod.name)
    )
}

/// The exposition of `snap` on a node with `machine`'s resources.
pub fn render(snap: &Snapshot, machine: &Machine) -> String {
    let mut out = String::new();
    let series = |out: &mut String,
                  name: &str,
                  kind: &str,
                  help: &str,
                  value: &dyn Fn(&ContainerStats) -> Option<String>,
                  extra: &str| {
        header(out, name, kind, help);
        for (id, c) in &snap.containers {
            if let Some(v) = value(c) {
                let at = c.series.latest.at.as_millisecond();
                let _ = writeln!(out, "{name}{{{}{extra}}} {v} {at}", labels(id, c));
            }
        }
    };
    series(
        &mut out,
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed in seconds.",
        &|c| Some((c.series.latest.usage.cpu_ns as f64 / 1e9).to_string()),
        ",cpu=\"total\"",
    );
    series(
        &mut out,
        "container_memory_usage_bytes",
        "gauge",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        &|c| Some(c.series.latest.usage.memory_bytes.to_string()),
        "",
    );
    series(
        &mut out,
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set in bytes.",
        &|c| Some(c.series.latest.usage.working_set_bytes.to_string()),
        "",
    );
    series(
        &mut out,
        "container_memory_rss",
        "gauge",
        "Size of RSS in bytes.",
        &|c| c.series.latest.usage.rss_bytes.map(|b| b.to_string()),
        "",
    );
    series(
        &mut out,
        "container_start_time_seconds",
        "gauge",
        "Start time of the container since unix epoch in seconds.",
        &|c| Some(c.started.as_second().to_string()),
        "",
    );
    series(
        &mut out,
        "container_last_seen",
        "gauge",
        "Last time a container was seen by the exporter",
        &|c| Some(c.series.latest.at.as_second().to_string()),
        "",
    );
    header(
        &mut out,
        "machine_cpu_cores",
        "gauge",
        "Number of logical CPU cores.",
    );
    let _ = writeln!(out, "machine_cpu_cores {}", machine.cpus);
    header(
        &mut out,
        "machine_memory_bytes",
        "gauge",
        "Amount of memory installed on the machine.",
    );
    let _ = writeln!(out, "machine_memory_bytes {}", machine.memory_bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Sample, Series, Usage};
    use super::*;
    use crate::runtime::PodRef;
    use jiff::Timestamp;

    #[test]
    fn cadvisors_names_and_labels() {
        let at = Timestamp::from_second(1_700_000_000).unwrap();
        let mut snap = Snapshot::default();
        snap.containers.insert(
            "docker://abc".into(),
            ContainerStats {
                pod: PodRef {
                    uid: "u".into(),
                    namespace: "web".into(),
                    name: "front-1".into(),
                },
                name: "nginx".into(),
                image: "nginx:1.27".into(),
                started: Timestamp::from_second(1_699_999_000).unwrap(),
                series: Series {
                    latest: Sample {
                        at,
                        usage: Usage {
                            cpu_ns: 2_500_000_000,
                            memory_bytes: 4096,
                            working_set_bytes: 3000,
                            rss_bytes: None,
                        },
                    },
                    previous: None,
                },
            },
        );
        let machine = Machine {
            cpus: 2,
            memory_bytes: 1 << 30,
            ..Machine::default()
        };
        let text = render(&snap, &machine);
        let l = "container=\"nginx\",id=\"docker://abc\",image=\"nginx:1.27\",name=\"docker://abc\",namespace=\"web\",pod=\"front-1\"";
        for line in [
            format!("container_cpu_usage_seconds_total{{{l},cpu=\"total\"}} 2.5 1700000000000"),
            format!("container_memory_usage_bytes{{{l}}} 4096 1700000000000"),
            format!("container_memory_working_set_bytes{{{l}}} 3000 1700000000000"),
            format!("container_start_time_seconds{{{l}}} 1699999000 1700000000000"),
            format!("container_last_seen{{{l}}} 1700000000 1700000000000"),
            "machine_cpu_cores 2".to_string(),
            "machine_memory_bytes 1073741824".to_string(),
            "# TYPE container_cpu_usage_seconds_total counter".to_string(),
        ] {
            assert!(text.lines().any(|x| x == line), "missing {line} in\n{text}");
        }
        assert!(
            !text.contains("container_memory_rss{"),
            "no RSS series where the kernel did not tell it"
        );
    }
}
