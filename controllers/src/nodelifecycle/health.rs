//! The node lifecycle controller's judgement, pure: a node's health from its heartbeats
//! (as this replica's clock saw them change), the taints that health calls for, when a pod
//! must leave a tainted node, and how fast nodes may be evicted.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::time::Instant;

use super::Config;

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// What a node's health is, as this controller judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Ready,
    /// The node says it is not ready.
    NotReady,
    /// No heartbeat within the grace period.
    Unknown,
}

/// When each node's heartbeat was last seen to change.
#[derive(Default)]
pub(super) struct Heartbeats {
    seen: HashMap<String, (String, Instant)>,
}

impl Heartbeats {
    /// Records the node's current heartbeat value; returns how long it has been unchanged.
    pub(super) fn observe(&mut self, node: &str, value: String, now: Instant) -> Duration {
        match self.seen.get_mut(node) {
            Some((v, at)) if *v == value => now.saturating_duration_since(*at),
            _ => {
                self.seen.insert(node.to_string(), (value, now));
                Duration::ZERO
            }
        }
    }
}

pub(super) fn ready_condition(n: &Node) -> Option<&NodeCondition> {
    n.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The taints a node of `health` should carry (of the two this controller manages).
pub fn wanted_taint(health: Health) -> Option<&'static str> {
    match health {
        Health::Ready => None,
        Health::NotReady => Some(NOT_READY),
        Health::Unknown => Some(UNREACHABLE),
    }
}

/// The pod with its Ready condition turned False, when it was True (else `None`).
pub fn marked_not_ready(pod: &Pod, now: jiff::Timestamp) -> Option<Pod> {
    let mut p = pod.clone();
    let c = p
        .status
        .as_mut()?
        .conditions
        .as_mut()?
        .iter_mut()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    c.status = "False".into();
    c.reason = Some("NodeNotReady".into());
    c.message = Some("The node the pod runs on is not ready.".into());
    c.last_transition_time = Some(Time(now));
    Some(p)
}

/// When `pod` must leave a node with `taints` (`None`: it may stay), given now.
pub fn eviction_time(pod: &Pod, taints: &[Taint], now: jiff::Timestamp) -> Option<jiff::Timestamp> {
    let tols = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    let mut at: Option<jiff::Timestamp> = None;
    for t in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<_> = tols
            .iter()
            .filter(|x| component_base::taints::tolerates(x, t))
            .collect();
        let when = if matching.is_empty() {
            now
        } else if matching.iter().any(|x| x.toleration_seconds.is_none()) {
            continue;
        } else {
            let secs = matching
                .iter()
                .filter_map(|x| x.toleration_seconds)
                .min()
                .unwrap_or(0)
                .max(0);
            let added = t.time_added.as_ref().map(|t| t.0).unwrap_or(now);
            // A toleration past the end of time (any i64 an object may hold) is never.
            added
                .checked_add(jiff::SignedDuration::from_secs(secs))
                .unwrap_or(jiff::Timestamp::MAX)
        };
        at = Some(at.map_or(when, |a| a.min(when)));
    }
    at
}

/// A token bucket of nodes whose pods may be evicted.
pub(super) struct Limiter {
    pub(super) tokens: f64,
    pub(super) last: Instant,
}

impl Limiter {
    pub(super) fn take(&mut self, rate: f64, now: Instant) -> bool {
        self.tokens =
            (self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * rate).min(1.0);
        self.last = now;
        if rate > 0.0 && self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The eviction rate for the cluster's state (Kubernetes' zone states, over the whole
/// cluster as one zone).
pub fn eviction_rate(cfg: &Config, nodes: usize, unhealthy: usize) -> f64 {
    if nodes == 0 || unhealthy == nodes {
        return 0.0;
    }
    if unhealthy as f64 / nodes as f64 > 0.55 {
        return if nodes <= 50 {
            0.0
        } else {
            cfg.secondary_eviction_rate
        };
    }
    cfg.eviction_rate
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, Toleration};

    fn pod(tols: Vec<Toleration>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                tolerations: Some(tols),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn tol(key: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: secs,
            value: None,
        }
    }

    #[test]
    fn only_a_ready_pod_is_marked_not_ready() {
        use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
        let now = jiff::Timestamp::now();
        let cond = |t: &str, s: &str| PodCondition {
            type_: t.into(),
            status: s.into(),
            ..Default::default()
        };
        let mut p = pod(vec![]);
        p.status = Some(PodStatus {
            conditions: Some(vec![cond("PodScheduled", "True"), cond("Ready", "True")]),
            ..Default::default()
        });
        let m = marked_not_ready(&p, now).expect("changed");
        let conds = m.status.unwrap().conditions.unwrap();
        assert_eq!(conds[0], cond("PodScheduled", "True"));
        assert_eq!(
            (conds[1].status.as_str(), conds[1].reason.as_deref()),
            ("False", Some("NodeNotReady"))
        );
        assert_eq!(conds[1].last_transition_time, Some(Time(now)));
        p.status.as_mut().unwrap().conditions = Some(vec![cond("Ready", "False")]);
        assert!(marked_not_ready(&p, now).is_none());
        assert!(marked_not_ready(&pod(vec![]), now).is_none());
    }

    #[test]
    fn pods_leave_when_their_toleration_runs_out() {
        let now = jiff::Timestamp::from_second(1_000_000).unwrap();
        let taint = Taint {
            key: UNREACHABLE.into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: Some(Time(now)),
        };
        assert_eq!(
            eviction_time(&pod(vec![]), &[taint.clone()], now),
            Some(now)
        );
        assert_eq!(
            eviction_time(
                &pod(vec![tol(UNREACHABLE, Some(300))]),
                &[taint.clone()],
                now
            ),
            Some(now + jiff::SignedDuration::from_secs(300))
        );
        assert_eq!(
            eviction_time(&pod(vec![tol(UNREACHABLE, None)]), &[taint.clone()], now),
            None
        );
        assert_eq!(
            eviction_time(&pod(vec![tol(NOT_READY, None)]), &[taint], now),
            Some(now)
        );
    }

    #[test]
    fn evictions_slow_down_when_most_nodes_are_unhealthy() {
        let cfg = Config {
            monitor_period: Duration::from_secs(5),
            grace_period: Duration::from_secs(40),
            eviction_rate: 0.1,
            secondary_eviction_rate: 0.01,
        };
        assert_eq!(eviction_rate(&cfg, 3, 1), 0.1);
        assert_eq!(
            eviction_rate(&cfg, 3, 2),
            0.0,
            "small cluster, mostly down: stop"
        );
        assert_eq!(eviction_rate(&cfg, 100, 60), 0.01);
        assert_eq!(
            eviction_rate(&cfg, 100, 100),
            0.0,
            "all down: the fault is likely ours"
        );
    }

    #[test]
    fn heartbeats_count_from_when_they_last_changed() {
        let mut h = Heartbeats::default();
        let t = Instant::now();
        assert_eq!(h.observe("n", "a".into(), t), Duration::ZERO);
        assert_eq!(
            h.observe("n", "a".into(), t + Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        assert_eq!(
            h.observe("n", "b".into(), t + Duration::from_secs(6)),
            Duration::ZERO
        );
    }

    #[test]
    fn a_huge_toleration_is_never_and_panics_nobody() {
        let now = jiff::Timestamp::now();
        let taint = Taint {
            effect: "NoExecute".into(),
            key: "node.kubernetes.io/unreachable".into(),
            time_added: None,
            value: None,
        };
        let tol = k8s_openapi::api::core::v1::Toleration {
            effect: Some("NoExecute".into()),
            key: Some("node.kubernetes.io/unreachable".into()),
            operator: Some("Exists".into()),
            toleration_seconds: Some(i64::MAX),
            value: None,
        };
        let mut p = Pod::default();
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            tolerations: Some(vec![tol]),
            ..Default::default()
        });
        assert_eq!(eviction_time(&p, &[taint], now), Some(jiff::Timestamp::MAX));
    }
}
