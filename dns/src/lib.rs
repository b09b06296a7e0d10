//! `flotilla dns`: the cluster DNS server (the Kubernetes DNS specification as CoreDNS's
//! `kubernetes` plugin serves it), on hickory-dns.
//!
//! Layout:
//! - `config.rs`: flags, validated once into a typed [`DnsConfig`].
//! - `records.rs`: names (reverse, dashed IPs) and record constructors, pure.
//! - `zone/`: the cluster zone as an immutable index built from Services and
//!   EndpointSlices (`build.rs`) and its lookup (NXDOMAIN vs NODATA, pods, CNAMEs), pure.
//! - `source.rs`: kube-rs reflectors feeding zone rebuilds.
//! - `handler.rs`: hickory-server's `RequestHandler`: the zone or the forwarder.
//! - `udp.rs`: UDP sockets per core (`SO_REUSEPORT`) answered in place; TCP is
//!   hickory-server's.
//! - `forward.rs` and `cache.rs`: upstream resolution and its bounded cache.
//! - `register.rs` and `peers.rs`: the kube-dns Service, this instance's EndpointSlice and
//!   Lease, and the collection of expired instances' slices.
//! - `metrics.rs`: CoreDNS's metric names.
//! - `run.rs`: wiring and shutdown.

mod cache;
mod config;
mod forward;
mod handler;
mod metrics;
mod peers;
mod records;
mod register;
mod run;
mod source;
mod udp;
mod zone;

pub use config::{ConfigError, DnsConfig, DnsFlags, PodMode};
pub use run::run;

/// Pieces the end-to-end and fuzz tests drive directly.
#[doc(hidden)]
pub mod testing {
    pub use crate::cache::Upstream;
    pub use crate::forward::Forwarder;
    pub use crate::handler::{Handler, ZoneRx};
    pub use crate::metrics::Metrics;
    pub use crate::udp::{bind as bind_udp, serve as serve_udp};
    pub use crate::zone::{Lookup, Params, Zone};
}
