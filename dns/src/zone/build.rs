//! Builds the [`Zone`] from Services and EndpointSlices (the Kubernetes DNS specification,
//! as CoreDNS's `kubernetes` plugin serves it).
//!
//! Contract: a pure function of its inputs; an object that cannot produce a valid record
//! (an unparsable IP, a label over 63 bytes) loses only that record. Headless services
//! publish endpoints whose `conditions.ready` is not `false` (all of them with
//! `publishNotReadyAddresses`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::Zone;
use crate::config::PodMode;
use crate::records;

/// The label on an EndpointSlice naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What the zone is built with besides the objects.
#[derive(Debug, Clone)]
pub struct Params {
    pub apex: Name,
    pub ttl: u32,
    pub pods: PodMode,
    /// The SOA serial (CoreDNS: when the data last changed).
    pub serial: u32,
    /// The address of `ns.dns.<zone>` (the cluster DNS Service's IP).
    pub dns_ip: Option<IpAddr>,
}

impl Zone {
    /// The zone for this snapshot of the cluster.
    pub fn build(p: &Params, services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Zone {
        let mut z = Zone::empty(p.apex.clone(), p.pods, p.ttl, p.serial);
        z.insert(z.soa.clone());
        if let Some(ns_name) = records::below(&p.apex, &["ns", "dns"]) {
            z.insert(records::ns(&p.apex, &ns_name, p.ttl));
            if let Some(ip) = p.dns_ip {
                z.insert(records::address(&ns_name, ip, p.ttl));
            }
        }
        if let Some(v) = records::child(&p.apex, "dns-version") {
            z.insert(records::txt(&v, records::SPEC_VERSION, p.ttl));
        }
        for label in ["svc", "pod"] {
            if let Some(n) = records::child(&p.apex, label) {
                z.touch(&n);
            }
        }

        let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for s in slices {
            let ns = s.metadata.namespace.as_deref().unwrap_or_default();
            let labels = s.metadata.labels.as_ref();
            if let Some(svc) = labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) {
                by_service.entry((ns, svc.as_str())).or_default().push(s);
            }
        }
        for svc in services {
            let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
            let name = svc.metadata.name.as_deref().unwrap_or_default();
            let Some(base) = records::below(&p.apex, &[name, ns, "svc"]) else {
                continue;
            };
            let group = by_service
                .get(&(ns, name))
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            add_service(&mut z, p.ttl, &base, svc, group);
        }
        z
    }
}

impl Zone {
    /// `--pods verified`: `<a-b-c-d>.<namespace>.pod.<zone>` for the IPs of these pods.
    pub fn with_pods(mut self, pods: &[Arc<Pod>]) -> Zone {
        let ttl = self.ttl;
        let pod_zone = records::child(&self.apex, "pod");
        for pod in pods {
            let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
            let Some(base) = pod_zone.as_ref().and_then(|z| records::child(z, ns)) else {
                continue;
            };
            let status = pod.status.as_ref();
            let ips = status
                .and_then(|s| s.pod_ips.as_ref())
                .into_iter()
                .flatten()
                .map(|p| p.ip.as_str())
                .chain(status.and_then(|s| s.pod_ip.as_deref()));
            for ip in ips.filter_map(|ip| ip.parse::<IpAddr>().ok()) {
                if let Some(name) = records::child(&base, &records::dashed(ip)) {
                    self.insert(records::address(&name, ip, ttl));
                }
            }
        }
        self
    }
}

fn add_service(z: &mut Zone, ttl: u32, base: &Name, svc: &Service, slices: &[&EndpointSlice]) {
    let Some(spec) = svc.spec.as_ref() else {
        return;
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        let target = spec
            .external_name
            .as_deref()
            .and_then(|t| Name::from_ascii(t.trim_end_matches('.')).ok());
        if let Some(mut target) = target {
            target.set_fqdn(true);
            z.insert(records::cname(base, &target.to_lowercase(), ttl));
        }
        return;
    }
    if spec.cluster_ip.as_deref() == Some("None") {
        let publish_all = spec.publish_not_ready_addresses == Some(true);
        add_headless(z, ttl, base, slices, publish_all);
        return;
    }
    let mut ips: Vec<IpAddr> = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .filter_map(|ip| ip.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        return;
    }
    for ip in ips {
        z.insert(records::address(base, ip, ttl));
        if let Some(rev) = records::reverse_name(ip) {
            z.insert_reverse(records::ptr(&rev, base, ttl));
        }
    }
    for port in spec.ports.iter().flatten() {
        let Some(pname) = port.name.as_deref().filter(|n| !n.is_empty()) else {
            continue;
        };
        let Ok(number) = u16::try_from(port.port) else {
            continue;
        };
        let proto = port
            .protocol
            .as_deref()
            .unwrap_or("TCP")
            .to_ascii_lowercase();
        if let Some(srv_name) = srv_name(base, pname, &proto) {
            z.insert(records::srv(&srv_name, number, 100, base, ttl));
        }
    }
}

fn srv_name(base: &Name, port: &str, proto: &str) -> Option<Name> {
    records::below(base, &[&format!("_{port}"), &format!("_{proto}")])
}

/// One A/AAAA per ready endpoint address at the service name and at
/// `<hostname or a-b-c-d>.<service>`, a PTR to the latter, and per named port an SRV per
/// endpoint (weights split as CoreDNS does: 100 over the targets, at least 1).
fn add_headless(z: &mut Zone, ttl: u32, base: &Name, slices: &[&EndpointSlice], all: bool) {
    let mut srvs: HashMap<Name, Vec<(u16, Name)>> = HashMap::new();
    for slice in slices {
        let mut targets = Vec::new();
        for ep in &slice.endpoints {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready) != Some(false);
            if !ready && !all {
                continue;
            }
            for addr in &ep.addresses {
                let Ok(ip) = addr.parse::<IpAddr>() else {
                    continue;
                };
                z.insert(records::address(base, ip, ttl));
                let host = match ep.hostname.as_deref().filter(|h| !h.is_empty()) {
                    Some(h) => h.to_string(),
                    None => records::dashed(ip),
                };
                let Some(host_name) = records::child(base, &host) else {
                    continue;
                };
                z.insert(records::address(&host_name, ip, ttl));
                if let Some(rev) = records::reverse_name(ip) {
                    z.insert_reverse(records::ptr(&rev, &host_name, ttl));
                }
                if !targets.contains(&host_name) {
                    targets.push(host_name);
                }
            }
        }
        for port in slice.ports.iter().flatten() {
            let Some(pname) = port.name.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            let Some(number) = port.port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            let proto = port
                .protocol
                .as_deref()
                .unwrap_or("TCP")
                .to_ascii_lowercase();
            let Some(name) = srv_name(base, pname, &proto) else {
                continue;
            };
            let entry = srvs.entry(name).or_default();
            for t in &targets {
                if !entry.contains(&(number, t.clone())) {
                    entry.push((number, t.clone()));
                }
            }
        }
    }
    for (name, targets) in srvs {
        if targets.is_empty() {
            // A named port with no ready endpoint: the name exists, without records.
            z.touch(&name);
            continue;
        }
        let weight = u16::try_from(100 / targets.len()).unwrap_or(1).max(1);
        for (port, target) in targets {
            z.insert(records::srv(&name, port, weight, &target, ttl));
        }
    }
    // The service name exists even with no ready endpoint (NODATA, as CoreDNS answers).
    z.touch(base);
}
