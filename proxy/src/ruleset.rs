//! The nftables ruleset the proxy wants in its table (pure): Service ports in, chains,
//! verdict maps and sets out, after kube-proxy's nftables mode. A packet to a Service is
//! matched once, in O(1), by a verdict map keyed on `address . protocol . port`; each
//! Service port has a chain that picks an endpoint (`numgen random mod k == 0`, or the client's
//! affinity set first) and each endpoint a chain that DNATs to it.
//!
//! ```text
//! nat prerouting/output ─▶ services ─ vmap @service-ips ──────────▶ svc-… ─▶ ep-… (dnat)
//!                                   └ nodeport-ips: vmap @service-nodeports ─▶ ext-… ─▶ svc-…
//! filter input/forward/output ─▶ vmap @no-endpoint-services / -nodeports ─▶ reject | drop
//!                               └ cluster-ips-check: a cluster IP on no Service port ─▶ reject
//! nat postrouting ─▶ masquerading (packets marked 0x4000 on the way)
//! ```
//!
//! Masquerade marks: traffic to a cluster IP from outside the cluster CIDR (or all of it,
//! without one), all traffic entering through an external address of a Cluster-policy
//! Service, and hairpin traffic (an endpoint reaching itself). Local policies keep the
//! client's address. A key claimed by two Service ports (an external IP shared, say) goes
//! to the older Service; the other is reported as a [`Conflict`] and gets no rule for that
//! key, so it cannot break the transaction for everyone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::model::{Endpoint, PortName, Proto, ServicePort};

/// The node-wide inputs of the ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The pod network (kube-proxy's `--cluster-cidr`), `a.b.c.d/n`; `None`: masquerade
    /// all traffic to cluster IPs.
    pub cluster_cidr: Option<String>,
    /// The addresses NodePorts answer on.
    pub nodeport_ips: Vec<Ipv4Addr>,
    /// Whether the kernel can NAT SCTP; without it SCTP ports are conflicts.
    pub sctp: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// `type nat hook prerouting priority -100;` for a base chain.
    pub hook: Option<&'static str>,
    pub rules: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Map {
    pub decl: &'static str,
    pub elements: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub decl: String,
    pub elements: BTreeSet<String>,
    /// Filled by the packet path (affinity); the proxy never writes its elements.
    pub dynamic: bool,
}

/// The whole content of the proxy's table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub chains: BTreeMap<String, Chain>,
    pub maps: BTreeMap<String, Map>,
    pub sets: BTreeMap<String, Set>,
}

/// A Service port refused a key another one holds, or a protocol the kernel lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub port: PortName,
    pub reason: &'static str,
    pub message: String,
}

pub const MASQ_MARK: &str = "0x4000";
const SERVICE_IPS: &str = "service-ips";
const SERVICE_NODEPORTS: &str = "service-nodeports";
const NO_EP_SERVICES: &str = "no-endpoint-services";
const NO_EP_NODEPORTS: &str = "no-endpoint-nodeports";
const CLUSTER_IPS: &str = "cluster-ips";
const NODEPORT_IPS: &str = "nodeport-ips";

/// A short stable digest of a name (FNV-1a, base32), so chain names stay unique when
/// their readable part is shared.
fn digest(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    const A: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..8)
        .map(|i| char::from(A[((h >> (i * 5)) & 31) as usize]))
        .collect()
}

pub fn service_chain(p: &PortName) -> String {
    let n = p.to_string();
    format!("svc-{}-{n}", digest(&n))
}
fn local_chain(p: &PortName) -> String {
    let n = p.to_string();
    format!("local-{}-{n}", digest(&n))
}
fn external_chain(p: &PortName) -> String {
    let n = p.to_string();
    format!("ext-{}-{n}", digest(&n))
}
pub fn endpoint_chain(p: &PortName, e: &Endpoint) -> String {
    let n = format!("{p}__{}/{}", e.ip, e.port);
    format!("ep-{}-{n}", digest(&n))
}
/// The set of clients pinned to an endpoint; its timeout is part of the digest, since a
/// set's timeout cannot change in place.
fn affinity_set(p: &PortName, e: &Endpoint, timeout: u32) -> String {
    let n = format!("{p}__{}/{}", e.ip, e.port);
    format!("affinity-{}-{n}", digest(&format!("{n}/{timeout}")))
}

/// The fixed part: base chains, dispatch chains, maps and sets.
fn skeleton(node: &NodeView) -> Ruleset {
    let mut r = Ruleset::default();
    let mut chain = |name: &str, hook: Option<&'static str>, rules: &[&str]| {
        r.chains.insert(
            name.into(),
            Chain {
                hook,
                rules: rules.iter().map(|s| s.to_string()).collect(),
            },
        );
    };
    chain(
        "filter-input",
        Some("type filter hook input priority -110;"),
        &[
            "ct state new jump nodeport-endpoints-check",
            "ct state new jump service-endpoints-check",
        ],
    );
    chain(
        "filter-forward",
        Some("type filter hook forward priority -110;"),
        &[
            "ct state new jump service-endpoints-check",
            "ct state new jump cluster-ips-check",
        ],
    );
    chain(
        "filter-output",
        Some("type filter hook output priority -110;"),
        &["ct state new jump service-endpoints-check"],
    );
    chain(
        "filter-output-post-dnat",
        Some("type filter hook output priority -90;"),
        &["ct state new jump cluster-ips-check"],
    );
    chain(
        "nat-prerouting",
        Some("type nat hook prerouting priority -100;"),
        &["jump services"],
    );
    chain(
        "nat-output",
        Some("type nat hook output priority -100;"),
        &["jump services"],
    );
    chain(
        "nat-postrouting",
        Some("type nat hook postrouting priority 100;"),
        &["jump masquerading"],
    );
    chain(
        "mark-for-masquerade",
        None,
        &[&format!("meta mark set meta mark | {MASQ_MARK}")],
    );
    chain(
        "masquerading",
        None,
        &[
            &format!("meta mark & {MASQ_MARK} == 0 return"),
            &format!("meta mark set meta mark ^ {MASQ_MARK}"),
            "masquerade fully-random",
        ],
    );
    chain(
        "services",
        None,
        &[
            &format!("ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"),
            &format!("ip daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"),
        ],
    );
    chain(
        "service-endpoints-check",
        None,
        &[&format!(
            "ip daddr . meta l4proto . th dport vmap @{NO_EP_SERVICES}"
        )],
    );
    chain(
        "nodeport-endpoints-check",
        None,
        &[&format!(
            "ip daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{NO_EP_NODEPORTS}"
        )],
    );
    chain(
        "cluster-ips-check",
        None,
        &[&format!("ip daddr @{CLUSTER_IPS} reject")],
    );
    chain("reject-chain", None, &["reject"]);
    for (name, decl) in [
        (
            SERVICE_IPS,
            "type ipv4_addr . inet_proto . inet_service : verdict;",
        ),
        (
            NO_EP_SERVICES,
            "type ipv4_addr . inet_proto . inet_service : verdict;",
        ),
        (
            SERVICE_NODEPORTS,
            "type inet_proto . inet_service : verdict;",
        ),
        (NO_EP_NODEPORTS, "type inet_proto . inet_service : verdict;"),
    ] {
        r.maps.insert(
            name.into(),
            Map {
                decl,
                elements: BTreeMap::new(),
            },
        );
    }
    r.sets.insert(
        CLUSTER_IPS.into(),
        Set {
            decl: "type ipv4_addr;".into(),
            elements: BTreeSet::new(),
            dynamic: false,
        },
    );
    r.sets.insert(
        NODEPORT_IPS.into(),
        Set {
            decl: "type ipv4_addr;".into(),
            elements: node.nodeport_ips.iter().map(|i| i.to_string()).collect(),
            dynamic: false,
        },
    );
    r
}

/// The ruleset for `ports` (in any order) on a node seen as `node`.
pub fn build(ports: &[ServicePort], node: &NodeView) -> (Ruleset, Vec<Conflict>) {
    let mut r = skeleton(node);
    let mut conflicts = Vec::new();
    // Older Services first, so they keep contested keys.
    let mut order: Vec<&ServicePort> = ports.iter().collect();
    order.sort_by(|a, b| (&a.created, &a.name).cmp(&(&b.created, &b.name)));
    for p in order {
        if p.name.proto == Proto::Sctp && !node.sctp {
            conflicts.push(Conflict {
                port: p.name.clone(),
                reason: "UnsupportedProtocol",
                message: "this node's kernel cannot NAT SCTP".into(),
            });
            continue;
        }
        add_port(&mut r, p, node, &mut conflicts);
    }
    (r, conflicts)
}

/// Inserts `key → value` into a map unless another port holds the key.
fn claim(
    r: &mut Ruleset,
    map: &str,
    key: String,
    value: String,
    p: &ServicePort,
    conflicts: &mut Vec<Conflict>,
) {
    let m = r.maps.get_mut(map).expect("skeleton maps");
    if m.elements.contains_key(&key) {
        conflicts.push(Conflict {
            port: p.name.clone(),
            reason: "PortConflict",
            message: format!(
                "{} is already served by an older Service",
                key.replace(" . ", ":")
            ),
        });
        return;
    }
    m.elements.insert(key, value);
}

fn add_port(r: &mut Ruleset, p: &ServicePort, node: &NodeView, conflicts: &mut Vec<Conflict>) {
    let proto = p.name.proto.nft();
    let cluster_eps = p.cluster_endpoints();
    let external_eps = p.external_endpoints();
    let any = p.has_any_endpoint();
    let svc = service_chain(&p.name);
    let mut endpoints_needed: BTreeSet<&Endpoint> = BTreeSet::new();
    endpoints_needed.extend(cluster_eps.iter().copied());

    for ip in &p.cluster_ips {
        r.sets
            .get_mut(CLUSTER_IPS)
            .expect("skeleton sets")
            .elements
            .insert(ip.to_string());
        let key = format!("{ip} . {proto} . {}", p.port);
        if cluster_eps.is_empty() {
            // kube: no endpoints at all → reject; only remote ones under a Local policy →
            // drop.
            let verdict = if any { "drop" } else { "goto reject-chain" };
            claim(r, NO_EP_SERVICES, key, verdict.into(), p, conflicts);
        } else {
            claim(r, SERVICE_IPS, key, format!("goto {svc}"), p, conflicts);
        }
    }
    if !cluster_eps.is_empty() {
        let mut rules = Vec::new();
        for ip in &p.cluster_ips {
            match &node.cluster_cidr {
                Some(c) => rules.push(format!(
                    "ip daddr {ip} {proto} dport {} ip saddr != {c} jump mark-for-masquerade",
                    p.port
                )),
                None => rules.push(format!(
                    "ip daddr {ip} {proto} dport {} jump mark-for-masquerade",
                    p.port
                )),
            }
        }
        rules.extend(pick(p, &cluster_eps));
        r.chains.insert(svc.clone(), Chain { hook: None, rules });
    }

    if p.has_external() {
        let ext = external_chain(&p.name);
        let external_keys: Vec<String> = p
            .external_ips
            .iter()
            .chain(&p.load_balancer_ips)
            .map(|ip| format!("{ip} . {proto} . {}", p.port))
            .collect();
        let nodeport_key = p.node_port.map(|n| format!("{proto} . {n}"));
        if external_eps.is_empty() {
            let verdict = if any { "drop" } else { "goto reject-chain" };
            for k in external_keys {
                claim(r, NO_EP_SERVICES, k, verdict.into(), p, conflicts);
            }
            if let Some(k) = nodeport_key {
                claim(r, NO_EP_NODEPORTS, k, verdict.into(), p, conflicts);
            }
        } else {
            for k in external_keys {
                claim(r, SERVICE_IPS, k, format!("goto {ext}"), p, conflicts);
            }
            if let Some(k) = nodeport_key {
                claim(r, SERVICE_NODEPORTS, k, format!("goto {ext}"), p, conflicts);
            }
            let mut rules = Vec::new();
            if p.external_local {
                // Pods and the node itself reach the Service as through its cluster IP;
                // outside clients go to local endpoints with their own address kept.
                if !cluster_eps.is_empty() {
                    if let Some(c) = &node.cluster_cidr {
                        rules.push(format!("ip saddr {c} goto {svc}"));
                    }
                    rules.push("fib saddr type local jump mark-for-masquerade".into());
                    rules.push(format!("fib saddr type local goto {svc}"));
                }
                let local = local_chain(&p.name);
                rules.push(format!("goto {local}"));
                r.chains.insert(
                    local,
                    Chain {
                        hook: None,
                        rules: pick(p, &external_eps),
                    },
                );
                endpoints_needed.extend(external_eps.iter().copied());
            } else {
                rules.push("jump mark-for-masquerade".into());
                rules.push(format!("goto {svc}"));
            }
            r.chains.insert(ext, Chain { hook: None, rules });
        }
    }

    for e in endpoints_needed {
        let mut rules = vec![format!("ip saddr {} jump mark-for-masquerade", e.ip)];
        if let Some(t) = p.affinity_seconds {
            let set = affinity_set(&p.name, e, t);
            rules.push(format!("update @{set} {{ ip saddr }}"));
            r.sets.insert(
                set,
                Set {
                    decl: format!("type ipv4_addr; flags dynamic,timeout; timeout {t}s;"),
                    elements: BTreeSet::new(),
                    dynamic: true,
                },
            );
        }
        rules.push(format!("meta l4proto {proto} dnat to {}:{}", e.ip, e.port));
        r.chains
            .insert(endpoint_chain(&p.name, e), Chain { hook: None, rules });
    }
}

/// The rules that choose an endpoint: a client's affinity first, then at random.
fn pick(p: &ServicePort, eps: &[&Endpoint]) -> Vec<String> {
    let mut rules = Vec::new();
    if let Some(t) = p.affinity_seconds {
        for e in eps {
            rules.push(format!(
                "ip saddr @{} goto {}",
                affinity_set(&p.name, e, t),
                endpoint_chain(&p.name, e)
            ));
        }
    }
    // Endpoint i of N is taken with probability 1/(N-i) among what is left: uniform
    // over all, and no anonymous verdict map per Service (the kernel allocates their
    // names by scanning the table's sets, which made a sync of 10,000 Services take
    // minutes).
    let n = eps.len();
    for (i, e) in eps.iter().enumerate() {
        let left = n - i;
        let chain = endpoint_chain(&p.name, e);
        if left > 1 {
            rules.push(format!("numgen random mod {left} == 0 goto {chain}"));
        } else {
            rules.push(format!("goto {chain}"));
        }
    }
    rules
}

#[cfg(test)]
#[path = "ruleset_tests.rs"]
mod tests;
