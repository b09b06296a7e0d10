//! `flotilla agent` flags, with the kubelet's names and defaults where it has them,
//! validated once into typed configuration.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use flotilla_core::duration::parse_duration;
use k8s_openapi::api::core::v1::Taint;

use crate::podnet::plan::Cidr;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// Real containers through the Docker Engine API.
    Docker,
    /// Host processes, one process group per container.
    Process,
    /// Nothing runs; pods go straight to Running and Ready.
    Fake,
}

#[derive(clap::Args, Debug, Clone)]
pub struct AgentFlags {
    /// Path to a kubeconfig file for the apiserver.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// The Node's name (default: the hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// How containers are run.
    #[arg(long, value_enum, default_value = "docker")]
    pub runtime: RuntimeKind,
    /// Where the agent keeps pod logs, volumes and runtime state.
    #[arg(long, default_value = "/var/lib/flotilla-agent")]
    pub root_dir: PathBuf,
    /// Labels to add at registration: `key=value,...`.
    #[arg(long, value_delimiter = ',')]
    pub node_labels: Vec<String>,
    /// Taints to register the node with: `key=value:Effect,...`.
    #[arg(long, value_delimiter = ',')]
    pub register_with_taints: Vec<String>,
    /// The port the agent serves container logs on, advertised in the Node.
    #[arg(long, default_value_t = 10250)]
    pub port: u16,
    /// The address the agent's port is served on.
    #[arg(long, default_value = "0.0.0.0")]
    pub address: IpAddr,
    /// The node's address (default: the source address of the default route).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// Run this many hollow nodes named `<node-name>-0..` in this process (fake runtime).
    #[arg(long, default_value_t = 0)]
    pub fake_nodes: u32,
    /// With `--fake-nodes`: hollow node i takes address i+1 of this network as its
    /// InternalIP and serves its own agent port there (`--port`), so the apiserver reaches
    /// each hollow node for metrics, logs and authorization as it reaches a real one
    /// (`127.1.0.0/16`: every 127/8 address is the loopback's). Without it hollow nodes
    /// serve no port.
    #[arg(long)]
    pub fake_node_cidr: Option<String>,
    /// How often the node status is computed (sent when it changed, else every 5 min).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub node_status_update_frequency: Duration,
    /// How often the node's and its containers' usage is sampled (cAdvisor's housekeeping)
    /// for `/metrics/resource` and `/stats/summary`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub housekeeping_interval: Duration,
    /// The node Lease's duration; it is renewed every quarter of it.
    #[arg(long, default_value_t = 40)]
    pub node_lease_duration_seconds: i32,
    /// Pods this node accepts.
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// The Docker daemon (`unix://` socket; default: $DOCKER_HOST, else
    /// unix:///var/run/docker.sock).
    #[arg(long)]
    pub docker_endpoint: Option<String>,
    /// The prefix of the node's Docker pod network, named `<prefix>-<podCIDR>`
    /// (`flotilla-10.244.1.0-24`) and created when missing.
    #[arg(long, default_value = "flotilla")]
    pub pod_network: String,
    /// The node's pod addresses when its Node has no `spec.podCIDR` (standalone use, as
    /// the kubelet's flag); the Node's, set by the node IPAM controller, wins.
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// The whole pod network, every node's podCIDR inside it (as kube-proxy and flannel
    /// know it): traffic within it is routed without NAT, traffic leaving it masqueraded.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
    /// The cluster DNS server(s) pods with dnsPolicy ClusterFirst get as their only
    /// nameservers (comma-separated IPs; the kubelet's flag). Empty: such pods fall back to
    /// dnsPolicy Default, with a MissingClusterDNS event.
    #[arg(long, value_delimiter = ',')]
    pub cluster_dns: Vec<IpAddr>,
    /// The cluster's DNS domain (`cluster.local`): ClusterFirst pods search
    /// `<ns>.svc.<domain> svc.<domain> <domain>`. Empty (the kubelet's default): no
    /// cluster search domains.
    #[arg(long, default_value = "")]
    pub cluster_domain: String,
    /// The resolver configuration of dnsPolicy Default pods, and the base of others' search
    /// line (the kubelet's flag). Empty: such pods resolve through 127.0.0.1 only.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: String,
    /// Stop every pod's containers when the agent stops (what `flotilla up` does on
    /// Ctrl-C); by default they keep running and a restarted agent adopts them.
    #[arg(long)]
    pub stop_pods_on_exit: bool,
    /// With `--stop-pods-on-exit`: the most grace each pod gets when the agent stops
    /// (its own terminationGracePeriodSeconds when shorter). The pods stop in parallel, so
    /// stopping a node takes about this long however many pods ignore SIGTERM.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub shutdown_grace_period: Duration,
    /// Status writes per second (per node), and their burst.
    #[arg(long, default_value_t = 50.0)]
    pub kube_api_qps: f64,
    #[arg(long, default_value_t = 100)]
    pub kube_api_burst: u32,
    /// The agent port's TLS (`--tls-cert-file`, `--tls-private-key-file`,
    /// `--client-ca-file`).
    #[command(flatten)]
    pub serving: component_base::secure::ServingFlags,
    /// A container's log is rotated before it grows past this size (a quantity).
    #[arg(long, default_value = "10Mi")]
    pub container_log_max_size: String,
    /// Log files kept per container, the current one included (at least 2).
    #[arg(long, default_value_t = 5)]
    pub container_log_max_files: u32,
    /// Ship every container's log lines to a log store: `loki=<URL>` (Grafana Loki's push
    /// API at `<URL>/loki/api/v1/push`).
    #[arg(long)]
    pub log_sink: Option<String>,
    /// The CA that an https log sink's certificate must chain to.
    #[arg(long)]
    pub log_sink_ca_file: Option<PathBuf>,
    /// Lines not yet taken by the log sink wait on disk, up to this much (a quantity); then
    /// reading the containers' logs waits.
    #[arg(long, default_value = "100Mi")]
    pub log_spool_size: String,
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub kubeconfig: PathBuf,
    pub node_name: String,
    pub runtime: RuntimeKind,
    pub root_dir: PathBuf,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub port: u16,
    pub address: IpAddr,
    pub node_ip: Option<IpAddr>,
    pub fake_nodes: u32,
    /// `--fake-node-cidr`: it holds an address for every hollow node.
    pub fake_node_cidr: Option<Cidr>,
    pub status_every: Duration,
    pub housekeeping: Duration,
    pub lease_seconds: i32,
    pub max_pods: u32,
    pub qps: f64,
    pub burst: u32,
    pub docker_socket: PathBuf,
    pub pod_network: String,
    pub pod_cidr: Option<Cidr>,
    pub cluster_cidr: Cidr,
    pub stop_pods_on_exit: bool,
    pub shutdown_grace_period: Duration,
    /// `--cluster-dns`, `--cluster-domain`, `--resolv-conf`.
    pub dns: crate::dns::NodeDns,
    /// The agent port's TLS files.
    pub tls: crate::server::TlsFlags,
    pub log_limits: crate::runtime::LogLimits,
    /// Where logs are shipped (spool under `<root-dir>/log-spool`), if anywhere.
    pub log_sink: Option<crate::logship::Settings>,
}

impl AgentFlags {
    pub fn validate(&self) -> Result<AgentConfig, String> {
        let node_name = match &self.node_name {
            Some(n) => n.clone(),
            None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_lowercase())
                .map_err(|e| {
                    format!("--node-name not given and the hostname is unreadable: {e}")
                })?,
        };
        let dns1123 = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.split('.').all(|l| {
                    !l.is_empty()
                        && l.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                })
        };
        if !dns1123(&node_name) {
            return Err(format!(
                "--node-name {node_name:?}: a node name must be a lowercase RFC 1123 subdomain"
            ));
        }
        let mut labels = BTreeMap::new();
        for l in self.node_labels.iter().filter(|l| !l.is_empty()) {
            let (k, v) = l
                .split_once('=')
                .ok_or_else(|| format!("--node-labels: {l:?} is not key=value"))?;
            if k.is_empty() {
                return Err(format!("--node-labels: {l:?} has an empty key"));
            }
            labels.insert(k.to_string(), v.to_string());
        }
        let taints = self
            .register_with_taints
            .iter()
            .filter(|t| !t.is_empty())
            .map(|t| {
                crate::node::parse_taint(t).map_err(|e| format!("--register-with-taints: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.fake_nodes > 0 && self.runtime != RuntimeKind::Fake {
            return Err("--fake-nodes needs --runtime fake".into());
        }
        let fake_node_cidr = match &self.fake_node_cidr {
            None => None,
            Some(c) => {
                let cidr: Cidr = c.parse().map_err(|e| format!("--fake-node-cidr: {e}"))?;
                if self.fake_nodes == 0 {
                    return Err("--fake-node-cidr needs --fake-nodes".into());
                }
                if cidr.host(self.fake_nodes).is_none() {
                    return Err(format!(
                        "--fake-node-cidr {cidr} holds fewer than {} host addresses",
                        self.fake_nodes
                    ));
                }
                Some(cidr)
            }
        };
        if self.node_lease_duration_seconds < 1 {
            return Err("--node-lease-duration-seconds must be at least 1".into());
        }
        if self.node_status_update_frequency.is_zero() {
            return Err("--node-status-update-frequency must be positive".into());
        }
        if self.housekeeping_interval.is_zero() {
            return Err("--housekeeping-interval must be positive".into());
        }
        if !(self.kube_api_qps > 0.0) {
            return Err("--kube-api-qps must be positive".into());
        }
        let endpoint = self
            .docker_endpoint
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
        let docker_socket = PathBuf::from(endpoint.strip_prefix("unix://").ok_or_else(|| {
            format!("--docker-endpoint {endpoint:?}: only unix:// sockets are supported")
        })?);
        if self.pod_network.is_empty()
            || !self
                .pod_network
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(format!(
                "--pod-network {:?}: want a Docker network name prefix ([a-zA-Z0-9_.-])",
                self.pod_network
            ));
        }
        let cluster_cidr: Cidr = self
            .cluster_cidr
            .parse()
            .map_err(|e| format!("--cluster-cidr: {e}"))?;
        let pod_cidr = match &self.pod_cidr {
            Some(c) => {
                let c: Cidr = c.parse().map_err(|e| format!("--pod-cidr: {e}"))?;
                if !cluster_cidr.contains(&c) {
                    return Err(format!(
                        "--pod-cidr {c} is not inside --cluster-cidr {cluster_cidr}"
                    ));
                }
                Some(c)
            }
            None => None,
        };
        let cluster_domain = self.cluster_domain.trim_end_matches('.').to_lowercase();
        if !cluster_domain.is_empty() && !dns1123(&cluster_domain) {
            return Err(format!(
                "--cluster-domain {:?}: want a DNS subdomain (cluster.local)",
                self.cluster_domain
            ));
        }
        let bytes = |flag: &str, q: &str| -> Result<u64, String> {
            flotilla_core::quantity::units(q)
                .and_then(|b| u64::try_from(b).ok())
                .ok_or_else(|| format!("{flag} {q:?}: want a size such as 10Mi"))
        };
        let max_size = bytes("--container-log-max-size", &self.container_log_max_size)?;
        if max_size == 0 {
            return Err("--container-log-max-size must be positive".into());
        }
        if self.container_log_max_files < 2 {
            return Err("--container-log-max-files must be greater than 1".into());
        }
        let log_sink = match &self.log_sink {
            None => None,
            Some(sink) => {
                let Some(url) = sink.strip_prefix("loki=") else {
                    return Err(format!("--log-sink {sink:?}: want loki=<URL>"));
                };
                let loki = crate::logship::loki::Loki::new(url, self.log_sink_ca_file.as_deref())
                    .map_err(|e| format!("--log-sink: {e}"))?;
                Some(crate::logship::Settings {
                    loki: std::sync::Arc::new(loki),
                    spool_dir: self.root_dir.join("log-spool"),
                    spool_bytes: bytes("--log-spool-size", &self.log_spool_size)?,
                })
            }
        };
        Ok(AgentConfig {
            kubeconfig: self.kubeconfig.clone(),
            node_name,
            runtime: self.runtime,
            root_dir: self.root_dir.clone(),
            labels,
            taints,
            port: self.port,
            address: self.address,
            node_ip: self.node_ip,
            fake_nodes: self.fake_nodes,
            fake_node_cidr,
            status_every: self.node_status_update_frequency,
            housekeeping: self.housekeeping_interval,
            lease_seconds: self.node_lease_duration_seconds,
            max_pods: self.max_pods,
            qps: self.kube_api_qps,
            burst: self.kube_api_burst,
            docker_socket,
            pod_network: self.pod_network.clone(),
            pod_cidr,
            cluster_cidr,
            stop_pods_on_exit: self.stop_pods_on_exit,
            shutdown_grace_period: self.shutdown_grace_period,
            dns: crate::dns::NodeDns {
                cluster_dns: self.cluster_dns.clone(),
                cluster_domain,
                resolv_conf: self.resolv_conf.clone(),
            },
            tls: self.serving.tls(),
            log_limits: crate::runtime::LogLimits {
                max_size,
                max_files: self.container_log_max_files,
            },
            log_sink,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        flags: AgentFlags,
    }

    fn validate(extra: &[&str]) -> Result<AgentConfig, String> {
        let args = [
            &["agent", "--kubeconfig", "k", "--node-name", "n1"][..],
            extra,
        ]
        .concat();
        Cli::parse_from(args).flags.validate()
    }

    #[test]
    fn log_flags() {
        let c = validate(&[]).unwrap();
        assert_eq!(c.log_limits, crate::runtime::LogLimits::default());
        assert!(c.log_sink.is_none());
        let c = validate(&[
            "--container-log-max-size",
            "1Mi",
            "--container-log-max-files",
            "2",
            "--log-sink",
            "loki=http://127.0.0.1:3100",
            "--log-spool-size",
            "1Gi",
        ])
        .unwrap();
        assert_eq!(
            (c.log_limits.max_size, c.log_limits.max_files),
            (1 << 20, 2)
        );
        let sink = c.log_sink.unwrap();
        assert_eq!(sink.loki.url(), "http://127.0.0.1:3100/loki/api/v1/push");
        assert_eq!(sink.spool_bytes, 1 << 30);
        for (args, want) in [
            (&["--container-log-max-files", "1"][..], "greater than 1"),
            (&["--container-log-max-size", "lots"][..], "want a size"),
            (&["--container-log-max-size", "0"][..], "must be positive"),
            (&["--log-sink", "http://x"][..], "want loki=<URL>"),
            (&["--log-sink", "loki=https://x"][..], "--log-sink-ca-file"),
        ] {
            let e = validate(args).err().unwrap_or_default();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn fake_node_cidr() {
        let c = validate(&[
            "--runtime",
            "fake",
            "--fake-nodes",
            "254",
            "--fake-node-cidr",
            "127.1.0.0/24",
        ])
        .unwrap();
        let cidr = c.fake_node_cidr.unwrap();
        assert_eq!(cidr.host(1), Some("127.1.0.1".parse().unwrap()));
        assert_eq!(cidr.host(254), Some("127.1.0.254".parse().unwrap()));
        assert_eq!(cidr.host(255), None, "the broadcast address");
        assert_eq!(cidr.host(0), None, "the network's own address");
        for (args, want) in [
            (
                &[
                    "--runtime",
                    "fake",
                    "--fake-nodes",
                    "255",
                    "--fake-node-cidr",
                    "127.1.0.0/24",
                ][..],
                "fewer than 255 host addresses",
            ),
            (
                &["--fake-node-cidr", "127.1.0.0/24"][..],
                "needs --fake-nodes",
            ),
            (
                &[
                    "--runtime",
                    "fake",
                    "--fake-nodes",
                    "1",
                    "--fake-node-cidr",
                    "x",
                ][..],
                "--fake-node-cidr",
            ),
        ] {
            let e = validate(args).err().unwrap_or_default();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn pod_network_flags() {
        let c = validate(&[]).unwrap();
        assert_eq!(c.cluster_cidr.to_string(), "10.244.0.0/16");
        assert_eq!((c.pod_cidr, c.pod_network.as_str()), (None, "flotilla"));
        let c = validate(&["--cluster-cidr", "10.8.0.0/16", "--pod-cidr", "10.8.3.0/24"]).unwrap();
        assert_eq!(c.pod_cidr.unwrap().to_string(), "10.8.3.0/24");
        let e = validate(&["--pod-cidr", "10.9.3.0/24"]).unwrap_err();
        assert!(e.contains("not inside --cluster-cidr 10.244.0.0/16"), "{e}");
        assert!(validate(&["--cluster-cidr", "fd00::/48"])
            .unwrap_err()
            .contains("only IPv4"));
        assert!(validate(&["--pod-network", "a b"]).is_err());
    }

    #[test]
    fn dns_flags() {
        let c = validate(&[]).unwrap();
        assert!(c.dns.cluster_dns.is_empty());
        assert_eq!(c.dns.cluster_domain, "");
        assert_eq!(c.dns.resolv_conf, "/etc/resolv.conf");
        let c = validate(&[
            "--cluster-dns",
            "10.96.0.10,10.96.0.11",
            "--cluster-domain",
            "Cluster.Local.",
            "--resolv-conf",
            "",
        ])
        .unwrap();
        assert_eq!(c.dns.cluster_dns.len(), 2);
        assert_eq!(c.dns.cluster_domain, "cluster.local");
        assert_eq!(c.dns.resolv_conf, "");
        assert!(validate(&["--cluster-domain", "a_b"]).is_err());
    }
}
