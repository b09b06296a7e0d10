//! `flotilla deploy node`: one agent host of a deployment, the process an agent's
//! container runs: the agent and its node's service proxy, both through the front, each
//! as its own user, supervised as `flotilla deploy master` supervises a master's.
//!
//! In a container the agent runs pods with its process runtime (as host processes of the
//! container: no image, no isolation from each other), the proxy programs the container's
//! own nftables (it needs `NET_ADMIN`).

use anyhow::Context;

use super::layout::NodeDir;
use super::master::HostFlags;
use super::topology::{self as t, Topology};
use crate::supervisor::{Procs, Tier};

#[derive(clap::Args, Debug, Clone)]
pub struct NodeFlags {
    #[command(flatten)]
    pub host: HostFlags,
    /// How the agent runs containers: `process` in a container; `docker` where the host's
    /// Docker Engine is this host's own.
    #[arg(long, default_value = "process", value_parser = ["process", "docker", "fake"])]
    pub runtime: String,
}

fn s(x: impl ToString) -> String {
    x.to_string()
}

/// The agent's and the proxy's arguments.
pub fn plan(
    topology: &Topology,
    flags: &NodeFlags,
) -> anyhow::Result<Vec<(Tier, &'static str, Vec<String>)>> {
    let name = &flags.host.name;
    let me = topology.require_agent(name).map_err(anyhow::Error::msg)?;
    let dir = NodeDir(flags.host.cluster_dir.clone());
    let p = |x: std::path::PathBuf| x.display().to_string();
    let agent = vec![
        s("agent"),
        s("--kubeconfig"),
        p(dir.kubeconfig("agent")),
        s("--node-name"),
        name.clone(),
        s("--root-dir"),
        p(flags.host.data_dir.join("agent")),
        s("--runtime"),
        flags.runtime.clone(),
        s("--address"),
        s(me.ip),
        s("--port"),
        s(t::AGENT_PORT),
        s("--node-ip"),
        s(me.ip),
        s("--cluster-cidr"),
        topology.cluster_cidr.clone(),
        s("--cluster-dns"),
        s("10.96.0.10"),
        s("--cluster-domain"),
        s("cluster.local"),
        s("--stop-pods-on-exit"),
        s("--tls-cert-file"),
        p(dir.cert("agent")),
        s("--tls-private-key-file"),
        p(dir.key("agent")),
        s("--client-ca-file"),
        p(dir.ca()),
    ];
    let proxy = vec![
        s("proxy"),
        s("--kubeconfig"),
        p(dir.kubeconfig("proxy")),
        s("--hostname-override"),
        name.clone(),
        s("--cluster-cidr"),
        topology.cluster_cidr.clone(),
        s("--nodeport-addresses"),
        format!("{}/32", me.ip),
        s("--bind-address"),
        s(me.ip),
        s("--secure-port"),
        s(t::PROXY_PORT),
        s("--tls-cert-file"),
        p(dir.cert("proxy")),
        s("--tls-private-key-file"),
        p(dir.key("proxy")),
        s("--client-ca-file"),
        p(dir.ca()),
    ];
    Ok(vec![
        (Tier::Agents, "agent", agent),
        (Tier::Agents, "proxy", proxy),
    ])
}

pub async fn run(
    flags: NodeFlags,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let topology = super::layout::read_topology(&flags.host.cluster_dir)?;
    let plan = plan(&topology, &flags)?;
    apiserver::private::dir(&flags.host.data_dir)
        .with_context(|| format!("creating {}", flags.host.data_dir.display()))?;
    println!(
        "node {} starting: agent ({} runtime) and proxy, through the front at {}",
        flags.host.name,
        flags.runtime,
        topology.front_url()
    );
    let mut procs = Procs::default();
    for (tier, name, args) in &plan {
        procs.spawn_prefixed(*tier, name, args)?;
    }
    super::supervise(procs, shutdown).await
}
