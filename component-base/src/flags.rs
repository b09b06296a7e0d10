//! Flags every client component shares, with kube-scheduler's and
//! kube-controller-manager's names and defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::leaderelection::ElectionConfig;

/// Go-style durations (`15s`, `1h30m`, bare seconds), as every flag here takes them.
pub use flotilla_core::duration::parse_duration;

#[derive(clap::Args, Debug, Clone)]
pub struct CommonFlags {
    /// Path to a kubeconfig file for the apiserver.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// Elect a leader through a Lease before doing any work; run several replicas for
    /// availability.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// How long a standby waits after the last observed renewal before it takes the lease.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps acting without a successful renewal; it stops then.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// How often to try to acquire or renew the lease.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub leader_elect_retry_period: Duration,
    /// Namespace of the leader-election Lease.
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    /// This replica's identity in the Lease (default: hostname_<random>).
    #[arg(long)]
    pub leader_elect_identity: Option<String>,
    /// Where `/metrics` and `/healthz` are served over plain HTTP; port 0 picks a free
    /// port, an empty value serves nothing.
    #[arg(long)]
    pub metrics_bind_address: Option<String>,
}

/// Validated common configuration.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    pub kubeconfig: PathBuf,
    /// `None` when `--leader-elect=false`.
    pub election: Option<ElectionConfig>,
    pub metrics_addr: Option<SocketAddr>,
}

impl CommonFlags {
    /// `lease_name`: the component's Lease; `default_metrics`: its metrics address.
    pub fn validate(
        &self,
        lease_name: &str,
        default_metrics: &str,
    ) -> Result<CommonConfig, String> {
        let (d, r, p) = (
            self.leader_elect_lease_duration,
            self.leader_elect_renew_deadline,
            self.leader_elect_retry_period,
        );
        if self.leader_elect {
            if r >= d {
                return Err(format!(
                    "--leader-elect-renew-deadline ({r:?}) must be less than --leader-elect-lease-duration ({d:?})"
                ));
            }
            if p.is_zero() || p >= r {
                return Err(format!(
                    "--leader-elect-retry-period ({p:?}) must be greater than zero and less than --leader-elect-renew-deadline ({r:?})"
                ));
            }
            if d.as_secs() == 0 {
                return Err("--leader-elect-lease-duration must be at least 1s".into());
            }
        }
        let metrics = self
            .metrics_bind_address
            .clone()
            .unwrap_or_else(|| default_metrics.to_string());
        let metrics_addr = if metrics.is_empty() {
            None
        } else {
            Some(
                metrics
                    .parse()
                    .map_err(|e| format!("--metrics-bind-address {metrics:?}: {e}"))?,
            )
        };
        let identity = self.leader_elect_identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".into());
            format!("{host}_{}", uuid::Uuid::new_v4())
        });
        Ok(CommonConfig {
            kubeconfig: self.kubeconfig.clone(),
            election: self.leader_elect.then(|| ElectionConfig {
                lease_name: lease_name.to_string(),
                namespace: self.leader_elect_resource_namespace.clone(),
                identity,
                lease_duration: d,
                renew_deadline: r,
                retry_period: p,
            }),
            metrics_addr,
        })
    }
}
