//! `flotilla kvstore` flags (etcd's names and defaults) and the typed, validated config
//! built from them once at start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use flotilla_core::duration::parse_duration;

/// The largest `--max-request-bytes` accepted: a log entry holds a batch of proposals plus
/// one proposal of up to this size, and every entry must fit in one peer message
/// (`raft::wire::MAX_PEER_MESSAGE_BYTES`, 64 MiB) or it could never be replicated. etcd
/// warns above 10 MiB.
pub const MAX_REQUEST_BYTES_CAP: usize = 32 << 20;

/// The longest `--election-timeout` accepted, in milliseconds (etcd's `maxElectionMs`).
const MAX_ELECTION_TIMEOUT_MS: u64 = 50_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClusterState {
    New,
    Existing,
}

/// The command-line flags, spelled as etcd spells them.
#[derive(Debug, Clone, Args)]
pub struct KvFlags {
    /// Human-readable name of this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Where this member keeps its data (default: <name>.etcd, as etcd).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// URLs to serve clients on (comma-separated; https:// needs --cert-file and --key-file).
    #[arg(long, default_value = "http://localhost:2379")]
    pub listen_client_urls: String,
    /// URLs to serve /metrics and /health on (etcd's names; comma-separated; none by
    /// default). https:// takes the client TLS and needs --client-cert-auth; http:// only
    /// when the client URLs are http:// too.
    #[arg(long, default_value = "")]
    pub listen_metrics_urls: String,
    /// Client URLs to publish to the cluster.
    #[arg(long, default_value = "http://localhost:2379")]
    pub advertise_client_urls: String,
    /// URLs to serve peers (Raft) on.
    #[arg(long, default_value = "http://localhost:2380")]
    pub listen_peer_urls: String,
    /// Peer URLs to publish to the cluster.
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// name=peer-url,... of every member of the initial cluster.
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// `new` to bootstrap a cluster, `existing` to join one (after MemberAdd).
    #[arg(long, value_enum, default_value = "new")]
    pub initial_cluster_state: ClusterState,
    /// Distinguishes clusters bootstrapped from the same URLs.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Largest client request accepted, in bytes.
    #[arg(long, default_value_t = 1_572_864)]
    pub max_request_bytes: usize,
    /// Most operations in one Txn branch.
    #[arg(long, default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Database size that raises the NOSPACE alarm, in bytes (0 means the default, 2 GiB).
    #[arg(long, default_value_t = 2 * 1024 * 1024 * 1024)]
    pub quota_backend_bytes: u64,
    /// Applied entries between Raft snapshots; the log is purged behind them.
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Raft heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Raft election timeout in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,
    /// How often watchers that asked for it get a progress notification, e.g. 10m, 5s.
    #[arg(
        long = "experimental-watch-progress-notify-interval",
        default_value = "10m"
    )]
    pub watch_progress_notify_interval: String,
    /// Revisions buffered for watch streams before a slow stream falls back to reading
    /// history (not an etcd flag; tests make it small to exercise that path).
    #[arg(
        long = "experimental-watch-broadcast-capacity",
        default_value_t = 4096,
        hide = true
    )]
    pub watch_broadcast_capacity: usize,
    /// The certificate (PEM, chain) served on https:// client URLs.
    #[arg(long)]
    pub cert_file: Option<PathBuf>,
    /// The private key (PEM) of --cert-file.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Require every client to present a certificate signed by --trusted-ca-file; its
    /// common name is the client's user name when auth is enabled.
    #[arg(long)]
    pub client_cert_auth: bool,
    /// The CA (PEM) client certificates are verified against.
    #[arg(long)]
    pub trusted_ca_file: Option<PathBuf>,
    /// The certificate (PEM) served on https:// peer URLs and presented to other members.
    #[arg(long)]
    pub peer_cert_file: Option<PathBuf>,
    /// The private key (PEM) of --peer-cert-file.
    #[arg(long)]
    pub peer_key_file: Option<PathBuf>,
    /// Require every peer to present a certificate signed by --peer-trusted-ca-file.
    #[arg(long)]
    pub peer_client_cert_auth: bool,
    /// The CA (PEM) peers' certificates are verified against, both ways.
    #[arg(long)]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Most watchers one Watch stream may hold; a create beyond it is answered canceled
    /// with a reason. etcd has no such limit; this one bounds what one client can make a
    /// member hold (every watcher is state kept and matched against every revision), and
    /// the default is far above what a client multiplexes on one stream (the apiserver
    /// opens one stream per watch).
    #[arg(long, default_value_t = 10_000)]
    pub max_watchers_per_stream: usize,
    /// Before serving, compare this member's HashKV with its peers' at its revision and
    /// refuse to start on a mismatch (etcd's flag; off by default, as etcd).
    #[arg(long = "experimental-initial-corrupt-check")]
    pub initial_corrupt_check: bool,
    /// How often the leader compares its HashKV with its followers' and raises the CORRUPT
    /// alarm on a mismatch, e.g. 5m, 30s; 0 turns the check off (etcd's default).
    #[arg(long = "experimental-corrupt-check-time", default_value = "0s")]
    pub corrupt_check_time: String,
}

/// One side's TLS files: what this member serves and presents, and whom it trusts.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Certificates of the other side are verified against this CA.
    pub trusted_ca: Option<PathBuf>,
    /// The other side must present a certificate (verified against `trusted_ca`).
    pub client_cert_auth: bool,
}

/// An address to listen on, and whether it speaks TLS (an https:// URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub addr: SocketAddr,
    pub tls: bool,
}

#[derive(Debug, Clone)]
pub struct KvConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client: Vec<Listen>,
    /// `--listen-metrics-urls` (may be empty).
    pub listen_metrics: Vec<Listen>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer: Vec<Listen>,
    pub advertise_peer_urls: Vec<String>,
    pub initial_cluster: Vec<(String, Vec<String>)>,
    pub cluster_state: ClusterState,
    pub token: String,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub quota_backend_bytes: u64,
    pub snapshot_count: u64,
    pub heartbeat: Duration,
    pub election: Duration,
    pub progress_notify: Duration,
    pub watch_broadcast_capacity: usize,
    /// For https:// client URLs.
    pub client_tls: Option<TlsFiles>,
    /// For https:// peer URLs, served and dialled.
    pub peer_tls: Option<TlsFiles>,
    /// Most watchers on one Watch stream (`--max-watchers-per-stream`).
    pub max_watchers_per_stream: usize,
    /// `--experimental-initial-corrupt-check`.
    pub initial_corrupt_check: bool,
    /// `--experimental-corrupt-check-time`; `None` when off.
    pub corrupt_check_time: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--{flag}: {reason}")]
    Invalid { flag: &'static str, reason: String },
}

fn invalid(flag: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        reason: reason.into(),
    }
}

fn split(list: &str) -> Vec<String> {
    list.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Whether a URL asks for TLS.
pub fn is_https(url: &str) -> bool {
    url.starts_with("https://")
}

/// Checks an `http://host:port` or `https://host:port` URL and returns its host and port.
pub fn parse_url(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url}: only http:// and https:// URLs are supported"))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("{url}: a port is required"))?;
    let port: u16 = port.parse().map_err(|_| format!("{url}: bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{url}: a host is required"));
    }
    Ok((host.to_string(), port))
}

fn resolve(flag: &'static str, urls: &[String]) -> Result<Vec<Listen>, ConfigError> {
    use std::net::ToSocketAddrs;
    let mut out = Vec::new();
    for u in urls {
        let (host, port) = parse_url(u).map_err(|r| invalid(flag, r))?;
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| invalid(flag, format!("{u}: {e}")))?
            .next()
            .ok_or_else(|| invalid(flag, format!("{u}: no address")))?;
        out.push(Listen {
            addr,
            tls: is_https(u),
        });
    }
    if out.is_empty() {
        return Err(invalid(flag, "at least one URL is required"));
    }
    Ok(out)
}

impl KvFlags {
    pub fn validate(&self) -> Result<KvConfig, ConfigError> {
        let advertise_peer_urls = split(&self.initial_advertise_peer_urls);
        for u in &advertise_peer_urls {
            parse_url(u).map_err(|r| invalid("initial-advertise-peer-urls", r))?;
        }
        let advertise_client_urls = split(&self.advertise_client_urls);
        for u in &advertise_client_urls {
            parse_url(u).map_err(|r| invalid("advertise-client-urls", r))?;
        }
        let initial = self
            .initial_cluster
            .clone()
            .unwrap_or_else(|| format!("{}={}", self.name, advertise_peer_urls.join(",")));
        let mut initial_cluster: Vec<(String, Vec<String>)> = Vec::new();
        for part in split(&initial) {
            let (name, url) = part
                .split_once('=')
                .ok_or_else(|| invalid("initial-cluster", format!("{part}: expected name=url")))?;
            parse_url(url).map_err(|r| invalid("initial-cluster", r))?;
            match initial_cluster.iter_mut().find(|(n, _)| n == name) {
                Some((_, urls)) => urls.push(url.to_string()),
                None => initial_cluster.push((name.to_string(), vec![url.to_string()])),
            }
        }
        let mine = initial_cluster
            .iter()
            .find(|(n, _)| *n == self.name)
            .ok_or_else(|| {
                invalid(
                    "initial-cluster",
                    format!("this member's name {:?} is not in it", self.name),
                )
            })?;
        let (mut a, mut b) = (mine.1.clone(), advertise_peer_urls.clone());
        a.sort();
        b.sort();
        if a != b {
            return Err(invalid(
                "initial-cluster",
                format!(
                    "lists {} for {} but --initial-advertise-peer-urls is {}",
                    a.join(","),
                    self.name,
                    b.join(",")
                ),
            ));
        }
        // etcd's `maxElectionMs`.
        if self.election_timeout > MAX_ELECTION_TIMEOUT_MS {
            return Err(invalid(
                "election-timeout",
                format!("is too long, and should be set less than {MAX_ELECTION_TIMEOUT_MS}ms"),
            ));
        }
        if self.heartbeat_interval == 0
            || self.election_timeout < self.heartbeat_interval.saturating_mul(5)
        {
            return Err(invalid(
                "election-timeout",
                "must be at least 5 times --heartbeat-interval",
            ));
        }
        if self.max_txn_ops == 0 {
            return Err(invalid("max-txn-ops", "must be positive"));
        }
        if self.max_request_bytes == 0 {
            return Err(invalid("max-request-bytes", "must be positive"));
        }
        if self.max_request_bytes > MAX_REQUEST_BYTES_CAP {
            return Err(invalid(
                "max-request-bytes",
                format!(
                    "must be at most {MAX_REQUEST_BYTES_CAP} ({} MiB), so that every log entry fits in a peer message",
                    MAX_REQUEST_BYTES_CAP >> 20
                ),
            ));
        }
        if self.snapshot_count == 0 {
            return Err(invalid("snapshot-count", "must be positive"));
        }
        if self.max_watchers_per_stream == 0 {
            return Err(invalid("max-watchers-per-stream", "must be positive"));
        }
        let client_tls = tls_files(
            ("cert-file", &self.cert_file),
            ("key-file", &self.key_file),
            &self.trusted_ca_file,
            self.client_cert_auth,
        )?;
        let peer_tls = tls_files(
            ("peer-cert-file", &self.peer_cert_file),
            ("peer-key-file", &self.peer_key_file),
            &self.peer_trusted_ca_file,
            self.peer_client_cert_auth,
        )?;
        if self.client_cert_auth && self.trusted_ca_file.is_none() {
            return Err(invalid("client-cert-auth", "needs --trusted-ca-file"));
        }
        if self.peer_client_cert_auth && self.peer_trusted_ca_file.is_none() {
            return Err(invalid(
                "peer-client-cert-auth",
                "needs --peer-trusted-ca-file",
            ));
        }
        let needs =
            |flag: &'static str, urls: &[String], tls: &Option<TlsFiles>, what: &str| match urls
                .iter()
                .find(|u| is_https(u))
            {
                Some(u) if tls.is_none() => {
                    Err(invalid(flag, format!("{u}: an https:// URL needs {what}")))
                }
                _ => Ok(()),
            };
        let listen_client_urls = split(&self.listen_client_urls);
        let listen_peer_urls = split(&self.listen_peer_urls);
        let listen_metrics_urls = split(&self.listen_metrics_urls);
        for u in &listen_metrics_urls {
            let secure = is_https(u);
            if secure && !client_tls.as_ref().is_some_and(|t| t.client_cert_auth) {
                return Err(invalid(
                    "listen-metrics-urls",
                    format!("{u}: an https:// metrics URL needs --cert-file, --key-file and --client-cert-auth (only holders of a client certificate may read)"),
                ));
            }
            if !secure && listen_client_urls.iter().any(|c| is_https(c)) {
                return Err(invalid(
                    "listen-metrics-urls",
                    format!(
                        "{u}: the client URLs use TLS, so the metrics URLs must be https:// too"
                    ),
                ));
            }
        }
        needs(
            "listen-client-urls",
            &listen_client_urls,
            &client_tls,
            "--cert-file and --key-file",
        )?;
        needs(
            "listen-peer-urls",
            &listen_peer_urls,
            &peer_tls,
            "--peer-cert-file and --peer-key-file",
        )?;
        let all_peer_urls: Vec<String> = initial_cluster
            .iter()
            .flat_map(|(_, u)| u.iter().cloned())
            .collect();
        needs(
            "initial-cluster",
            &all_peer_urls,
            &peer_tls,
            "--peer-cert-file and --peer-key-file (this member dials its peers with them)",
        )?;
        let progress_notify = parse_duration(&self.watch_progress_notify_interval)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                invalid(
                    "experimental-watch-progress-notify-interval",
                    "expected e.g. 10m, 30s, 500ms",
                )
            })?;
        Ok(KvConfig {
            name: self.name.clone(),
            data_dir: self
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", self.name))),
            listen_client: resolve("listen-client-urls", &listen_client_urls)?,
            listen_metrics: if listen_metrics_urls.is_empty() {
                Vec::new()
            } else {
                resolve("listen-metrics-urls", &listen_metrics_urls)?
            },
            advertise_client_urls,
            listen_peer: resolve("listen-peer-urls", &listen_peer_urls)?,
            advertise_peer_urls,
            initial_cluster,
            cluster_state: self.initial_cluster_state,
            token: self.initial_cluster_token.clone(),
            max_request_bytes: self.max_request_bytes,
            max_txn_ops: self.max_txn_ops,
            quota_backend_bytes: if self.quota_backend_bytes == 0 {
                2 << 30
            } else {
                self.quota_backend_bytes
            },
            snapshot_count: self.snapshot_count,
            heartbeat: Duration::from_millis(self.heartbeat_interval),
            election: Duration::from_millis(self.election_timeout),
            progress_notify,
            watch_broadcast_capacity: self.watch_broadcast_capacity.max(1),
            client_tls,
            peer_tls,
            max_watchers_per_stream: self.max_watchers_per_stream,
            initial_corrupt_check: self.initial_corrupt_check,
            corrupt_check_time: parse_duration(&self.corrupt_check_time)
                .map_err(|_| {
                    invalid(
                        "experimental-corrupt-check-time",
                        "expected e.g. 5m, 30s, or 0 for off",
                    )
                })
                .map(|d| (!d.is_zero()).then_some(d))?,
        })
    }
}

/// A certificate and its key come together or not at all.
fn tls_files(
    cert: (&'static str, &Option<PathBuf>),
    key: (&'static str, &Option<PathBuf>),
    trusted_ca: &Option<PathBuf>,
    client_cert_auth: bool,
) -> Result<Option<TlsFiles>, ConfigError> {
    match (cert.1, key.1) {
        (Some(c), Some(k)) => Ok(Some(TlsFiles {
            cert: c.clone(),
            key: k.clone(),
            trusted_ca: trusted_ca.clone(),
            client_cert_auth,
        })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(invalid(key.0, format!("--{} needs it", cert.0))),
        (None, Some(_)) => Err(invalid(cert.0, format!("--{} needs it", key.0))),
    }
}

impl KvConfig {
    /// How long a client request may wait for consensus (etcd: 5s + 2 election timeouts).
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(5) + 2 * self.election
    }

    /// The smallest lease TTL etcd grants: 1.5 election timeouts, in whole seconds.
    pub fn min_lease_ttl(&self) -> i64 {
        ((self.election.as_millis() as i64 * 3 / 2) + 999) / 1000
    }
}

/// 64-bit FNV-1a: a stable hash for IDs derived from URLs, the same on every member.
pub fn fnv64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for b in *p {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// A member's ID in a new cluster: derived from its peer URLs and the cluster token, so every
/// member computes the same IDs from `--initial-cluster`.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let joined = urls.join(",");
    fnv64(&[joined.as_bytes(), token.as_bytes()]).max(1)
}

pub fn cluster_id(member_ids: &[u64], token: &str) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort();
    let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_be_bytes()).collect();
    fnv64(&[&bytes, token.as_bytes()]).max(1)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
