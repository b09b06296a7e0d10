//! `flotilla apiserver` flags, named as kube-apiserver names them, and their validated form.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::kinds::service::alloc as ipalloc;

/// Go-style durations (`5m`, `1h30m`, `250ms`, bare seconds) for flags and the `timeout`
/// query parameter.
pub use flotilla_core::duration::parse_duration;

#[derive(Args, Debug, Clone)]
pub struct ApiserverFlags {
    /// The kvstore (or etcd) members, comma-separated URLs; any of them may fail.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    pub etcd_servers: Vec<String>,
    /// The CA (PEM) https:// --etcd-servers must present a certificate from.
    #[arg(long)]
    pub etcd_cafile: Option<PathBuf>,
    /// The client certificate (PEM) this apiserver presents to the kvstore.
    #[arg(long, requires = "etcd_keyfile")]
    pub etcd_certfile: Option<PathBuf>,
    /// The private key (PEM) of --etcd-certfile.
    #[arg(long, requires = "etcd_certfile")]
    pub etcd_keyfile: Option<PathBuf>,
    /// The address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// The HTTPS port.
    #[arg(long, default_value_t = 6443)]
    pub secure_port: u16,
    /// The address clients reach this apiserver at (kubeconfig server URL, certificate).
    /// Default: the bind address, or 127.0.0.1 when binding every address.
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,
    /// A PEM certificate (chain) to serve; without it one is generated from a CA in --cert-dir.
    #[arg(long, requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    #[arg(long, requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// More names (DNS names or IPs) for the generated serving certificate, comma-separated
    /// or repeated: a load balancer in front of the apiservers, say (k3s's flag).
    #[arg(long, value_delimiter = ',')]
    pub tls_san: Vec<String>,
    /// Where the generated CA (and the generated admin token) are kept.
    #[arg(long, default_value = "apiserver.local.config/certificates")]
    pub cert_dir: PathBuf,
    /// Static tokens: lines of token,user,uid,"group1,group2", read again within a second
    /// of a change (kube-apiserver reads it at start only). Without it an admin token is
    /// generated into --cert-dir/tokens.csv.
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// The private key (PKCS#8 PEM, ECDSA P-256) ServiceAccount tokens are signed with;
    /// created when missing. Default: --cert-dir/sa.key.
    #[arg(long)]
    pub service_account_signing_key_file: Option<PathBuf>,
    /// The issuer (`iss`) of ServiceAccount tokens.
    #[arg(long, default_value = crate::auth::serviceaccount::DEFAULT_ISSUER)]
    pub service_account_issuer: String,
    /// The audiences a ServiceAccount token must name one of (comma-separated); default:
    /// the issuer.
    #[arg(long, value_delimiter = ',')]
    pub api_audiences: Vec<String>,
    /// Write a kubeconfig for the admin (CA, server URL, token) to this path.
    #[arg(long)]
    pub write_kubeconfig: Option<PathBuf>,
    /// The range service cluster IPs come from.
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: String,
    /// How many recent events the watch cache keeps for watches resuming from a revision.
    #[arg(long, default_value_t = 10_000)]
    pub watch_cache_size: usize,
    /// How long one scrape of the agents' usage answers metrics.k8s.io (the
    /// metrics-server's flag; at least 10s).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub metric_resolution: Duration,
    /// How often the kvstore's history is compacted (the revision from one interval ago is
    /// kept); 0 disables.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub etcd_compaction_interval: Duration,
    /// How requests are authorized: RBAC (members of system:masters may do anything), or
    /// AlwaysAllow.
    #[arg(long, value_enum, default_value = "RBAC")]
    pub authorization_mode: crate::authz::Mode,
    /// Read requests served at once at most (watches excepted); 0: no limit.
    #[arg(long, default_value_t = 400)]
    pub max_requests_inflight: usize,
    /// Writes served at once at most; 0: no limit.
    #[arg(long, default_value_t = 200)]
    pub max_mutating_requests_inflight: usize,
    /// How long a request may take before it ends with 504 (watches and followed logs
    /// excepted); 0 disables.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// An EncryptionConfiguration file (apiserver.config.k8s.io/v1, YAML or JSON): which
    /// resources are encrypted at rest in the kvstore, with which providers (aesgcm,
    /// aescbc, secretbox, identity) and keys. Read at start.
    #[arg(long)]
    pub encryption_provider_config: Option<PathBuf>,
    /// The client certificate (PEM) this apiserver presents to the nodes' agents
    /// (`pods/log`). Without it nothing is presented (no token either) and agents refuse.
    #[arg(long, requires = "kubelet_client_key")]
    pub kubelet_client_certificate: Option<PathBuf>,
    /// The private key (PEM) of --kubelet-client-certificate.
    #[arg(long, requires = "kubelet_client_certificate")]
    pub kubelet_client_key: Option<PathBuf>,
    /// The CA (PEM) the agents' serving certificates must chain to, naming the address
    /// dialled. Without it they are not verified (a warning at start says so).
    #[arg(long)]
    pub kubelet_certificate_authority: Option<PathBuf>,
    /// The client certificate (PEM) this apiserver presents to aggregated APIs' backends
    /// (APIServices with a service), which trust it for the user named in `X-Remote-*`.
    /// Without it nothing is presented (a warning at start says so).
    #[arg(long, requires = "proxy_client_key_file")]
    pub proxy_client_cert_file: Option<PathBuf>,
    /// The private key (PEM) of --proxy-client-cert-file.
    #[arg(long, requires = "proxy_client_cert_file")]
    pub proxy_client_key_file: Option<PathBuf>,
    /// The CA (PEM) of --proxy-client-cert-file, published with the allowed names in
    /// kube-system/extension-apiserver-authentication for aggregated API servers.
    #[arg(long)]
    pub requestheader_client_ca_file: Option<PathBuf>,
    /// The common names a front-proxy client certificate may carry (published with
    /// --requestheader-client-ca-file); empty: any name that CA signed.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_allowed_names: Vec<String>,
    /// The audit policy (audit.k8s.io/v1 Policy, YAML or JSON): which requests are recorded
    /// at which level. Read at start; a policy kube would refuse refuses the start. Without
    /// it nothing is audited.
    #[arg(long)]
    pub audit_policy_file: Option<PathBuf>,
    /// Where audit events are written, one JSON object a line; `-` is standard output.
    /// Without it nothing is audited.
    #[arg(long)]
    pub audit_log_path: Option<String>,
    /// The size in megabytes at which the audit log is rotated (0: 100, as kube's).
    #[arg(long, default_value_t = 0)]
    pub audit_log_maxsize: u64,
    /// How many rotated audit logs are kept (0: all).
    #[arg(long, default_value_t = 0)]
    pub audit_log_maxbackup: usize,
    /// How many days rotated audit logs are kept, by the time in their names (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub audit_log_maxage: u64,
    /// Connections served at once; one more is closed as soon as it is accepted
    /// (Flotilla's; kube-apiserver has no such limit).
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// How long a client has to complete its TLS handshake (Flotilla's).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub tls_handshake_timeout: Duration,
    /// How long an HTTP/1.1 client has to send each request's headers before the
    /// connection is closed (slowloris; Go's ReadHeaderTimeout, fixed at 32s in
    /// kube-apiserver).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub read_header_timeout: Duration,
}

pub enum TlsSource {
    Files { cert: PathBuf, key: PathBuf },
    Generated { dir: PathBuf },
}

pub struct Config {
    pub etcd_servers: Vec<String>,
    /// For https:// --etcd-servers.
    pub etcd_tls: Option<proto::tls::ClientTls>,
    pub bind: std::net::SocketAddr,
    pub advertise: IpAddr,
    pub tls: TlsSource,
    /// --tls-san: more names for the generated serving certificate.
    pub tls_sans: Vec<String>,
    pub cert_dir: PathBuf,
    pub token_auth_file: Option<PathBuf>,
    pub service_account_key: PathBuf,
    pub service_account_issuer: String,
    pub api_audiences: Vec<String>,
    pub write_kubeconfig: Option<PathBuf>,
    pub service_range: ipalloc::Range,
    pub watch_cache_size: usize,
    pub metric_resolution: Duration,
    pub compaction_interval: Option<Duration>,
    pub authorization_mode: crate::authz::Mode,
    pub max_requests_inflight: usize,
    pub max_mutating_requests_inflight: usize,
    pub request_timeout: Duration,
    /// From --encryption-provider-config.
    pub encryption: Option<Arc<crate::encryption::Encryption>>,
    /// How agents are dialled: --kubelet-client-certificate/-key and
    /// --kubelet-certificate-authority, read at start.
    pub kubelet: Arc<crate::kubelet::KubeletClient>,
    /// From --audit-policy-file and --audit-log-*; None when either is missing.
    pub audit: Option<crate::audit::AuditConfig>,
    /// Why auditing is off although one of its flags was given (said at start).
    pub audit_warning: Option<&'static str>,
    /// --max-connections, --tls-handshake-timeout, --read-header-timeout.
    pub connections: crate::http::limits::ConnectionLimits,
    /// --proxy-client-cert-file and --proxy-client-key-file, read at start.
    pub proxy_client: Option<crate::aggregator::Identity>,
    /// The extension-apiserver-authentication ConfigMap to publish, from
    /// --requestheader-client-ca-file and --requestheader-allowed-names.
    pub requestheader: Option<serde_json::Value>,
}

impl ApiserverFlags {
    pub fn validate(self) -> Result<Config, String> {
        for u in &self.etcd_servers {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(format!(
                    "--etcd-servers: {u:?} must be an http:// or https:// URL"
                ));
            }
        }
        if self.etcd_servers.is_empty() {
            return Err("--etcd-servers must name at least one member".into());
        }
        let https = self.etcd_servers.iter().any(|u| u.starts_with("https://"));
        if https && self.etcd_cafile.is_none() {
            return Err("--etcd-servers: https:// members need --etcd-cafile".into());
        }
        let etcd_tls = if https {
            let identity = self
                .etcd_certfile
                .as_deref()
                .zip(self.etcd_keyfile.as_deref());
            Some(proto::tls::ClientTls::load(
                self.etcd_cafile.as_deref(),
                identity,
            )?)
        } else {
            None
        };
        let service_range = ipalloc::Range::parse(&self.service_cluster_ip_range)
            .map_err(|e| format!("--service-cluster-ip-range: {e}"))?;
        let advertise = self
            .advertise_address
            .unwrap_or(if self.bind_address.is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                self.bind_address
            });
        for san in &self.tls_san {
            if san.parse::<IpAddr>().is_err()
                && !flotilla_core::names::dns1123_subdomain(san).is_empty()
            {
                return Err(format!(
                    "--tls-san: {san:?} is neither an IP address nor a DNS name"
                ));
            }
        }
        let tls = match (self.tls_cert_file, self.tls_private_key_file) {
            (Some(cert), Some(key)) => TlsSource::Files { cert, key },
            _ => TlsSource::Generated {
                dir: self.cert_dir.clone(),
            },
        };
        if self.watch_cache_size == 0 {
            return Err("--watch-cache-size must be at least 1".into());
        }
        if self.metric_resolution < Duration::from_secs(10) {
            return Err("--metric-resolution should be a time duration at least 10s".into());
        }
        if self.service_account_issuer.is_empty() {
            return Err("--service-account-issuer must not be empty".into());
        }
        let encryption = match &self.encryption_provider_config {
            Some(path) => Some(Arc::new(
                crate::encryption::Encryption::load(path)
                    .map_err(|e| format!("--encryption-provider-config {}: {e}", path.display()))?,
            )),
            None => None,
        };
        let kubelet = Arc::new(crate::kubelet::KubeletClient::load(
            self.kubelet_client_certificate
                .as_deref()
                .zip(self.kubelet_client_key.as_deref()),
            self.kubelet_certificate_authority.as_deref(),
        )?);
        let proxy_client = match (&self.proxy_client_cert_file, &self.proxy_client_key_file) {
            (Some(c), Some(k)) => Some(crate::aggregator::Identity::load(c, k)?),
            _ => None,
        };
        let requestheader = match &self.requestheader_client_ca_file {
            Some(path) => {
                let pem = std::fs::read_to_string(path).map_err(|e| {
                    format!("--requestheader-client-ca-file {}: {e}", path.display())
                })?;
                Some(crate::aggregator::authentication::config_map(
                    &pem,
                    &self.requestheader_allowed_names,
                ))
            }
            None => None,
        };
        let policy = match &self.audit_policy_file {
            Some(path) => Some(
                crate::audit::Policy::load(path)
                    .map_err(|e| format!("--audit-policy-file {}: {e}", path.display()))?,
            ),
            None => None,
        };
        let (audit, audit_warning) = match (policy, &self.audit_log_path) {
            (Some(policy), Some(log)) if !log.is_empty() => (
                Some(crate::audit::AuditConfig {
                    policy,
                    log: crate::audit::log::LogOptions {
                        path: (log != "-").then(|| PathBuf::from(log)),
                        max_size_mb: self.audit_log_maxsize,
                        max_backups: self.audit_log_maxbackup,
                        max_age_days: self.audit_log_maxage,
                    },
                }),
                None,
            ),
            (Some(_), _) => (
                None,
                Some("--audit-policy-file without --audit-log-path: no audit events are written"),
            ),
            (None, Some(_)) => (
                None,
                Some("--audit-log-path without --audit-policy-file: no audit events are written"),
            ),
            (None, None) => (None, None),
        };
        if self.max_connections == 0 {
            return Err("--max-connections must be at least 1".into());
        }
        if self.tls_handshake_timeout.is_zero() || self.read_header_timeout.is_zero() {
            return Err(
                "--tls-handshake-timeout and --read-header-timeout must be positive".into(),
            );
        }
        let connections = crate::http::limits::ConnectionLimits {
            max_connections: self.max_connections,
            handshake_timeout: self.tls_handshake_timeout,
            header_read_timeout: self.read_header_timeout,
        };
        let api_audiences = if self.api_audiences.is_empty() {
            vec![self.service_account_issuer.clone()]
        } else {
            self.api_audiences
        };
        Ok(Config {
            service_account_key: self
                .service_account_signing_key_file
                .unwrap_or_else(|| self.cert_dir.join("sa.key")),
            service_account_issuer: self.service_account_issuer,
            api_audiences,
            etcd_servers: self.etcd_servers,
            etcd_tls,
            bind: std::net::SocketAddr::new(self.bind_address, self.secure_port),
            advertise,
            tls,
            tls_sans: self.tls_san,
            cert_dir: self.cert_dir,
            token_auth_file: self.token_auth_file,
            write_kubeconfig: self.write_kubeconfig,
            service_range,
            watch_cache_size: self.watch_cache_size,
            metric_resolution: self.metric_resolution,
            compaction_interval: (!self.etcd_compaction_interval.is_zero())
                .then_some(self.etcd_compaction_interval),
            authorization_mode: self.authorization_mode,
            max_requests_inflight: self.max_requests_inflight,
            max_mutating_requests_inflight: self.max_mutating_requests_inflight,
            request_timeout: self.request_timeout,
            encryption,
            kubelet,
            audit,
            audit_warning,
            connections,
            proxy_client,
            requestheader,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flags: ApiserverFlags,
    }

    fn validate(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["apiserver"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().flags.validate()
    }

    #[test]
    fn tls_sans_are_names_or_addresses() {
        let cfg =
            validate(&["--tls-san", "lb,10.237.0.5", "--tls-san", "api.example.com"]).unwrap();
        assert_eq!(cfg.tls_sans, ["lb", "10.237.0.5", "api.example.com"]);
        let e = validate(&["--tls-san", "not a name"]).err().unwrap();
        assert!(e.starts_with("--tls-san: \"not a name\""), "{e}");
    }

    #[test]
    fn encrypt_provider_config_is_read_at_start_and_errors_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("enc.yaml");
        let p = path.to_str().unwrap();
        let file = |secret: &str| {
            format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - name: key1\n        secret: {secret}\n  - identity: {{}}\n"
            )
        };
        assert!(validate(&[]).unwrap().encryption.is_none());
        std::fs::write(&path, file("c2VjcmV0IGlzIHNlY3VyZQ==")).unwrap();
        let cfg = validate(&["--encryption-provider-config", p]).unwrap();
        let enc = cfg.encryption.expect("loaded");
        assert_eq!(enc.resources().collect::<Vec<_>>(), ["secrets"]);
        std::fs::write(&path, file("c2hvcnQ=")).unwrap();
        let e = validate(&["--encryption-provider-config", p])
            .err()
            .unwrap();
        assert!(
            e.starts_with(&format!("--encryption-provider-config {p}: ")),
            "{e}"
        );
        assert!(
            e.contains("resources[0].providers[0].aesgcm.keys[0].secret"),
            "{e}"
        );
        let missing = dir.path().join("missing.yaml");
        let e = validate(&["--encryption-provider-config", missing.to_str().unwrap()])
            .err()
            .unwrap();
        assert!(e.contains("missing.yaml: reading"), "{e}");
    }

    #[test]
    fn audit_flags_are_read_at_start_and_a_bad_policy_refuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.yaml");
        let p = policy.to_str().unwrap();
        let log = dir.path().join("audit.log");
        let l = log.to_str().unwrap();
        std::fs::write(
            &policy,
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n",
        )
        .unwrap();
        let cfg = validate(&[]).unwrap();
        assert!(cfg.audit.is_none() && cfg.audit_warning.is_none());
        let cfg = validate(&[
            "--audit-policy-file",
            p,
            "--audit-log-path",
            l,
            "--audit-log-maxsize",
            "5",
            "--audit-log-maxbackup",
            "3",
            "--audit-log-maxage",
            "7",
        ])
        .unwrap();
        let audit = cfg.audit.expect("audit on");
        assert_eq!(audit.log.path.as_deref(), Some(log.as_path()));
        assert_eq!(
            (
                audit.log.max_size_mb,
                audit.log.max_backups,
                audit.log.max_age_days
            ),
            (5, 3, 7)
        );
        let cfg = validate(&["--audit-policy-file", p, "--audit-log-path", "-"]).unwrap();
        assert_eq!(cfg.audit.expect("audit on").log.path, None);
        let cfg = validate(&["--audit-policy-file", p]).unwrap();
        assert!(cfg.audit.is_none() && cfg.audit_warning.is_some());
        std::fs::write(
            &policy,
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything\n",
        )
        .unwrap();
        let e = validate(&["--audit-policy-file", p, "--audit-log-path", l])
            .err()
            .unwrap();
        assert!(
            e.starts_with(&format!(
                "--audit-policy-file {p}: rules[0].level: Unsupported value"
            )),
            "{e}"
        );
    }

    #[test]
    fn connection_limits_are_flags() {
        let c = validate(&[]).unwrap().connections;
        assert_eq!(c.max_connections, 10_000);
        assert_eq!(c.handshake_timeout, Duration::from_secs(10));
        assert_eq!(c.header_read_timeout, Duration::from_secs(30));
        let c = validate(&[
            "--max-connections",
            "3",
            "--tls-handshake-timeout",
            "2s",
            "--read-header-timeout",
            "500ms",
        ])
        .unwrap()
        .connections;
        assert_eq!(
            (
                c.max_connections,
                c.handshake_timeout,
                c.header_read_timeout
            ),
            (3, Duration::from_secs(2), Duration::from_millis(500))
        );
        assert!(validate(&["--max-connections", "0"]).is_err());
        assert!(validate(&["--read-header-timeout", "0"]).is_err());
    }
}
