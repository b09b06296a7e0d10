//! Flags every client component shares, with kube-scheduler's and
//! kube-controller-manager's names and defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::leaderelection::ElectionConfig;
use crate::metrics::SecureServing;
use crate::secure::ServingFlags;

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
    /// The address the secure port (`/metrics`, `/healthz`) listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: std::net::IpAddr,
    /// The secure port: HTTPS, `/metrics` for whom the apiserver allows `get` on it, the
    /// health checks for anyone; 0 serves nothing (default: the component's kube port).
    #[arg(long)]
    pub secure_port: Option<u16>,
    #[command(flatten)]
    pub serving: ServingFlags,
}

/// Validated common configuration.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    pub kubeconfig: PathBuf,
    /// This replica's name in its Lease and in what its writes record.
    pub identity: String,
    /// `None` when `--leader-elect=false`.
    pub election: Option<ElectionConfig>,
    /// `None` with `--secure-port 0`.
    pub serving: Option<SecureServing>,
}

impl CommonFlags {
    /// `lease_name`: the component's Lease; `default_port`: its secure port.
    pub fn validate(&self, lease_name: &str, default_port: u16) -> Result<CommonConfig, String> {
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
        let port = self.secure_port.unwrap_or(default_port);
        let serving = (port != 0).then(|| SecureServing {
            addr: SocketAddr::new(self.bind_address, port),
            tls: self.serving.tls(),
        });
        let identity = self.leader_elect_identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".into());
            format!("{host}_{}", uuid::Uuid::new_v4())
        });
        Ok(CommonConfig {
            kubeconfig: self.kubeconfig.clone(),
            identity: identity.clone(),
            election: self.leader_elect.then(|| ElectionConfig {
                lease_name: lease_name.to_string(),
                namespace: self.leader_elect_resource_namespace.clone(),
                identity,
                lease_duration: d,
                renew_deadline: r,
                retry_period: p,
            }),
            serving,
        })
    }
}
