//! The controller-manager's flags (kube-controller-manager's names), validated once into
//! [`ControllerManagerConfig`].

use std::time::Duration;

use component_base::CommonFlags;

use crate::{nodelifecycle, CONTROLLERS};

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
    pub node_monitor_period: Duration,
    /// How long a node may go without a heartbeat before it is marked unhealthy.
    #[arg(long, default_value = "40s", value_parser = component_base::flags::parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// Nodes per second whose pods may be evicted.
    #[arg(long, default_value_t = 0.1)]
    pub node_eviction_rate: f64,
    /// The same when more than 55% of the nodes are unhealthy (clusters over 50 nodes).
    #[arg(long, default_value_t = 0.01)]
    pub secondary_node_eviction_rate: f64,
    /// ReplicaSets synced at once.
    #[arg(long, default_value_t = 5)]
    pub concurrent_replicaset_syncs: usize,
    /// ReplicationControllers synced at once.
    #[arg(long, default_value_t = 5)]
    pub concurrent_rc_syncs: usize,
    /// Run each controller as its own ServiceAccount in kube-system (`deployment-controller`,
    /// ...), with a token this controller-manager requests for it, so that it has only its
    /// `system:controller:*` role's rights; the shared informers keep this process's own
    /// credentials. Without it every controller acts with the kubeconfig's credentials.
    #[arg(
        long,
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub use_service_account_credentials: bool,
}

#[derive(Debug, Clone)]
pub struct ControllerManagerConfig {
    pub common: component_base::CommonConfig,
    /// The controllers to run, in the registration table's order.
    pub enabled: Vec<&'static str>,
    pub replicaset_workers: usize,
    pub replicationcontroller_workers: usize,
    pub deployment_workers: usize,
    pub node_lifecycle: nodelifecycle::Config,
    /// Each controller acts as its own ServiceAccount (`--use-service-account-credentials`).
    pub use_service_account_credentials: bool,
}

impl ControllerManagerFlags {
    pub fn validate(&self) -> Result<ControllerManagerConfig, String> {
        let common = self.common.validate("flotilla-controller-manager", 10257)?;
        let enabled = enabled(&self.controllers)?;
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
        if self.concurrent_rc_syncs == 0 {
            return Err("--concurrent-rc-syncs must be at least 1".into());
        }
        Ok(ControllerManagerConfig {
            common,
            enabled,
            replicaset_workers: self.concurrent_replicaset_syncs,
            replicationcontroller_workers: self.concurrent_rc_syncs,
            deployment_workers: self.concurrent_deployment_syncs.max(1),
            node_lifecycle: nodelifecycle::Config {
                monitor_period: self.node_monitor_period,
                grace_period: self.node_monitor_grace_period,
                eviction_rate: self.node_eviction_rate,
                secondary_eviction_rate: self.secondary_node_eviction_rate,
            },
            use_service_account_credentials: self.use_service_account_credentials,
        })
    }
}

/// The controllers `--controllers` selects: `*` all, `name` one more, `-name` one less.
fn enabled(flag: &[String]) -> Result<Vec<&'static str>, String> {
    let known: Vec<&'static str> = CONTROLLERS.iter().map(|c| c.name).collect();
    for c in flag {
        let bare = c.trim_start_matches('-');
        if c != "*" && !known.contains(&bare) {
            return Err(format!(
                "--controllers: unknown controller {bare:?} (known: {})",
                known.join(", ")
            ));
        }
    }
    let star = flag.iter().any(|c| c == "*");
    Ok(known
        .into_iter()
        .filter(|name| {
            let on = flag.iter().any(|c| c == name);
            let off = flag.iter().any(|c| c.strip_prefix('-') == Some(name));
            (star || on) && !off
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(s: &str) -> Vec<String> {
        s.split(',').map(str::to_string).collect()
    }

    #[test]
    fn controllers_are_chosen_as_kube_controller_manager_does() {
        let all = enabled(&flag("*")).unwrap();
        assert_eq!(all.len(), CONTROLLERS.len());
        assert!(all.contains(&"replicationcontroller"));
        let some = enabled(&flag("*,-nodelifecycle")).unwrap();
        assert!(!some.contains(&"nodelifecycle") && some.len() == all.len() - 1);
        assert_eq!(
            enabled(&flag("namespace,serviceaccount")).unwrap(),
            ["namespace", "serviceaccount"]
        );
        assert!(enabled(&flag("*,-bogus"))
            .unwrap_err()
            .contains("unknown controller \"bogus\""));
    }

    #[test]
    fn service_account_credentials_are_off_by_default_and_take_kubes_forms() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            flags: ControllerManagerFlags,
        }
        let parse = |extra: &[&str]| {
            let args = ["controller-manager", "--kubeconfig", "k"]
                .into_iter()
                .chain(extra.iter().copied());
            let flags = Cli::try_parse_from(args).unwrap().flags;
            flags.validate().unwrap().use_service_account_credentials
        };
        assert!(!parse(&[]));
        assert!(parse(&["--use-service-account-credentials"]));
        assert!(parse(&["--use-service-account-credentials=true"]));
        assert!(!parse(&["--use-service-account-credentials=false"]));
        assert!(parse(&[
            "--use-service-account-credentials",
            "--controllers",
            "*"
        ]));
    }

    #[test]
    fn every_controller_has_a_distinct_name() {
        let mut names: Vec<_> = CONTROLLERS.iter().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CONTROLLERS.len());
    }
}
