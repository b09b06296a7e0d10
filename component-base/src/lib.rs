//! What every client component of the apiserver shares (the scheduler, the
//! controller-manager, later the agent), in the spirit of Kubernetes' component-base.
//!
//! Layout:
//! - `flags.rs`: `--kubeconfig`, the `--leader-elect*` flags with kube's defaults, the
//!   secure port's flags; validated once into typed config.
//! - `client.rs`: a kube-rs client from a kubeconfig file.
//! - `leaderelection.rs`: Lease-based leader election. The decision is a pure function
//!   ([`leaderelection::decide`]); the loop around it does the I/O and runs the leader's
//!   work only while the lease is held.
//! - `events.rs`: a core/v1 Event recorder (what `kubectl describe` shows).
//! - `metrics.rs`: the metrics registry and a shareable histogram, served in Prometheus'
//!   text format with `/healthz` on the component's secure port.
//! - `secure/`: TLS serving with authentication and authorization delegated to the
//!   apiserver (TokenReview, SubjectAccessReview), shared by the agent's port and the
//!   secure ports of the scheduler and the controller-manager.
//! - `supervise.rs`: panics in long-lived loops caught, logged and survived.
//! - `backoff.rs`, `labels.rs`, `quantity.rs`, `taints.rs`: re-exports of `flotilla_core`'s
//!   modules of those names, kept so existing `component_base::...` paths still work; new
//!   code uses `flotilla_core` directly.

pub mod backoff;
pub mod client;
pub mod command;
pub mod events;
pub mod flags;
pub mod labels;
pub mod leaderelection;
pub mod metrics;
pub mod quantity;
pub mod secure;
pub mod supervise;
pub mod taints;

pub use flags::{CommonConfig, CommonFlags};
