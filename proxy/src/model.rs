//! What the proxy serves, read from Services and EndpointSlices (pure): one
//! [`ServicePort`] per port of every Service that gets rules, with the endpoints kube-proxy
//! would use for it. Headless and ExternalName Services get none; IPv6 addresses are left
//! out (this proxy programs the `ip` family only).
//!
//! Endpoint choice is kube-proxy's (`CategorizeEndpoints`): ready endpoints; when none is
//! ready, the serving and terminating ones (so a rolling update's last pods still answer);
//! for a Local traffic policy, the same among this node's endpoints.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// A transport protocol the proxy forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn parse(s: Option<&str>) -> Option<Proto> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            "SCTP" => Some(Proto::Sctp),
            _ => None,
        }
    }
    /// nft's name (`meta l4proto tcp`).
    pub fn nft(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// A Service port's identity: `ns/name:port-name/proto`, kube's ServicePortName.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortName {
    pub namespace: String,
    pub name: String,
    pub port: String,
    pub proto: Proto,
}

impl std::fmt::Display for PortName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.namespace,
            self.name,
            self.proto.nft(),
            self.port
        )
    }
}

/// One endpoint of a Service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// On this node (its `nodeName` is the proxy's node).
    pub local: bool,
}

/// Everything the rules of one Service port depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: PortName,
    pub cluster_ips: Vec<Ipv4Addr>,
    pub port: u16,
    pub node_port: Option<u16>,
    pub external_ips: Vec<Ipv4Addr>,
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// `sessionAffinity: ClientIP`'s timeout in seconds.
    pub affinity_seconds: Option<u32>,
    /// `externalTrafficPolicy: Local` (only NodePort and LoadBalancer Services have one).
    pub external_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    /// All endpoints of this port, sorted, without duplicates.
    pub endpoints: Vec<Endpoint>,
    /// The Service's creation time and uid, to decide which of two Services claiming the
    /// same address and port keeps it (the older).
    pub created: String,
}

impl ServicePort {
    /// The endpoints traffic to the cluster IP goes to.
    pub fn cluster_endpoints(&self) -> Vec<&Endpoint> {
        usable(
            self.endpoints
                .iter()
                .filter(|e| !self.internal_local || e.local),
        )
    }
    /// The endpoints traffic from outside goes to (NodePort, external and LB IPs).
    pub fn external_endpoints(&self) -> Vec<&Endpoint> {
        usable(
            self.endpoints
                .iter()
                .filter(|e| !self.external_local || e.local),
        )
    }
    /// Whether the Service has any usable endpoint anywhere in the cluster.
    pub fn has_any_endpoint(&self) -> bool {
        !usable(self.endpoints.iter()).is_empty()
    }
    pub fn has_external(&self) -> bool {
        self.node_port.is_some()
            || !self.external_ips.is_empty()
            || !self.load_balancer_ips.is_empty()
    }
}

/// Ready endpoints, else serving terminating ones (kube's fallback).
fn usable<'a>(eps: impl Iterator<Item = &'a Endpoint> + Clone) -> Vec<&'a Endpoint> {
    let ready: Vec<&Endpoint> = eps.clone().filter(|e| e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    eps.filter(|e| e.serving && e.terminating).collect()
}

/// Why a Service gets no rules, for an Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub namespace: String,
    pub name: String,
    pub reason: &'static str,
    pub message: String,
}

/// The Service ports of `services` with their endpoints from `slices` (the slices of a
/// Service carry the label `kubernetes.io/service-name`), for the proxy of `node`.
pub fn service_ports<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    node: &str,
) -> (Vec<ServicePort>, Vec<Skipped>) {
    let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in slices {
        if s.address_type != "IPv4" {
            continue;
        }
        let Some(svc) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
        else {
            continue;
        };
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        by_service.entry((ns, svc.clone())).or_default().push(s);
    }
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for svc in services {
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let slices = by_service
            .get(&(ns.clone(), name.clone()))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        match ports_of(svc, &ns, &name, slices, node) {
            Ok(p) => out.extend(p),
            Err(e) => skipped.push(e),
        }
    }
    (out, skipped)
}

fn ports_of(
    svc: &Service,
    ns: &str,
    name: &str,
    slices: &[&EndpointSlice],
    node: &str,
) -> Result<Vec<ServicePort>, Skipped> {
    let Some(spec) = &svc.spec else {
        return Ok(vec![]);
    };
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    if ty == "ExternalName" {
        return Ok(vec![]);
    }
    let mut ips: Vec<&String> = spec.cluster_ips.iter().flatten().collect();
    if ips.is_empty() {
        ips.extend(spec.cluster_ip.iter());
    }
    if ips.iter().any(|ip| *ip == "None") {
        return Ok(vec![]); // headless
    }
    let v4 = |s: &String| s.parse::<Ipv4Addr>().ok();
    let cluster_ips: Vec<Ipv4Addr> = ips.iter().filter_map(|s| v4(s)).collect();
    let external_ips: Vec<Ipv4Addr> = spec.external_ips.iter().flatten().filter_map(v4).collect();
    let load_balancer_ips: Vec<Ipv4Addr> = if ty == "LoadBalancer" {
        svc.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_ref().and_then(v4))
            .collect()
    } else {
        vec![]
    };
    let external = matches!(ty, "NodePort" | "LoadBalancer");
    let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(10800)
    });
    let created = format!(
        "{}/{}",
        svc.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default(),
        svc.metadata.uid.as_deref().unwrap_or_default()
    );
    let mut out = Vec::new();
    for p in spec.ports.iter().flatten() {
        let Some(proto) = Proto::parse(p.protocol.as_deref()) else {
            return Err(Skipped {
                namespace: ns.into(),
                name: name.into(),
                reason: "UnsupportedProtocol",
                message: format!(
                    "port {}: protocol {:?} is not proxied",
                    p.port,
                    p.protocol.as_deref().unwrap_or("")
                ),
            });
        };
        let Ok(port) = u16::try_from(p.port) else {
            continue;
        };
        let port_name = p.name.clone().unwrap_or_default();
        let node_port = if external {
            p.node_port.and_then(|n| u16::try_from(n).ok())
        } else {
            None
        };
        let mut endpoints = BTreeSet::new();
        for s in slices {
            let Some(sp) = s.ports.iter().flatten().find(|sp| {
                sp.name.clone().unwrap_or_default() == port_name
                    && Proto::parse(sp.protocol.as_deref()) == Some(proto)
            }) else {
                continue;
            };
            let Some(ep_port) = sp.port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            for e in &s.endpoints {
                let c = e.conditions.as_ref();
                // kube: ready unset means ready; serving defaults to ready.
                let ready = c.and_then(|c| c.ready).unwrap_or(true);
                let serving = c.and_then(|c| c.serving).unwrap_or(ready);
                let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
                let local = e.node_name.as_deref() == Some(node);
                for a in &e.addresses {
                    if let Ok(ip) = a.parse::<Ipv4Addr>() {
                        endpoints.insert(Endpoint {
                            ip,
                            port: ep_port,
                            ready,
                            serving,
                            terminating,
                            local,
                        });
                    }
                }
            }
        }
        // The same address listed twice (two slices during a move) counts once, ready
        // winning.
        let mut dedup: BTreeMap<(Ipv4Addr, u16), Endpoint> = BTreeMap::new();
        for e in endpoints {
            dedup
                .entry((e.ip, e.port))
                .and_modify(|old| {
                    if e.ready && !old.ready {
                        *old = e.clone();
                    }
                })
                .or_insert(e);
        }
        out.push(ServicePort {
            name: PortName {
                namespace: ns.into(),
                name: name.into(),
                port: port_name,
                proto,
            },
            cluster_ips: cluster_ips.clone(),
            port,
            node_port,
            external_ips: external_ips.clone(),
            load_balancer_ips: load_balancer_ips.clone(),
            affinity_seconds,
            external_local: external && spec.external_traffic_policy.as_deref() == Some("Local"),
            internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
            endpoints: dedup.into_values().collect(),
            created: created.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }
    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    fn web() -> Service {
        svc(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]}}))
    }

    fn web_slice(eps: serde_json::Value) -> EndpointSlice {
        slice(
            json!({"metadata": {"name": "web-abc", "namespace": "default",
                "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "endpoints": eps,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}),
        )
    }

    #[test]
    fn ready_endpoints_with_the_slice_port() {
        let s = web_slice(json!([
            {"addresses": ["10.244.1.2"], "conditions": {"ready": true}, "nodeName": "n1"},
            {"addresses": ["10.244.2.2"], "conditions": {"ready": false, "serving": false}, "nodeName": "n2"},
        ]));
        let (ports, skipped) = service_ports([&web()], [&s], "n1");
        assert!(skipped.is_empty());
        assert_eq!(ports.len(), 1);
        let p = &ports[0];
        assert_eq!(p.name.to_string(), "default/web/tcp/http");
        assert_eq!(p.cluster_ips, vec![Ipv4Addr::new(10, 96, 0, 5)]);
        let eps = p.cluster_endpoints();
        assert_eq!(eps.len(), 1);
        assert_eq!(
            (eps[0].ip, eps[0].port, eps[0].local),
            (Ipv4Addr::new(10, 244, 1, 2), 8080, true)
        );
    }

    #[test]
    fn terminating_serving_endpoints_are_the_fallback() {
        let s = web_slice(json!([
            {"addresses": ["10.244.1.2"], "conditions": {"ready": false, "serving": true, "terminating": true}},
            {"addresses": ["10.244.1.3"], "conditions": {"ready": false, "serving": false, "terminating": true}},
        ]));
        let (ports, _) = service_ports([&web()], [&s], "n1");
        let eps = ports[0].cluster_endpoints();
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].ip, Ipv4Addr::new(10, 244, 1, 2));
        assert!(ports[0].has_any_endpoint());
    }

    #[test]
    fn local_policies_use_local_endpoints_only() {
        let mut s = web();
        let spec = s.spec.as_mut().unwrap();
        spec.type_ = Some("NodePort".into());
        spec.external_traffic_policy = Some("Local".into());
        spec.internal_traffic_policy = Some("Local".into());
        spec.ports.as_mut().unwrap()[0].node_port = Some(30080);
        let sl = web_slice(json!([
            {"addresses": ["10.244.2.2"], "conditions": {"ready": true}, "nodeName": "n2"},
        ]));
        let (ports, _) = service_ports([&s], [&sl], "n1");
        let p = &ports[0];
        assert_eq!(p.node_port, Some(30080));
        assert!(p.external_local && p.internal_local);
        assert!(p.cluster_endpoints().is_empty());
        assert!(p.external_endpoints().is_empty());
        assert!(p.has_any_endpoint());
    }

    #[test]
    fn headless_and_external_name_get_nothing() {
        let headless = svc(json!({"metadata": {"name": "h", "namespace": "d"},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}));
        let ext = svc(json!({"metadata": {"name": "e", "namespace": "d"},
            "spec": {"type": "ExternalName", "externalName": "example.com"}}));
        let (ports, skipped) = service_ports([&headless, &ext], [], "n1");
        assert!(ports.is_empty() && skipped.is_empty());
    }

    #[test]
    fn unknown_protocol_is_skipped_with_a_reason() {
        let s = svc(json!({"metadata": {"name": "x", "namespace": "d"},
            "spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 80, "protocol": "QUIC"}]}}));
        let (ports, skipped) = service_ports([&s], [], "n1");
        assert!(ports.is_empty());
        assert_eq!(skipped[0].reason, "UnsupportedProtocol");
    }

    #[test]
    fn affinity_timeout_defaults_to_three_hours() {
        let mut s = web();
        s.spec.as_mut().unwrap().session_affinity = Some("ClientIP".into());
        let (ports, _) = service_ports([&s], [], "n1");
        assert_eq!(ports[0].affinity_seconds, Some(10800));
    }

    #[test]
    fn load_balancer_ingress_ips() {
        let s = svc(json!({"metadata": {"name": "lb", "namespace": "d"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.7",
                     "ports": [{"port": 80, "nodePort": 30001}], "externalIPs": ["192.0.2.9"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}}));
        let (ports, _) = service_ports([&s], [], "n1");
        assert_eq!(
            ports[0].load_balancer_ips,
            vec![Ipv4Addr::new(192, 0, 2, 10)]
        );
        assert_eq!(ports[0].external_ips, vec![Ipv4Addr::new(192, 0, 2, 9)]);
        assert_eq!(ports[0].node_port, Some(30001));
    }
}
