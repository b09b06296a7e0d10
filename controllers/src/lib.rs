//! `flotilla controller-manager`: the reconciling controllers, as kube-controller-manager.
//!
//! Layout:
//! - `informer.rs`: one shared watch and cache per kind; `context.rs`: what every
//!   controller gets, and the relations they share (owner references, readiness).
//! - `workqueue.rs`, `worker.rs`: a deduplicating, rate-limited work queue and the worker
//!   loop around a controller's `sync`; `expectations.rs`: no double creation.
//! - One module per controller: `deployment/`, `replicaset.rs`, `garbagecollector.rs`,
//!   `nodelifecycle.rs`, `endpoints.rs` (Endpoints and EndpointSlices), `namespace.rs`,
//!   `serviceaccount.rs`.
//!
//! Every controller is level-triggered: a change only queues a key; `sync` compares the
//! object with the world as the caches show it and acts; errors are retried with backoff,
//! and every key is queued again every 5 minutes.

pub mod context;
pub mod deployment;
pub mod endpoints;
pub mod expectations;
pub mod garbagecollector;
pub mod informer;
pub mod namespace;
pub mod nodelifecycle;
pub mod replicaset;
pub mod serviceaccount;
pub mod worker;
pub mod workqueue;

use std::sync::Arc;

use component_base::events::Recorder;
use component_base::leaderelection::{run_maybe_elected, LeaderState};
use component_base::metrics::Registry;
use component_base::CommonFlags;
use tokio::sync::watch;

use crate::context::{Context, Informers};

/// The controllers this build has, in `--controllers` names.
pub const ALL: &[&str] = &[
    "deployment",
    "replicaset",
    "garbagecollector",
    "nodelifecycle",
    "endpoints",
    "namespace",
    "serviceaccount",
];

#[derive(clap::Args, Debug, Clone)]
pub struct ControllerManagerFlags {
    #[command(flatten)]
    pub common: CommonFlags,
    /// Controllers to run: `*` for all, `name` to add one, `-name` to leave one out
    /// (kube-controller-manager's syntax).
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,
    /// Deployments synced at once.
    #[arg(long, default_value_t = 5)]
    pub concurrent_deployment_syncs: usize,
    /// How often node health is checked.
    #[arg(long, default_value = "5s", value_parser = component_base::flags::parse_duration)]
    pub node_monitor_period: std::time::Duration,
    /// How long a node may go without a heartbeat before it is marked unhealthy.
    #[arg(long, default_value = "40s", value_parser = component_base::flags::parse_duration)]
    pub node_monitor_grace_period: std::time::Duration,
    /// Nodes per second whose pods may be evicted.
    #[arg(long, default_value_t = 0.1)]
    pub node_eviction_rate: f64,
    /// The same when more than 55% of the nodes are unhealthy (clusters over 50 nodes).
    #[arg(long, default_value_t = 0.01)]
    pub secondary_node_eviction_rate: f64,
    /// ReplicaSets synced at once.
    #[arg(long, default_value_t = 5)]
    pub concurrent_replicaset_syncs: usize,
}

#[derive(Debug, Clone)]
pub struct ControllerManagerConfig {
    pub common: component_base::CommonConfig,
    pub enabled: Vec<&'static str>,
    pub replicaset_workers: usize,
    pub deployment_workers: usize,
    pub node_lifecycle: nodelifecycle::Config,
}

impl ControllerManagerFlags {
    pub fn validate(&self) -> Result<ControllerManagerConfig, String> {
        let common = self
            .common
            .validate("flotilla-controller-manager", "127.0.0.1:10252")?;
        let mut enabled: Vec<&'static str> = Vec::new();
        let star = self.controllers.iter().any(|c| c == "*");
        for name in ALL {
            let on = self.controllers.iter().any(|c| c == name);
            let off = self
                .controllers
                .iter()
                .any(|c| c.strip_prefix('-') == Some(name));
            if (star || on) && !off {
                enabled.push(name);
            }
        }
        for c in &self.controllers {
            let bare = c.trim_start_matches('-');
            if c != "*" && !ALL.contains(&bare) {
                return Err(format!(
                    "--controllers: unknown controller {bare:?} (known: {})",
                    ALL.join(", ")
                ));
            }
        }
        if self.node_monitor_period.is_zero()
            || self.node_monitor_grace_period < self.node_monitor_period
        {
            return Err("--node-monitor-grace-period must be at least --node-monitor-period, which must be positive".into());
        }
        if !(self.node_eviction_rate >= 0.0 && self.secondary_node_eviction_rate >= 0.0) {
            return Err("eviction rates must be zero or positive".into());
        }
        if self.concurrent_replicaset_syncs == 0 {
            return Err("--concurrent-replicaset-syncs must be at least 1".into());
        }
        Ok(ControllerManagerConfig {
            common,
            enabled,
            replicaset_workers: self.concurrent_replicaset_syncs,
            deployment_workers: self.concurrent_deployment_syncs.max(1),
            node_lifecycle: nodelifecycle::Config {
                monitor_period: self.node_monitor_period,
                grace_period: self.node_monitor_grace_period,
                eviction_rate: self.node_eviction_rate,
                secondary_eviction_rate: self.secondary_node_eviction_rate,
            },
        })
    }
}

/// Runs the controller-manager until `shutdown`; the controllers act only while this
/// replica holds the lease.
pub async fn run(
    cfg: ControllerManagerConfig,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let client = component_base::client::from_kubeconfig(&cfg.common.kubeconfig).await?;
    let leader = LeaderState::new("flotilla-controller-manager");
    let mut reg = Registry::default();
    reg.register(leader.clone());
    if let Some(addr) = cfg.common.metrics_addr {
        component_base::metrics::serve(addr, reg)
            .await
            .map_err(|e| anyhow::anyhow!("serving metrics on {addr}: {e}"))?;
    }
    let recorder = Recorder::new(client.clone(), "controller-manager");
    tracing::info!(controllers = ?cfg.enabled, "starting");
    let election = cfg.common.election.clone();
    run_maybe_elected(client.clone(), election, leader, shutdown, move || {
        run_controllers(client.clone(), cfg.clone(), recorder.clone())
    })
    .await
}

async fn run_controllers(
    client: kube::Client,
    cfg: ControllerManagerConfig,
    recorder: Recorder,
) -> anyhow::Result<()> {
    let ctx = Arc::new(Context {
        informers: Informers::new(&client),
        client,
        recorder,
    });
    let mut tasks = tokio::task::JoinSet::new();
    // Controllers register their handlers first; then the informers start.
    for name in &cfg.enabled {
        match *name {
            "replicaset" => {
                let c = replicaset::ReplicaSetController::new(ctx.clone());
                tasks.spawn(c.run(cfg.replicaset_workers));
            }
            "deployment" => {
                tasks.spawn(deployment::run(ctx.clone(), cfg.deployment_workers));
            }
            "garbagecollector" => {
                tasks.spawn(garbagecollector::run(ctx.clone()));
            }
            "nodelifecycle" => {
                tasks.spawn(nodelifecycle::run(ctx.clone(), cfg.node_lifecycle.clone()));
            }
            "endpoints" => {
                tasks.spawn(endpoints::run(ctx.clone()));
            }
            "namespace" => {
                tasks.spawn(namespace::run(ctx.clone()));
            }
            "serviceaccount" => {
                tasks.spawn(serviceaccount::run(ctx.clone()));
            }
            _ => {}
        }
    }
    ctx.informers.start(&mut tasks);
    match tasks.join_next().await {
        Some(r) => Err(anyhow::anyhow!("a controller or informer ended: {r:?}")),
        None => Ok(()),
    }
}
