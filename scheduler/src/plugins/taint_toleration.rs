//! TaintToleration: a node's NoSchedule and NoExecute taints keep off pods that do not
//! tolerate them; PreferNoSchedule taints lower the node's score.

use k8s_openapi::api::core::v1::Toleration;

use crate::framework::{normalize, CycleState, Failure, Filter, Score};
use crate::nodeinfo::{NodeInfo, PodInfo};

pub struct TaintToleration;

pub use flotilla_core::taints::{tolerated, tolerates};

impl Filter for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Failure> {
        let tols = pod.spec().tolerations.as_deref().unwrap_or(&[]);
        for taint in &node.taints {
            if (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
                && !tolerated(tols, taint)
            {
                return Err(Failure::unresolvable(format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    taint.key,
                    taint.value.as_deref().unwrap_or("")
                )));
            }
        }
        Ok(())
    }
}

impl Score for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }
    /// The number of PreferNoSchedule taints the pod does not tolerate (fewer is better).
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let tols: Vec<&Toleration> = pod
            .spec()
            .tolerations
            .iter()
            .flatten()
            .filter(|t| {
                t.effect
                    .as_deref()
                    .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
            })
            .collect();
        node.taints
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule" && !tols.iter().any(|x| tolerates(x, t)))
            .count() as i64
    }
    fn normalize(&self, scores: &mut [i64]) {
        normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Taint;

    fn taint(k: &str, v: &str, e: &str) -> Taint {
        Taint {
            key: k.into(),
            value: Some(v.into()),
            effect: e.into(),
            time_added: None,
        }
    }

    #[test]
    fn filter_names_the_first_untolerated_taint() {
        let mut n = NodeInfo::new(std::sync::Arc::new(crate::testutil::node("n", "1", "1Gi")));
        n.taints = vec![
            taint("soft", "x", "PreferNoSchedule"),
            taint("dedicated", "gpu", "NoSchedule"),
        ];
        let p = PodInfo::new(std::sync::Arc::new(crate::testutil::pod("p", "", "")));
        let err = TaintToleration
            .filter(&CycleState::default(), &p, &n)
            .unwrap_err();
        assert_eq!(
            err.reasons,
            vec!["node(s) had untolerated taint {dedicated: gpu}"]
        );
        assert!(!err.resolvable);
        assert_eq!(
            Score::score(&TaintToleration, &CycleState::default(), &p, &n),
            1
        );
    }
}
