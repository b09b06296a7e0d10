//! NodeResourcesFit's LeastAllocated score: prefer nodes with more cpu and memory left,
//! counting containers without requests at Kubernetes' defaults.

use crate::framework::{CycleState, Score, MAX_SCORE};
use crate::nodeinfo::{NodeInfo, PodInfo};

pub struct LeastAllocated;

fn free_fraction(requested: i64, allocatable: i64) -> i64 {
    if allocatable <= 0 || requested > allocatable {
        return 0;
    }
    // In i128: allocatable may be near i64::MAX (and requested negative), and the product
    // with MAX_SCORE would not fit an i64.
    let free = (i128::from(allocatable) - i128::from(requested)) * i128::from(MAX_SCORE)
        / i128::from(allocatable);
    i64::try_from(free).unwrap_or(MAX_SCORE)
}

impl Score for LeastAllocated {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let cpu = free_fraction(
            node.non_zero_requested
                .milli_cpu
                .saturating_add(pod.non_zero.milli_cpu),
            node.allocatable.milli_cpu,
        );
        let mem = free_fraction(
            node.non_zero_requested
                .memory
                .saturating_add(pod.non_zero.memory),
            node.allocatable.memory,
        );
        (cpu + mem) / 2
    }
}
