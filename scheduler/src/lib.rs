//! `flotilla scheduler`: assigns each unbound Pod to a Node, as kube-scheduler does.
//!
//! Layout:
//! - `nodeinfo.rs`: pods and nodes as the plugins see them (requests parsed once).
//! - `cache.rs`: nodes with their bound and assumed pods.
//! - `queue.rs`: active, backoff and unschedulable pods.
//! - `framework.rs`: the Filter and Score traits; `plugins/`: one plugin per file.
//! - `schedule.rs`: one decision (filter, score, pick) and the failure message;
//!   `preemption.rs`: which lower-priority pods to remove when a pod fits nowhere.
//! - `informer.rs`: watch events into the cache and queue.
//! - `run.rs`: the watches, the scheduling loop, binding, status and events.
//! - `metrics.rs`: what `/metrics` shows.
//!
//! Everything but `run.rs` is pure and tested without an apiserver.

pub mod cache;
#[cfg(test)]
mod extremes;
pub mod framework;
pub mod informer;
pub mod metrics;
pub mod nodeinfo;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod run;
pub mod schedule;
#[cfg(test)]
mod testutil;
pub mod volumes;

use std::collections::HashMap;

use component_base::CommonFlags;

/// The annotation a binding puts on the pod: `<replica identity>@<revision of its lease
/// acquisition>` (the identity alone without leader election), so whoever reads the
/// pod's history can tell which replica bound it, and under which term.
pub const BOUND_BY: &str = "scheduler.flotilla.io/bound-by";

#[derive(clap::Args, Debug, Clone)]
pub struct SchedulerFlags {
    #[command(flatten)]
    pub common: CommonFlags,
    /// Pods whose spec.schedulerName is this are scheduled by this scheduler.
    #[arg(long, default_value = "default-scheduler")]
    pub scheduler_name: String,
    /// Stop filtering once this percentage of nodes was found feasible (0: Kubernetes'
    /// adaptive default, 50% minus 1% per 125 nodes, at least 5%; never fewer than 100).
    #[arg(long, default_value_t = 0)]
    pub percentage_of_nodes_to_score: u32,
    /// Score plugin weights overriding the defaults, e.g.
    /// `NodeResourcesFit=2,TaintToleration=0` (0 disables a score plugin).
    #[arg(long, value_delimiter = ',')]
    pub score_weights: Vec<String>,
    /// Bindings in flight at once (the scheduling loop waits when all are busy).
    #[arg(long, default_value_t = 256)]
    pub parallel_binds: usize,
}

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub common: component_base::CommonConfig,
    pub scheduler_name: String,
    pub percentage: u32,
    pub weights: HashMap<String, i64>,
    pub parallel_binds: usize,
}

impl SchedulerFlags {
    pub fn validate(&self) -> Result<SchedulerConfig, String> {
        let common = self.common.validate("flotilla-scheduler", 10259)?;
        if self.percentage_of_nodes_to_score > 100 {
            return Err("--percentage-of-nodes-to-score must be between 0 and 100".into());
        }
        let known: Vec<&str> = plugins::scores().iter().map(|(p, _)| p.name()).collect();
        let mut weights = HashMap::new();
        for w in &self.score_weights {
            let (name, v) = w
                .split_once('=')
                .ok_or_else(|| format!("--score-weights {w:?}: expected Name=weight"))?;
            if !known.contains(&name) {
                return Err(format!(
                    "--score-weights: unknown score plugin {name:?} (known: {})",
                    known.join(", ")
                ));
            }
            let v: i64 = v
                .parse()
                .ok()
                .filter(|v| (0..=100).contains(v))
                .ok_or_else(|| format!("--score-weights {w:?}: weight must be 0-100"))?;
            weights.insert(name.to_string(), v);
        }
        if self.parallel_binds == 0 {
            return Err("--parallel-binds must be at least 1".into());
        }
        Ok(SchedulerConfig {
            common,
            scheduler_name: self.scheduler_name.clone(),
            percentage: self.percentage_of_nodes_to_score,
            weights,
            parallel_binds: self.parallel_binds,
        })
    }
}

pub use run::run;
