//! The shape of a deployment on several hosts: each master's and agent's name and
//! address, and the front (a TCP load balancer) the agents and operators reach the
//! apiservers through. `flotilla deploy init` checks it and writes it as `cluster.json`
//! next to every host's credentials; each host reads it from there. Pure.
//!
//! Every host has an address of its own, so every component listens on kube's and etcd's
//! usual port.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub const KV_CLIENT_PORT: u16 = 2379;
pub const KV_PEER_PORT: u16 = 2380;
pub const KV_METRICS_PORT: u16 = 2381;
pub const APISERVER_PORT: u16 = 6443;
pub const SCHEDULER_PORT: u16 = 10259;
pub const CONTROLLER_MANAGER_PORT: u16 = 10257;
pub const DNS_PORT: u16 = 53;
pub const DNS_METRICS_PORT: u16 = 9153;
pub const AGENT_PORT: u16 = 10250;
pub const PROXY_PORT: u16 = 10249;

/// One host: its name (a DNS-1123 label, also its Node's or kvstore member's name) and
/// its address on the cluster's network.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub ip: IpAddr,
}

impl std::str::FromStr for Host {
    type Err = String;

    /// `name=ip`.
    fn from_str(s: &str) -> Result<Host, String> {
        let (name, ip) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected name=address"))?;
        let problems = flotilla_core::names::dns1123_label(name);
        if !problems.is_empty() {
            return Err(format!("{s:?}: the name {name:?}: {}", problems.join("; ")));
        }
        let ip = ip
            .parse()
            .map_err(|_| format!("{s:?}: {ip:?} is not an IP address"))?;
        Ok(Host {
            name: name.to_string(),
            ip,
        })
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Topology {
    /// The masters: each a kvstore member, an apiserver, a scheduler, a
    /// controller-manager and a DNS server.
    pub masters: Vec<Host>,
    /// The nodes: each an agent and its service proxy.
    pub agents: Vec<Host>,
    /// The apiservers' front on the cluster's network.
    pub front: Host,
    /// The server URL of the admin kubeconfig: the front as the operator's machine
    /// reaches it (a published port).
    pub admin_server: String,
    /// The pod network, a /24 of it per node.
    pub cluster_cidr: String,
}

impl Topology {
    /// Checks what no later step could repair: 1, 3 or 5 masters, unique names and
    /// addresses, an https admin URL.
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.masters.len(), 1 | 3 | 5) {
            return Err(format!(
                "a deployment has 1, 3 or 5 masters (a Raft majority must survive a loss), not {}",
                self.masters.len()
            ));
        }
        let mut names = BTreeSet::new();
        let mut ips = BTreeSet::new();
        for h in self.hosts() {
            if !names.insert(h.name.as_str()) {
                return Err(format!("two hosts are named {:?}", h.name));
            }
            if !ips.insert(h.ip) {
                return Err(format!("two hosts have the address {}", h.ip));
            }
        }
        if !self.admin_server.starts_with("https://") {
            return Err(format!(
                "--admin-server {:?}: an https:// URL is expected",
                self.admin_server
            ));
        }
        Ok(())
    }

    /// Every host, masters first, then the agents and the front.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.masters
            .iter()
            .chain(&self.agents)
            .chain(std::iter::once(&self.front))
    }

    pub fn master(&self, name: &str) -> Option<&Host> {
        self.masters.iter().find(|h| h.name == name)
    }

    pub fn agent(&self, name: &str) -> Option<&Host> {
        self.agents.iter().find(|h| h.name == name)
    }

    /// The master called `name`, or an error listing the masters.
    pub fn require_master(&self, name: &str) -> Result<&Host, String> {
        self.master(name)
            .ok_or_else(|| not_one_of(name, "master", &self.masters))
    }

    /// The agent called `name`, or an error listing the agents.
    pub fn require_agent(&self, name: &str) -> Result<&Host, String> {
        self.agent(name)
            .ok_or_else(|| not_one_of(name, "agent", &self.agents))
    }

    /// The kvstore's `--initial-cluster`.
    pub fn initial_cluster(&self) -> String {
        self.masters
            .iter()
            .map(|h| format!("{}={}", h.name, peer_url(h)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Master `me`'s apiserver's `--etcd-servers`: every member, so any may fail, its own
    /// first. The apiserver starts with the first and stays with a member that answers, so
    /// each talks to its own as kubeadm's stacked masters do. A master cut off from the
    /// others then refuses writes at once ("no leader"), the others' apiservers do not
    /// wait on its silence, and their members forward writes to a new leader as soon as
    /// one is elected.
    pub fn etcd_servers(&self, me: &str) -> Vec<String> {
        let first = self.masters.iter().position(|h| h.name == me).unwrap_or(0);
        let (before, after) = self.masters.split_at(first);
        after.iter().chain(before).map(client_url).collect()
    }

    /// The apiservers behind the front.
    pub fn apiservers(&self) -> Vec<std::net::SocketAddr> {
        self.masters
            .iter()
            .map(|h| std::net::SocketAddr::new(h.ip, APISERVER_PORT))
            .collect()
    }

    /// The URL the nodes reach the apiservers at.
    pub fn front_url(&self) -> String {
        url(self.front.ip, APISERVER_PORT)
    }

    /// What may change in a deployment that exists: agents may be added and taken out.
    /// Anything else (another master set, an agent at another address) is a different
    /// cluster.
    pub fn may_become(&self, next: &Topology) -> Result<(), String> {
        let same = self.masters == next.masters
            && self.front == next.front
            && self.cluster_cidr == next.cluster_cidr
            && self.admin_server == next.admin_server;
        if !same {
            return Err(
                "the masters, the front, the admin server and the pod network of a deployment stay as they were created"
                    .into(),
            );
        }
        for a in &self.agents {
            if let Some(b) = next.agent(&a.name).filter(|b| b.ip != a.ip) {
                return Err(format!(
                    "the agent {} would move from {} to {}; take it out first",
                    a.name, a.ip, b.ip
                ));
            }
        }
        Ok(())
    }
}

fn not_one_of(name: &str, role: &str, hosts: &[Host]) -> String {
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    format!(
        "{name} is not a{} {role} of this deployment (its {role}s: {})",
        if role.starts_with('a') { "n" } else { "" },
        names.join(", ")
    )
}

fn url(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(_) => format!("https://{ip}:{port}"),
        IpAddr::V6(_) => format!("https://[{ip}]:{port}"),
    }
}

pub fn client_url(h: &Host) -> String {
    url(h.ip, KV_CLIENT_PORT)
}

pub fn peer_url(h: &Host) -> String {
    url(h.ip, KV_PEER_PORT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> Host {
        s.parse().unwrap()
    }

    fn three() -> Topology {
        Topology {
            masters: vec![
                host("m0=10.237.0.10"),
                host("m1=10.237.0.11"),
                host("m2=10.237.0.12"),
            ],
            agents: vec![host("a0=10.237.0.20"), host("a1=10.237.0.21")],
            front: host("front=10.237.0.5"),
            admin_server: "https://127.0.0.1:6443".into(),
            cluster_cidr: "10.244.0.0/16".into(),
        }
    }

    #[test]
    fn hosts_are_parsed_and_bad_ones_named() {
        assert_eq!(host("m0=10.0.0.1").ip, IpAddr::from([10, 0, 0, 1]));
        let e = "m0".parse::<Host>().unwrap_err();
        assert!(e.contains("expected name=address"), "{e}");
        let e = "M_0=10.0.0.1".parse::<Host>().unwrap_err();
        assert!(e.contains("the name \"M_0\""), "{e}");
        let e = "m0=10.0.0".parse::<Host>().unwrap_err();
        assert!(e.contains("is not an IP address"), "{e}");
    }

    #[test]
    fn urls_name_every_member() {
        let t = three();
        t.validate().unwrap();
        assert_eq!(
            t.initial_cluster(),
            "m0=https://10.237.0.10:2380,m1=https://10.237.0.11:2380,m2=https://10.237.0.12:2380"
        );
        assert_eq!(
            t.etcd_servers("m1"),
            [
                "https://10.237.0.11:2379",
                "https://10.237.0.12:2379",
                "https://10.237.0.10:2379"
            ]
        );
        assert_eq!(t.front_url(), "https://10.237.0.5:6443");
        assert_eq!(t.apiservers()[1].to_string(), "10.237.0.11:6443");
    }

    #[test]
    fn a_bad_shape_is_refused() {
        let mut t = three();
        t.masters.pop();
        assert!(t.validate().unwrap_err().contains("1, 3 or 5 masters"));
        let mut t = three();
        t.agents[1].name = "m0".into();
        assert!(t
            .validate()
            .unwrap_err()
            .contains("two hosts are named \"m0\""));
        let mut t = three();
        t.front.ip = t.masters[0].ip;
        assert!(t.validate().unwrap_err().contains("10.237.0.10"));
        let mut t = three();
        t.admin_server = "http://127.0.0.1:6443".into();
        assert!(t.validate().is_err());
    }

    #[test]
    fn agents_may_come_and_go_nothing_else_changes() {
        let t = three();
        let mut more = t.clone();
        more.agents.push(host("a2=10.237.0.22"));
        t.may_become(&more).unwrap();
        more.may_become(&t).unwrap();
        let mut moved = t.clone();
        moved.agents[0].ip = "10.237.0.29".parse().unwrap();
        assert!(t.may_become(&moved).unwrap_err().contains("a0 would move"));
        let mut other = t.clone();
        other.masters[0].ip = "10.237.0.13".parse().unwrap();
        assert!(t.may_become(&other).is_err());
    }
}
