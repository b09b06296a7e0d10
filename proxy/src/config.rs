//! The proxy's flags (kube-proxy's names where it has them) and their validation into a
//! typed [`ProxyConfig`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use component_base::flags::parse_duration;
use component_base::metrics::SecureServing;
use component_base::secure::ServingFlags;
use flotilla_core::cidr::{Cidr, Family};

#[derive(clap::Args, Debug, Clone)]
pub struct ProxyFlags {
    /// Path to a kubeconfig file for the apiserver.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// This node's name: endpoints on it are local (default: the hostname).
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// The pod network: traffic to a cluster IP from outside it is masqueraded; pods
    /// reaching an externalTrafficPolicy=Local Service go through its cluster rules.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
    /// Masquerade all traffic sent to cluster IPs.
    #[arg(long)]
    pub masquerade_all: bool,
    /// CIDRs (comma-separated): NodePorts answer on this host's addresses inside them
    /// (default: this Node's InternalIPs, kube's `primary`). Never on loopback.
    #[arg(long, value_delimiter = ',')]
    pub nodeport_addresses: Vec<String>,
    /// The shortest time between two syncs of the rules; changes in between are batched.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub min_sync_period: Duration,
    /// How often the rules are compared with the wanted ones even without a change; a
    /// full rewrite of the table happens at least every hour.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub sync_period: Duration,
    /// The nftables table (family ip) the proxy owns; one per proxy sharing a network
    /// namespace.
    #[arg(long, default_value = "flotilla-proxy")]
    pub table: String,
    /// Remove the proxy's table and exit.
    #[arg(long)]
    pub cleanup: bool,
    /// The address the secure port (`/metrics`, `/healthz`) listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// The secure port: HTTPS, `/metrics` for whom the apiserver allows `get` on it,
    /// `/healthz` for anyone; 0 serves nothing (kube-proxy's metrics port).
    #[arg(long, default_value_t = 10249)]
    pub secure_port: u16,
    #[command(flatten)]
    pub serving: ServingFlags,
}

/// An IPv4 network (the proxy programs the `ip` family only).
fn ipv4_cidr(s: &str) -> Result<Cidr, String> {
    let c: Cidr = s
        .parse()
        .map_err(|e: flotilla_core::cidr::ParseError| e.to_string())?;
    if c.family() != Family::V4 {
        return Err(format!("{s:?} is not an IPv4 network"));
    }
    Ok(c)
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub kubeconfig: PathBuf,
    pub node: String,
    /// `None` with `--masquerade-all`.
    pub cluster_cidr: Option<Cidr>,
    /// Empty: the Node's InternalIPs.
    pub nodeport_cidrs: Vec<Cidr>,
    pub min_sync: Duration,
    pub sync_every: Duration,
    pub table: String,
    pub cleanup: bool,
    pub serving: Option<SecureServing>,
}

impl ProxyFlags {
    pub fn validate(&self) -> Result<ProxyConfig, String> {
        let node = match &self.hostname_override {
            Some(n) if !n.is_empty() => n.clone(),
            _ => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_lowercase())
                .map_err(|e| format!("reading the hostname: {e}; give --hostname-override"))?,
        };
        let cidr = ipv4_cidr(&self.cluster_cidr).map_err(|e| format!("--cluster-cidr: {e}"))?;
        let nodeport_cidrs = self
            .nodeport_addresses
            .iter()
            .filter(|s| !s.is_empty() && s.as_str() != "primary")
            .map(|s| ipv4_cidr(s).map_err(|e| format!("--nodeport-addresses: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let table_ok = !self.table.is_empty()
            && self.table.len() < 64
            && self.table.starts_with(|c: char| c.is_ascii_alphabetic())
            && self
                .table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !table_ok {
            return Err(format!(
                "--table {:?}: letters, digits, '-' and '_', starting with a letter, under 64",
                self.table
            ));
        }
        if self.min_sync_period > self.sync_period {
            return Err("--min-sync-period must not exceed --sync-period".into());
        }
        if self.sync_period.is_zero() {
            return Err("--sync-period must be positive".into());
        }
        Ok(ProxyConfig {
            kubeconfig: self.kubeconfig.clone(),
            node,
            cluster_cidr: (!self.masquerade_all).then_some(cidr),
            nodeport_cidrs,
            min_sync: self.min_sync_period,
            sync_every: self.sync_period,
            table: self.table.clone(),
            cleanup: self.cleanup,
            serving: (self.secure_port != 0).then(|| SecureServing {
                addr: SocketAddr::new(self.bind_address, self.secure_port),
                tls: self.serving.tls(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ipv4_networks() {
        assert_eq!(
            ipv4_cidr("10.244.3.7/16").unwrap().to_string(),
            "10.244.0.0/16"
        );
        assert!(ipv4_cidr("fd00::/8").is_err());
        assert!(ipv4_cidr("10.0.0.0").is_err());
    }
}
