//! NodeAffinity: `nodeSelector` and required node affinity must hold; preferred terms add
//! their weights to the score.

use flotilla_core::labels;

use crate::framework::{normalize, CycleState, Failure, Filter, Score};
use crate::nodeinfo::{NodeInfo, PodInfo};

pub struct NodeAffinity;

/// Whether the pod's nodeSelector and required node affinity admit `node`.
pub fn required_match(pod: &PodInfo, node: &NodeInfo) -> bool {
    let spec = pod.spec();
    for (k, v) in spec.node_selector.iter().flatten() {
        if node.labels.get(k) != Some(v) {
            return false;
        }
    }
    let req = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match req {
        None => true,
        Some(sel) => sel
            .node_selector_terms
            .iter()
            .any(|t| labels::node_term(t, &node.name, &node.labels)),
    }
}

impl Filter for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Failure> {
        if required_match(pod, node) {
            Ok(())
        } else {
            Err(Failure::unresolvable(
                "node(s) didn't match Pod's node affinity/selector",
            ))
        }
    }
}

impl Score for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        pod.spec()
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .filter(|p| p.weight != 0 && labels::node_term(&p.preference, &node.name, &node.labels))
            .fold(0i64, |a, p| a.saturating_add(i64::from(p.weight)))
    }
    fn normalize(&self, scores: &mut [i64]) {
        normalize(scores, false);
    }
}
