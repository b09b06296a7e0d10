//! Preemption (Kubernetes' DefaultPreemption, in short): when a pod fits nowhere, find the
//! node where removing the fewest and least important lower-priority pods lets it fit, so
//! the scheduler can nominate it there and delete those pods gracefully.
//!
//! Per node whose failure was resolvable: remove every lower-priority pod, check the pod
//! fits, then give back as many of them as still let it fit, most important first. Among
//! nodes, prefer the one whose most important victim matters least, then the smallest sum
//! of victim priorities, then the fewest victims.
//!
//! The preemptor is nominated to the node (status.nominatedNodeName, and at once in the
//! cache), where it reserves room against pods of lower or equal priority (schedule.rs),
//! so the victims' replacements do not take it.
//!
//! Not done (yet): PodDisruptionBudgets, and cluster-wide plugin state (affinity, spread)
//! recomputed without the victims.

use std::sync::Arc;

use crate::cache::Cache;
use crate::framework::Framework;
use crate::nodeinfo::PodInfo;
use crate::schedule::Diagnosis;

#[derive(Debug)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
}

/// Whether the pod may preempt at all: its policy allows it, and it is not already waiting
/// for victims on its nominated node to go.
pub fn eligible(pod: &PodInfo, cache: &Cache) -> bool {
    if pod.spec().preemption_policy.as_deref() == Some("Never") {
        return false;
    }
    let nominated = pod
        .pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref());
    if let Some(node) = nominated.and_then(|n| cache.node(n)) {
        let waiting = node
            .pods
            .values()
            .any(|p| p.pod.metadata.deletion_timestamp.is_some() && p.priority < pod.priority);
        if waiting {
            return false;
        }
    }
    true
}

pub fn find(fw: &Framework, cache: &Cache, pod: &PodInfo, diag: &Diagnosis) -> Option<Candidate> {
    if !eligible(pod, cache) {
        return None;
    }
    let st = fw.pre_filter(pod, cache);
    let mut best: Option<((i32, i64, usize), Candidate)> = None;
    for name in &diag.resolvable {
        let Some(node) = cache.node(name) else {
            continue;
        };
        let mut lower: Vec<Arc<PodInfo>> = node
            .pods
            .values()
            .filter(|p| p.priority < pod.priority && p.pod.metadata.deletion_timestamp.is_none())
            .cloned()
            .collect();
        if lower.is_empty() {
            continue;
        }
        let mut trial = node.clone();
        for v in &lower {
            trial.remove_pod(&v.uid);
        }
        if fw.filter(&st, pod, &trial).is_err() {
            continue;
        }
        // Give back the most important first; whoever no longer fits stays a victim.
        lower.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then_with(|| a.name.cmp(&b.name))
        });
        let mut victims = Vec::new();
        for v in lower {
            trial.add_pod(v.clone());
            if fw.filter(&st, pod, &trial).is_err() {
                trial.remove_pod(&v.uid);
                victims.push(v);
            }
        }
        if victims.is_empty() {
            continue;
        }
        let rank = (
            victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN),
            victims
                .iter()
                .fold(0i64, |a, v| a.saturating_add(i64::from(v.priority))),
            victims.len(),
        );
        if best.as_ref().is_none_or(|(r, _)| rank < *r) {
            best = Some((
                rank,
                Candidate {
                    node: name.clone(),
                    victims,
                },
            ));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{Algorithm, Decision};
    use crate::testutil::{node, pod};
    use std::collections::HashMap;

    fn prio(name: &str, cpu: &str, p: i32) -> Arc<PodInfo> {
        let mut x = pod(name, cpu, "");
        x.spec.as_mut().unwrap().priority = Some(p);
        PodInfo::new(Arc::new(x))
    }

    #[test]
    fn the_least_important_victims_on_the_best_node() {
        let mut cache = Cache::default();
        cache.upsert_node(Arc::new(node("n1", "2", "8Gi")));
        cache.upsert_node(Arc::new(node("n2", "2", "8Gi")));
        // n1: two pods of priority 10; n2: one of priority 5 and one of 100.
        cache.add_bound(prio("a", "1", 10), "n1");
        cache.add_bound(prio("b", "1", 10), "n1");
        cache.add_bound(prio("c", "1", 5), "n2");
        cache.add_bound(prio("d", "1", 100), "n2");
        let fw = crate::plugins::default_framework(&HashMap::new());
        let mut alg = Algorithm::new(crate::plugins::default_framework(&HashMap::new()), 0);
        let vip = prio("vip", "1", 50);
        let Decision::NoFit(d) = alg.schedule(&vip, &cache) else {
            panic!("full")
        };
        let c = find(&fw, &cache, &vip, &d).expect("a candidate");
        assert_eq!(c.node, "n2", "one victim of priority 5 beats one of 10");
        let names: Vec<&str> = c.victims.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["c"]);

        // Nothing of lower priority to remove: no candidate.
        let low = prio("low", "1", 1);
        assert!(find(&fw, &cache, &low, &d).is_none());
        // preemptionPolicy Never: no candidate.
        let mut never = pod("never", "1", "");
        let spec = never.spec.as_mut().unwrap();
        spec.priority = Some(50);
        spec.preemption_policy = Some("Never".into());
        assert!(find(&fw, &cache, &PodInfo::new(Arc::new(never)), &d).is_none());
    }
}
