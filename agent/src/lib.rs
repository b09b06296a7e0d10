//! `flotilla agent`: the node agent, as the kubelet. It registers its Node, renews its
//! Lease, watches the pods bound to it and runs their containers through a runtime,
//! writing their status back.
//!
//! Layout:
//! - `config.rs`: flags and typed configuration; `machine.rs`: what the machine has.
//! - `node.rs`: the Node object and its status; `lease.rs`: the heartbeat Lease.
//! - `pods.rs`: the watch of this node's pods, one worker per pod; `node_state.rs`: what
//!   the workers of one node share; `pleg.rs`: one relist of the runtime per second waking
//!   the workers of changed pods; `worker/`: the loop of one pod (look, plan, report in
//!   `mod.rs`; act in `act.rs`; probe in `probing.rs`); `containers.rs`: what a container
//!   attempt is started with.
//! - Pure cores: `sync.rs` (what to do next), `status.rs` (the pod's status), `env.rs`
//!   (environment), `volumes.rs` (pod volumes and mounts), `crashloop.rs` (restart
//!   backoff), `probes.rs` (probe timing and handlers), `hooks.rs` (postStart and preStop),
//!   `security.rs` (a container's effective securityContext), `service_env.rs` (the
//!   Service variables of a container's environment; `services.rs` watches Services), `dns.rs` (a pod's
//!   resolv.conf, hostname and hosts file, as the kubelet's); `tmpfs.rs`: memory-backed
//!   volumes (Secrets, `medium: Memory`). Backoffs, the status-write token bucket,
//!   quantities and durations come from `flotilla_core`.
//! - `server/`: the HTTPS port serving container logs to the apiserver, each request
//!   authenticated and authorized by the apiserver (TokenReview, SubjectAccessReview) as
//!   the kubelet's; `logs.rs`: what a log request selects; `logfile.rs`: CRI log files
//!   written with rotation and read from their tail, followed across rotations.
//! - `runtime/`: the `Runtime` trait and its implementations; `shim.rs`: the supervisor
//!   process of the process runtime's containers.
//! - `logship/`: cluster-level logging, every container's lines shipped to Loki through
//!   a bounded on-disk spool (`--log-sink`).
//! - `stats/`: usage of the node and its containers (cgroups), served as the kubelet's
//!   `/metrics/resource`, `/metrics/cadvisor`, `/metrics` and `/stats/summary`.
//! - `podnet/`: the Docker runtime's routed pod network (podCIDR from the Node, bridge,
//!   DOCKER-USER rules, egress masquerade, host-gw routes).

pub mod config;
pub mod containers;
pub mod crashloop;
pub mod dns;
pub mod env;
pub mod hooks;
pub mod lease;
pub mod logfile;
pub mod logs;
pub mod logship;
pub mod machine;
pub mod node;
pub mod node_state;
pub mod pleg;
pub mod podnet;
pub mod pods;
pub mod probes;
pub mod runtime;
pub mod security;
pub mod server;
pub mod service_env;
pub mod services;
pub mod shim;
pub mod stats;
pub mod status;
pub mod sync;
pub mod tmpfs;
pub mod volumes;
pub mod worker;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use component_base::events::Recorder;
use flotilla_core::ratelimit::TokenBucket;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use config::{AgentConfig, AgentFlags, RuntimeKind};

use crate::machine::Machine;
use crate::node::NodeInputs;
use crate::node_state::Shared;
use crate::runtime::Runtime;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs the agent (or its hollow nodes) until `shutdown`. Containers keep running when the
/// agent stops; the next start adopts them.
pub async fn run(cfg: AgentConfig, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.root_dir)
        .map_err(|e| anyhow::anyhow!("creating --root-dir {}: {e}", cfg.root_dir.display()))?;
    let client = component_base::client::from_kubeconfig(&cfg.kubeconfig).await?;
    let machine = Machine::read(&cfg.root_dir);
    let ip = cfg.node_ip.unwrap_or_else(machine::default_ip).to_string();
    let recorder = Recorder::new(client.clone(), "kubelet");
    let mut tasks = JoinSet::new();
    let (stop_pods, stopping) = watch::channel(false);
    // The log servers end with the process, not with the nodes' loops.
    let mut servers = JoinSet::new();
    // One Service watch for all the process's nodes; it ends with the process.
    let (services, follow_services) = services::follow(client.clone());
    let mut background = JoinSet::new();
    background.spawn(follow_services);
    let names: Vec<String> = if cfg.fake_nodes > 0 {
        (0..cfg.fake_nodes)
            .map(|i| format!("{}-{i}", cfg.node_name))
            .collect()
    } else {
        vec![cfg.node_name.clone()]
    };
    tracing::info!(nodes = names.len(), runtime = ?cfg.runtime, root_dir = %cfg.root_dir.display(), "starting");
    for (i, name) in names.into_iter().enumerate() {
        // A hollow node's own address (`--fake-node-cidr`), validated to exist.
        let own = cfg
            .fake_node_cidr
            .and_then(|c| c.host(u32::try_from(i).ok()?.checked_add(1)?));
        let node_ip = own.map_or_else(|| ip.clone(), |a| a.to_string());
        // The Docker runtime's pod network, given to it later by `podnet::run`.
        let mut net = None;
        let (runtime, version): (Arc<dyn Runtime>, String) = match cfg.runtime {
            RuntimeKind::Fake => (
                Arc::new(runtime::fake::FakeRuntime::new(i as u32)),
                format!("fake://{VERSION}"),
            ),
            RuntimeKind::Process => (
                Arc::new(
                    runtime::process::ProcessRuntime::new(
                        &cfg.root_dir.join("process"),
                        std::env::current_exe()?,
                        ip.clone(),
                    )
                    .map_err(|e| anyhow::anyhow!("process runtime state: {e}"))?
                    .with_log_limits(cfg.log_limits),
                ),
                format!("process://{VERSION}"),
            ),
            RuntimeKind::Docker => {
                let root = cfg
                    .root_dir
                    .canonicalize()
                    .unwrap_or_else(|_| cfg.root_dir.clone());
                let owner = format!(
                    "{:016x}",
                    node_state::fnv(root.display().to_string().as_bytes())
                );
                let rt = runtime::docker::DockerRuntime::new(
                    cfg.docker_socket.clone(),
                    &name,
                    &owner,
                    &cfg.pod_network,
                )
                .await
                .map_err(|e| anyhow::anyhow!("docker runtime: {e}"))?;
                let version = format!("docker://{}", rt.version().await);
                let rt = Arc::new(rt.with_log_limits(cfg.log_limits));
                net = Some(rt.clone());
                (rt, version)
            }
        };
        let inputs = NodeInputs {
            name: name.clone(),
            labels: cfg.labels.clone(),
            taints: cfg.taints.clone(),
            machine: machine.clone(),
            max_pods: cfg.max_pods,
            ip: node_ip.clone(),
            port: cfg.port,
            runtime_version: version,
        };
        let ship = Arc::new(logship::ShipMetrics::default());
        let kubelet = Arc::new(stats::kubelet::KubeletMetrics::new(vec![ship.clone()]));
        if cfg.fake_nodes == 0 || own.is_some() {
            let reviewer = Arc::new(component_base::secure::ApiReviewer {
                client: client.clone(),
            });
            let stats = stats::Collector::new(runtime.clone(), name.clone());
            servers.spawn({
                let stats = stats.clone();
                let every = cfg.housekeeping;
                async move {
                    stats.run(every).await;
                    Ok(())
                }
            });
            if let Some(sink) = cfg.log_sink.as_ref().filter(|_| cfg.fake_nodes == 0) {
                let mut sink = sink.clone();
                // Each node of this process keeps its own spool.
                if i > 0 {
                    sink.spool_dir = sink.spool_dir.join(&name);
                }
                let (rt, node, metrics) = (runtime.clone(), name.clone(), ship.clone());
                servers.spawn(async move {
                    // It ends only when its spool cannot be opened (logged): the node
                    // goes on without shipping.
                    logship::run(rt, node, sink, metrics).await;
                    std::future::pending().await
                });
            }
            let server = server::Server::new(
                runtime.clone(),
                name.clone(),
                reviewer,
                stats,
                kubelet.clone(),
                machine.clone(),
            );
            let addr = std::net::SocketAddr::new(own.map_or(cfg.address, IpAddr::V4), cfg.port);
            let hosts = vec![node_ip.clone(), name.clone(), "localhost".into()];
            servers.spawn(server::serve(server, addr, cfg.tls.clone(), hosts));
        }
        let shared = Arc::new(Shared {
            client: client.clone(),
            runtime,
            node_name: name,
            host_ip: node_ip,
            pods_dir: pods_dir(&cfg.root_dir, cfg.fake_nodes > 0)?,
            memory_volumes: cfg.fake_nodes == 0,
            status_writes: Arc::new(TokenBucket::new(cfg.qps, cfg.burst)),
            recorder: recorder.clone(),
            stopping: stopping.clone(),
            shutdown_grace: cfg.shutdown_grace_period,
            pleg: pleg::Pleg::default(),
            dns: cfg.dns.clone(),
            pod_etc_files: cfg.runtime == RuntimeKind::Docker,
            services: services.clone(),
            kubelet,
        });
        tasks.spawn(run_node(shared, inputs, cfg.clone(), net));
    }
    tokio::select! {
        _ = shutdown.wait_for(|s| *s) => {}
        r = tasks.join_next() => return Err(anyhow::anyhow!("a node loop ended: {r:?}")),
        Some(r) = servers.join_next(), if !servers.is_empty() => {
            return Err(match r {
                Ok(Err(e)) => e,
                other => anyhow::anyhow!("the agent port stopped: {other:?}"),
            })
        }
    }
    if !cfg.stop_pods_on_exit {
        tracing::info!("stopping; containers keep running");
        return Ok(());
    }
    tracing::info!("stopping with the pods");
    let _ = stop_pods.send(true);
    let all = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(120), all)
        .await
        .is_err()
    {
        tracing::warn!("pods still stopping after 2 minutes; leaving them");
    }
    Ok(())
}

/// `<root-dir>/pods` (`fake-pods` for fake nodes), made 0700: pods' volumes (Secrets
/// among them, where no tmpfs could be mounted) and logs are for no other host user.
fn pods_dir(root: &Path, fake: bool) -> anyhow::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = root.join(if fake { "fake-pods" } else { "pods" });
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| anyhow::anyhow!("preparing {}: {e}", dir.display()))?;
    Ok(dir)
}

async fn run_node(
    shared: Arc<Shared>,
    inputs: NodeInputs,
    cfg: AgentConfig,
    net: Option<Arc<runtime::docker::DockerRuntime>>,
) {
    let node = node::register(&shared.client, &inputs).await;
    let rt = shared.runtime.clone();
    let net_ready = net.clone();
    let health = move || {
        let rt = rt.clone();
        let net = net_ready.clone();
        async move {
            rt.pods()
                .await
                .map(|_| ())
                .map_err(|e| format!("container runtime is down: {e}"))?;
            net.map_or(Ok(()), |n| n.network_ready())
        }
    };
    let podnet = async {
        match net {
            Some(rt) => {
                let s = podnet::Settings {
                    node_name: shared.node_name.clone(),
                    cluster_cidr: cfg.cluster_cidr,
                    fallback_pod_cidr: cfg.pod_cidr,
                };
                podnet::run(shared.client.clone(), rt, s).await
            }
            None => std::future::pending().await,
        }
    };
    // Heartbeats go on until the pods are done (they end only when the agent stops).
    let beats = async {
        tokio::join!(
            lease::keep_renewing(shared.client.clone(), node, cfg.lease_seconds),
            node::report_status(shared.client.clone(), inputs, cfg.status_every, health),
        )
    };
    tokio::select! {
        _ = beats => {}
        _ = pods::run(shared.clone()) => {}
        _ = podnet => {}
        _ = pleg::run(shared.runtime.clone(), &shared.pleg, &shared.node_name, pleg::RELIST_PERIOD) => {}
    }
}
