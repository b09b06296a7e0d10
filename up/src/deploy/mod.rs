//! `flotilla deploy`: Flotilla on several hosts, each in a container of its own
//! (`deploy/compose.yaml`) or on a machine of its own.
//!
//! - `init` (`init.rs`): the credentials of every host, each host's in a directory of its
//!   own (`layout.rs`), and the deployment's shape (`topology.rs`);
//! - `master` (`master.rs`): a master's kvstore member, apiserver, scheduler,
//!   controller-manager and DNS server;
//! - `node` (`node.rs`): an agent and its service proxy;
//! - `lb` (`lb.rs`): the apiservers' front, a TCP load balancer checking each /readyz;
//! - `ready` (`probe.rs`): whether this host serves, for a container's health check.
//!
//! A master or node process stops all its components when one exits and exits itself, so
//! a container's restart policy (or systemd's) restarts the host whole.

pub mod init;
pub mod join;
pub mod layout;
pub mod lb;
pub mod master;
pub mod members;
pub mod node;
pub mod probe;
pub mod topology;

use std::time::Duration;

use crate::supervisor::Procs;

#[derive(clap::Subcommand, Debug, Clone)]
pub enum DeployCommand {
    /// Write the credentials of every host of a deployment.
    Init(init::InitFlags),
    /// Run one master (kvstore member, apiserver, scheduler, controller-manager, DNS).
    Master(master::MasterFlags),
    /// Run one node (agent and service proxy).
    Node(node::NodeFlags),
    /// Run the apiservers' front (a TCP load balancer).
    Lb(lb::LbFlags),
    /// Exit 0 when this host serves (a container's health check).
    Ready(probe::ReadyFlags),
    /// Print the name of the master whose kvstore member leads (run on a master).
    Leader(probe::ReadyFlags),
}

pub async fn run(
    cmd: DeployCommand,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    match cmd {
        DeployCommand::Init(f) => init::run(f),
        DeployCommand::Master(f) => master::run(f, shutdown).await,
        DeployCommand::Node(f) => node::run(f, shutdown).await,
        DeployCommand::Lb(f) => lb::run(f, shutdown).await,
        DeployCommand::Ready(f) => probe::ready(f).await,
        DeployCommand::Leader(f) => {
            let topology = layout::read_topology(&f.cluster_dir)?;
            let me = topology
                .require_master(&f.name)
                .map_err(anyhow::Error::msg)?;
            let tls = members::tls(&layout::MasterDir(f.cluster_dir.clone()))?;
            let name = members::leader(&topology, me, &tls, Duration::from_secs(3)).await?;
            println!("{name}");
            Ok(())
        }
    }
}

/// How long the components get after SIGTERM (Docker waits 10 s by default before its
/// SIGKILL; compose.yaml gives masters and nodes 20 s).
const STOP_GRACE: Duration = Duration::from_secs(15);

/// Runs until `shutdown` (then stops every component, in tiers) or until a component
/// exits (then stops the rest and fails, naming it).
async fn supervise(
    mut procs: Procs,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let show = |what: &str, n: usize, took: Option<Duration>| match took {
        None => println!("stopping {what} ({n})"),
        Some(d) => println!("stopped {what} in {:.1}s", d.as_secs_f64()),
    };
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => {
                procs.stop(STOP_GRACE, show);
                return Ok(());
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if let Some((name, _, status)) = procs.exited() {
            println!("{name} exited ({status}); stopping the others so the host restarts whole");
            procs.stop(STOP_GRACE, show);
            anyhow::bail!("{name} exited ({status})");
        }
    }
}
