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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLabels {
    /// In the cluster zone (its apex is the label) or not (`.`).
    pub in_zone: bool,
    pub proto: Proto,
    pub ipv6: bool,
    pub qtype: RecordType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
    Other,
}

const PROTOS: [(Proto, &str); 3] = [
    (Proto::Udp, "udp"),
    (Proto::Tcp, "tcp"),
    (Proto::Other, "other"),
];
/// One slot per counted type and one for the rest.
const TYPES: usize = COUNTED.len() + 1;
/// zone (2) x proto (3) x family (2) x type.
const REQUEST_SLOTS: usize = 2 * 3 * 2 * TYPES;
/// Response codes with a counter of their own; rarer (extended) ones share a map.
const RCODE_SLOTS: usize = 24;

impl RequestLabels {
    fn slot(&self) -> usize {
        let zone = usize::from(!self.in_zone);
        let proto = PROTOS
            .iter()
            .position(|(p, _)| *p == self.proto)
            .unwrap_or(2);
        let family = usize::from(self.ipv6);
        let qtype = COUNTED
            .iter()
            .position(|t| *t == self.qtype)
            .unwrap_or(COUNTED.len());
        ((zone * 3 + proto) * 2 + family) * TYPES + qtype
    }
}

/// Counters are atomics indexed by label set, so recording a query takes no lock and
/// allocates nothing (it runs once per datagram on every core).
pub struct Metrics {
    server: String,
    zone: String,
    requests: Box<[AtomicU64]>,
    responses: [AtomicU64; RCODE_SLOTS],
    rare_responses: Mutex<BTreeMap<u16, u64>>,
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

impl Metrics {
    /// `server` is CoreDNS's label (`dns://<listen address>`), `zone` the cluster zone's
    /// apex as the `zone` label of its queries.
    pub fn new(server: String, zone: String) -> Self {
        Self {
            server,
            zone,
            requests: (0..REQUEST_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            responses: std::array::from_fn(|_| AtomicU64::new(0)),
            rare_responses: Mutex::new(BTreeMap::new()),
            duration: Histogram::new(BUCKETS),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            forward_requests: AtomicU64::new(0),
            forward_errors: AtomicU64::new(0),
        }
    }

    pub fn request(&self, labels: RequestLabels) {
        if let Some(c) = self.requests.get(labels.slot()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn response(&self, rcode: ResponseCode, secs: f64) {
        let code = u16::from(rcode);
        match self.responses.get(usize::from(code)) {
            Some(c) => {
                c.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                let mut m = self
                    .rare_responses
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let c = m.entry(code).or_insert(0);
                *c = c.saturating_add(1);
            }
        }
        self.duration.observe(secs);
    }

    /// Requests counted so far, over all labels (for tests).
    pub fn requests_total(&self) -> u64 {
        self.requests
            .iter()
            .fold(0u64, |a, b| a.saturating_add(b.load(Ordering::Relaxed)))
    }

    /// Every label set with a non-zero count, in slot order.
    fn request_counts(&self) -> Vec<(String, &'static str, &'static str, String, u64)> {
        let mut out = Vec::new();
        for (zone_i, zone) in [self.zone.as_str(), "."].into_iter().enumerate() {
            for (proto_i, (_, proto)) in PROTOS.iter().enumerate() {
                for (family_i, family) in ["1", "2"].into_iter().enumerate() {
                    for qtype_i in 0..TYPES {
                        let slot = ((zone_i * 3 + proto_i) * 2 + family_i) * TYPES + qtype_i;
                        let v = self
                            .requests
                            .get(slot)
                            .map_or(0, |c| c.load(Ordering::Relaxed));
                        if v == 0 {
                            continue;
                        }
                        let qtype = COUNTED
                            .get(qtype_i)
                            .map_or_else(|| "other".to_string(), |t| t.to_string());
                        out.push((zone.to_string(), *proto, family, qtype, v));
                    }
                }
            }
        }
        out
    }

    /// Every response code with a non-zero count.
    fn response_counts(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .responses
            .iter()
            .enumerate()
            .filter_map(|(code, c)| {
                let v = c.load(Ordering::Relaxed);
                let code = <ResponseCode as From<u16>>::from(u16::try_from(code).ok()?);
                (v > 0).then(|| (rcode_label(code), v))
            })
            .collect();
        for (code, v) in self
            .rare_responses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            out.push((format!("RCODE{code}"), *v));
        }
        out
    }
}

impl Collect for Metrics {
    fn render(&self, out: &mut String) {
        let s = &self.server;
        let _ = writeln!(out, "# HELP coredns_dns_requests_total Counter of DNS requests made per zone, protocol and family.\n# TYPE coredns_dns_requests_total counter");
        for (zone, proto, family, qtype, v) in self.request_counts() {
            let _ = writeln!(
                out,
                "coredns_dns_requests_total{{server=\"{s}\",zone=\"{zone}\",proto=\"{proto}\",family=\"{family}\",type=\"{qtype}\"}} {v}"
            );
        }
        let _ = writeln!(out, "# HELP coredns_dns_responses_total Counter of response status codes.\n# TYPE coredns_dns_responses_total counter");
        for (rcode, v) in self.response_counts() {
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
        let m = Metrics::new("dns://:53".into(), "cluster.local.".into());
        m.request(RequestLabels {
            in_zone: true,
            proto: Proto::Udp,
            ipv6: false,
            qtype: RecordType::A,
        });
        m.request(RequestLabels {
            in_zone: false,
            proto: Proto::Tcp,
            ipv6: true,
            qtype: RecordType::NULL,
        });
        m.response(ResponseCode::BADCOOKIE, 0.001);
        m.response(ResponseCode::Unknown(3000), 0.001);
        m.response(ResponseCode::NXDomain, 0.001);
        m.cache_hits.fetch_add(1, Ordering::Relaxed);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("coredns_dns_requests_total{server=\"dns://:53\",zone=\"cluster.local.\",proto=\"udp\",family=\"1\",type=\"A\"} 1"));
        assert!(
            out.contains("coredns_dns_responses_total{server=\"dns://:53\",rcode=\"NXDOMAIN\"} 1")
        );
        assert!(out.contains("coredns_dns_requests_total{server=\"dns://:53\",zone=\".\",proto=\"tcp\",family=\"2\",type=\"other\"} 1"));
        assert!(out.contains("rcode=\"RCODE23\"} 1"), "{out}");
        assert!(out.contains("rcode=\"RCODE3000\"} 1"), "{out}");
        assert_eq!(m.requests_total(), 2);
        assert!(out.contains("coredns_dns_request_duration_seconds_count"));
        assert!(out.contains("coredns_cache_hits_total{server=\"dns://:53\"} 1"));
    }
}
