//! Names and resource records of the Kubernetes DNS specification, as plain values.
//!
//! Contract: every function here is pure and total: a name that cannot be built (a label
//! over 63 bytes, a name over 255) is `None`, never a panic, so a Service or an endpoint
//! with an odd name only loses its own records. Names are fully qualified and lowercase.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record};

/// The version of the specification served at `dns-version.<zone>` (TXT).
pub const SPEC_VERSION: &str = "1.1.0";

/// `label.parent`, or `None` when the label or the result is not a valid name.
pub fn child(parent: &Name, label: &str) -> Option<Name> {
    if label.is_empty() || label.contains('.') {
        return None;
    }
    parent.prepend_label(label.to_ascii_lowercase()).ok()
}

/// `a.b.c...` below `base`, labels given from the leftmost.
pub fn below(base: &Name, labels: &[&str]) -> Option<Name> {
    labels
        .iter()
        .rev()
        .try_fold(base.clone(), |n, l| child(&n, l))
}

/// The zone apex from `--cluster-domain` (`cluster.local` → `cluster.local.`).
pub fn zone_name(domain: &str) -> Option<Name> {
    let mut n = Name::from_ascii(domain.trim_end_matches('.'))
        .ok()?
        .to_lowercase();
    n.set_fqdn(true);
    if n.is_root() {
        return None;
    }
    Some(n)
}

/// An IP as one DNS label: `10-0-0-1`, `fd00--1` (CoreDNS's endpoint hostname when the
/// endpoint has none, and the pod name form).
pub fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// The inverse of [`dashed`]: `None` when the label is not an IP in that form.
pub fn undashed(label: &str) -> Option<IpAddr> {
    if label.contains(':') || label.contains('.') {
        return None;
    }
    if let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    label
        .replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// The reverse-lookup name of an IP (`1.0.0.10.in-addr.arpa.`, nibbles under `ip6.arpa.`).
pub fn reverse_name(ip: IpAddr) -> Option<Name> {
    let text = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(73);
            for byte in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", byte & 0x0f, byte >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    };
    Name::from_ascii(text).ok()
}

/// True for names under `in-addr.arpa.` or `ip6.arpa.`.
pub fn is_reverse(name: &Name) -> bool {
    let labels: Vec<Vec<u8>> = name.iter().map(|l| l.to_ascii_lowercase()).collect();
    let n = labels.len();
    n >= 2 && labels[n - 1] == b"arpa" && (labels[n - 2] == b"in-addr" || labels[n - 2] == b"ip6")
}

pub fn address(name: &Name, ip: IpAddr, ttl: u32) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name.clone(), ttl, data)
}

pub fn cname(name: &Name, target: &Name, ttl: u32) -> Record {
    Record::from_rdata(name.clone(), ttl, RData::CNAME(CNAME(target.clone())))
}

pub fn ptr(name: &Name, target: &Name, ttl: u32) -> Record {
    Record::from_rdata(name.clone(), ttl, RData::PTR(PTR(target.clone())))
}

pub fn ns(name: &Name, target: &Name, ttl: u32) -> Record {
    Record::from_rdata(name.clone(), ttl, RData::NS(NS(target.clone())))
}

/// CoreDNS's SRV for a service port: priority 0, weight 100 split over the targets.
pub fn srv(name: &Name, port: u16, weight: u16, target: &Name, ttl: u32) -> Record {
    Record::from_rdata(
        name.clone(),
        ttl,
        RData::SRV(SRV::new(0, weight, port, target.clone())),
    )
}

pub fn txt(name: &Name, text: &str, ttl: u32) -> Record {
    Record::from_rdata(
        name.clone(),
        ttl,
        RData::TXT(TXT::new(vec![text.to_string()])),
    )
}

/// The zone's SOA as CoreDNS writes it: `ns.dns.<zone> hostmaster.<zone> serial 7200 1800
/// 86400 <ttl>`.
pub fn soa(zone: &Name, serial: u32, ttl: u32) -> Record {
    let mname = below(zone, &["ns", "dns"]).unwrap_or_else(|| zone.clone());
    let rname = child(zone, "hostmaster").unwrap_or_else(|| zone.clone());
    Record::from_rdata(
        zone.clone(),
        ttl,
        RData::SOA(SOA::new(mname, rname, serial, 7200, 1800, 86400, ttl)),
    )
}

/// A DNS-1123 label made of `raw` (lowercase, `[a-z0-9-]`, no leading or trailing `-`, at
/// most 63 bytes), for object names built from hostnames.
pub fn sanitize_label(raw: &str) -> String {
    let mut s: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.truncate(63);
    s.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashed_round_trips() {
        for ip in ["10.1.2.3", "fd00::1", "2001:db8::a:b"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(undashed(&dashed(ip)), Some(ip));
        }
        assert_eq!(dashed("10.1.2.3".parse().unwrap()), "10-1-2-3");
        assert_eq!(undashed("not-an-ip"), None);
        assert_eq!(undashed("10.1.2.3"), None);
    }

    #[test]
    fn reverse_names() {
        let n = reverse_name("10.96.0.10".parse().unwrap()).unwrap();
        assert_eq!(n.to_ascii(), "10.0.96.10.in-addr.arpa.");
        let n = reverse_name("2001:db8::1".parse().unwrap()).unwrap();
        assert!(n.to_ascii().starts_with("1.0.0.0.0.0.0.0"));
        assert!(n.to_ascii().ends_with("8.b.d.0.1.0.0.2.ip6.arpa."));
        assert!(is_reverse(&n));
        assert!(!is_reverse(&Name::from_ascii("a.arpa.").unwrap()));
    }

    #[test]
    fn names_that_cannot_exist_are_none() {
        let zone = zone_name("cluster.local").unwrap();
        assert_eq!(zone.to_ascii(), "cluster.local.");
        assert!(child(&zone, &"x".repeat(64)).is_none());
        assert!(zone_name(".").is_none());
        assert_eq!(sanitize_label("My_Host.example-"), "my-host-example");
    }
}
