//! Extreme values through the scheduler's pure decisions: whatever pods and nodes say
//! (quantities past i64, weights and priorities at the i32 bounds, tolerations at the i64
//! bounds, skews of any size), filtering, scoring, normalizing, preemption and the cache's
//! accounting never panic. A deterministic table of edge values, crossed by a seeded
//! generator.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, Node, NodeAffinity, NodeSelectorRequirement,
    NodeSelectorTerm, PodAffinityTerm, PodAntiAffinity, PreferredSchedulingTerm,
    ResourceRequirements, Taint, Toleration, TopologySpreadConstraint, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use rand::{Rng, SeedableRng};

use crate::cache::Cache;
use crate::framework::{normalize, scale};
use crate::nodeinfo::{NodeInfo, PodInfo};
use crate::plugins::node_resources_fit::insufficient;
use crate::preemption;
use crate::schedule::{Algorithm, Decision};
use crate::testutil::{labeled, node, pod};

const QUANTITIES: &[&str] = &[
    "0",
    "1",
    "-1",
    "100m",
    "1Gi",
    "5E",
    "8Ei",
    "1e18",
    "1e400",
    "-1e400",
    "9223372036854775807",
    "-9223372036854775808",
    "9999999999999999999999Ki",
    "2147483647%",
    "abc",
];
const I32S: &[i32] = &[0, 1, -1, 100, i32::MAX, i32::MIN];
const I64S: &[i64] = &[0, 1, -1, i32::MAX as i64, i64::MAX, i64::MIN];

type Gen = rand::rngs::StdRng;

fn pick<T: Copy>(g: &mut Gen, xs: &[T]) -> T {
    xs[g.random_range(0..xs.len())]
}

fn resources(g: &mut Gen) -> BTreeMap<String, Quantity> {
    let mut out = BTreeMap::new();
    for k in ["cpu", "memory", "ephemeral-storage", "pods"] {
        if g.random_bool(0.7) {
            out.insert(k.to_string(), Quantity(pick(g, QUANTITIES).into()));
        }
    }
    out
}

fn container(g: &mut Gen, name: String) -> Container {
    Container {
        name,
        resources: Some(ResourceRequirements {
            requests: Some(resources(g)),
            limits: Some(resources(g)),
            ..Default::default()
        }),
        ports: Some(vec![ContainerPort {
            container_port: 80,
            host_port: Some(pick(g, I32S)),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn zone_selector() -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: Some([("app".to_string(), "x".to_string())].into()),
        ..Default::default()
    })
}

fn extreme_pod(g: &mut Gen, i: usize) -> Arc<PodInfo> {
    let mut p = labeled(pod(&format!("p{i}"), "", ""), &[("app", "x")]);
    let spec = p.spec.get_or_insert_with(Default::default);
    spec.containers = (0..g.random_range(1..4))
        .map(|c| container(g, format!("c{c}")))
        .collect();
    let mut sidecar = container(g, "init".into());
    sidecar.restart_policy = g.random_bool(0.5).then(|| "Always".into());
    spec.init_containers = Some(vec![sidecar, container(g, "init2".into())]);
    spec.overhead = Some(resources(g));
    spec.priority = Some(pick(g, I32S));
    spec.tolerations = Some(vec![Toleration {
        key: Some("k".into()),
        operator: Some("Exists".into()),
        toleration_seconds: Some(pick(g, I64S)),
        ..Default::default()
    }]);
    let term = |g: &mut Gen| WeightedPodAffinityTerm {
        weight: pick(g, I32S),
        pod_affinity_term: PodAffinityTerm {
            label_selector: zone_selector(),
            topology_key: "zone".into(),
            ..Default::default()
        },
    };
    spec.affinity = Some(Affinity {
        node_affinity: Some(NodeAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(
                (0..3)
                    .map(|_| PreferredSchedulingTerm {
                        weight: pick(g, I32S),
                        preference: NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "rank".into(),
                                operator: if g.random_bool(0.5) { "Gt" } else { "Lt" }.into(),
                                values: Some(vec![pick(g, I64S).to_string()]),
                            }]),
                            ..Default::default()
                        },
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        pod_affinity: Some(k8s_openapi::api::core::v1::PodAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![term(g), term(g)]),
            ..Default::default()
        }),
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![term(g)]),
            ..Default::default()
        }),
    });
    spec.topology_spread_constraints = Some(
        ["DoNotSchedule", "ScheduleAnyway"]
            .into_iter()
            .map(|w| TopologySpreadConstraint {
                max_skew: pick(g, I32S),
                min_domains: Some(pick(g, I32S)),
                topology_key: "zone".into(),
                when_unsatisfiable: w.into(),
                label_selector: zone_selector(),
                ..Default::default()
            })
            .collect(),
    );
    PodInfo::new(Arc::new(p))
}

fn extreme_node(g: &mut Gen, i: usize) -> Node {
    let zone = format!("z{}", i % 2);
    let rank = pick(g, I64S).to_string();
    let mut n = labeled(
        node(&format!("n{i}"), pick(g, QUANTITIES), pick(g, QUANTITIES)),
        &[("zone", zone.as_str()), ("rank", rank.as_str())],
    );
    let status = n.status.get_or_insert_with(Default::default);
    status.allocatable = Some(resources(g));
    n.spec.get_or_insert_with(Default::default).taints = Some(
        ["PreferNoSchedule", "NoExecute"]
            .into_iter()
            .filter(|_| g.random_bool(0.3))
            .map(|e| Taint {
                key: "k".into(),
                effect: e.into(),
                ..Default::default()
            })
            .collect(),
    );
    n
}

#[test]
fn extreme_values_panic_no_scheduling_decision() {
    let mut g = Gen::seed_from_u64(0x5eed);
    let fw = crate::plugins::default_framework(&HashMap::new());
    let mut alg = Algorithm::new(crate::plugins::default_framework(&HashMap::new()), 0);
    for round in 0..20 {
        let mut cache = Cache::default();
        for i in 0..4 {
            cache.upsert_node(Arc::new(extreme_node(&mut g, i)));
        }
        let mut placed = Vec::new();
        for i in 0..40 {
            let p = extreme_pod(&mut g, round * 100 + i);
            for n in cache.nodes() {
                let _ = insufficient(&p, n);
            }
            match alg.schedule(&p, &cache) {
                Decision::Fit { node, .. } => {
                    cache.assume(p.clone(), &node);
                    placed.push(p.uid.clone());
                }
                Decision::NoFit(d) => {
                    let _ = preemption::find(&fw, &cache, &p, &d);
                    // Bound anyway (another scheduler, or a client writing nodeName).
                    cache.add_bound(p.clone(), &format!("n{}", i % 4));
                    placed.push(p.uid.clone());
                }
            }
        }
        // Every pod leaves: the accounting comes back to nothing, exactly.
        for uid in placed {
            cache.remove_pod(&uid);
        }
        for n in cache.nodes() {
            assert_eq!(n.requested, Default::default(), "{}", n.name);
            assert_eq!(n.non_zero_requested, Default::default(), "{}", n.name);
        }
    }
    // Normalizing raw scores of any size.
    for _ in 0..1000 {
        let mut s: Vec<i64> = (0..4).map(|_| pick(&mut g, I64S)).collect();
        normalize(&mut s, g.random_bool(0.5));
        let _ = scale(pick(&mut g, I64S), pick(&mut g, I64S), pick(&mut g, I64S));
    }
    let _ = NodeInfo::new(Arc::new(Node::default()));
}
