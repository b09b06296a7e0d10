//! The scheduler's metrics, with kube-scheduler's names where one exists. Attempts carry
//! kube's `profile` label: the scheduler's one profile is its `--scheduler-name`.

use std::sync::atomic::{AtomicU64, Ordering};

use component_base::metrics::{Collect, Histogram};

const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How a scheduling attempt ended, kube's `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Scheduled,
    Unschedulable,
    Error,
}

impl Attempt {
    const ALL: [Attempt; 3] = [Attempt::Scheduled, Attempt::Unschedulable, Attempt::Error];

    fn label(self) -> &'static str {
        match self {
            Attempt::Scheduled => "scheduled",
            Attempt::Unschedulable => "unschedulable",
            Attempt::Error => "error",
        }
    }
}

pub struct Metrics {
    /// The `profile` label's value (the escaped `--scheduler-name`).
    profile: String,
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
    /// Filtering and scoring plus binding, by result (`Attempt::ALL`'s order).
    attempts: [Histogram; 3],
}

impl Metrics {
    pub fn new(profile: &str) -> Self {
        Self {
            profile: profile
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n"),
            scheduled: AtomicU64::new(0),
            unschedulable: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            active: AtomicU64::new(0),
            backoff: AtomicU64::new(0),
            unschedulable_pods: AtomicU64::new(0),
            e2e: Histogram::new(BUCKETS),
            binding: Histogram::new(BUCKETS),
            algorithm: Histogram::new(BUCKETS),
            attempts: [
                Histogram::new(BUCKETS),
                Histogram::new(BUCKETS),
                Histogram::new(BUCKETS),
            ],
        }
    }

    /// One attempt that ended as `result` after `secs` (the algorithm, and the binding
    /// when it got that far).
    pub fn attempt(&self, result: Attempt, secs: f64) {
        let (counter, i) = match result {
            Attempt::Scheduled => (&self.scheduled, 0),
            Attempt::Unschedulable => (&self.unschedulable, 1),
            Attempt::Error => (&self.errors, 2),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.attempts[i].observe(secs);
    }
}

impl Collect for Metrics {
    fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let p = &self.profile;
        let _ = writeln!(out, "# HELP scheduler_schedule_attempts_total [STABLE] Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.\n# TYPE scheduler_schedule_attempts_total counter");
        for (r, v) in [
            ("scheduled", &self.scheduled),
            ("unschedulable", &self.unschedulable),
            ("error", &self.errors),
        ] {
            let _ = writeln!(
                out,
                "scheduler_schedule_attempts_total{{profile=\"{p}\",result=\"{r}\"}} {}",
                g(v)
            );
        }
        flotilla_core::histogram::Histogram::render_header(
            out,
            "scheduler_scheduling_attempt_duration_seconds",
            "[STABLE] Scheduling attempt latency in seconds (scheduling algorithm + binding)",
        );
        for (a, h) in Attempt::ALL.iter().zip(&self.attempts) {
            h.render_body(
                out,
                "scheduler_scheduling_attempt_duration_seconds",
                &format!("profile=\"{p}\",result=\"{}\"", a.label()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_counted_and_timed_by_profile_and_result() {
        let m = Metrics::new("default-scheduler");
        m.attempt(Attempt::Scheduled, 0.002);
        m.attempt(Attempt::Unschedulable, 0.02);
        m.attempt(Attempt::Unschedulable, 0.02);
        let mut out = String::new();
        m.render(&mut out);
        for line in [
            "scheduler_schedule_attempts_total{profile=\"default-scheduler\",result=\"scheduled\"} 1",
            "scheduler_schedule_attempts_total{profile=\"default-scheduler\",result=\"unschedulable\"} 2",
            "scheduler_schedule_attempts_total{profile=\"default-scheduler\",result=\"error\"} 0",
            "scheduler_scheduling_attempt_duration_seconds_count{profile=\"default-scheduler\",result=\"unschedulable\"} 2",
            "scheduler_scheduling_attempt_duration_seconds_bucket{profile=\"default-scheduler\",result=\"scheduled\",le=\"0.005\"} 1",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in\n{out}");
        }
        assert_eq!(
            out.matches("# TYPE scheduler_scheduling_attempt_duration_seconds histogram")
                .count(),
            1
        );
    }
}
