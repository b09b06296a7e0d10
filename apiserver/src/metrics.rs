//! `/metrics` in Prometheus' text format: requests by verb, resource and code with a
//! latency histogram (kube-apiserver's `apiserver_request_total` and
//! `apiserver_request_duration_seconds`), requests in flight and rejected by the in-flight
//! limits, writes refused by a lease's fence, open watches and watchers dropped for being too slow
//! (`apiserver_terminated_watchers_total`), objects and events in the watch cache by
//! resource, and the kvstore's request latency (`etcd_request_duration_seconds`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use flotilla_core::histogram::Histogram;

use crate::latency::latency;
pub use crate::latency::{observe, Histograms};

/// This process's resident memory (VmRSS of /proc/self/status), where there is one.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

#[derive(Default)]
pub struct Metrics {
    requests: Histograms<(String, String, u16)>,
    pub inflight_readonly: AtomicI64,
    pub inflight_mutating: AtomicI64,
    pub rejected: AtomicU64,
    /// Writes refused because their sender's lease was acquired again since
    /// (`crate::store::fence`).
    pub fenced: AtomicU64,
    pub watches: AtomicI64,
    /// Watches ended because their client did not keep up, by resource.
    pub terminated_watchers: Mutex<BTreeMap<&'static str, u64>>,
}

/// What `/metrics` shows beside the requests: the watch cache and the kvstore client.
pub struct Sources<'a> {
    pub cache: &'a crate::store::cache::Cache,
    pub etcd: &'a crate::etcd::Etcd,
}

impl Metrics {
    pub fn observe(&self, verb: &str, resource: &str, code: u16, elapsed: Duration) {
        observe(
            &self.requests,
            (verb.to_string(), resource.to_string(), code),
            elapsed,
        );
    }

    pub fn watcher_terminated(&self, resource: &'static str) {
        *self
            .terminated_watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(resource)
            .or_default() += 1;
    }

    /// The text exposition.
    pub fn render(&self, src: &Sources) -> String {
        let mut out = String::new();
        let m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        out.push_str("# HELP apiserver_request_total Requests by verb, resource and HTTP code.\n");
        out.push_str("# TYPE apiserver_request_total counter\n");
        for ((verb, resource, code), h) in m.iter() {
            let _ = writeln!(
                out,
                "apiserver_request_total{{verb=\"{verb}\",resource=\"{resource}\",code=\"{code}\"}} {}",
                h.count()
            );
        }
        out.push_str(
            "# HELP apiserver_request_duration_seconds Request latency by verb and resource.\n",
        );
        out.push_str("# TYPE apiserver_request_duration_seconds histogram\n");
        let mut by_vr: BTreeMap<(&str, &str), Histogram> = BTreeMap::new();
        for ((verb, resource, _), h) in m.iter() {
            by_vr
                .entry((verb.as_str(), resource.as_str()))
                .or_insert_with(latency)
                .merge(h);
        }
        for ((verb, resource), h) in by_vr {
            let labels = format!("verb=\"{verb}\",resource=\"{resource}\"");
            h.render(&mut out, "apiserver_request_duration_seconds", &labels);
        }
        drop(m);
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
            "flotilla_apiserver_fenced_writes_refused_total",
            "Writes refused with 409 because their sender's lease was acquired again since the term they name.",
            "counter",
            self.fenced.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "apiserver_longrunning_requests",
            "Open watches.",
            "gauge",
            self.watches.load(Ordering::Relaxed).to_string(),
        );
        out.push_str("# HELP apiserver_terminated_watchers_total Watches closed because their client did not keep up, by resource.\n# TYPE apiserver_terminated_watchers_total counter\n");
        for (r, n) in self
            .terminated_watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "apiserver_terminated_watchers_total{{resource=\"{r}\"}} {n}"
            );
        }
        if let Some(rss) = resident_bytes() {
            gauge(
                &mut out,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                "gauge",
                rss.to_string(),
            );
        }
        let sizes = src.cache.sizes();
        out.push_str("# HELP apiserver_storage_objects Objects in the watch cache, by resource.\n# TYPE apiserver_storage_objects gauge\n");
        for (r, n) in &sizes.objects {
            let _ = writeln!(out, "apiserver_storage_objects{{resource=\"{r}\"}} {n}");
        }
        out.push_str("# HELP apiserver_watch_cache_events Recent events the watch cache keeps for resuming watches, by resource.\n# TYPE apiserver_watch_cache_events gauge\n");
        for (r, n) in &sizes.events {
            let _ = writeln!(out, "apiserver_watch_cache_events{{resource=\"{r}\"}} {n}");
        }
        gauge(
            &mut out,
            "apiserver_watch_cache_capacity",
            "Events the watch cache keeps at most (--watch-cache-size).",
            "gauge",
            sizes.capacity.to_string(),
        );
        out.push_str("# HELP etcd_request_duration_seconds Latency of kvstore requests by operation.\n# TYPE etcd_request_duration_seconds histogram\n");
        for (op, h) in src
            .etcd
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            h.render(
                &mut out,
                "etcd_request_duration_seconds",
                &format!("operation=\"{op}\""),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exposition_counts_and_buckets() {
        let m = Metrics::default();
        m.observe("GET", "pods", 200, Duration::from_millis(3));
        m.observe("GET", "pods", 200, Duration::from_millis(300));
        m.observe("GET", "pods", 404, Duration::from_millis(1));
        m.watcher_terminated("pods");
        let cache = crate::store::cache::Cache::new(crate::kinds::Kinds::all(), 10);
        let etcd =
            crate::etcd::Etcd::new(&["http://127.0.0.1:1".into()], None, Duration::from_secs(1))
                .unwrap();
        crate::metrics::observe(&etcd.latency, "range", Duration::from_millis(2));
        let text = m.render(&Sources {
            cache: &cache,
            etcd: &etcd,
        });
        assert!(text.contains("apiserver_terminated_watchers_total{resource=\"pods\"} 1"));
        assert!(text.contains("etcd_request_duration_seconds_count{operation=\"range\"} 1"));
        assert!(text.contains("apiserver_watch_cache_capacity 10"));
        assert!(text.contains("\nprocess_resident_memory_bytes "));
        assert!(
            text.contains("apiserver_request_total{verb=\"GET\",resource=\"pods\",code=\"200\"} 2")
        );
        assert!(text.contains("apiserver_request_duration_seconds_bucket{verb=\"GET\",resource=\"pods\",le=\"0.005\"} 2"));
        assert!(text.contains(
            "apiserver_request_duration_seconds_count{verb=\"GET\",resource=\"pods\"} 3"
        ));
    }
}
