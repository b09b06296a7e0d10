//! The proxy's metrics, with kube-proxy's names so its dashboards and alerts apply.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use component_base::metrics::{Collect, Histogram};

/// kube-proxy's buckets: 1 ms doubling to about 16 s.
const SYNC_BOUNDS: &[f64] = &[
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384,
];
/// kube-proxy's network programming buckets, in seconds.
const PROGRAMMING_BOUNDS: &[f64] = &[
    0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0,
    300.0,
];

pub struct Metrics {
    pub sync: Histogram,
    pub full_sync: Histogram,
    pub partial_sync: Histogram,
    pub programming: Histogram,
    pub last_sync_unix_ms: AtomicU64,
    pub failures: AtomicU64,
    pub service_changes: AtomicU64,
    pub endpoint_changes: AtomicU64,
    pub rules: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            sync: Histogram::new(SYNC_BOUNDS),
            full_sync: Histogram::new(SYNC_BOUNDS),
            partial_sync: Histogram::new(SYNC_BOUNDS),
            programming: Histogram::new(PROGRAMMING_BOUNDS),
            last_sync_unix_ms: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            service_changes: AtomicU64::new(0),
            endpoint_changes: AtomicU64::new(0),
            rules: AtomicU64::new(0),
        }
    }
}

fn counter(out: &mut String, name: &str, help: &str, kind: &str, v: f64) {
    writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
    )
    .ok();
}

impl Collect for Metrics {
    fn render(&self, out: &mut String) {
        self.sync.render(
            out,
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            "",
        );
        self.full_sync.render(
            out,
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for full resyncs",
            "",
        );
        self.partial_sync.render(
            out,
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs",
            "",
        );
        self.programming.render(
            out,
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
            "",
        );
        let ms = self.last_sync_unix_ms.load(Ordering::Relaxed);
        counter(
            out,
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            "gauge",
            ms as f64 / 1000.0,
        );
        counter(
            out,
            "kubeproxy_sync_proxy_rules_nftables_sync_failures_total",
            "Cumulative proxy nftables sync failures",
            "counter",
            self.failures.load(Ordering::Relaxed) as f64,
        );
        counter(
            out,
            "kubeproxy_sync_proxy_rules_service_changes_total",
            "Cumulative proxy rules Service changes",
            "counter",
            self.service_changes.load(Ordering::Relaxed) as f64,
        );
        counter(
            out,
            "kubeproxy_sync_proxy_rules_endpoint_changes_total",
            "Cumulative proxy rules Endpoint changes",
            "counter",
            self.endpoint_changes.load(Ordering::Relaxed) as f64,
        );
        counter(
            out,
            "kubeproxy_sync_proxy_rules_nftables_total",
            "Number of rules in the proxy's nftables table after the last sync",
            "gauge",
            self.rules.load(Ordering::Relaxed) as f64,
        );
    }
}
