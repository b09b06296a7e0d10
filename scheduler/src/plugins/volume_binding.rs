//! VolumeBinding: a pod's claims must be usable on the node (`volumes.rs`): bound
//! volumes' node affinity, delayed claims already promised to another node, and no
//! unbound claim the volume binder must bind first.

use crate::cache::Cache;
use crate::framework::{CycleState, Failure, Filter};
use crate::nodeinfo::{NodeInfo, PodInfo};
use crate::volumes::{fits, pod_volumes, PodVolumes};

pub struct VolumeBinding;

const KEY: &str = "VolumeBinding";

impl Filter for VolumeBinding {
    fn name(&self) -> &'static str {
        KEY
    }
    fn pre_filter(&self, pod: &PodInfo, cluster: &Cache, state: &mut CycleState) {
        state.put(KEY, pod_volumes(&pod.pod, &cluster.storage));
    }
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<(), Failure> {
        match state.get::<Result<PodVolumes, String>>(KEY) {
            None => Ok(()),
            Some(Err(why)) => Err(Failure::unresolvable(why.clone())),
            Some(Ok(v)) => fits(v, &node.name, &node.labels).map_err(Failure::unresolvable),
        }
    }
}
