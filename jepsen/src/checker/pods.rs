//! The pods workload's checkers: every pod is bound at most once (its spec.nodeName, once
//! set, never changes, in the kvstore's own record of every change); one scheduler binds at
//! a time (`leaders.rs`); the Deployments'
//! desired replicas are a linearizable register (scales are writes, the final consistent
//! read a read); and after the heal every Deployment rolled out to its desired replicas
//! within the bound.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use super::linear::RegOp;
use super::register::check_keys;
use super::Verdict;
use crate::history::{Event, Op};
use serde::Serialize;

/// One change of a pod as the kvstore recorded it.
#[derive(Clone, Debug, Serialize)]
pub struct PodSeen {
    pub revision: i64,
    pub name: String,
    pub uid: String,
    /// spec.nodeName (None: not bound).
    pub node: Option<String>,
    /// The scheduler's record of who bound it (`scheduler.flotilla.io/bound-by`).
    pub bound_by: Option<String>,
    /// The controller-manager's record of who created it
    /// (`controller.flotilla.io/created-by`).
    pub created_by: Option<String>,
    pub deleted: bool,
    /// Milliseconds into the run when the monitor saw it.
    pub seen_ms: f64,
}

/// One acquisition (or release) of a leader-election Lease: a change of its fence.
#[derive(Clone, Debug, Serialize)]
pub struct FenceSeen {
    /// The acquisition's revision: the term its holder's writes name.
    pub revision: i64,
    /// The Lease's name (flotilla-scheduler, flotilla-controller-manager).
    pub lease: String,
    /// The new holder ("" when released or deleted).
    pub holder: String,
    /// Milliseconds into the run when the monitor saw it (None: before the run).
    pub seen_ms: Option<f64>,
}

/// What the monitor saw, and whether it saw everything up to the end.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MonitorLog {
    pub seen: Vec<PodSeen>,
    /// The leases' fences: as they stood at the start, then every change.
    pub fences: Vec<FenceSeen>,
    /// Every revision up to the end was delivered (pods and fences).
    pub complete: bool,
    /// Why not, if not.
    pub gap: Option<String>,
}

impl MonitorLog {
    /// Why the record may miss changes, if it may.
    pub fn incomplete(&self) -> Option<&str> {
        (!self.complete).then(|| {
            self.gap
                .as_deref()
                .unwrap_or("the monitor did not see every revision up to the end")
        })
    }
}

/// How one Deployment ended up after the heal.
#[derive(Clone, Debug, Serialize)]
pub struct Converged {
    pub deployment: String,
    pub desired: Option<u32>,
    /// Milliseconds from `since` until its rollout was done (None: not within the bound).
    pub after_ms: Option<f64>,
}

pub fn check(
    history: &[Event],
    monitor: &MonitorLog,
    converged: &[Converged],
    deadline: Instant,
) -> Vec<Verdict> {
    let faults = crate::report::windows(history);
    vec![
        bound_once(monitor),
        super::leaders::one_scheduler(monitor, &faults),
        super::leaders::one_controller_manager(monitor, &faults),
        desired_replicas(history, deadline),
        rolled_out(converged),
    ]
}

fn bound_once(monitor: &MonitorLog) -> Verdict {
    let mut v = Verdict::new("pods-bound-once");
    let mut seen = monitor.seen.clone();
    seen.sort_by_key(|s| s.revision);
    // Per pod (by UID): the node it was first bound to, and at which revision.
    let mut bound: BTreeMap<&str, (&str, i64)> = BTreeMap::new();
    let mut pods = BTreeMap::new();
    for s in &seen {
        pods.insert(s.uid.as_str(), ());
        if s.deleted {
            continue;
        }
        match (bound.get(s.uid.as_str()), &s.node) {
            (None, Some(n)) => {
                bound.insert(&s.uid, (n, s.revision));
            }
            (Some(&(first, at)), now) if now.as_deref() != Some(first) => {
                v.anomaly(json!({
                    "type": if now.is_some() { "bound-twice" } else { "unbound" },
                    "pod": s.name,
                    "uid": s.uid,
                    "first": {"node": first, "revision": at},
                    "then": {"node": now, "revision": s.revision},
                }));
            }
            _ => {}
        }
    }
    v.stats = json!({
        "pods": pods.len(),
        "bound": bound.len(),
        "changes-seen": seen.len(),
        "monitor-complete": monitor.complete,
    });
    if let Some(why) = monitor.incomplete() {
        v.unknown(why);
    }
    v
}

fn desired_replicas(history: &[Event], deadline: Instant) -> Verdict {
    check_keys(
        "linearizable-replicas",
        history,
        deadline,
        |invoke, complete| match (invoke, complete) {
            (
                Op::Scale {
                    deployment,
                    replicas,
                },
                _,
            ) => vec![(deployment.clone(), RegOp::Write(u64::from(*replicas)))],
            (Op::Get { key, .. }, Some(Op::Get { value, .. })) => {
                vec![(key.clone(), RegOp::Read(*value))]
            }
            _ => vec![],
        },
    )
}

fn rolled_out(converged: &[Converged]) -> Verdict {
    let mut v = Verdict::new("deployments-roll-out");
    for c in converged {
        if c.after_ms.is_none() {
            v.anomaly(json!({
                "type": "not-rolled-out",
                "deployment": c.deployment,
                "desired": c.desired,
            }));
        }
    }
    v.stats = json!({
        "after-heal-ms": converged
            .iter()
            .map(|c| (c.deployment.clone(), json!(c.after_ms)))
            .collect::<serde_json::Map<_, _>>(),
    });
    v
}

#[cfg(test)]
mod tests {
    use super::PodSeen;
    use super::*;
    use crate::checker::Validity;

    fn seen(revision: i64, uid: &str, node: Option<&str>, deleted: bool) -> PodSeen {
        PodSeen {
            revision,
            name: format!("p-{uid}"),
            uid: uid.into(),
            node: node.map(str::to_string),
            bound_by: None,
            created_by: None,
            deleted,
            seen_ms: 0.0,
        }
    }

    #[test]
    fn a_pod_bound_to_a_second_node_is_caught() {
        let mut log = MonitorLog {
            seen: vec![
                seen(2, "a", None, false),
                seen(3, "a", Some("n1"), false),
                seen(4, "b", Some("n2"), false),
                // Status updates keep the node; deletion is not unbinding.
                seen(5, "a", Some("n1"), false),
                seen(6, "a", None, true),
            ],
            fences: vec![],
            complete: true,
            gap: None,
        };
        let v = bound_once(&log);
        assert_eq!(v.valid, Validity::Valid, "{v:?}");
        assert_eq!(v.stats["bound"], 2);
        log.seen.push(seen(7, "b", Some("n1"), false));
        let v = bound_once(&log);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.anomalies[0]["type"], "bound-twice");
        assert_eq!(v.anomalies[0]["first"]["node"], "n2");
    }

    #[test]
    fn an_incomplete_record_cannot_be_valid() {
        let log = MonitorLog {
            seen: vec![],
            fences: vec![],
            complete: false,
            gap: Some("compacted".into()),
        };
        assert_eq!(bound_once(&log).valid, Validity::Unknown);
    }

    #[test]
    fn a_deployment_that_never_rolled_out_is_reported() {
        let c = [
            Converged {
                deployment: "d0".into(),
                desired: Some(2),
                after_ms: Some(900.0),
            },
            Converged {
                deployment: "d1".into(),
                desired: Some(3),
                after_ms: None,
            },
        ];
        let v = rolled_out(&c);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.anomalies.len(), 1);
        assert_eq!(v.stats["after-heal-ms"]["d0"], 900.0);
    }
}
