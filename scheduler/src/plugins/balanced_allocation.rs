//! NodeResourcesBalancedAllocation: prefer nodes where cpu and memory would be used in
//! equal proportion after placing the pod.

use crate::framework::{CycleState, Score, MAX_SCORE};
use crate::nodeinfo::{NodeInfo, PodInfo};

pub struct BalancedAllocation;

impl Score for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let frac = |req: i64, alloc: i64| {
            if alloc <= 0 {
                1.0
            } else {
                (req as f64 / alloc as f64).min(1.0)
            }
        };
        let cpu = frac(
            node.requested
                .milli_cpu
                .saturating_add(pod.requests.milli_cpu),
            node.allocatable.milli_cpu,
        );
        let mem = frac(
            node.requested.memory.saturating_add(pod.requests.memory),
            node.allocatable.memory,
        );
        // The standard deviation of two fractions is half their difference.
        let std = (cpu - mem).abs() / 2.0;
        ((1.0 - std) * MAX_SCORE as f64) as i64
    }
}
