//! The HorizontalPodAutoscaler's decisions (kube's `pkg/controller/podautoscaler`), pure:
//! `replicas.rs` is the replica calculator for Resource and ContainerResource metrics,
//! `behavior.rs` the stabilization windows and scaling policies.
//! The controller that reads the metrics API and writes `scale` comes next (issue 20).

pub mod behavior;
pub mod replicas;
