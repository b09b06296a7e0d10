//! client-go's work queue metrics (`workqueue_depth`, `workqueue_adds_total`,
//! `workqueue_queue_duration_seconds`, `workqueue_work_duration_seconds`,
//! `workqueue_retries_total`, each by the controller's `name`), so kube-controller-manager's
//! dashboards and alerts apply. A queue is named when its controller starts
//! (`WorkQueue::export_metrics_as`); [`Exported`] renders every named queue
//! of the process on the secure port's `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use component_base::metrics::{Collect, Histogram};

/// client-go's buckets: 10 ns times powers of ten up to 100 s.
const BOUNDS: &[f64] = &[1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0];

pub struct QueueMetrics {
    pub adds: AtomicU64,
    pub retries: AtomicU64,
    pub depth: AtomicI64,
    queue_duration: Histogram,
    work_duration: Histogram,
}

impl QueueMetrics {
    fn new() -> Self {
        QueueMetrics {
            adds: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            depth: AtomicI64::new(0),
            queue_duration: Histogram::new(BOUNDS),
            work_duration: Histogram::new(BOUNDS),
        }
    }
    pub fn waited(&self, d: Duration) {
        self.queue_duration.observe(d.as_secs_f64());
    }
    pub fn worked(&self, d: Duration) {
        self.work_duration.observe(d.as_secs_f64());
    }
}

static QUEUES: LazyLock<Mutex<BTreeMap<&'static str, Arc<QueueMetrics>>>> =
    LazyLock::new(|| Mutex::new(BTreeMap::new()));

/// The metrics of the queue named `name` (one per name in the process).
pub fn named(name: &'static str) -> Arc<QueueMetrics> {
    QUEUES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(name)
        .or_insert_with(|| Arc::new(QueueMetrics::new()))
        .clone()
}

/// Every named queue's metrics, for the registry.
pub struct Exported;

impl Collect for Exported {
    fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let queues: Vec<(&'static str, Arc<QueueMetrics>)> = QUEUES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(n, m)| (*n, m.clone()))
            .collect();
        let plain: [(&str, &str, &str, fn(&QueueMetrics) -> i64); 3] = [
            (
                "workqueue_depth",
                "Current depth of workqueue",
                "gauge",
                |m| m.depth.load(Ordering::Relaxed).max(0),
            ),
            (
                "workqueue_adds_total",
                "Total number of adds handled by workqueue",
                "counter",
                |m| i64::try_from(m.adds.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
            ),
            (
                "workqueue_retries_total",
                "Total number of retries handled by workqueue",
                "counter",
                |m| i64::try_from(m.retries.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
            ),
        ];
        for (name, help, kind, get) in plain {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (q, m) in &queues {
                let _ = writeln!(out, "{name}{{name=\"{q}\"}} {}", get(m));
            }
        }
        for (name, help, work) in [
            (
                "workqueue_queue_duration_seconds",
                "How long in seconds an item stays in workqueue before being requested.",
                false,
            ),
            (
                "workqueue_work_duration_seconds",
                "How long in seconds processing an item from workqueue takes.",
                true,
            ),
        ] {
            flotilla_core::histogram::Histogram::render_header(out, name, help);
            for (q, m) in &queues {
                let h = if work {
                    &m.work_duration
                } else {
                    &m.queue_duration
                };
                h.render_body(out, name, &format!("name=\"{q}\""));
            }
        }
    }
}
