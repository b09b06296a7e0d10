//! Which port each component of `flotilla up` listens on: a pure plan, checked once.
//!
//! Contract: no port depends on how many of *another* component there are. Master `i` owns
//! the block `--kvstore-port + 10000*i`: its kvstore member's client port (+0) and peer
//! port (+1), its scheduler's metrics (+2), its controller-manager's metrics (+3), its DNS
//! server (+4, UDP and TCP), the DNS server's metrics (+5) and its kvstore member's metrics
//! (+6); its apiserver listens on
//! `--apiserver-port + i`; agent `i` on `--agent-port + i` and the proxy of its node on
//! `--agent-port - 1 - i` (10249 first: kube-proxy's metrics port). So adding
//! agents never moves or collides with a master's port (the defaults leave room for 2,129
//! agents before master 1's block), and a plan with any two ports equal, or past 65535, is
//! refused before anything starts.

use std::collections::BTreeMap;

/// The three base ports a user can move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bases {
    pub apiserver: u16,
    pub kvstore: u16,
    pub agent: u16,
}

impl Default for Bases {
    fn default() -> Self {
        Bases {
            apiserver: 6443,
            kvstore: 2379,
            agent: 10250,
        }
    }
}

/// One master's ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterPorts {
    pub apiserver: u16,
    pub kv_client: u16,
    pub kv_peer: u16,
    pub scheduler_metrics: u16,
    pub controller_manager_metrics: u16,
    pub dns: u16,
    pub dns_metrics: u16,
    /// The kvstore member's `--listen-metrics-urls`.
    pub kv_metrics: u16,
}

/// Every port of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    pub masters: Vec<MasterPorts>,
    pub agents: Vec<u16>,
    /// The secure port of each agent node's proxy.
    pub proxies: Vec<u16>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortError {
    #[error("{what} would need port {base} ± {offset}, outside 1-65535; choose another base port")]
    OutOfRange {
        what: String,
        base: u16,
        offset: usize,
    },
    #[error("{a} and {b} would both listen on port {port}; move --apiserver-port, --kvstore-port or --agent-port apart")]
    Clash { a: String, b: String, port: u16 },
}

fn at(what: impl Fn() -> String, base: u16, offset: usize) -> Result<u16, PortError> {
    u16::try_from(offset)
        .ok()
        .and_then(|o| base.checked_add(o))
        .ok_or_else(|| PortError::OutOfRange {
            what: what(),
            base,
            offset,
        })
}

/// The ports of a cluster of `masters` masters and `agents` agents.
pub fn plan(bases: Bases, masters: usize, agents: usize) -> Result<Ports, PortError> {
    let mut out = Ports {
        masters: Vec::with_capacity(masters),
        agents: Vec::with_capacity(agents),
        proxies: Vec::with_capacity(agents),
    };
    for i in 0..masters {
        let block = |j: usize| {
            i.checked_mul(10_000)
                .and_then(|o| o.checked_add(j))
                .unwrap_or(usize::MAX)
        };
        let name = |c: &'static str| move || format!("master {i}'s {c}");
        out.masters.push(MasterPorts {
            apiserver: at(name("apiserver"), bases.apiserver, i)?,
            kv_client: at(name("kvstore member"), bases.kvstore, block(0))?,
            kv_peer: at(name("kvstore peer port"), bases.kvstore, block(1))?,
            scheduler_metrics: at(name("scheduler"), bases.kvstore, block(2))?,
            controller_manager_metrics: at(name("controller-manager"), bases.kvstore, block(3))?,
            dns: at(name("dns"), bases.kvstore, block(4))?,
            dns_metrics: at(name("dns metrics"), bases.kvstore, block(5))?,
            kv_metrics: at(name("kvstore metrics"), bases.kvstore, block(6))?,
        });
    }
    for i in 0..agents {
        out.agents
            .push(at(|| format!("agent {i}"), bases.agent, i)?);
        let proxy = i
            .checked_add(1)
            .and_then(|d| u16::try_from(d).ok())
            .and_then(|d| bases.agent.checked_sub(d))
            .filter(|p| *p > 0)
            .ok_or_else(|| PortError::OutOfRange {
                what: format!("proxy {i}"),
                base: bases.agent,
                offset: i,
            })?;
        out.proxies.push(proxy);
    }
    let mut seen: BTreeMap<u16, String> = BTreeMap::new();
    for (port, who) in out.named() {
        if let Some(a) = seen.insert(port, who.clone()) {
            return Err(PortError::Clash { a, b: who, port });
        }
    }
    Ok(out)
}

impl Ports {
    /// Every port with who listens on it.
    pub fn named(&self) -> Vec<(u16, String)> {
        let mut v = Vec::new();
        for (i, m) in self.masters.iter().enumerate() {
            v.push((m.apiserver, format!("apiserver-m{i}")));
            v.push((m.kv_client, format!("kvstore-m{i}")));
            v.push((m.kv_peer, format!("kvstore-m{i} (peers)")));
            v.push((m.scheduler_metrics, format!("scheduler-m{i}")));
            v.push((
                m.controller_manager_metrics,
                format!("controller-manager-m{i}"),
            ));
            v.push((m.dns, format!("dns-m{i}")));
            v.push((m.dns_metrics, format!("dns-m{i} (metrics)")));
            v.push((m.kv_metrics, format!("kvstore-m{i} (metrics)")));
        }
        for (i, p) in self.agents.iter().enumerate() {
            v.push((*p, format!("agent flotilla-{i}")));
        }
        for (i, p) in self.proxies.iter().enumerate() {
            v.push((*p, format!("proxy flotilla-{i}")));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readmes_cluster_has_distinct_ports() {
        let p = plan(Bases::default(), 3, 2).unwrap();
        assert_eq!(p.masters[0].kv_client, 2379);
        assert_eq!(p.masters[1].kv_peer, 12380);
        assert_eq!(p.masters[2].apiserver, 6445);
        assert_eq!(p.masters[0].scheduler_metrics, 2381);
        assert_eq!(p.agents, vec![10250, 10251]);
        assert_eq!(p.proxies, vec![10249, 10248]);
        assert_eq!((p.masters[1].dns, p.masters[1].dns_metrics), (12383, 12384));
    }

    #[test]
    fn master_ports_do_not_depend_on_the_agent_count() {
        let few = plan(Bases::default(), 3, 1).unwrap();
        for agents in [2, 3, 8, 100, 2000] {
            let many = plan(Bases::default(), 3, agents).unwrap();
            assert_eq!(few.masters, many.masters, "{agents} agents");
        }
    }

    #[test]
    fn clashes_and_overflow_are_refused_with_who() {
        let e = plan(
            Bases {
                agent: 6444,
                ..Bases::default()
            },
            3,
            1,
        )
        .unwrap_err();
        assert_eq!(
            e,
            PortError::Clash {
                a: "apiserver-m1".into(),
                b: "agent flotilla-0".into(),
                port: 6444
            }
        );
        assert!(matches!(
            plan(Bases::default(), 1, 60_000),
            Err(PortError::OutOfRange { .. })
        ));
        assert!(matches!(
            plan(
                Bases {
                    kvstore: 50_000,
                    ..Bases::default()
                },
                3,
                1
            ),
            Err(PortError::OutOfRange { .. })
        ));
    }
}
