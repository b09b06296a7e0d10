//! The plugins, one per file. To add one: implement `Filter` and/or `Score`
//! (framework.rs) in a new file and add one line below.

use std::collections::HashMap;

use crate::framework::{Filter, Framework, Score};

/// The default plugins, with `weights` overriding their score weights by name.
pub fn default_framework(weights: &HashMap<String, i64>) -> Framework {
    Framework::new(filters(), scores(), weights)
}

pub mod balanced_allocation;
pub mod inter_pod_affinity;
pub mod least_allocated;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;
pub mod volume_binding;

/// Filters in the order Kubernetes runs them (cheap and decisive first).
pub fn filters() -> Vec<Box<dyn Filter>> {
    vec![
        Box::new(node_unschedulable::NodeUnschedulable),
        Box::new(node_name::NodeName),
        Box::new(taint_toleration::TaintToleration),
        Box::new(node_affinity::NodeAffinity),
        Box::new(volume_binding::VolumeBinding),
        Box::new(node_ports::NodePorts),
        Box::new(node_resources_fit::NodeResourcesFit),
        Box::new(pod_topology_spread::PodTopologySpread),
        Box::new(inter_pod_affinity::InterPodAffinity),
    ]
}

/// Score plugins with Kubernetes' default weights.
pub fn scores() -> Vec<(Box<dyn Score>, i64)> {
    vec![
        (Box::new(taint_toleration::TaintToleration), 3),
        (Box::new(node_affinity::NodeAffinity), 2),
        (Box::new(pod_topology_spread::PodTopologySpread), 2),
        (Box::new(inter_pod_affinity::InterPodAffinity), 2),
        (Box::new(least_allocated::LeastAllocated), 1),
        (Box::new(balanced_allocation::BalancedAllocation), 1),
    ]
}
