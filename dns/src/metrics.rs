//! The server's metrics, with CoreDNS's names (`coredns_dns_*`, `coredns_cache_*`,
//! `coredns_forward_*`) so kube dashboards and alerts read them unchanged.
//!
//! Contract: recording never blocks on I/O and never fails; label sets are bounded (query
//! types outside a fixed list count as `other`, as CoreDNS does).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use component_base::metrics::{Collect, Histogram};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// CoreDNS's request duration buckets (`plugin.TimeBuckets`).
const BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
    2.048, 4.096, 8.192,
];

/// The query types CoreDNS counts by name (`plugin/pkg/response/typify.go` monitor list).
const COUNTED: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::NS,
    RecordType::PTR,
    RecordType::SOA,
    RecordType::SRV,
    RecordType::TXT,
    RecordType::MX,
    RecordType::ANY,
    RecordType::HTTPS,
];

/// The labels of `coredns_dns_requests_total`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestLabels {
    pub zone: String,
    pub proto: &'static str,
    pub family: &'static str,
    pub qtype: String,
}

pub struct Metrics {
    server: String,
    requests: Mutex<BTreeMap<RequestLabels, u64>>,
    responses: Mutex<BTreeMap<String, u64>>,
    duration: Histogram,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub forward_requests: AtomicU64,
    pub forward_errors: AtomicU64,
}

/// The label value of a response code, as CoreDNS writes it (`NOERROR`, `NXDOMAIN`).
pub fn rcode_label(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

/// The label value of a query type.
pub fn type_label(t: RecordType) -> String {
    if COUNTED.contains(&t) {
        t.to_string()
    } else {
        "other".to_string()
    }
}

impl Metrics {
    /// `server` is CoreDNS's label: `dns://<listen address>`.
    pub fn new(server: String) -> Self {
        Self {
            server,
            requests: Mutex::new(BTreeMap::new()),
            responses: Mutex::new(BTreeMap::new()),
            duration: Histogram::new(BUCKETS),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            forward_requests: AtomicU64::new(0),
            forward_errors: AtomicU64::new(0),
        }
    }

    pub fn request(&self, labels: RequestLabels) {
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let c = m.entry(labels).or_insert(0);
        *c = c.saturating_add(1);
    }

    pub fn response(&self, rcode: ResponseCode, secs: f64) {
        let mut m = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        let c = m.entry(rcode_label(rcode)).or_insert(0);
        *c = c.saturating_add(1);
        drop(m);
        self.duration.observe(secs);
    }

    /// Requests counted so far, over all labels (for tests).
    pub fn requests_total(&self) -> u64 {
        let m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        m.values().fold(0u64, |a, b| a.saturating_add(*b))
    }
}

impl Collect for Metrics {
    fn render(&self, out: &mut String) {
        let s = &self.server;
        let _ = writeln!(out, "# HELP coredns_dns_requests_total Counter of DNS requests made per zone, protocol and family.\n# TYPE coredns_dns_requests_total counter");
        for (l, v) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "coredns_dns_requests_total{{server=\"{s}\",zone=\"{}\",proto=\"{}\",family=\"{}\",type=\"{}\"}} {v}",
                l.zone, l.proto, l.family, l.qtype
            );
        }
        let _ = writeln!(out, "# HELP coredns_dns_responses_total Counter of response status codes.\n# TYPE coredns_dns_responses_total counter");
        for (rcode, v) in self
            .responses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "coredns_dns_responses_total{{server=\"{s}\",rcode=\"{rcode}\"}} {v}"
            );
        }
        self.duration.render(
            out,
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took.",
            &format!("server=\"{s}\""),
        );
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, help, v) in [
            (
                "coredns_cache_hits_total",
                "The count of cache hits.",
                &self.cache_hits,
            ),
            (
                "coredns_cache_misses_total",
                "The count of cache misses.",
                &self.cache_misses,
            ),
            (
                "coredns_forward_requests_total",
                "Counter of requests made per upstream.",
                &self.forward_requests,
            ),
            (
                "coredns_forward_responses_errors_total",
                "Counter of upstream failures (timeouts, refused connections, bad answers).",
                &self.forward_errors,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name}{{server=\"{s}\"}} {}", g(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_coredns_names() {
        let m = Metrics::new("dns://:53".into());
        m.request(RequestLabels {
            zone: "cluster.local.".into(),
            proto: "udp",
            family: "1",
            qtype: type_label(RecordType::A),
        });
        m.response(ResponseCode::NXDomain, 0.001);
        m.cache_hits.fetch_add(1, Ordering::Relaxed);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("coredns_dns_requests_total{server=\"dns://:53\",zone=\"cluster.local.\",proto=\"udp\",family=\"1\",type=\"A\"} 1"));
        assert!(
            out.contains("coredns_dns_responses_total{server=\"dns://:53\",rcode=\"NXDOMAIN\"} 1")
        );
        assert!(out.contains("coredns_dns_request_duration_seconds_count"));
        assert!(out.contains("coredns_cache_hits_total{server=\"dns://:53\"} 1"));
        assert_eq!(type_label(RecordType::NULL), "other");
    }
}
