//! NodePorts: a host port can be used by one pod per node (per protocol and IP).

use crate::framework::{CycleState, Failure, Filter};
use crate::nodeinfo::{NodeInfo, PodInfo};

pub struct NodePorts;

impl Filter for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Failure> {
        let clash = pod
            .host_ports
            .iter()
            .any(|want| node.used_ports.iter().any(|used| want.conflicts(used)));
        if clash {
            Err(Failure::resolvable(vec![
                "node(s) didn't have free ports for the requested pod ports".into(),
            ]))
        } else {
            Ok(())
        }
    }
}
