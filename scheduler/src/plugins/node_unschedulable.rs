//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`) take only pods that tolerate
//! the node.kubernetes.io/unschedulable:NoSchedule taint.

use k8s_openapi::api::core::v1::Taint;

use super::taint_toleration::tolerated;
use crate::framework::{CycleState, Failure, Filter};
use crate::nodeinfo::{NodeInfo, PodInfo};

pub struct NodeUnschedulable;

impl Filter for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Failure> {
        if !node.unschedulable {
            return Ok(());
        }
        let taint = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if tolerated(pod.spec().tolerations.as_deref().unwrap_or(&[]), &taint) {
            Ok(())
        } else {
            Err(Failure::unresolvable("node(s) were unschedulable"))
        }
    }
}
