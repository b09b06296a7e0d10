//! The scheduler's metrics, with kube-scheduler's names where one exists.

use std::sync::atomic::{AtomicU64, Ordering};

use component_base::metrics::{Collect, Histogram};

const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub struct Metrics {
    pub scheduled: AtomicU64,
    pub unschedulable: AtomicU64,
    pub errors: AtomicU64,
    pub active: AtomicU64,
    pub backoff: AtomicU64,
    pub unschedulable_pods: AtomicU64,
    /// From the pod entering the queue to its binding being accepted.
    pub e2e: Histogram,
    pub binding: Histogram,
    pub algorithm: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            scheduled: AtomicU64::new(0),
            unschedulable: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            active: AtomicU64::new(0),
            backoff: AtomicU64::new(0),
            unschedulable_pods: AtomicU64::new(0),
            e2e: Histogram::new(BUCKETS),
            binding: Histogram::new(BUCKETS),
            algorithm: Histogram::new(BUCKETS),
        }
    }
}

impl Collect for Metrics {
    fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP scheduler_schedule_attempts_total Scheduling attempts by result.\n# TYPE scheduler_schedule_attempts_total counter");
        for (r, v) in [
            ("scheduled", &self.scheduled),
            ("unschedulable", &self.unschedulable),
            ("error", &self.errors),
        ] {
            let _ = writeln!(
                out,
                "scheduler_schedule_attempts_total{{result=\"{r}\"}} {}",
                g(v)
            );
        }
        let _ = writeln!(out, "# HELP scheduler_pending_pods Pods waiting, by queue.\n# TYPE scheduler_pending_pods gauge");
        for (q, v) in [
            ("active", &self.active),
            ("backoff", &self.backoff),
            ("unschedulable", &self.unschedulable_pods),
        ] {
            let _ = writeln!(out, "scheduler_pending_pods{{queue=\"{q}\"}} {}", g(v));
        }
        self.e2e.render(
            out,
            "scheduler_pod_scheduling_sli_duration_seconds",
            "From entering the queue to binding.",
            "",
        );
        self.binding.render(
            out,
            "scheduler_binding_duration_seconds",
            "Binding requests.",
            "",
        );
        self.algorithm.render(
            out,
            "scheduler_scheduling_algorithm_duration_seconds",
            "Filtering and scoring one pod.",
            "",
        );
    }
}
