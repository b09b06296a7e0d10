//! The horizontal-pod-autoscaler controller (kube's `pkg/controller/podautoscaler`):
//! `controller.rs` reads each HPA's target scale and the resource metrics API and writes
//! scale and status; the decisions are pure: `compute.rs` a proposal per metric and their
//! combination, `replicas.rs` kube's replica calculator for Resource and ContainerResource
//! metrics, `behavior.rs` the stabilization windows and scaling policies, `metrics.rs`
//! usage per pod from PodMetrics, `status.rs` the conditions.

pub mod behavior;
pub mod compute;
pub mod controller;
pub mod metrics;
pub mod replicas;
pub mod status;

pub use controller::{new, Config};
