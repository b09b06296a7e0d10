//! The pure part of the pod network: CIDRs, the names derived from a node's podCIDR (Docker
//! network, Linux bridge, nftables table), the nftables text of the egress masquerade, the
//! DOCKER-USER rules, and the host-gw route plan from the Nodes and this host's addresses.
//! Nothing here touches the kernel or the daemon; `kernel.rs` does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use flotilla_core::cidr;

/// An IPv4 network in CIDR notation, its address masked (`10.244.1.7/24` reads as
/// `10.244.1.0/24`, as Go's `ParseCIDR` returns the network): `flotilla_core::cidr`'s,
/// IPv4 only (the pod network is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr(cidr::Cidr);

impl Cidr {
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Cidr, String> {
        cidr::Cidr::new(IpAddr::V4(addr), len)
            .map(Cidr)
            .ok_or_else(|| format!("invalid CIDR {addr}/{len}: prefix longer than 32"))
    }

    pub fn addr(&self) -> Ipv4Addr {
        match self.0.network() {
            IpAddr::V4(a) => a,
            // Never: only IPv4 networks are made.
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        }
    }

    pub fn prefix_len(&self) -> u8 {
        self.0.prefix()
    }

    pub fn contains_ip(&self, ip: Ipv4Addr) -> bool {
        self.0.contains_ip(IpAddr::V4(ip))
    }

    /// Whether `other` lies wholly inside this network.
    pub fn contains(&self, other: &Cidr) -> bool {
        self.0.contains(&other.0)
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.0.overlaps(&other.0)
    }

    /// The first usable address: the bridge's (the pods' gateway).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr()).wrapping_add(1))
    }

    /// The `n`-th host address (1 is the first after the network's own), when the network
    /// holds it short of its broadcast address.
    pub fn host(&self, n: u32) -> Option<Ipv4Addr> {
        let size = 1u64 << (32 - u32::from(self.prefix_len()));
        if n == 0 || u64::from(n) + 1 >= size {
            return None;
        }
        Some(Ipv4Addr::from(u32::from(self.addr()).checked_add(n)?))
    }

    /// `10.244.1.0-24`: the CIDR in characters allowed in Docker network names and
    /// nftables identifiers.
    pub fn slug(&self) -> String {
        format!("{}-{}", self.addr(), self.prefix_len())
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let c: cidr::Cidr = s.parse().map_err(|e: cidr::ParseError| e.to_string())?;
        if c.family() != cidr::Family::V4 {
            return Err(format!(
                "invalid CIDR {s:?}: only IPv4 pod networks are supported"
            ));
        }
        Ok(Cidr(c))
    }
}

/// The Docker network of a node's podCIDR: `<prefix>-10.244.1.0-24`. One subnet, one
/// name: unique on the machine (Docker refuses overlapping subnets anyway) and the same
/// on every start, so a restarted agent finds its network again.
pub fn network_name(prefix: &str, pod_cidr: &Cidr) -> String {
    format!("{prefix}-{}", pod_cidr.slug())
}

/// The Linux bridge of that network: `fl` + the network address in hex + the prefix length
/// in hex (`10.244.1.0/24` → `fl0af4010018`), 12 characters: under the kernel's 15, and
/// distinct for distinct CIDRs.
pub fn bridge_name(pod_cidr: &Cidr) -> String {
    format!(
        "fl{:08x}{:02x}",
        u32::from(pod_cidr.addr()),
        pod_cidr.prefix_len()
    )
}

/// The nftables table (family `ip`) holding a node's egress masquerade.
pub fn nft_table(pod_cidr: &Cidr) -> String {
    format!("flotilla-podnet-{}", pod_cidr.slug().replace('.', "-"))
}

/// The nftables transaction that (re)creates a node's table atomically: pods' traffic to
/// outside the cluster network leaves with the host's address; pod-to-pod traffic keeps
/// the pod's. `add` then `delete` makes the delete succeed whether or not it existed.
pub fn nft_text(pod_cidr: &Cidr, cluster_cidr: &Cidr) -> String {
    let t = nft_table(pod_cidr);
    format!(
        "add table ip {t}\n\
         delete table ip {t}\n\
         table ip {t} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority 100; policy accept;\n\
         \t\tip saddr {pod_cidr} ip daddr != {cluster_cidr} masquerade\n\
         \t}}\n\
         }}\n"
    )
}

/// The nftables text removing a node's table (it must exist: `nft` refuses otherwise).
pub fn nft_delete_text(pod_cidr: &Cidr) -> String {
    let t = nft_table(pod_cidr);
    format!("add table ip {t}\ndelete table ip {t}\n")
}

/// The filter rules (after the chain name) accepting the cluster's traffic in Docker's
/// DOCKER-USER chain, ahead of its isolation chains that drop bridge-to-bridge traffic.
pub fn docker_user_rules(cluster_cidr: &Cidr) -> [Vec<String>; 2] {
    let c = cluster_cidr.to_string();
    let rule = |dir: &str| {
        vec![
            dir.to_string(),
            c.clone(),
            "-j".to_string(),
            "ACCEPT".to_string(),
        ]
    };
    [rule("-s"), rule("-d")]
}

/// What the route plan needs of a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeNet {
    pub pod_cidr: Option<Cidr>,
    pub internal_ip: Option<Ipv4Addr>,
}

/// The routing protocol number marking the agent's routes (`ip route ... proto 241`).
pub const ROUTE_PROTO: u8 = 241;

/// The host-gw routes this host wants: each other Node's podCIDR via its InternalIP, for
/// Nodes not on this host (a local InternalIP means the podCIDR's bridge is here) and
/// podCIDRs inside the cluster network. Of two Nodes claiming one podCIDR the first by
/// name wins.
pub fn desired_routes(
    nodes: &BTreeMap<String, NodeNet>,
    own: &str,
    local: &BTreeSet<Ipv4Addr>,
    cluster_cidr: &Cidr,
) -> BTreeMap<Cidr, Ipv4Addr> {
    let mut out = BTreeMap::new();
    for (name, n) in nodes {
        if name == own {
            continue;
        }
        let (Some(c), Some(ip)) = (n.pod_cidr, n.internal_ip) else {
            continue;
        };
        if local.contains(&ip) || ip.is_loopback() || !cluster_cidr.contains(&c) {
            continue;
        }
        out.entry(c).or_insert(ip);
    }
    out
}

/// The changes taking the routes of ours (`current`, proto [`ROUTE_PROTO`]) to `desired`:
/// routes to replace (missing or via another gateway) and destinations to delete. Only
/// routes inside the cluster network are ours to delete: another cluster's agents on this
/// host mark theirs with the same number.
pub fn route_changes(
    current: &BTreeMap<Cidr, Option<Ipv4Addr>>,
    desired: &BTreeMap<Cidr, Ipv4Addr>,
    cluster_cidr: &Cidr,
) -> (Vec<(Cidr, Ipv4Addr)>, Vec<Cidr>) {
    let replace = desired
        .iter()
        .filter(|(c, via)| current.get(c) != Some(&Some(**via)))
        .map(|(c, via)| (*c, *via))
        .collect();
    let delete = current
        .keys()
        .filter(|c| !desired.contains_key(c) && cluster_cidr.contains(c))
        .copied()
        .collect();
    (replace, delete)
}

/// Parses `ip -4 route show proto 241`: `10.244.2.0/24 via 192.0.2.3 dev eth0 ...` per
/// line (a host route prints without `/32`).
pub fn parse_routes(text: &str) -> BTreeMap<Cidr, Option<Ipv4Addr>> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(dst) = words.next() else { continue };
        let dst = if dst.contains('/') {
            dst.parse().ok()
        } else {
            dst.parse::<Ipv4Addr>()
                .ok()
                .and_then(|a| Cidr::new(a, 32).ok())
        };
        let Some(dst) = dst else { continue };
        let words: Vec<&str> = line.split_whitespace().collect();
        let via = words
            .windows(2)
            .find(|w| w[0] == "via")
            .and_then(|w| w[1].parse().ok());
        out.insert(dst, via);
    }
    out
}

/// Parses `ip -o -4 addr show`: the address after each `inet`.
pub fn parse_addrs(text: &str) -> BTreeSet<Ipv4Addr> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for w in words.windows(2).filter(|w| w[0] == "inet") {
            if let Some(ip) = w[1].split('/').next().and_then(|a| a.parse().ok()) {
                out.insert(ip);
            }
        }
    }
    out
}

/// A Node's podCIDR (its first IPv4 `spec.podCIDRs` entry, else `spec.podCIDR`) and
/// InternalIP, as the plan needs them; unparsable values count as absent.
pub fn node_net(n: &k8s_openapi::api::core::v1::Node) -> NodeNet {
    let spec = n.spec.as_ref();
    let pod_cidr = spec
        .and_then(|s| s.pod_cidrs.as_ref())
        .into_iter()
        .flatten()
        .chain(spec.and_then(|s| s.pod_cidr.as_ref()))
        .find_map(|c| c.parse::<Cidr>().ok());
    let internal_ip = n
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse().ok());
    NodeNet {
        pod_cidr,
        internal_ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_mask_and_contain() {
        assert_eq!(c("10.244.1.7/24").to_string(), "10.244.1.0/24");
        assert_eq!(c("10.244.1.0/24").gateway(), ip("10.244.1.1"));
        assert!(c("10.244.0.0/16").contains(&c("10.244.3.0/24")));
        assert!(!c("10.244.3.0/24").contains(&c("10.244.0.0/16")));
        assert!(c("10.244.3.0/24").overlaps(&c("10.244.0.0/16")));
        assert!(!c("10.245.0.0/24").overlaps(&c("10.244.0.0/16")));
        assert!(c("0.0.0.0/0").contains_ip(ip("8.8.8.8")));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/8",
            "fd00::/64",
            "10.0.0.0/+8",
            "x/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert!("fd00::/64"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("only IPv4"));
    }

    #[test]
    fn names_come_from_the_cidr() {
        let p = c("10.244.1.0/24");
        assert_eq!(network_name("flotilla", &p), "flotilla-10.244.1.0-24");
        assert_eq!(bridge_name(&p), "fl0af4010018");
        assert!(bridge_name(&c("255.255.255.255/32")).len() < 15);
        assert_ne!(
            bridge_name(&c("10.0.0.0/8")),
            bridge_name(&c("10.0.0.0/16"))
        );
        assert_eq!(nft_table(&p), "flotilla-podnet-10-244-1-0-24");
    }

    #[test]
    fn nft_text_replaces_the_table_in_one_transaction() {
        let t = nft_text(&c("10.244.1.0/24"), &c("10.244.0.0/16"));
        let lines: Vec<&str> = t.lines().map(str::trim).collect();
        assert_eq!(lines[0], "add table ip flotilla-podnet-10-244-1-0-24");
        assert_eq!(lines[1], "delete table ip flotilla-podnet-10-244-1-0-24");
        assert_eq!(lines[2], "table ip flotilla-podnet-10-244-1-0-24 {");
        assert!(lines.contains(&"type nat hook postrouting priority 100; policy accept;"));
        assert!(lines.contains(&"ip saddr 10.244.1.0/24 ip daddr != 10.244.0.0/16 masquerade"));
        assert_eq!(
            docker_user_rules(&c("10.244.0.0/16"))[1].join(" "),
            "-d 10.244.0.0/16 -j ACCEPT"
        );
    }

    #[test]
    fn routes_go_to_other_hosts_nodes_only() {
        let cluster = c("10.244.0.0/16");
        let node = |cidr: Option<&str>, addr: Option<&str>| NodeNet {
            pod_cidr: cidr.map(c),
            internal_ip: addr.map(ip),
        };
        let nodes: BTreeMap<String, NodeNet> = [
            ("a", node(Some("10.244.0.0/24"), Some("192.0.2.2"))),
            ("b", node(Some("10.244.1.0/24"), Some("192.0.2.3"))),
            // On this host: its bridge is here.
            ("c", node(Some("10.244.2.0/24"), Some("192.0.2.2"))),
            ("d", node(None, Some("192.0.2.4"))),
            ("e", node(Some("10.244.4.0/24"), None)),
            ("f", node(Some("10.99.0.0/24"), Some("192.0.2.5"))),
            ("g", node(Some("10.244.6.0/24"), Some("127.0.0.1"))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let local: BTreeSet<Ipv4Addr> = [ip("192.0.2.2"), ip("127.0.0.1")].into();
        let want = desired_routes(&nodes, "a", &local, &cluster);
        assert_eq!(
            want,
            [(c("10.244.1.0/24"), ip("192.0.2.3"))]
                .into_iter()
                .collect()
        );
        // One machine: every InternalIP is local, no route.
        let all_local: BTreeSet<Ipv4Addr> = [ip("192.0.2.2"), ip("192.0.2.3")].into();
        assert!(desired_routes(&nodes, "a", &all_local, &cluster).is_empty());

        let current: BTreeMap<Cidr, Option<Ipv4Addr>> = parse_routes(
            "10.244.1.0/24 via 192.0.2.9 dev eth0 proto 241\n\
             10.244.7.0/24 via 192.0.2.7 dev eth0 proto 241\n\
             10.50.0.0/24 via 192.0.2.7 dev eth0 proto 241\n\
             10.244.8.1 via 192.0.2.7 dev eth0 proto 241 \n",
        );
        assert_eq!(current.len(), 4);
        assert_eq!(current[&c("10.244.8.1/32")], Some(ip("192.0.2.7")));
        let (replace, delete) = route_changes(&current, &want, &cluster);
        assert_eq!(replace, vec![(c("10.244.1.0/24"), ip("192.0.2.3"))]);
        // Another cluster's route (10.50.0.0/24) stays.
        assert_eq!(delete, vec![c("10.244.7.0/24"), c("10.244.8.1/32")]);
        let settled: BTreeMap<Cidr, Option<Ipv4Addr>> =
            want.iter().map(|(k, v)| (*k, Some(*v))).collect();
        assert_eq!(
            route_changes(&settled, &want, &cluster),
            (Vec::new(), Vec::new())
        );
    }

    #[test]
    fn addresses_parse_from_ip_addr() {
        let got = parse_addrs(
            "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
             4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\  valid_lft forever\n",
        );
        assert_eq!(got, [ip("127.0.0.1"), ip("192.0.2.2")].into());
    }

    #[test]
    fn node_podcidr_prefers_the_ipv4_entry_of_podcidrs() {
        use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeSpec, NodeStatus};
        let n = Node {
            spec: Some(NodeSpec {
                pod_cidr: Some("fd00::/64".into()),
                pod_cidrs: Some(vec!["fd00::/64".into(), "10.244.3.0/24".into()]),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                addresses: Some(vec![
                    NodeAddress {
                        type_: "Hostname".into(),
                        address: "n".into(),
                    },
                    NodeAddress {
                        type_: "InternalIP".into(),
                        address: "192.0.2.3".into(),
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            node_net(&n),
            NodeNet {
                pod_cidr: Some(c("10.244.3.0/24")),
                internal_ip: Some(ip("192.0.2.3"))
            }
        );
        assert_eq!(node_net(&Node::default()).pod_cidr, None);
    }
}
