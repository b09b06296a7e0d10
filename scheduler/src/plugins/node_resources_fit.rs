//! NodeResourcesFit: the pod's requests fit in the node's allocatable minus what the pods
//! already there (bound or assumed) request.

use crate::framework::{CycleState, Failure, Filter};
use crate::nodeinfo::{NodeInfo, PodInfo};

pub struct NodeResourcesFit;

/// Every resource the pod does not fit in, in Kubernetes' words.
pub fn insufficient(pod: &PodInfo, node: &NodeInfo) -> Vec<String> {
    let (a, u, r) = (&node.allocatable, &node.requested, &pod.requests);
    let mut out = Vec::new();
    if a.pods < u.pods.saturating_add(1) {
        out.push("Too many pods".to_string());
    }
    if r.milli_cpu > 0 && a.milli_cpu < u.milli_cpu.saturating_add(r.milli_cpu) {
        out.push("Insufficient cpu".into());
    }
    if r.memory > 0 && a.memory < u.memory.saturating_add(r.memory) {
        out.push("Insufficient memory".into());
    }
    if r.ephemeral_storage > 0
        && a.ephemeral_storage < u.ephemeral_storage.saturating_add(r.ephemeral_storage)
    {
        out.push("Insufficient ephemeral-storage".into());
    }
    out
}

impl Filter for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Failure> {
        let why = insufficient(pod, node);
        if why.is_empty() {
            Ok(())
        } else {
            Err(Failure::resolvable(why))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{node, pod};
    use std::sync::Arc;

    #[test]
    fn counts_what_is_already_there() {
        let mut n = NodeInfo::new(Arc::new(node("n", "1", "1Gi")));
        let a = PodInfo::new(Arc::new(pod("a", "600m", "100Mi")));
        let b = PodInfo::new(Arc::new(pod("b", "600m", "2Gi")));
        let st = CycleState::default();
        assert!(NodeResourcesFit.filter(&st, &a, &n).is_ok());
        n.add_pod(a.clone());
        let err = NodeResourcesFit.filter(&st, &b, &n).unwrap_err();
        assert_eq!(err.reasons, vec!["Insufficient cpu", "Insufficient memory"]);
        assert!(err.resolvable);
        n.remove_pod(&a.uid);
        assert_eq!(insufficient(&b, &n), vec!["Insufficient memory"]);
        // A pod that requests nothing still needs a pod slot.
        n.allocatable.pods = 0;
        let z = PodInfo::new(Arc::new(pod("z", "", "")));
        assert_eq!(insufficient(&z, &n), vec!["Too many pods"]);
    }

    #[test]
    fn init_containers_and_limits_count() {
        let mut p = pod("p", "100m", "");
        let spec = p.spec.as_mut().unwrap();
        let mut init = spec.containers[0].clone();
        init.name = "init".into();
        init.resources.as_mut().unwrap().requests = Some(
            [(
                "cpu".to_string(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("2".into()),
            )]
            .into(),
        );
        spec.init_containers = Some(vec![init]);
        let info = PodInfo::new(Arc::new(p));
        assert_eq!(
            info.requests.milli_cpu, 2000,
            "the largest init container wins"
        );
    }

    #[test]
    fn huge_requests_saturate_instead_of_panicking() {
        // Two containers each requesting `memory: 5E` sum past i64::MAX.
        let mut p = pod("p", "", "5E");
        let spec = p.spec.as_mut().unwrap();
        let mut second = spec.containers[0].clone();
        second.name = "second".into();
        spec.containers.push(second);
        let info = PodInfo::new(Arc::new(p));
        assert_eq!(info.requests.memory, i64::MAX);
        let mut n = NodeInfo::new(Arc::new(node("n", "1", "8E")));
        assert_eq!(insufficient(&info, &n), vec!["Insufficient memory"]);
        n.add_pod(info.clone());
        n.add_pod(PodInfo::new(Arc::new(pod("q", "", "5E"))));
        assert_eq!(n.requested.memory, i64::MAX);
        let st = CycleState::default();
        for s in [
            &crate::plugins::least_allocated::LeastAllocated as &dyn crate::framework::Score,
            &crate::plugins::balanced_allocation::BalancedAllocation,
        ] {
            s.score(&st, &info, &n);
        }
        n.remove_pod(&info.uid);
    }
}
