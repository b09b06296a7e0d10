//! The pure decisions of the replica controller, whatever the kind: which pods an owner
//! claims, how many pods to create or which to delete, and the status the pods make.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use crate::context::{pod_available, ready_since};

/// At most this many pods are created or deleted per reconcile (Kubernetes'
/// burstReplicas).
pub const BURST: usize = 500;

/// What one reconcile does about the number of pods.
#[derive(Debug, PartialEq)]
pub enum Diff<'a> {
    Steady,
    /// Create this many.
    Create(usize),
    /// Delete these, most expendable first.
    Delete(Vec<&'a Pod>),
}

/// Brings `active` towards `want` pods, at most [`BURST`] at a time.
pub fn diff<'a>(want: i32, active: &[&'a Pod]) -> Diff<'a> {
    let want = want.max(0) as usize;
    if active.len() < want {
        return Diff::Create((want - active.len()).min(BURST));
    }
    if active.len() == want {
        return Diff::Steady;
    }
    let mut victims = active.to_vec();
    victims.sort_by_key(|p| deletion_rank(p));
    victims.truncate((active.len() - want).min(BURST));
    Diff::Delete(victims)
}

/// Which pods to delete first when scaling down (Kubernetes' ActivePods ordering, in
/// short): unbound before bound, pending before running, not ready before ready, newer
/// before older.
pub fn deletion_rank(p: &Pod) -> (u8, u8, u8, Reverse<Option<jiff::Timestamp>>) {
    let bound = p
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let phase = match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        _ => 2,
    };
    (
        u8::from(bound),
        phase,
        u8::from(ready_since(p).is_some()),
        Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)),
    )
}

/// The status counts of an owner: its `status.replicas`, `fullyLabeledReplicas`,
/// `readyReplicas`, `availableReplicas` and `observedGeneration` (the same names in
/// ReplicaSet and ReplicationController).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub replicas: i32,
    pub fully_labeled: i32,
    pub ready: i32,
    pub available: i32,
    pub observed_generation: Option<i64>,
}

/// The counts `active` pods make for an owner whose template has `template_labels`.
pub fn counts(
    active: &[&Pod],
    template_labels: &BTreeMap<String, String>,
    min_ready_seconds: i32,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Counts {
    let count = |f: &dyn Fn(&Pod) -> bool| active.iter().filter(|p| f(p)).count() as i32;
    Counts {
        replicas: active.len() as i32,
        fully_labeled: count(&|p| {
            let labels = p.metadata.labels.as_ref();
            template_labels
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        }),
        ready: count(&|p| ready_since(p).is_some()),
        available: count(&|p| pod_available(p, min_ready_seconds, now)),
        observed_generation: generation,
    }
}

/// When to look again though nothing changes: a ready pod becomes available
/// `minReadySeconds` later.
pub fn recheck_after(c: &Counts, min_ready_seconds: i32) -> Option<Duration> {
    (min_ready_seconds > 0 && c.ready > c.available)
        .then(|| Duration::from_secs(min_ready_seconds as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(name: &str, node: Option<&str>, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(str::to_string),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    fn ready(mut p: Pod, since: jiff::Timestamp) -> Pod {
        p.status.get_or_insert_with(Default::default).conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(Time(since)),
            ..Default::default()
        }]);
        p
    }

    fn names(d: Diff<'_>) -> Vec<String> {
        match d {
            Diff::Delete(v) => v.iter().map(|p| p.metadata.name.clone().unwrap()).collect(),
            other => panic!("expected deletions, got {other:?}"),
        }
    }

    #[test]
    fn unbound_pending_and_unready_pods_go_first() {
        let t = jiff::Timestamp::from_second(1_000_000).unwrap();
        let running_ready = ready(pod("running-ready", Some("n"), "Running"), t);
        let running = pod("running", Some("n"), "Running");
        let pending = pod("pending-bound", Some("n"), "Pending");
        let unbound = pod("unbound", None, "Pending");
        let active = [&running_ready, &running, &pending, &unbound];
        assert_eq!(
            names(diff(0, &active)),
            ["unbound", "pending-bound", "running", "running-ready"]
        );
        assert_eq!(names(diff(2, &active)), ["unbound", "pending-bound"]);
    }

    #[test]
    fn newer_pods_go_before_older_ones() {
        let mut old = pod("old", Some("n"), "Running");
        old.metadata.creation_timestamp = Some(Time(jiff::Timestamp::from_second(1).unwrap()));
        let mut new = pod("new", Some("n"), "Running");
        new.metadata.creation_timestamp = Some(Time(jiff::Timestamp::from_second(2).unwrap()));
        assert_eq!(names(diff(1, &[&old, &new])), ["new"]);
    }

    #[test]
    fn creations_and_deletions_are_capped_per_reconcile() {
        let p = pod("p", None, "Pending");
        assert_eq!(diff(3, &[&p]), Diff::Create(2));
        assert_eq!(diff(1, &[&p]), Diff::Steady);
        assert_eq!(diff(-1, &[]), Diff::Steady, "negative replicas mean none");
        assert_eq!(diff(10_000, &[]), Diff::Create(BURST));
        let many = vec![p.clone(); BURST + 10];
        let refs: Vec<&Pod> = many.iter().collect();
        match diff(0, &refs) {
            Diff::Delete(v) => assert_eq!(v.len(), BURST),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn counts_follow_labels_readiness_and_min_ready_seconds() {
        let now = jiff::Timestamp::from_second(1_000_000).unwrap();
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let mut labeled = ready(
            pod("a", Some("n"), "Running"),
            now - jiff::SignedDuration::from_secs(60),
        );
        labeled.metadata.labels = Some(labels.clone());
        let just_ready = ready(pod("b", Some("n"), "Running"), now);
        let starting = pod("c", Some("n"), "Pending");
        let active = [&labeled, &just_ready, &starting];
        let c = counts(&active, &labels, 10, Some(3), now);
        assert_eq!(
            c,
            Counts {
                replicas: 3,
                fully_labeled: 1,
                ready: 2,
                available: 1,
                observed_generation: Some(3),
            }
        );
        assert_eq!(recheck_after(&c, 10), Some(Duration::from_secs(10)));
        let c0 = counts(&active, &labels, 0, Some(3), now);
        assert_eq!((c0.available, recheck_after(&c0, 0)), (2, None));
    }
}
