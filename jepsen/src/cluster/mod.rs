//! Cluster control: how the harness starts, stops, stalls and cuts off members. Workloads and
//! checkers see only client URLs; nemeses see only this interface. Two implementations:
//! members in network namespaces (`netns.rs`), and the masters of the compose deployment
//! (`compose.rs`).

pub mod compose;
pub mod netns;
pub mod pki;

use std::collections::BTreeSet;
use std::path::PathBuf;

/// How a member starts.
#[derive(Clone, Debug)]
pub enum Start {
    /// One of the members of a new cluster.
    New,
    /// Again, on the data it has.
    Restart,
    /// With an empty data directory, joining a running cluster whose members (including
    /// this one, already added through MemberAdd) are `initial_cluster` (`name=peer-url,...`).
    Join { initial_cluster: String },
}

/// An apiserver of the cluster and the admin kubeconfig to reach it with (its server is
/// replaced by `url`).
#[derive(Clone, Debug)]
pub struct ApiServer {
    pub url: String,
    pub kubeconfig: PathBuf,
}

/// What a fault does to one of the deployment's agents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentAct {
    /// SIGKILL every process of the agent's machine.
    Kill,
    /// Start it again after a kill.
    Start,
    Pause,
    Resume,
    /// Drop everything it receives from the masters and the front.
    Isolate,
    /// Undo `Isolate`.
    Reconnect,
}

/// For each member, the members whose traffic it drops (Jepsen calls this a grudge).
pub type Grudge = Vec<BTreeSet<usize>>;

pub trait ClusterControl: Send + Sync {
    fn size(&self) -> usize;
    fn name(&self, node: usize) -> String;
    /// Where clients reach `node` (`https://host:port`, or `http://`).
    fn client_url(&self, node: usize) -> String;
    /// What clients present and trust on https:// client URLs.
    fn client_tls(&self) -> Option<&proto::tls::ClientTls>;
    fn peer_url(&self, node: usize) -> String;
    /// The apiserver of `node`, where the cluster runs one with each member.
    fn apiserver(&self, _node: usize) -> Option<ApiServer> {
        None
    }
    /// The deployment's agents (nodes that run pods), which faults may hit too.
    fn agents(&self) -> usize {
        0
    }
    fn agent_name(&self, i: usize) -> String {
        format!("a{i}")
    }
    fn agent(&self, _i: usize, _act: AgentAct) -> anyhow::Result<()> {
        anyhow::bail!("this cluster runs no agents (faults of agents need --cluster compose)")
    }
    fn start(&self, node: usize, how: Start) -> anyhow::Result<()>;
    /// SIGKILL and reap.
    fn kill(&self, node: usize) -> anyhow::Result<()>;
    fn pause(&self, node: usize) -> anyhow::Result<()>;
    fn resume(&self, node: usize) -> anyhow::Result<()>;
    /// Deletes the member's data (it must be stopped).
    fn wipe(&self, node: usize) -> anyhow::Result<()>;
    fn partition(&self, grudge: &Grudge) -> anyhow::Result<()>;
    /// Heals every partition (agents' too).
    fn heal(&self) -> anyhow::Result<()>;
    /// Whether the member's process is up (started, not killed, not exited).
    fn running(&self, node: usize) -> bool;
    /// Members that exited without being told to (a crash), with their exit status; still
    /// answers after `teardown`, which notes any crash before it stops the rest.
    fn crashed(&self) -> Vec<(usize, String)>;
    /// Stops everything the cluster started and removes what it made. Idempotent.
    fn teardown(&self);
}

/// Cuts every link between `a` and `b` in both directions.
pub fn cut(n: usize, sides: &[Vec<usize>]) -> Grudge {
    let mut g: Grudge = vec![BTreeSet::new(); n];
    for (i, side) in sides.iter().enumerate() {
        for other in sides.iter().skip(i + 1) {
            for &x in side {
                for &y in other {
                    g[x].insert(y);
                    g[y].insert(x);
                }
            }
        }
    }
    g
}
