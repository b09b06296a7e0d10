//! Names outside the cluster zone, asked of the upstream resolvers through
//! hickory-resolver (UDP, TCP on truncation, timeouts and retries across the upstreams),
//! with this crate's bounded cache in front (`cache.rs`).
//!
//! Contract: an answer is either the upstream's (its rcode, answers and SOA) or an error
//! the handler turns into SERVFAIL; errors are never cached. hickory-resolver's own cache
//! is off (size 0) so that hits and misses are counted here, exactly.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, Record, RecordType};
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::TokioResolver;

use crate::cache::{Cache, Upstream};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream resolver configured")]
    NoUpstreams,
    #[error("building the upstream resolver: {source}")]
    Build { source: NetError },
    #[error("upstream lookup of {name} {qtype}: {source}")]
    Lookup {
        name: Name,
        qtype: RecordType,
        source: NetError,
    },
}

pub struct Forwarder {
    resolver: Option<TokioResolver>,
    cache: Mutex<Cache>,
    metrics: Arc<Metrics>,
}

impl Forwarder {
    pub fn new(
        upstreams: &[SocketAddr],
        cache_size: usize,
        max_ttl: u32,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ForwardError> {
        let resolver = if upstreams.is_empty() {
            None
        } else {
            let servers = upstreams
                .iter()
                .map(|u| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = u.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = u.port();
                    let mut ns = NameServerConfig::udp_and_tcp(u.ip());
                    ns.connections = vec![udp, tcp];
                    ns
                })
                .collect();
            let mut opts = ResolverOpts::default();
            opts.cache_size = 0;
            opts.use_hosts_file = ResolveHosts::Never;
            opts.timeout = Duration::from_secs(2);
            opts.attempts = 2;
            opts.ndots = 0;
            opts.recursion_desired = true;
            let config = ResolverConfig::from_name_servers(servers);
            let r = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
                .with_options(opts)
                .build()
                .map_err(|source| ForwardError::Build { source })?;
            Some(r)
        };
        Ok(Forwarder {
            resolver,
            cache: Mutex::new(Cache::new(cache_size, max_ttl)),
            metrics,
        })
    }

    /// The answer for `name` and `qtype` from the cache or the upstreams.
    pub async fn resolve(&self, name: &Name, qtype: RecordType) -> Result<Upstream, ForwardError> {
        let key = LowerName::new(name);
        let cached =
            self.cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key, qtype, Instant::now());
        if let Some(hit) = cached {
            self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        self.metrics.cache_misses.fetch_add(1, Ordering::Relaxed);
        let resolver = self.resolver.as_ref().ok_or(ForwardError::NoUpstreams)?;
        self.metrics
            .forward_requests
            .fetch_add(1, Ordering::Relaxed);
        let mut fqdn = name.clone();
        fqdn.set_fqdn(true);
        let result = match resolver.lookup(fqdn, qtype).await {
            Ok(lookup) => Upstream {
                rcode: ResponseCode::NoError,
                answers: lookup.answers().to_vec(),
                authorities: lookup.authorities().to_vec(),
                additionals: lookup.additionals().to_vec(),
            },
            Err(NetError::Dns(DnsError::NoRecordsFound(nr))) => {
                let mut authorities: Vec<Record> = Vec::new();
                if let Some(soa) = nr.soa {
                    authorities.push((*soa).into_record_of_rdata());
                }
                Upstream {
                    rcode: nr.response_code,
                    answers: Vec::new(),
                    authorities,
                    additionals: Vec::new(),
                }
            }
            Err(source) => {
                self.metrics.forward_errors.fetch_add(1, Ordering::Relaxed);
                return Err(ForwardError::Lookup {
                    name: name.clone(),
                    qtype,
                    source,
                });
            }
        };
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).put(
            &key,
            qtype,
            &result,
            Instant::now(),
        );
        Ok(result)
    }
}
