//! `/metrics` in Prometheus' text format: requests by verb, resource and code with a
//! latency histogram (kube-apiserver's `apiserver_request_total` and
//! `apiserver_request_duration_seconds`), requests in flight and rejected by the in-flight
//! limits, and open watches.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds (kube-apiserver's, shortened).
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: Vec<u64>,
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), Series>>,
    pub inflight_readonly: AtomicI64,
    pub inflight_mutating: AtomicI64,
    pub rejected: AtomicU64,
    pub watches: AtomicI64,
}

impl Metrics {
    pub fn observe(&self, verb: &str, resource: &str, code: u16, elapsed: Duration) {
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let s = m
            .entry((verb.to_string(), resource.to_string(), code))
            .or_insert_with(|| Series {
                buckets: vec![0; BUCKETS.len()],
                ..Default::default()
            });
        let secs = elapsed.as_secs_f64();
        s.count += 1;
        s.sum += secs;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                s.buckets[i] += 1;
            }
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        out.push_str("# HELP apiserver_request_total Requests by verb, resource and HTTP code.\n");
        out.push_str("# TYPE apiserver_request_total counter\n");
        for ((verb, resource, code), s) in m.iter() {
            let _ = writeln!(
                out,
                "apiserver_request_total{{verb=\"{verb}\",resource=\"{resource}\",code=\"{code}\"}} {}",
                s.count
            );
        }
        out.push_str(
            "# HELP apiserver_request_duration_seconds Request latency by verb and resource.\n",
        );
        out.push_str("# TYPE apiserver_request_duration_seconds histogram\n");
        let mut by_vr: BTreeMap<(&str, &str), (u64, f64, Vec<u64>)> = BTreeMap::new();
        for ((verb, resource, _), s) in m.iter() {
            let e = by_vr
                .entry((verb.as_str(), resource.as_str()))
                .or_insert_with(|| (0, 0.0, vec![0; BUCKETS.len()]));
            e.0 += s.count;
            e.1 += s.sum;
            for (i, b) in s.buckets.iter().enumerate() {
                e.2[i] += b;
            }
        }
        for ((verb, resource), (count, sum, buckets)) in by_vr {
            let labels = format!("verb=\"{verb}\",resource=\"{resource}\"");
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "apiserver_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}",
                    buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_sum{{{labels}}} {sum}"
            );
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_count{{{labels}}} {count}"
            );
        }
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, v: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        let _ = writeln!(
            out,
            "# HELP apiserver_current_inflight_requests Requests being served, by kind.\n# TYPE apiserver_current_inflight_requests gauge\napiserver_current_inflight_requests{{request_kind=\"readOnly\"}} {}\napiserver_current_inflight_requests{{request_kind=\"mutating\"}} {}",
            self.inflight_readonly.load(Ordering::Relaxed),
            self.inflight_mutating.load(Ordering::Relaxed)
        );
        gauge(
            &mut out,
            "apiserver_dropped_requests_total",
            "Requests refused with 429 by the in-flight limits.",
            "counter",
            self.rejected.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "apiserver_longrunning_requests",
            "Open watches.",
            "gauge",
            self.watches.load(Ordering::Relaxed).to_string(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_counts_and_buckets() {
        let m = Metrics::default();
        m.observe("GET", "pods", 200, Duration::from_millis(3));
        m.observe("GET", "pods", 200, Duration::from_millis(300));
        m.observe("GET", "pods", 404, Duration::from_millis(1));
        let text = m.render();
        assert!(
            text.contains("apiserver_request_total{verb=\"GET\",resource=\"pods\",code=\"200\"} 2")
        );
        assert!(text.contains("apiserver_request_duration_seconds_bucket{verb=\"GET\",resource=\"pods\",le=\"0.005\"} 2"));
        assert!(text.contains(
            "apiserver_request_duration_seconds_count{verb=\"GET\",resource=\"pods\"} 3"
        ));
    }
}
