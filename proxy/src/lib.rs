//! `flotilla proxy`: the node's service proxy (kube-proxy's job, on its nftables design).
//! It watches Services and EndpointSlices and keeps one nftables table of its own equal to
//! what they say: cluster IPs, NodePorts, external and load-balancer IPs DNATed to ready
//! endpoints.
//!
//! Files: `config.rs` (flags), `model.rs` (Services and slices → Service ports with their
//! endpoints, pure), `ruleset.rs` (Service ports → chains, maps and sets, pure),
//! `transaction.rs` (a ruleset and what the kernel holds → one nft transaction, full or
//! incremental, pure), `kernel.rs` (the `nft` and `conntrack` commands), `run.rs` (watches
//! and the sync loop), `metrics.rs` (kube-proxy's metric names).

mod config;
pub mod kernel;
mod metrics;
pub mod model;
pub mod ruleset;
mod run;
pub mod transaction;

pub use config::{ProxyConfig, ProxyFlags};
pub use run::run;
