//! NodeName: a pod that names its node fits only there.

use crate::framework::{CycleState, Failure, Filter};
use crate::nodeinfo::{NodeInfo, PodInfo};

pub struct NodeName;

impl Filter for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Failure> {
        match pod.spec().node_name.as_deref() {
            Some(n) if !n.is_empty() && n != node.name => Err(Failure::unresolvable(
                "node(s) didn't match the requested node name",
            )),
            _ => Ok(()),
        }
    }
}
