//! Latency histograms by a label set, shared by the request metrics and the etcd client
//! (which `metrics.rs` reads, so it must not depend on it).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use flotilla_core::histogram::Histogram;

/// Upper bounds of the latency buckets, in seconds (kube-apiserver's, shortened).
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
];

/// Histograms by a label set.
pub type Histograms<K> = Mutex<BTreeMap<K, Histogram>>;

pub fn observe<K: Ord>(h: &Histograms<K>, key: K, elapsed: Duration) {
    h.lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key)
        .or_insert_with(latency)
        .observe_duration(elapsed);
}

/// An empty latency histogram over [`BUCKETS`].
pub fn latency() -> Histogram {
    Histogram::new(BUCKETS)
}
