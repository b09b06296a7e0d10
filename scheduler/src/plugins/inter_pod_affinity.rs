//! InterPodAffinity: required pod affinity and anti-affinity (of the incoming pod, and the
//! anti-affinity of pods already placed) filter; preferred terms score.

use std::collections::{HashMap, HashSet};

use flotilla_core::labels;
use k8s_openapi::api::core::v1::{PodAffinityTerm, WeightedPodAffinityTerm};

use crate::cache::Cache;
use crate::framework::{scale, CycleState, Failure, Filter, Score};
use crate::nodeinfo::{NodeInfo, PodInfo};

pub struct InterPodAffinity;

const KEY: &str = "InterPodAffinity/filter";
const SCORE: &str = "InterPodAffinity/score";

/// Whether `candidate` is selected by `term`, written in a pod of namespace `owner_ns`.
pub fn term_matches(
    term: &PodAffinityTerm,
    owner_ns: &str,
    candidate: &PodInfo,
    cluster: &Cache,
) -> bool {
    let listed = term.namespaces.as_deref().unwrap_or(&[]);
    let ns_ok = if listed.is_empty() && term.namespace_selector.is_none() {
        candidate.namespace == owner_ns
    } else {
        listed.iter().any(|n| *n == candidate.namespace)
            || term.namespace_selector.as_ref().is_some_and(|sel| {
                labels::is_empty(sel)
                    || cluster
                        .namespace_labels(&candidate.namespace)
                        .is_some_and(|l| labels::matches(sel, l))
            })
    };
    ns_ok
        && term
            .label_selector
            .as_ref()
            .is_some_and(|sel| labels::matches(sel, &candidate.labels))
}

fn required(pod: &PodInfo) -> (&[PodAffinityTerm], &[PodAffinityTerm]) {
    let a = pod.spec().affinity.as_ref();
    let aff = a
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|p| {
            p.required_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or(&[]);
    let anti = a
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|p| {
            p.required_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or(&[]);
    (aff, anti)
}

fn preferred(pod: &PodInfo) -> (&[WeightedPodAffinityTerm], &[WeightedPodAffinityTerm]) {
    let a = pod.spec().affinity.as_ref();
    let aff = a
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|p| {
            p.preferred_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or(&[]);
    let anti = a
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|p| {
            p.preferred_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or(&[]);
    (aff, anti)
}

/// Topology domains (key, value) computed once per cycle.
#[derive(Default)]
struct Domains {
    /// Domains where a placed pod's required anti-affinity excludes the incoming pod.
    excluded_by_existing: HashSet<(String, String)>,
    /// Per required affinity term: domains holding a matching pod.
    affinity: Vec<HashSet<(String, String)>>,
    /// Whether any pod anywhere matches any required affinity term.
    any_affinity_match: bool,
    /// Per required anti-affinity term: domains holding a matching pod.
    anti: Vec<HashSet<(String, String)>>,
}

fn domain(node: &NodeInfo, key: &str) -> Option<(String, String)> {
    node.labels.get(key).map(|v| (key.to_string(), v.clone()))
}

impl Filter for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }
    fn pre_filter(&self, pod: &PodInfo, cluster: &Cache, st: &mut CycleState) {
        let mut d = Domains::default();
        for (ep, en) in cluster.anti_affinity_pods() {
            if ep.uid == pod.uid {
                continue;
            }
            for t in required(ep).1 {
                if term_matches(t, &ep.namespace, pod, cluster) {
                    if let Some(dom) = domain(en, &t.topology_key) {
                        d.excluded_by_existing.insert(dom);
                    }
                }
            }
        }
        let (aff, anti) = required(pod);
        if !aff.is_empty() || !anti.is_empty() {
            d.affinity = vec![HashSet::new(); aff.len()];
            d.anti = vec![HashSet::new(); anti.len()];
            for node in cluster.nodes() {
                for p in node.pods.values().filter(|p| p.uid != pod.uid) {
                    for (i, t) in aff.iter().enumerate() {
                        if term_matches(t, &pod.namespace, p, cluster) {
                            d.any_affinity_match = true;
                            if let Some(dom) = domain(node, &t.topology_key) {
                                d.affinity[i].insert(dom);
                            }
                        }
                    }
                    for (i, t) in anti.iter().enumerate() {
                        if term_matches(t, &pod.namespace, p, cluster) {
                            if let Some(dom) = domain(node, &t.topology_key) {
                                d.anti[i].insert(dom);
                            }
                        }
                    }
                }
            }
        }
        st.put(KEY, d);
    }

    fn filter(&self, st: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Failure> {
        let Some(d) = st.get::<Domains>(KEY) else {
            return Ok(());
        };
        if d.excluded_by_existing
            .iter()
            .any(|(k, v)| node.labels.get(k) == Some(v))
        {
            return Err(Failure::resolvable(vec![
                "node(s) didn't satisfy existing pods anti-affinity rules".into(),
            ]));
        }
        let (aff, anti) = required(pod);
        for (i, t) in aff.iter().enumerate() {
            let ok = match domain(node, &t.topology_key) {
                None => false,
                Some(dom) => {
                    d.affinity[i].contains(&dom)
                        // The first pod of a group that selects itself may go anywhere.
                        || (!d.any_affinity_match
                            && aff.iter().all(|t| {
                                t.label_selector.as_ref().is_some_and(|s| labels::matches(s, &pod.labels))
                            }))
                }
            };
            if !ok {
                return Err(Failure::unresolvable(
                    "node(s) didn't match pod affinity rules",
                ));
            }
        }
        for (i, t) in anti.iter().enumerate() {
            if domain(node, &t.topology_key).is_some_and(|dom| d.anti[i].contains(&dom)) {
                return Err(Failure::resolvable(vec![
                    "node(s) didn't match pod anti-affinity rules".into(),
                ]));
            }
        }
        Ok(())
    }
}

impl Score for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }
    fn pre_score(&self, pod: &PodInfo, cluster: &Cache, _: &[&NodeInfo], st: &mut CycleState) {
        let (aff, anti) = preferred(pod);
        if aff.is_empty() && anti.is_empty() {
            return;
        }
        let mut scores: HashMap<(String, String), i64> = HashMap::new();
        for node in cluster.nodes() {
            for p in node.pods.values().filter(|p| p.uid != pod.uid) {
                for (terms, sign) in [(aff, 1), (anti, -1)] {
                    for w in terms {
                        if term_matches(&w.pod_affinity_term, &pod.namespace, p, cluster) {
                            if let Some(dom) = domain(node, &w.pod_affinity_term.topology_key) {
                                let e = scores.entry(dom).or_insert(0);
                                *e = e.saturating_add(sign * i64::from(w.weight));
                            }
                        }
                    }
                }
            }
        }
        st.put(SCORE, scores);
    }
    fn score(&self, st: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        st.get::<HashMap<(String, String), i64>>(SCORE)
            .map(|m| {
                m.iter()
                    .filter(|((k, v), _)| node.labels.get(k) == Some(v))
                    .fold(0i64, |a, (_, s)| a.saturating_add(*s))
            })
            .unwrap_or(0)
    }
    fn normalize(&self, scores: &mut [i64]) {
        let (min, max) = scores
            .iter()
            .fold((i64::MAX, i64::MIN), |(a, b), s| (a.min(*s), b.max(*s)));
        for s in scores.iter_mut() {
            *s = if max > min { scale(*s, min, max) } else { 0 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{labeled, node, pod};
    use k8s_openapi::api::core::v1::{Affinity, PodAntiAffinity};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use std::sync::Arc;

    fn anti_web(p: &mut k8s_openapi::api::core::v1::Pod) {
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                    label_selector: Some(LabelSelector {
                        match_labels: Some([("app".to_string(), "web".to_string())].into()),
                        ..Default::default()
                    }),
                    topology_key: "kubernetes.io/hostname".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
    }

    #[test]
    fn anti_affinity_both_ways() {
        let mut cache = Cache::default();
        cache.upsert_node(Arc::new(node("n1", "4", "4Gi")));
        cache.upsert_node(Arc::new(node("n2", "4", "4Gi")));
        let mut placed = labeled(pod("w0", "", ""), &[("app", "web")]);
        anti_web(&mut placed);
        cache.add_bound(PodInfo::new(Arc::new(placed)), "n1");

        // A plain web pod may not join n1: the placed pod's anti-affinity forbids it.
        let plain = PodInfo::new(Arc::new(labeled(pod("w1", "", ""), &[("app", "web")])));
        let mut st = CycleState::default();
        InterPodAffinity.pre_filter(&plain, &cache, &mut st);
        let err = InterPodAffinity
            .filter(&st, &plain, cache.node("n1").unwrap())
            .unwrap_err();
        assert_eq!(
            err.reasons,
            vec!["node(s) didn't satisfy existing pods anti-affinity rules"]
        );
        assert!(InterPodAffinity
            .filter(&st, &plain, cache.node("n2").unwrap())
            .is_ok());

        // A pod with its own anti-affinity avoids n1 too; an unrelated pod does not care.
        let mut own = labeled(pod("x", "", ""), &[("app", "other")]);
        anti_web(&mut own);
        let own = PodInfo::new(Arc::new(own));
        let mut st = CycleState::default();
        InterPodAffinity.pre_filter(&own, &cache, &mut st);
        assert!(InterPodAffinity
            .filter(&st, &own, cache.node("n1").unwrap())
            .is_err());
        assert!(InterPodAffinity
            .filter(&st, &own, cache.node("n2").unwrap())
            .is_ok());
    }
}
