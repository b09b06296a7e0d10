//! The controller-manager's flags (kube-controller-manager's names), validated once into
//! [`ControllerManagerConfig`].

use std::time::Duration;

use component_base::CommonFlags;

use crate::nodeipam::config::Config as NodeIpamConfig;
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
    /// Jobs synced at once.
    #[arg(long, default_value_t = 5)]
    pub concurrent_job_syncs: usize,
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
    /// Give every Node ranges of `--cluster-cidr` for its pods (the `nodeipam`
    /// controller runs only with it), as kube-controller-manager.
    #[arg(
        long,
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub allocate_node_cidrs: bool,
    /// The pods' CIDR: an IPv4 one, optionally followed by an IPv6 one (`,`, dual-stack).
    /// Read only with `--allocate-node-cidrs`.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
    /// The prefix length of each Node's IPv4 range; at most 16 more than the cluster
    /// CIDR's.
    #[arg(long, default_value_t = 24)]
    pub node_cidr_mask_size: u8,
    /// The prefix length of each Node's IPv6 range (dual-stack).
    #[arg(long, default_value_t = 64)]
    pub node_cidr_mask_size_ipv6: u8,
    /// The Services' cluster IP range(s) (`,`-separated, one per family); the cluster CIDR
    /// may not overlap it.
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: String,
    /// Addresses for Services of type LoadBalancer (`a.b.c.d/n` or `first-last`); the
    /// `servicelb` controller runs only with it (Flotilla's stand-in for a cloud's load
    /// balancers, as k3s's servicelb or MetalLB).
    #[arg(long)]
    pub load_balancer_ip_range: Option<String>,
    /// Where the `local-path` provisioner makes volumes on every node (an absolute path;
    /// one directory per volume, `pvc-<uid>_<namespace>_<claim>`), as k3s's local-path
    /// provisioner does under its storage directory.
    #[arg(long, default_value = "/var/lib/flotilla/storage")]
    pub local_path_root: String,
    /// The image of the helper pods that remove a deleted volume's directory on its node.
    #[arg(long, default_value = "busybox")]
    pub local_path_helper_image: String,
    /// How often each HorizontalPodAutoscaler is looked at.
    #[arg(long, default_value = "15s", value_parser = component_base::flags::parse_duration)]
    pub horizontal_pod_autoscaler_sync_period: Duration,
    /// How long an HPA without its own scale-down window waits before scaling down: the
    /// highest recommendation of this window applies.
    #[arg(long, default_value = "5m", value_parser = component_base::flags::parse_duration)]
    pub horizontal_pod_autoscaler_downscale_stabilization: Duration,
}

#[derive(Debug, Clone)]
pub struct ControllerManagerConfig {
    pub common: component_base::CommonConfig,
    /// The controllers to run, in the registration table's order.
    pub enabled: Vec<&'static str>,
    pub replicaset_workers: usize,
    pub replicationcontroller_workers: usize,
    pub job_workers: usize,
    pub deployment_workers: usize,
    pub node_lifecycle: nodelifecycle::Config,
    /// Each controller acts as its own ServiceAccount (`--use-service-account-credentials`).
    pub use_service_account_credentials: bool,
    /// The cluster CIDRs and node range sizes, with `--allocate-node-cidrs` (else None,
    /// and the `nodeipam` controller is not enabled).
    pub node_ipam: Option<NodeIpamConfig>,
    /// `--load-balancer-ip-range` (else None, and `servicelb` is not enabled).
    pub load_balancer_ip_range: Option<crate::servicelb::pool::Pool>,
    /// `--local-path-root` and `--local-path-helper-image`.
    pub local_path: crate::localpath::plan::Config,
    /// `--horizontal-pod-autoscaler-*`.
    pub hpa: crate::hpa::Config,
}

impl ControllerManagerFlags {
    pub fn validate(&self) -> Result<ControllerManagerConfig, String> {
        let common = self.common.validate("flotilla-controller-manager", 10257)?;
        let mut enabled = enabled(&self.controllers)?;
        let node_ipam = self.node_ipam()?;
        if node_ipam.is_none() {
            // As kube: nodeipam is one of the default controllers but does nothing
            // without --allocate-node-cidrs; here it does not start at all.
            enabled.retain(|c| *c != "nodeipam");
        }
        let load_balancer_ip_range = self
            .load_balancer_ip_range
            .as_deref()
            .map(|r| {
                crate::servicelb::pool::Pool::parse(r)
                    .map_err(|e| format!("--load-balancer-ip-range: {e}"))
            })
            .transpose()?;
        if load_balancer_ip_range.is_none() {
            enabled.retain(|c| *c != "servicelb");
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
        if self.concurrent_rc_syncs == 0 {
            return Err("--concurrent-rc-syncs must be at least 1".into());
        }
        if self.concurrent_job_syncs == 0 {
            return Err("--concurrent-job-syncs must be at least 1".into());
        }
        let root = std::path::PathBuf::from(&self.local_path_root);
        if !root.is_absolute()
            || root
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            return Err("--local-path-root must be an absolute path without '..'".into());
        }
        if self.horizontal_pod_autoscaler_sync_period.is_zero() {
            return Err("--horizontal-pod-autoscaler-sync-period must be positive".into());
        }
        Ok(ControllerManagerConfig {
            common,
            enabled,
            replicaset_workers: self.concurrent_replicaset_syncs,
            replicationcontroller_workers: self.concurrent_rc_syncs,
            job_workers: self.concurrent_job_syncs,
            deployment_workers: self.concurrent_deployment_syncs.max(1),
            node_lifecycle: nodelifecycle::Config {
                monitor_period: self.node_monitor_period,
                grace_period: self.node_monitor_grace_period,
                eviction_rate: self.node_eviction_rate,
                secondary_eviction_rate: self.secondary_node_eviction_rate,
            },
            use_service_account_credentials: self.use_service_account_credentials,
            node_ipam,
            load_balancer_ip_range,
            local_path: crate::localpath::plan::Config {
                root,
                helper_image: self.local_path_helper_image.clone(),
            },
            hpa: crate::hpa::Config {
                sync_period: self.horizontal_pod_autoscaler_sync_period,
                downscale_stabilization: self.horizontal_pod_autoscaler_downscale_stabilization,
            },
        })
    }

    /// The node IPAM flags, with `--allocate-node-cidrs`: the cluster CIDRs (IPv4, then
    /// optionally IPv6), each with a node range size kube accepts, none overlapping the
    /// Service range.
    fn node_ipam(&self) -> Result<Option<NodeIpamConfig>, String> {
        if !self.allocate_node_cidrs {
            return Ok(None);
        }
        NodeIpamConfig::from_flags(
            &self.cluster_cidr,
            self.node_cidr_mask_size,
            self.node_cidr_mask_size_ipv6,
            &self.service_cluster_ip_range,
        )
        .map(Some)
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

    fn parse_ipam(extra: &[&str]) -> Result<ControllerManagerConfig, String> {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            flags: ControllerManagerFlags,
        }
        let args = ["controller-manager", "--kubeconfig", "k"]
            .into_iter()
            .chain(extra.iter().copied());
        Cli::try_parse_from(args)
            .map_err(|e| e.to_string())?
            .flags
            .validate()
    }

    #[test]
    fn nodeipam_runs_only_with_allocate_node_cidrs() {
        let off = parse_ipam(&[]).unwrap();
        assert!(off.node_ipam.is_none());
        assert!(!off.enabled.contains(&"nodeipam"));
        // Without the flag the CIDR flags are not read, as kube.
        assert!(parse_ipam(&["--cluster-cidr", "bogus"]).is_ok());
        let on = parse_ipam(&["--allocate-node-cidrs"]).unwrap();
        assert!(on.enabled.contains(&"nodeipam"));
        let cfg = on.node_ipam.unwrap();
        assert_eq!(cfg.cluster_cidrs.len(), 1);
        assert_eq!(cfg.cluster_cidrs[0].0.to_string(), "10.244.0.0/16");
        assert_eq!(cfg.cluster_cidrs[0].1, 24);
        let on =
            parse_ipam(&["--allocate-node-cidrs=true", "--controllers", "*,-nodeipam"]).unwrap();
        assert!(!on.enabled.contains(&"nodeipam"));
        let dual = parse_ipam(&[
            "--allocate-node-cidrs=true",
            "--cluster-cidr",
            "10.120.0.0/16,fd00:10::/48",
        ])
        .unwrap()
        .node_ipam
        .unwrap();
        assert_eq!(dual.cluster_cidrs[1].0.to_string(), "fd00:10::/48");
        assert_eq!(dual.cluster_cidrs[1].1, 64);
    }

    #[test]
    fn node_ipam_flags_are_refused_with_clear_errors() {
        let err = |extra: &[&str]| {
            let mut args = vec!["--allocate-node-cidrs"];
            args.extend_from_slice(extra);
            parse_ipam(&args).unwrap_err()
        };
        assert!(err(&["--cluster-cidr", "10.244.0.0"]).contains("--cluster-cidr: invalid CIDR"));
        assert!(err(&["--cluster-cidr", ""]).contains("needs a --cluster-cidr"));
        assert!(err(&["--cluster-cidr", "fd00::/48"]).contains("an IPv4 CIDR"));
        assert!(err(&["--cluster-cidr", "10.1.0.0/16,10.2.0.0/16"]).contains("an IPv4 CIDR"));
        assert!(
            err(&["--cluster-cidr", "10.1.0.0/16,fd00::/48,fd01::/48"]).contains("an IPv4 CIDR")
        );
        assert!(err(&["--node-cidr-mask-size", "16"]).contains("--node-cidr-mask-size 16"));
        assert!(err(&[
            "--cluster-cidr",
            "10.0.0.0/8",
            "--node-cidr-mask-size",
            "25"
        ])
        .contains("at most 16 more"));
        assert!(
            parse_ipam(&["--allocate-node-cidrs", "--cluster-cidr", "10.0.0.0/8"])
                .unwrap_err()
                .contains("overlaps --service-cluster-ip-range 10.96.0.0/12")
        );
        assert!(parse_ipam(&[
            "--allocate-node-cidrs",
            "--cluster-cidr",
            "10.0.0.0/8",
            "--service-cluster-ip-range",
            "172.20.0.0/16"
        ])
        .is_ok());
        assert!(err(&["--service-cluster-ip-range", "x"]).contains("--service-cluster-ip-range"));
        assert!(err(&[
            "--cluster-cidr",
            "10.1.0.0/16,fd00::/48",
            "--node-cidr-mask-size-ipv6",
            "80"
        ])
        .contains("--node-cidr-mask-size-ipv6 80"));
    }

    #[test]
    fn every_controller_has_a_distinct_name() {
        let mut names: Vec<_> = CONTROLLERS.iter().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CONTROLLERS.len());
    }
}
