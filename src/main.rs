//! `flotilla <component>`: one binary for every Flotilla component.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// jemalloc, as TiKV uses, with its background threads: freed memory goes back to the
/// system within seconds even when the process then idles (glibc's malloc, and jemalloc
/// without them, keep what bursts of large responses and watch fan-out leave behind).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "flotilla",
    version,
    about = "A container orchestrator with its own Raft key-value store"
)]
struct Cli {
    #[command(subcommand)]
    command: Component,
}

#[derive(Subcommand)]
enum Component {
    /// Start a whole cluster on this machine (kvstore, apiserver, scheduler,
    /// controller-manager and agents); Ctrl-C stops it, running it again resumes it.
    Up(up::UpFlags),
    /// The same cluster with each master and node on a host (a container) of its own:
    /// `deploy init` writes every host's credentials, `deploy master`, `deploy node` and
    /// `deploy lb` are what each host runs (deploy/compose.yaml).
    #[command(subcommand)]
    Deploy(up::deploy::DeployCommand),
    /// Run a kvstore member (etcd v3 API; etcd's flag names).
    Kvstore(kvstore::KvFlags),
    /// Run an apiserver: the Kubernetes API over the kvstore (kube-apiserver's flag names).
    Apiserver(apiserver::ApiserverFlags),
    /// Run a scheduler: binds pods to nodes (kube-scheduler's flag names).
    Scheduler(scheduler::SchedulerFlags),
    /// Run the controller-manager: ReplicaSets, namespaces, service accounts, ...
    /// (kube-controller-manager's flag names).
    ControllerManager(controllers::ControllerManagerFlags),
    /// Run a node agent: registers the Node and runs the pods bound to it (the kubelet's
    /// flag names).
    Agent(agent::AgentFlags),
    /// Run a node's service proxy: Services to nftables rules (kube-proxy's flag names).
    Proxy(proxy::ProxyFlags),
    /// Run a cluster DNS server: the cluster domain from watches, other names forwarded
    /// (CoreDNS's kubernetes plugin).
    Dns(dns::DnsFlags),
    /// The supervisor of one process-runtime container (started by the agent).
    #[command(hide = true)]
    AgentShim(agent::shim::ShimArgs),
    /// Joins a container's cgroups and becomes its command (started by the shim).
    #[command(hide = true)]
    AgentExec(agent::shim::ExecArgs),
    /// Load generators: `bench kv` drives any etcd v3 endpoint (etcd or the kvstore),
    /// `bench api` any Kubernetes apiserver.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Create a member's data directory for a new cluster from a snapshot file (what
    /// `etcdctl snapshot save` wrote, from Flotilla or from etcd); then start it with
    /// `kvstore` and the same flags.
    SnapshotRestore {
        /// The snapshot file.
        file: std::path::PathBuf,
        /// Take an etcd database file without the SHA-256 a snapshot ends with (a copy
        /// of `member/snap/db`), as etcdctl's flag.
        #[arg(long)]
        skip_hash_check: bool,
        #[command(flatten)]
        flags: kvstore::KvFlags,
    },
}

#[derive(clap::Subcommand)]
enum BenchCommand {
    /// One workload against an etcd v3 API cluster: throughput, latency, servers' RSS.
    Kv(loadgen::kv::KvBenchFlags),
    /// Pod creates, paced patches under many watches, cluster-wide lists and the
    /// apiserver's memory, against any Kubernetes apiserver.
    Api(loadgen::api::ApiBenchFlags),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Started by `flotilla up`: never outlive it.
    up::die_with_supervisor();
    if let Component::AgentShim(args) = cli.command {
        // No runtime and no logging: the shim only supervises one process.
        std::process::exit(agent::shim::run(args));
    }
    if let Component::AgentExec(args) = cli.command {
        std::process::exit(agent::shim::exec(args));
    }
    // `up` shows its own progress; its children log to files.
    let default_filter = match cli.command {
        Component::Up(_) | Component::Deploy(_) => "warn,kube_client=off",
        // hickory-server logs every query at info.
        Component::Dns(_) => "info,hickory_server=warn",
        _ => "info,openraft=error",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Component::Kvstore(flags) => {
                let cfg = flags.validate()?;
                kvstore::server::run(cfg, shutdown_on_signal()).await?;
                Ok(())
            }
            Component::Apiserver(flags) => {
                let cfg = flags.validate().map_err(anyhow::Error::msg)?;
                apiserver::run(cfg, shutdown_on_signal()).await
            }
            Component::Scheduler(flags) => {
                let cfg = flags.validate().map_err(anyhow::Error::msg)?;
                scheduler::run(cfg, shutdown_on_signal()).await
            }
            Component::ControllerManager(flags) => {
                let cfg = flags.validate().map_err(anyhow::Error::msg)?;
                controllers::run(cfg, shutdown_on_signal()).await
            }
            Component::Up(flags) => up::run(flags, shutdown_on_signal()).await,
            Component::Deploy(cmd) => up::deploy::run(cmd, shutdown_on_signal()).await,
            Component::Agent(flags) => {
                let cfg = flags.validate().map_err(anyhow::Error::msg)?;
                agent::run(cfg, shutdown_on_signal()).await
            }
            Component::Proxy(flags) => {
                let cfg = flags.validate().map_err(anyhow::Error::msg)?;
                proxy::run(cfg, shutdown_on_signal()).await
            }
            Component::Dns(flags) => {
                let cfg = flags.validate().map_err(anyhow::Error::msg)?;
                dns::run(cfg, shutdown_on_signal()).await
            }
            Component::AgentShim(_) | Component::AgentExec(_) => {
                unreachable!("handled before the runtime starts")
            }
            Component::Bench(BenchCommand::Kv(flags)) => {
                let rows = loadgen::kv::run(flags).await?;
                if rows.iter().any(|r| r.ops == 0) {
                    anyhow::bail!("a measurement completed no operation");
                }
                Ok(())
            }
            Component::Bench(BenchCommand::Api(flags)) => loadgen::api::run(flags).await,
            Component::SnapshotRestore {
                file,
                skip_hash_check,
                flags,
            } => {
                let cfg = flags.validate()?;
                let r = kvstore::storage::restore::restore(&file, &cfg, skip_hash_check)?;
                for user in &r.users_without_password {
                    tracing::warn!(%user, "the user's etcd password hash cannot be verified here: it has no password until one is set (a client certificate still identifies it)");
                }
                tracing::info!(rows = r.rows, data_dir = %cfg.data_dir.display(), "restored");
                Ok(())
            }
        }
    })
}

/// A channel that turns true on SIGTERM or SIGINT.
fn shutdown_on_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = tx.send(true);
    });
    rx
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
