//! `/metrics`: the kubelet's own metrics under its names — the node's name, the pods and
//! containers the runtime holds (`kubelet_running_pods`, `kubelet_running_containers` by
//! `container_state`), how long pods take from the agent first seeing them to running
//! (`kubelet_pod_start_duration_seconds`, observed by the pod workers) — the log
//! shipper's counters, and the process's own `process_*` series.

use std::fmt::Write;

use std::sync::Arc;

use component_base::metrics::{Collect, Histogram};

use super::{Snapshot, CONTAINER_STATES};

/// The kubelet's buckets for pod start latency, in seconds.
const POD_START_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0,
    300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];

pub struct KubeletMetrics {
    /// From a pod's worker starting (the agent first seeing the pod) to the pod's first
    /// Running status.
    pub pod_start: Histogram,
    /// More of the agent's series on `/metrics` (the log shipper's counters).
    extra: Vec<Arc<dyn Collect>>,
}

impl Default for KubeletMetrics {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl KubeletMetrics {
    pub fn new(extra: Vec<Arc<dyn Collect>>) -> Self {
        KubeletMetrics {
            pod_start: Histogram::new(POD_START_BUCKETS),
            extra,
        }
    }
}

impl KubeletMetrics {
    /// The kubelet's series for node `node`, whose runtime was last seen as in `snap`.
    pub fn render(&self, node: &str, snap: &Snapshot) -> String {
        let mut out = String::new();
        let node = node.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(
            out,
            "# HELP kubelet_node_name [ALPHA] The node's name. The count is always 1.\n\
             # TYPE kubelet_node_name gauge\nkubelet_node_name{{node=\"{node}\"}} 1"
        );
        let _ = writeln!(
            out,
            "# HELP kubelet_running_pods [ALPHA] Number of pods that have a running pod sandbox\n\
             # TYPE kubelet_running_pods gauge\nkubelet_running_pods {}",
            snap.running_pods
        );
        let _ = writeln!(
            out,
            "# HELP kubelet_running_containers [ALPHA] Number of containers currently running\n\
             # TYPE kubelet_running_containers gauge"
        );
        for (state, n) in CONTAINER_STATES.iter().zip(snap.containers_by_state) {
            let _ = writeln!(
                out,
                "kubelet_running_containers{{container_state=\"{state}\"}} {n}"
            );
        }
        self.pod_start.render(
            &mut out,
            "kubelet_pod_start_duration_seconds",
            "[ALPHA] Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
            "",
        );
        for c in &self.extra {
            c.render(&mut out);
        }
        component_base::metrics::render_process(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubelets_names() {
        let m = KubeletMetrics::default();
        m.pod_start.observe(1.5);
        let snap = Snapshot {
            running_pods: 3,
            containers_by_state: [0, 4, 2],
            ..Snapshot::default()
        };
        let text = m.render("n\"1", &snap);
        for line in [
            "kubelet_node_name{node=\"n\\\"1\"} 1",
            "kubelet_running_pods 3",
            "kubelet_running_containers{container_state=\"running\"} 4",
            "kubelet_running_containers{container_state=\"exited\"} 2",
            "kubelet_running_containers{container_state=\"created\"} 0",
            "kubelet_pod_start_duration_seconds_bucket{le=\"1\"} 0",
            "kubelet_pod_start_duration_seconds_bucket{le=\"2\"} 1",
            "kubelet_pod_start_duration_seconds_count 1",
            "# TYPE kubelet_pod_start_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
    }
}
