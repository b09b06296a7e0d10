//! PodTopologySpread: keep matching pods spread over topology domains (zones, nodes) within
//! `maxSkew`. DoNotSchedule constraints filter; ScheduleAnyway constraints score.

use std::collections::HashMap;

use flotilla_core::labels;
use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::node_affinity::required_match;
use super::taint_toleration::tolerated;
use crate::cache::Cache;
use crate::framework::{share, CycleState, Failure, Filter, Score, MAX_SCORE};
use crate::nodeinfo::{NodeInfo, PodInfo};

pub struct PodTopologySpread;

const HARD: &str = "PodTopologySpread/hard";
const SOFT: &str = "PodTopologySpread/soft";

/// One constraint with its pods counted per domain.
struct Counted {
    key: String,
    max_skew: i64,
    self_match: i64,
    counts: HashMap<String, i64>,
    min: i64,
}

/// The constraint's selector with `matchLabelKeys` turned into requirements on the pod's own
/// values, as the apiserver-side feature does.
fn selector_of(c: &TopologySpreadConstraint, pod: &PodInfo) -> LabelSelector {
    let mut sel = c.label_selector.clone().unwrap_or_default();
    for k in c.match_label_keys.iter().flatten() {
        if let Some(v) = pod.labels.get(k) {
            sel.match_expressions
                .get_or_insert_with(Vec::new)
                .push(LabelSelectorRequirement {
                    key: k.clone(),
                    operator: "In".into(),
                    values: Some(vec![v.clone()]),
                });
        }
    }
    sel
}

/// Whether a node's domain counts for `c` (node affinity and taint policies).
fn eligible(c: &TopologySpreadConstraint, pod: &PodInfo, node: &NodeInfo) -> bool {
    if !node.labels.contains_key(&c.topology_key) {
        return false;
    }
    if c.node_affinity_policy.as_deref().unwrap_or("Honor") == "Honor" && !required_match(pod, node)
    {
        return false;
    }
    if c.node_taints_policy.as_deref() == Some("Honor") {
        let tols = pod.spec().tolerations.as_deref().unwrap_or(&[]);
        if node
            .taints
            .iter()
            .any(|t| (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated(tols, t))
        {
            return false;
        }
    }
    true
}

fn count(pod: &PodInfo, cluster: &Cache, which: &str) -> Vec<Counted> {
    let mut out = Vec::new();
    for c in pod.spec().topology_spread_constraints.iter().flatten() {
        if c.when_unsatisfiable != which {
            continue;
        }
        let selector = selector_of(c, pod);
        let mut counts: HashMap<String, i64> = HashMap::new();
        for node in cluster.nodes() {
            if !eligible(c, pod, node) {
                continue;
            }
            let n = node
                .pods
                .values()
                .filter(|p| {
                    p.namespace == pod.namespace
                        && p.pod.metadata.deletion_timestamp.is_none()
                        && labels::matches(&selector, &p.labels)
                })
                .count() as i64;
            let e = counts
                .entry(node.labels[&c.topology_key].clone())
                .or_insert(0);
            *e = e.saturating_add(n);
        }
        let mut min = counts.values().copied().min().unwrap_or(0);
        if c.min_domains
            .is_some_and(|m| (counts.len() as i64) < i64::from(m))
        {
            min = 0;
        }
        out.push(Counted {
            key: c.topology_key.clone(),
            max_skew: i64::from(c.max_skew),
            self_match: i64::from(labels::matches(&selector, &pod.labels)),
            counts,
            min,
        });
    }
    out
}

impl Filter for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }
    fn pre_filter(&self, pod: &PodInfo, cluster: &Cache, st: &mut CycleState) {
        if pod
            .spec()
            .topology_spread_constraints
            .as_ref()
            .is_some_and(|c| !c.is_empty())
        {
            st.put(HARD, count(pod, cluster, "DoNotSchedule"));
        }
    }
    fn filter(&self, st: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<(), Failure> {
        for c in st.get::<Vec<Counted>>(HARD).into_iter().flatten() {
            let Some(v) = node.labels.get(&c.key) else {
                return Err(Failure::unresolvable(
                    "node(s) didn't match pod topology spread constraints (missing required label)",
                ));
            };
            let here = c.counts.get(v).copied().unwrap_or(0);
            if here.saturating_add(c.self_match).saturating_sub(c.min) > c.max_skew {
                return Err(Failure::resolvable(vec![
                    "node(s) didn't match pod topology spread constraints".into(),
                ]));
            }
        }
        Ok(())
    }
}

impl Score for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }
    fn pre_score(&self, pod: &PodInfo, cluster: &Cache, _: &[&NodeInfo], st: &mut CycleState) {
        if pod
            .spec()
            .topology_spread_constraints
            .as_ref()
            .is_some_and(|c| !c.is_empty())
        {
            st.put(SOFT, count(pod, cluster, "ScheduleAnyway"));
        }
    }
    /// Matching pods in the node's domains, each constraint weighted by how many domains it
    /// has (fewer is better); nodes missing a key get the worst score.
    fn score(&self, st: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let mut total = 0.0;
        for c in st.get::<Vec<Counted>>(SOFT).into_iter().flatten() {
            let Some(v) = node.labels.get(&c.key) else {
                return -1;
            };
            let weight = ((c.counts.len() + 2) as f64).ln();
            let here = c.counts.get(v).copied().unwrap_or(0) as f64;
            total += (here + c.max_skew as f64 - 1.0) * weight;
        }
        total.round() as i64
    }
    fn normalize(&self, scores: &mut [i64]) {
        let valid = scores.iter().copied().filter(|s| *s >= 0);
        let (min, max) = valid.fold((i64::MAX, i64::MIN), |(a, b), s| (a.min(s), b.max(s)));
        for s in scores.iter_mut() {
            *s = if *s < 0 {
                0
            } else if max == min {
                MAX_SCORE
            } else {
                share(
                    i128::from(max) - i128::from(*s),
                    i128::from(max) - i128::from(min),
                )
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{labeled, node, pod};
    use std::sync::Arc;

    #[test]
    fn max_skew_is_kept_across_zones() {
        let mut cache = Cache::default();
        for (n, z) in [("a1", "a"), ("a2", "a"), ("b1", "b")] {
            cache.upsert_node(Arc::new(labeled(node(n, "4", "4Gi"), &[("zone", z)])));
        }
        // Two web pods in zone a, none in b.
        for (i, n) in ["a1", "a2"].iter().enumerate() {
            let p = labeled(pod(&format!("w{i}"), "", ""), &[("app", "web")]);
            cache.add_bound(PodInfo::new(Arc::new(p)), n);
        }
        let mut p = labeled(pod("new", "", ""), &[("app", "web")]);
        p.spec.as_mut().unwrap().topology_spread_constraints =
            Some(vec![TopologySpreadConstraint {
                max_skew: 1,
                topology_key: "zone".into(),
                when_unsatisfiable: "DoNotSchedule".into(),
                label_selector: Some(LabelSelector {
                    match_labels: Some([("app".to_string(), "web".to_string())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }]);
        let p = PodInfo::new(Arc::new(p));
        let st = {
            let mut st = CycleState::default();
            PodTopologySpread.pre_filter(&p, &cache, &mut st);
            st
        };
        let f = |n: &str| PodTopologySpread.filter(&st, &p, cache.node(n).unwrap());
        assert!(f("a1").is_err(), "zone a would have 3 against 0");
        assert!(f("b1").is_ok());
        let bare = NodeInfo::new(Arc::new(node("x", "1", "1Gi")));
        let err = PodTopologySpread.filter(&st, &p, &bare).unwrap_err();
        assert!(!err.resolvable && err.reasons[0].contains("missing required label"));
    }
}
