//! `flotilla dns` flags and the typed configuration they are validated into.
//!
//! Contract: `validate` is the only place flags are interpreted; everything after it reads
//! typed values (a zone `Name`, socket addresses, a `PodMode`). The only input besides the
//! flags is `/etc/resolv.conf` when no `--upstream` is given.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use component_base::metrics::SecureServing;
use hickory_proto::rr::Name;

use crate::records;

/// CoreDNS's default cache capacity (`cache` plugin).
pub const DEFAULT_CACHE_SIZE: usize = 9984;

/// How `<a-b-c-d>.<ns>.pod.<zone>` names are answered (CoreDNS's `pods` option).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodMode {
    /// The IP encoded in the name, without a lookup (kube's default Corefile).
    Insecure,
    /// No pod records (NXDOMAIN).
    Disabled,
    /// Only the IPs of pods that exist in that namespace (watches all Pods).
    Verified,
}

#[derive(clap::Args, Debug, Clone)]
pub struct DnsFlags {
    /// Path to a kubeconfig file for the apiserver.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// UDP and TCP address to serve DNS on (port 0 picks one).
    #[arg(long, default_value = "0.0.0.0:53")]
    pub listen: String,
    /// The cluster domain (the zone this server is authoritative for).
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// TTL in seconds of the cluster records (kube's Corefile: 30).
    #[arg(long, default_value_t = 30)]
    pub ttl: u32,
    /// How pod names are answered.
    #[arg(long, value_enum, default_value = "insecure")]
    pub pods: PodMode,
    /// Upstream resolver, `ip` or `ip:port` (repeatable); default: the nameservers of
    /// /etc/resolv.conf other than this server's own address.
    #[arg(long = "upstream")]
    pub upstreams: Vec<String>,
    /// Entries in the cache of forwarded answers (0 = no cache).
    #[arg(long, default_value_t = DEFAULT_CACHE_SIZE)]
    pub cache_size: usize,
    /// Longest time in seconds a forwarded answer is cached (CoreDNS's `cache 30`).
    #[arg(long, default_value_t = 30)]
    pub cache_max_ttl: u32,
    /// The ClusterIP of the kube-system/kube-dns Service this server creates when missing.
    #[arg(long, default_value = "10.96.0.10")]
    pub cluster_dns_ip: IpAddr,
    /// The address this instance publishes in its EndpointSlice; default: the source
    /// address of the host's default route.
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,
    /// This instance's name in its EndpointSlice and Lease (`kube-dns-<identity>`);
    /// default: the hostname and the listen port.
    #[arg(long)]
    pub identity: Option<String>,
    /// Do not create the kube-dns Service, nor publish an EndpointSlice and Lease.
    #[arg(long)]
    pub no_register: bool,
    /// Port of /metrics and /healthz over TLS (0 = off).
    #[arg(long, default_value_t = 9153)]
    pub secure_port: u16,
    /// Address of the secure port.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    #[command(flatten)]
    pub serving: component_base::secure::ServingFlags,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    pub kubeconfig: PathBuf,
    pub listen: SocketAddr,
    pub zone: Name,
    pub ttl: u32,
    pub pods: PodMode,
    pub upstreams: Vec<SocketAddr>,
    pub cache_size: usize,
    pub cache_max_ttl: u32,
    pub cluster_dns_ip: IpAddr,
    pub advertise_address: Option<IpAddr>,
    /// Already a valid object-name part when set.
    pub identity: Option<String>,
    pub register: bool,
    pub secure: Option<SecureServing>,
}

/// Why flags were refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("--listen {value:?}: expected ip:port")]
    Listen { value: String },
    #[error("--cluster-domain {value:?}: not a valid domain name")]
    Domain { value: String },
    #[error("--ttl {value}: must be at most 3600 seconds")]
    Ttl { value: u32 },
    #[error("--upstream {value:?}: expected ip or ip:port")]
    Upstream { value: String },
    #[error("--identity {value:?}: must contain a letter or digit")]
    Identity { value: String },
    #[error("--cache-max-ttl {value}: must be between 1 and 86400 seconds")]
    CacheTtl { value: u32 },
}

impl DnsFlags {
    pub fn validate(&self) -> Result<DnsConfig, String> {
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        self.validate_with(&resolv).map_err(|e| e.to_string())
    }

    /// `validate` with the text of resolv.conf given (for tests).
    pub fn validate_with(&self, resolv_conf: &str) -> Result<DnsConfig, ConfigError> {
        let listen: SocketAddr = self.listen.parse().map_err(|_| ConfigError::Listen {
            value: self.listen.clone(),
        })?;
        let zone = records::zone_name(&self.cluster_domain).ok_or_else(|| ConfigError::Domain {
            value: self.cluster_domain.clone(),
        })?;
        if self.ttl > 3600 {
            return Err(ConfigError::Ttl { value: self.ttl });
        }
        if self.cache_max_ttl == 0 || self.cache_max_ttl > 86400 {
            return Err(ConfigError::CacheTtl {
                value: self.cache_max_ttl,
            });
        }
        let upstreams = if self.upstreams.is_empty() {
            parse_resolv_conf(resolv_conf)
                .into_iter()
                .filter(|u| !is_self(*u, listen))
                .collect()
        } else {
            self.upstreams
                .iter()
                .map(|u| {
                    parse_upstream(u).ok_or_else(|| ConfigError::Upstream { value: u.clone() })
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let identity = match &self.identity {
            None => None,
            Some(raw) => {
                let id = records::sanitize_label(raw);
                if id.is_empty() {
                    return Err(ConfigError::Identity { value: raw.clone() });
                }
                Some(id)
            }
        };
        let secure = (self.secure_port != 0).then(|| SecureServing {
            addr: SocketAddr::new(self.bind_address, self.secure_port),
            tls: self.serving.tls(),
        });
        Ok(DnsConfig {
            kubeconfig: self.kubeconfig.clone(),
            listen,
            zone,
            ttl: self.ttl,
            pods: self.pods,
            upstreams,
            cache_size: self.cache_size,
            cache_max_ttl: self.cache_max_ttl,
            cluster_dns_ip: self.cluster_dns_ip,
            advertise_address: self.advertise_address,
            identity,
            register: !self.no_register,
            secure,
        })
    }
}

/// `ip` (port 53) or `ip:port` / `[v6]:port`.
pub fn parse_upstream(s: &str) -> Option<SocketAddr> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa);
    }
    s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
}

/// The `nameserver` lines of a resolv.conf, port 53.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver")).then_some(())?;
            let ip: IpAddr = words.next()?.split('%').next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// True when forwarding to `upstream` would ask this server itself: the same address, or
/// a loopback one while listening on all addresses, on the same port.
fn is_self(upstream: SocketAddr, listen: SocketAddr) -> bool {
    upstream.port() == listen.port()
        && (upstream.ip() == listen.ip()
            || (listen.ip().is_unspecified() && upstream.ip().is_loopback()))
}

/// The default advertised address: the source address the kernel picks for the default
/// route (a UDP socket connected to 8.8.8.8:53; nothing is sent).
pub fn default_route_address() -> std::io::Result<IpAddr> {
    let s = std::net::UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))?;
    s.connect("8.8.8.8:53")?;
    Ok(s.local_addr()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        f: DnsFlags,
    }

    fn flags(args: &[&str]) -> DnsFlags {
        let mut v = vec!["dns", "--kubeconfig", "/k"];
        v.extend_from_slice(args);
        Cli::parse_from(v).f
    }

    #[test]
    fn defaults() {
        let c = flags(&[])
            .validate_with("nameserver 127.0.0.1\nnameserver 10.0.0.2\n# x\n")
            .unwrap();
        assert_eq!(c.zone.to_ascii(), "cluster.local.");
        assert_eq!(c.ttl, 30);
        assert_eq!(c.listen, "0.0.0.0:53".parse().unwrap());
        // 127.0.0.1:53 would be this server itself.
        assert_eq!(c.upstreams, vec!["10.0.0.2:53".parse().unwrap()]);
        assert_eq!(c.secure.unwrap().addr.port(), 9153);
        assert_eq!(c.pods, PodMode::Insecure);
    }

    #[test]
    fn errors_name_the_flag() {
        let e = flags(&["--listen", "x"]).validate_with("").unwrap_err();
        assert!(e.to_string().contains("--listen"));
        let e = flags(&["--upstream", "nope"])
            .validate_with("")
            .unwrap_err();
        assert_eq!(
            e,
            ConfigError::Upstream {
                value: "nope".into()
            }
        );
        let e = flags(&["--cluster-domain", "."])
            .validate_with("")
            .unwrap_err();
        assert!(matches!(e, ConfigError::Domain { .. }));
        let e = flags(&["--identity", "___"]).validate_with("").unwrap_err();
        assert!(matches!(e, ConfigError::Identity { .. }));
    }

    #[test]
    fn upstreams_parse() {
        let c = flags(&["--upstream", "1.1.1.1", "--upstream", "127.0.0.1:5300"])
            .validate_with("")
            .unwrap();
        assert_eq!(
            c.upstreams,
            vec![
                "1.1.1.1:53".parse().unwrap(),
                "127.0.0.1:5300".parse().unwrap()
            ]
        );
        assert!(flags(&["--secure-port", "0"])
            .validate_with("")
            .unwrap()
            .secure
            .is_none());
    }
}
