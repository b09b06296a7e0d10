//! The proxy at work: watches of Services, EndpointSlices and its own Node feed caches;
//! one sync loop turns them into the wanted ruleset and the kernel transaction.
//!
//! Contract: after a change is seen, the table reflects it within `--min-sync-period`
//! plus one transaction (changes in between are batched into one sync). A failed
//! transaction changes nothing (nft applies a file atomically); the next sync is then a
//! full rewrite, after a backoff (1 s doubling to 30 s). A full rewrite also happens at
//! start, so a restarted proxy repairs whatever it left, without touching established
//! flows (their NAT lives in conntrack) or affinity sets.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use component_base::events::{EventType, Recorder};
use component_base::metrics::Registry;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::config::ProxyConfig;
use crate::kernel;
use crate::metrics::Metrics;
use crate::model::{self, Proto, ServicePort};
use crate::ruleset::{self, NodeView, Ruleset};
use crate::transaction;

/// Full rewrites at least this often, whatever else happens.
const FULL_EVERY: Duration = Duration::from_secs(3600);

/// What changed since the last sync, and since when.
#[derive(Default)]
struct Changes {
    notify: Notify,
    /// When the oldest change not yet synced was seen.
    since: Mutex<Option<Instant>>,
}

impl Changes {
    fn mark(&self) {
        let mut s = self.since.lock().unwrap_or_else(|e| e.into_inner());
        s.get_or_insert_with(Instant::now);
        drop(s);
        self.notify.notify_one();
    }
    fn take(&self) -> Option<Instant> {
        self.since.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// kube-proxy's healthz: healthy once the rules were synced and while the last sync is
/// recent (the loop syncs at least every `--sync-period`, so twice that means it is stuck).
fn health(
    metrics: Arc<Metrics>,
    sync_period: std::time::Duration,
) -> component_base::metrics::Health {
    Arc::new(move || {
        let last = metrics.last_sync_unix_ms.load(Ordering::Relaxed);
        if last == 0 {
            return Err("the rules have not been synced yet".into());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let age = now.saturating_sub(last);
        let limit = u64::try_from(sync_period.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_mul(2);
        if age > limit {
            return Err(format!("the rules were last synced {} s ago", age / 1000));
        }
        Ok(())
    })
}

/// Runs the proxy until `shutdown`.
pub async fn run(cfg: ProxyConfig, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    if cfg.cleanup {
        kernel::delete_table(&cfg.table).await?;
        tracing::info!(table = %cfg.table, "removed");
        return Ok(());
    }
    let client = component_base::client::from_kubeconfig(&cfg.kubeconfig).await?;
    let metrics = Arc::new(Metrics::default());
    if let Some(serving) = &cfg.serving {
        let mut reg = Registry::default();
        reg.register(metrics.clone());
        reg.set_health(health(metrics.clone(), cfg.sync_every));
        component_base::metrics::serve(serving, reg, client.clone())
            .await
            .map_err(|e| anyhow::anyhow!("serving the secure port {}: {e:#}", serving.addr))?;
    }
    let changes = Arc::new(Changes::default());
    let (services, w) = reflector::store::<Service>();
    tokio::spawn(follow(
        Api::all(client.clone()),
        watcher::Config::default(),
        w,
        changes.clone(),
        metrics.clone(),
        false,
    ));
    let (slices, w) = reflector::store::<EndpointSlice>();
    tokio::spawn(follow(
        Api::all(client.clone()),
        watcher::Config::default(),
        w,
        changes.clone(),
        metrics.clone(),
        true,
    ));
    let (nodes, w) = reflector::store::<Node>();
    let own = watcher::Config::default().fields(&format!("metadata.name={}", cfg.node));
    tokio::spawn(follow(
        Api::all(client.clone()),
        own,
        w,
        changes.clone(),
        metrics.clone(),
        false,
    ));

    tokio::select! {
        r = async {
            services.wait_until_ready().await?;
            slices.wait_until_ready().await?;
            nodes.wait_until_ready().await
        } => r.map_err(|e| anyhow::anyhow!("waiting for the first lists: {e}"))?,
        _ = shutdown.wait_for(|s| *s) => return Ok(()),
    }
    let mut syncer = Syncer {
        sctp: kernel::sctp_supported().await,
        recorder: Recorder::new(client.clone(), "kube-proxy"),
        cfg,
        metrics,
        have: None,
        last_full: Instant::now(),
        ports: Vec::new(),
        reported: BTreeSet::new(),
        host_ips: None,
    };
    tracing::info!(node = %syncer.cfg.node, table = %syncer.cfg.table, "caches synced; programming rules");
    let mut backoff = Duration::ZERO;
    let mut last = Instant::now() - syncer.cfg.min_sync;
    loop {
        // Batch changes: at most one sync per --min-sync-period.
        let next = last + syncer.cfg.min_sync.max(backoff);
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
        }
        let since = changes.take();
        last = Instant::now();
        match syncer.sync(&services, &slices, &nodes, since).await {
            Ok(()) => backoff = Duration::ZERO,
            Err(e) => {
                syncer.metrics.failures.fetch_add(1, Ordering::Relaxed);
                backoff = (backoff * 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
                tracing::warn!(error = %e, retry_in = ?backoff, "syncing the rules failed; the next sync rewrites the table");
                changes.mark();
                continue;
            }
        }
        tokio::select! {
            _ = changes.notify.notified() => {}
            _ = tokio::time::sleep(syncer.cfg.sync_every) => {}
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
        }
    }
}

/// Keeps `writer` following a watch of `api`, marking every change.
async fn follow<K>(
    api: Api<K>,
    cfg: watcher::Config,
    writer: reflector::store::Writer<K>,
    changes: Arc<Changes>,
    metrics: Arc<Metrics>,
    endpoints: bool,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let stream = reflector::reflector(writer, watcher(api, cfg).default_backoff());
    futures::pin_mut!(stream);
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone) => {
                let c = if endpoints {
                    &metrics.endpoint_changes
                } else {
                    &metrics.service_changes
                };
                c.fetch_add(1, Ordering::Relaxed);
                changes.mark();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "watch failed; retrying"),
        }
    }
}

struct Syncer {
    cfg: ProxyConfig,
    sctp: bool,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    /// The ruleset in the kernel, when known (None: rewrite it all).
    have: Option<Ruleset>,
    last_full: Instant,
    /// The Service ports of the last successful sync (stale UDP flows are those of
    /// endpoints that left them).
    ports: Vec<ServicePort>,
    /// Problems already reported as Events.
    reported: BTreeSet<(String, String, String)>,
    /// This host's addresses, for `--nodeport-addresses`.
    host_ips: Option<Vec<Ipv4Addr>>,
}

impl Syncer {
    async fn sync(
        &mut self,
        services: &Store<Service>,
        slices: &Store<EndpointSlice>,
        nodes: &Store<Node>,
        since: Option<Instant>,
    ) -> Result<(), kernel::KernelError> {
        let start = Instant::now();
        let svcs = services.state();
        let sls = slices.state();
        let (ports, skipped) = model::service_ports(
            svcs.iter().map(|s| s.as_ref()),
            sls.iter().map(|s| s.as_ref()),
            &self.cfg.node,
        );
        let full = self.have.is_none() || self.last_full.elapsed() >= FULL_EVERY;
        let view = NodeView {
            cluster_cidr: self.cfg.cluster_cidr.map(|c| c.to_string()),
            nodeport_ips: self.nodeport_ips(nodes, full).await,
            sctp: self.sctp,
        };
        let (want, conflicts) = ruleset::build(&ports, &view);
        let mut problems: Vec<(String, String, &str, String)> = skipped
            .into_iter()
            .map(|s| (s.namespace, s.name, s.reason, s.message))
            .collect();
        problems.extend(conflicts.into_iter().map(|c| {
            (
                c.port.namespace.clone(),
                c.port.name.clone(),
                c.reason,
                format!("port {}: {}", c.port, c.message),
            )
        }));
        self.report(problems);

        let text = match &self.have {
            Some(have) if !full => transaction::incremental(&self.cfg.table, have, &want),
            _ => {
                let existing = kernel::existing(&self.cfg.table).await?;
                transaction::full(&self.cfg.table, &want, &existing)
            }
        };
        if !text.is_empty() {
            if let Err(e) = kernel::apply(&text).await {
                self.have = None;
                return Err(e);
            }
        }
        let took = start.elapsed().as_secs_f64();
        self.metrics.sync.observe(took);
        if full {
            self.metrics.full_sync.observe(took);
            self.last_full = Instant::now();
        } else {
            self.metrics.partial_sync.observe(took);
        }
        if let Some(since) = since {
            self.metrics
                .programming
                .observe(since.elapsed().as_secs_f64());
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.metrics
            .last_sync_unix_ms
            .store(now_ms, Ordering::Relaxed);
        self.metrics.rules.store(
            want.chains.values().map(|c| c.rules.len() as u64).sum(),
            Ordering::Relaxed,
        );
        tracing::debug!(
            full,
            lines = text.lines().count(),
            took_ms = took * 1000.0,
            "rules synced"
        );
        self.have = Some(want);
        let old = std::mem::replace(&mut self.ports, ports);
        forget_stale_udp(&old, &self.ports).await;
        Ok(())
    }

    /// The addresses NodePorts answer on: with `--nodeport-addresses`, this host's
    /// addresses inside those CIDRs (read again at each full sync); else the Node's
    /// IPv4 addresses (kube's `primary`). Loopback addresses never: DNAT from them
    /// would need `route_localnet`, which kube's nftables mode does not set either.
    async fn nodeport_ips(&mut self, nodes: &Store<Node>, full: bool) -> Vec<Ipv4Addr> {
        if !self.cfg.nodeport_cidrs.is_empty() {
            if full || self.host_ips.is_none() {
                match kernel::local_ipv4().await {
                    Ok(ips) => self.host_ips = Some(ips),
                    Err(e) => tracing::warn!(error = %e, "reading this host's addresses"),
                }
            }
            return self
                .host_ips
                .iter()
                .flatten()
                .copied()
                .filter(|ip| {
                    self.cfg
                        .nodeport_cidrs
                        .iter()
                        .any(|c| c.contains_ip(std::net::IpAddr::V4(*ip)))
                })
                .collect();
        }
        let mut ips: Vec<Ipv4Addr> = nodes
            .state()
            .iter()
            .filter(|n| n.metadata.name.as_deref() == Some(&self.cfg.node))
            .flat_map(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.addresses.clone())
                    .unwrap_or_default()
            })
            .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
            .filter_map(|a| a.address.parse().ok())
            .filter(|ip: &Ipv4Addr| !ip.is_loopback())
            .collect();
        ips.sort();
        ips.dedup();
        ips
    }

    /// One Warning Event per Service and problem (again only after it went away).
    fn report(&mut self, problems: Vec<(String, String, &str, String)>) {
        let mut now = BTreeSet::new();
        for (ns, name, reason, message) in problems {
            let key = (ns.clone(), name.clone(), message.clone());
            if !self.reported.contains(&key) {
                tracing::warn!(namespace = %ns, service = %name, reason, %message, "Service not (fully) proxied");
                let obj = ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Service".into()),
                    namespace: Some(ns),
                    name: Some(name),
                    ..Default::default()
                };
                self.recorder
                    .record(&obj, EventType::Warning, reason, &message);
            }
            now.insert(key);
        }
        self.reported = now;
    }
}

/// Drops the UDP conntrack entries that still point at endpoints that left a Service
/// port (UDP has no connection end that would make clients move).
async fn forget_stale_udp(old: &[ServicePort], new: &[ServicePort]) {
    for o in old.iter().filter(|p| p.name.proto == Proto::Udp) {
        let now: BTreeSet<(Ipv4Addr, u16)> = new
            .iter()
            .find(|n| n.name == o.name)
            .map(|n| {
                n.cluster_endpoints()
                    .iter()
                    .map(|e| (e.ip, e.port))
                    .collect()
            })
            .unwrap_or_default();
        for e in o.cluster_endpoints() {
            if !now.contains(&(e.ip, e.port)) {
                for ip in &o.cluster_ips {
                    kernel::forget_udp(*ip, o.port, e.ip).await;
                }
            }
        }
    }
}
