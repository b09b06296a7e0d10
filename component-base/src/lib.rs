//! What every client component of the apiserver shares (the scheduler, the
//! controller-manager, later the agent), in the spirit of Kubernetes' component-base.
//!
//! Layout:
//! - `flags.rs`: `--kubeconfig`, the `--leader-elect*` flags with kube's defaults, the
//!   metrics address; validated once into typed config.
//! - `client.rs`: a kube-rs client from a kubeconfig file.
//! - `leaderelection.rs`: Lease-based leader election. The decision is a pure function
//!   ([`leaderelection::decide`]); the loop around it does the I/O and runs the leader's
//!   work only while the lease is held.
//! - `events.rs`: a core/v1 Event recorder (what `kubectl describe` shows).
//! - `backoff.rs`: per-key exponential backoff for retries.
//! - `metrics.rs`: counters and gauges in Prometheus' text format, served with `/healthz`.
//! - `labels.rs`, `quantity.rs`, `taints.rs`: label selectors, resource quantities and
//!   toleration matching, pure.

pub mod backoff;
pub mod client;
pub mod events;
pub mod flags;
pub mod labels;
pub mod leaderelection;
pub mod metrics;
pub mod quantity;
pub mod taints;

pub use flags::{CommonConfig, CommonFlags};
