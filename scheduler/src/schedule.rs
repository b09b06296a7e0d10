//! One scheduling decision: filter nodes (stopping once enough feasible ones are found, as
//! `percentageOfNodesToScore` asks), score them, pick the best (ties broken at random).

use std::collections::BTreeMap;

use crate::cache::Cache;
use crate::framework::Framework;
use crate::nodeinfo::{NodeInfo, PodInfo};

/// Kubernetes' minFeasibleNodesToFind.
const MIN_FEASIBLE: usize = 100;

/// How many feasible nodes to find before scoring (Kubernetes' numFeasibleNodesToFind):
/// all of them below 100 nodes; otherwise `percentage` of them (adaptive when 0:
/// 50% minus 1% per 125 nodes, at least 5%), and at least 100.
pub fn num_feasible_nodes_to_find(nodes: usize, percentage: u32) -> usize {
    if nodes < MIN_FEASIBLE || percentage >= 100 {
        return nodes;
    }
    let pct = if percentage == 0 {
        (50usize.saturating_sub(nodes / 125)).max(5)
    } else {
        percentage as usize
    };
    (nodes * pct / 100).max(MIN_FEASIBLE)
}

#[derive(Debug, Default, Clone)]
pub struct Diagnosis {
    pub nodes: usize,
    /// Reason → number of nodes that gave it.
    pub reasons: BTreeMap<String, usize>,
    /// Nodes where removing pods might help (for preemption).
    pub resolvable: Vec<String>,
}

impl Diagnosis {
    /// The message Kubernetes writes into the PodScheduled condition and the event.
    pub fn message(&self) -> String {
        if self.nodes == 0 {
            return "no nodes available to schedule pods".into();
        }
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        parts.sort();
        format!(
            "0/{} nodes are available: {}.",
            self.nodes,
            parts.join(", ")
        )
    }
}

#[derive(Debug)]
pub enum Decision {
    Fit {
        node: String,
        evaluated: usize,
        feasible: usize,
    },
    NoFit(Diagnosis),
}

pub struct Algorithm {
    pub framework: Framework,
    pub percentage: u32,
    next_start: usize,
}

impl Algorithm {
    pub fn new(framework: Framework, percentage: u32) -> Self {
        Self {
            framework,
            percentage,
            next_start: 0,
        }
    }

    pub fn schedule(&mut self, pod: &PodInfo, cache: &Cache) -> Decision {
        let n = cache.node_count();
        let mut diag = Diagnosis {
            nodes: n,
            ..Default::default()
        };
        if n == 0 {
            return Decision::NoFit(diag);
        }
        let mut st = self.framework.pre_filter(pod, cache);
        // A pod that preempted others goes to its nominated node if it fits there now.
        if let Some(nom) = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .and_then(|name| cache.node(name))
        {
            if self.framework.filter(&st, pod, nom).is_ok() {
                return Decision::Fit {
                    node: nom.name.clone(),
                    evaluated: 1,
                    feasible: 1,
                };
            }
        }
        let want = num_feasible_nodes_to_find(n, self.percentage);
        let start = self.next_start % n;
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want.min(n));
        let mut processed = 0;
        for i in 0..n {
            let Some(node) = cache.node_at((start + i) % n) else {
                continue;
            };
            processed += 1;
            // Room reserved by pods nominated there that matter at least as much.
            let reserved = cache.nominated_for(&node.name, pod);
            let with_nominated;
            let view = if reserved.is_empty() {
                node
            } else {
                let mut n = node.clone();
                for p in reserved {
                    n.add_pod(p);
                }
                with_nominated = n;
                &with_nominated
            };
            match self.framework.filter(&st, pod, view) {
                Ok(()) => {
                    feasible.push(node);
                    if feasible.len() >= want {
                        break;
                    }
                }
                Err(f) => {
                    for r in f.reasons {
                        *diag.reasons.entry(r).or_insert(0) += 1;
                    }
                    if f.resolvable {
                        diag.resolvable.push(node.name.clone());
                    }
                }
            }
        }
        self.next_start = (start + processed) % n;
        match feasible.len() {
            0 => Decision::NoFit(diag),
            1 => Decision::Fit {
                node: feasible[0].name.clone(),
                evaluated: processed,
                feasible: 1,
            },
            k => {
                let scores = self.framework.score(&mut st, pod, cache, &feasible);
                let best = pick(&scores);
                Decision::Fit {
                    node: feasible[best].name.clone(),
                    evaluated: processed,
                    feasible: k,
                }
            }
        }
    }
}

/// The index of the highest score; among equal ones each has the same chance.
fn pick(scores: &[i64]) -> usize {
    let mut best = 0;
    let mut ties = 0u32;
    for (i, s) in scores.iter().enumerate() {
        if *s > scores[best] {
            best = i;
            ties = 1;
        } else if *s == scores[best] {
            ties += 1;
            if rand::random_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{labeled, node, pod};
    use std::collections::HashMap;
    use std::sync::Arc;

    #[test]
    fn feasible_nodes_to_find_as_kubernetes_computes_it() {
        assert_eq!(num_feasible_nodes_to_find(50, 0), 50);
        assert_eq!(num_feasible_nodes_to_find(500, 0), 230); // 46%
        assert_eq!(num_feasible_nodes_to_find(5000, 0), 500); // 10%
        assert_eq!(num_feasible_nodes_to_find(6000, 0), 300); // 5% floor
        assert_eq!(num_feasible_nodes_to_find(1000, 1), 100); // at least 100
        assert_eq!(num_feasible_nodes_to_find(1000, 100), 1000);
    }

    #[test]
    fn the_failure_message_has_kubernetes_form() {
        let mut cache = Cache::default();
        cache.upsert_node(Arc::new(node("small1", "1", "1Gi")));
        cache.upsert_node(Arc::new(node("small2", "1", "1Gi")));
        let mut tainted = node("big", "16", "64Gi");
        tainted.spec.as_mut().unwrap().taints = Some(vec![k8s_openapi::api::core::v1::Taint {
            key: "dedicated".into(),
            value: Some("gpu".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        }]);
        cache.upsert_node(Arc::new(tainted));
        let mut alg = Algorithm::new(crate::plugins::default_framework(&HashMap::new()), 0);
        let p = PodInfo::new(Arc::new(pod("p", "2", "")));
        let Decision::NoFit(d) = alg.schedule(&p, &cache) else {
            panic!("fits nowhere")
        };
        assert_eq!(
            d.message(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu."
        );
        assert_eq!(d.resolvable.len(), 2);
        assert_eq!(
            Diagnosis::default().message(),
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn spreads_by_least_allocated_and_honours_node_selectors() {
        let mut cache = Cache::default();
        for n in ["n1", "n2", "n3"] {
            let zone = if n == "n3" { "b" } else { "a" };
            cache.upsert_node(Arc::new(labeled(node(n, "4", "8Gi"), &[("zone", zone)])));
        }
        let mut alg = Algorithm::new(crate::plugins::default_framework(&HashMap::new()), 0);
        let mut placed = HashMap::new();
        for i in 0..6 {
            let mut p = pod(&format!("p{i}"), "1", "1Gi");
            p.spec.as_mut().unwrap().node_selector =
                Some([("zone".to_string(), "a".to_string())].into());
            let info = PodInfo::new(Arc::new(p));
            let Decision::Fit { node, .. } = alg.schedule(&info, &cache) else {
                panic!("fits")
            };
            cache.assume(info, &node);
            *placed.entry(node).or_insert(0) += 1;
        }
        assert_eq!(placed.get("n1"), Some(&3));
        assert_eq!(placed.get("n2"), Some(&3));
        assert_eq!(placed.get("n3"), None);
        // Now zone a is full (4 cpus each, 3 used + 1 more fits; then none).
        let mut p = pod("big", "2", "");
        p.spec.as_mut().unwrap().node_selector =
            Some([("zone".to_string(), "a".to_string())].into());
        let Decision::NoFit(d) = alg.schedule(&PodInfo::new(Arc::new(p)), &cache) else {
            panic!()
        };
        assert_eq!(
            d.message(),
            "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu."
        );
    }
}
