//! Extreme values through the controllers' pure decisions: whatever an object says
//! (replicas, surges, percentages, statuses, tolerations, timestamps), nothing panics.
//! A deterministic table of edge values, crossed by a small seeded generator.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodSpec, PodStatus, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::context::pod_available;
use crate::deployment::plan::{self, Rs};
use crate::deployment::status::progress_end;
use crate::nodelifecycle::{self, eviction_rate, eviction_time, marked_not_ready};
use crate::replicaset::plan as rsplan;

const I32S: &[i32] = &[
    0,
    1,
    -1,
    2,
    100,
    i32::MAX,
    i32::MAX - 1,
    i32::MIN,
    i32::MIN + 1,
];
const I64S: &[i64] = &[
    0,
    1,
    -1,
    300,
    i32::MAX as i64,
    i32::MIN as i64,
    i64::MAX,
    i64::MAX - 1,
    i64::MIN,
    i64::MIN + 1,
];
const PERCENTS: &[&str] = &[
    "0%",
    "25%",
    "100%",
    "2147483647%",
    "1000000000%",
    "9223372036854775807%",
    "-9223372036854775808%",
    "-1%",
    "5E",
    "1e18",
    "%",
    "",
];

/// splitmix64: a seeded, dependency-free source of indices.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

fn times() -> Vec<Timestamp> {
    vec![
        Timestamp::MIN,
        Timestamp::MAX,
        Timestamp::UNIX_EPOCH,
        Timestamp::from_second(1_700_000_000).unwrap_or(Timestamp::UNIX_EPOCH),
    ]
}

fn int_or_string(g: &mut Gen) -> Option<IntOrString> {
    match g.next() % 3 {
        0 => None,
        1 => Some(IntOrString::Int(g.pick(I32S))),
        _ => Some(IntOrString::String(g.pick(PERCENTS).to_string())),
    }
}

fn pod(g: &mut Gen, ready_at: Timestamp, secs: &[Option<i64>]) -> Pod {
    Pod {
        spec: Some(PodSpec {
            tolerations: Some(
                secs.iter()
                    .map(|s| Toleration {
                        key: Some(nodelifecycle::UNREACHABLE.into()),
                        operator: Some(if g.next() % 2 == 0 { "Exists" } else { "Equal" }.into()),
                        effect: Some("NoExecute".into()),
                        toleration_seconds: *s,
                        value: None,
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(ready_at)),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn extreme_values_panic_no_controller_decision() {
    let mut g = Gen(0x5eed);
    let ts = times();
    for _ in 0..20_000 {
        // Deployment rollout arithmetic.
        let desired = g.pick(I32S).max(0);
        let fp = plan::fenceposts(
            int_or_string(&mut g).as_ref(),
            int_or_string(&mut g).as_ref(),
            desired,
        );
        let (surge, unavailable) = fp.unwrap_or((g.pick(I32S), g.pick(I32S)));
        let rs = |g: &mut Gen| Rs {
            replicas: g.pick(I32S),
            available: g.pick(I32S),
        };
        let new = rs(&mut g);
        let olds: Vec<Rs> = (0..g.next() % 4).map(|_| rs(&mut g)).collect();
        let all = plan::total(std::iter::once(new.replicas).chain(olds.iter().map(|o| o.replicas)));
        let n = plan::new_rs_replicas(desired, surge, new, all);
        assert!(n <= desired.max(new.replicas));
        let out = plan::old_rs_replicas(desired, unavailable, new, &olds);
        assert_eq!(out.len(), olds.len());
        for (o, r) in olds.iter().zip(&out) {
            assert!(*r <= o.replicas.max(0), "{o:?} -> {r}");
        }
        let _ = progress_end(g.pick(&ts), g.pick(I32S));

        // Replica counts and availability.
        let now = g.pick(&ts);
        let ready_at = g.pick(&ts);
        let p = pod(&mut g, ready_at, &[]);
        let min_ready = g.pick(I32S);
        let _ = pod_available(&p, min_ready, now);
        let active = [&p, &p];
        let c = rsplan::counts(
            &active,
            &Default::default(),
            min_ready,
            Some(g.pick(I64S)),
            now,
        );
        let _ = rsplan::recheck_after(&c, min_ready);
        let _ = rsplan::diff(g.pick(I32S), &active);

        // Tolerations and evictions.
        let secs: Vec<Option<i64>> = (0..g.next() % 3)
            .map(|_| (g.next() % 4 != 0).then(|| g.pick(I64S)))
            .collect();
        let p = pod(&mut g, now, &secs);
        let taint = Taint {
            key: nodelifecycle::UNREACHABLE.into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: (g.next() % 2 == 0).then(|| Time(g.pick(&ts))),
        };
        let _ = eviction_time(&p, &[taint.clone(), taint.clone()], now);
        let _ = no_execute_deadline(&secs, &taint, g.pick(I64S));
        let _ = marked_not_ready(&p, now);
    }
    let cfg = nodelifecycle::Config {
        monitor_period: Duration::from_secs(5),
        grace_period: Duration::from_secs(40),
        eviction_rate: f64::MAX,
        secondary_eviction_rate: f64::MIN_POSITIVE,
    };
    for nodes in [0, 1, 50, 51, usize::MAX] {
        for unhealthy in [0, 1, 50, usize::MAX] {
            let _ = eviction_rate(&cfg, nodes, unhealthy.min(nodes));
        }
    }
    // A huge toleration is "never", not a panic.
    let p = pod(&mut g, Timestamp::MAX, &[Some(i64::MAX)]);
    let t = Taint {
        key: nodelifecycle::UNREACHABLE.into(),
        effect: "NoExecute".into(),
        value: None,
        time_added: Some(Time(Timestamp::MAX - SignedDuration::from_secs(1))),
    };
    assert_eq!(
        eviction_time(&p, &[t], Timestamp::UNIX_EPOCH),
        Some(Timestamp::MAX)
    );
}

/// The core helper the node lifecycle's rule mirrors (`flotilla_core::taints`), through
/// its deadline.
fn no_execute_deadline(secs: &[Option<i64>], taint: &Taint, added: i64) -> Option<i64> {
    let tols: Vec<Toleration> = secs
        .iter()
        .map(|s| Toleration {
            operator: Some("Exists".into()),
            toleration_seconds: *s,
            ..Default::default()
        })
        .collect();
    component_base::taints::no_execute(&tols, taint).deadline(added)
}
