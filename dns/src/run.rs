//! `flotilla dns`: binds the UDP sockets (one per core) and the TCP socket, starts the zone source, the forwarder,
//! hickory-server with this crate's handler, the secure port and the registration, and
//! stops them in order on shutdown.
//!
//! Contract: the sockets are bound before anything is published, so the port in the
//! EndpointSlice is the one actually served (with `--listen :0`, the UDP socket's port,
//! which the TCP listener then also binds). On shutdown the registration deletes this
//! instance's slice before the sockets close, so clients stop being sent here first.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

use crate::config::{default_route_address, DnsConfig};
use crate::forward::Forwarder;
use crate::handler::Handler;
use crate::metrics::Metrics;
use crate::records;
use crate::register::{Registrar, Registration};
use crate::source;
use crate::udp;
use crate::zone::Params;

/// How long an idle TCP client connection is kept.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// How long shutdown waits for the registration to delete its slice.
const UNREGISTER_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("binding {proto} {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

pub async fn run(cfg: DnsConfig, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let client = component_base::client::from_kubeconfig(&cfg.kubeconfig).await?;
    let bind_err = |proto: &'static str, addr: SocketAddr| {
        move |source: std::io::Error| RunError::Bind {
            proto,
            addr,
            source,
        }
    };
    // One UDP socket per core on the same port (see udp.rs).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let udp_sockets = udp::bind(cfg.listen, cores).map_err(bind_err("udp", cfg.listen))?;
    let udp_addr = match udp_sockets.first() {
        Some(s) => s.local_addr()?,
        None => anyhow::bail!("no UDP socket bound"),
    };
    let tcp_addr = SocketAddr::new(cfg.listen.ip(), udp_addr.port());
    let tcp = TcpListener::bind(tcp_addr)
        .await
        .map_err(bind_err("tcp", tcp_addr))?;

    let metrics = Arc::new(Metrics::new(
        format!("dns://:{}", udp_addr.port()),
        cfg.zone.to_ascii(),
    ));
    let forwarder = Arc::new(Forwarder::new(
        &cfg.upstreams,
        cfg.cache_size,
        cfg.cache_max_ttl,
        metrics.clone(),
    )?);
    let (zone_tx, zone_rx) = watch::channel(None);
    let params = Params {
        apex: cfg.zone.clone(),
        ttl: cfg.ttl,
        pods: cfg.pods,
        serial: 0,
        dns_ip: Some(cfg.cluster_dns_ip),
    };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(
        source::run(client.clone(), params, zone_tx).instrument(tracing::info_span!("zone")),
    );

    let handler = Handler::new(
        cfg.zone.clone(),
        zone_rx.clone(),
        forwarder,
        metrics.clone(),
    );
    let mut server = hickory_server::Server::new(handler.clone());
    server.register_listener(tcp, TCP_IDLE, 32);
    let mut udp_tasks = tokio::task::JoinSet::new();
    let handler = Arc::new(handler);
    for socket in udp_sockets {
        udp_tasks.spawn(udp::serve(socket, handler.clone()));
    }
    tracing::info!(
        listen = %udp_addr,
        udp_sockets = cores,
        zone = %cfg.zone,
        upstreams = ?cfg.upstreams,
        "serving DNS over UDP and TCP"
    );

    let mut metrics_port = None;
    if let Some(serving) = &cfg.secure {
        let mut registry = component_base::metrics::Registry::default();
        registry.register(metrics.clone());
        // Ready once the zone has been built from the watches (CoreDNS's /ready).
        let zone = zone_rx.clone();
        registry.set_health(std::sync::Arc::new(move || match zone.borrow().is_some() {
            true => Ok(()),
            false => Err("the cluster zone has not been loaded yet".into()),
        }));
        let bound = component_base::metrics::serve(serving, registry, client.clone()).await?;
        metrics_port = Some(bound.port());
    }

    let mut registration = None;
    if cfg.register {
        let address = match cfg.advertise_address {
            Some(a) => a,
            None => default_route_address().unwrap_or_else(|e| {
                let fallback = if udp_addr.ip().is_unspecified() {
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                } else {
                    udp_addr.ip()
                };
                tracing::warn!(error = %e, %fallback, "no default route; advertising the fallback");
                fallback
            }),
        };
        let identity = cfg.identity.clone().unwrap_or_else(|| {
            records::sanitize_label(&format!("{}-{}", hostname(), udp_addr.port()))
        });
        let reg = Registration {
            identity: identity.clone(),
            address,
            port: udp_addr.port(),
            metrics_port,
            cluster_dns_ip: cfg.cluster_dns_ip,
        };
        let span = tracing::info_span!("register", %identity, %address, port = udp_addr.port());
        let task = Registrar::new(client.clone(), reg).run(zone_rx.clone(), shutdown.clone());
        registration = Some(tokio::spawn(task.instrument(span)));
    }

    tokio::select! {
        r = server.block_until_done() => {
            tasks.abort_all();
            r?;
            anyhow::bail!("the DNS server stopped");
        }
        Some(r) = udp_tasks.join_next() => {
            tasks.abort_all();
            match r {
                Ok(Err(e)) => anyhow::bail!("serving UDP on {udp_addr}: {e}"),
                _ => anyhow::bail!("a UDP server task on {udp_addr} stopped"),
            }
        }
        _ = shutdown.wait_for(|s| *s) => {}
    }
    tracing::info!("shutting down");
    if let Some(r) = registration {
        if tokio::time::timeout(UNREGISTER_WAIT, r).await.is_err() {
            tracing::warn!("unregistering did not finish in time");
        }
    }
    udp_tasks.abort_all();
    let _ = tokio::time::timeout(Duration::from_secs(2), server.shutdown_gracefully()).await;
    tasks.abort_all();
    Ok(())
}
