//! One scheduler and one controller-manager acting at a time, judged from the kvstore's
//! own record. Every binding names who made it and under which term (the pod's
//! `scheduler.flotilla.io/bound-by`, `<identity>@<revision of the acquisition>`), every
//! pod a controller created likewise (`controller.flotilla.io/created-by`), and the
//! Lease's fence records every acquisition. An act is in order when its term is an
//! acquisition by the same identity and no later acquisition came before the act's own
//! revision. An act with no term was made by a replica outside leader election; one after
//! the next acquisition was made by a deposed leader (what the apiserver's fence refuses).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::pods::{MonitorLog, PodSeen};
use super::Verdict;
use crate::report::Window;

/// The leases in kube-system.
const SCHEDULER: &str = "flotilla-scheduler";
const CONTROLLER_MANAGER: &str = "flotilla-controller-manager";

/// `<identity>@<revision>`, or an identity alone.
fn parse(stamp: &str) -> (&str, Option<i64>) {
    match stamp.rsplit_once('@') {
        Some((id, rev)) => match rev.parse() {
            Ok(r) => (id, Some(r)),
            Err(_) => (stamp, None),
        },
        None => (stamp, None),
    }
}

/// Each pod's binding (the first change with a node), as the scheduler stamped it.
/// `faults`: the run's fault windows, to time each takeover from the fault before it.
pub fn one_scheduler(monitor: &MonitorLog, faults: &[Window]) -> Verdict {
    let mut bound = BTreeSet::new();
    let acts = sorted(monitor)
        .filter(|s| !s.deleted && s.node.is_some() && bound.insert(s.uid.as_str()))
        .map(|s| (s, s.bound_by.as_deref()));
    one_actor("one-scheduler-at-a-time", SCHEDULER, acts, monitor, faults)
}

/// Each pod's creation (its first change), as the controller that made it stamped it.
/// Pods made by no controller of the workload (none here) would count as unattributed.
pub fn one_controller_manager(monitor: &MonitorLog, faults: &[Window]) -> Verdict {
    let mut created = BTreeSet::new();
    let acts = sorted(monitor)
        .filter(|s| created.insert(s.uid.as_str()))
        .map(|s| (s, s.created_by.as_deref()));
    one_actor(
        "one-controller-manager-at-a-time",
        CONTROLLER_MANAGER,
        acts,
        monitor,
        faults,
    )
}

fn sorted(monitor: &MonitorLog) -> impl Iterator<Item = &PodSeen> {
    let mut seen: Vec<_> = monitor.seen.iter().collect();
    seen.sort_by_key(|s| s.revision);
    seen.into_iter()
}

fn one_actor<'a>(
    name: &str,
    lease: &str,
    acts: impl Iterator<Item = (&'a PodSeen, Option<&'a str>)>,
    monitor: &MonitorLog,
    faults: &[Window],
) -> Verdict {
    let mut v = Verdict::new(name);
    let mut terms: Vec<(i64, &str, Option<f64>)> = monitor
        .fences
        .iter()
        .filter(|f| f.lease == lease)
        .map(|f| (f.revision, f.holder.as_str(), f.seen_ms))
        .collect();
    terms.sort_by_key(|t| t.0);
    terms.dedup_by_key(|t| t.0);
    let mut count = 0usize;
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    // Per term: when its first act was seen.
    let mut first_act: BTreeMap<i64, f64> = BTreeMap::new();
    for (s, stamp) in acts {
        count += 1;
        let Some(stamp) = stamp else {
            v.anomaly(json!({"type": "unattributed", "pod": s.name, "revision": s.revision}));
            continue;
        };
        let (id, term) = parse(stamp);
        *by.entry(id).or_default() += 1;
        let Some(term) = term else {
            v.anomaly(json!({
                "type": "acted-without-lease",
                "pod": s.name, "identity": id, "revision": s.revision,
            }));
            continue;
        };
        let Some(i) = terms.iter().position(|t| t.0 == term) else {
            v.anomaly(json!({
                "type": "unknown-term",
                "pod": s.name, "identity": id, "term": term, "revision": s.revision,
            }));
            continue;
        };
        if terms[i].1 != id {
            v.anomaly(json!({
                "type": "term-of-another",
                "pod": s.name, "identity": id, "term": term, "holder": terms[i].1,
            }));
        }
        if let Some(next) = terms.get(i + 1).filter(|n| n.0 <= s.revision) {
            v.anomaly(json!({
                "type": "acted-after-losing-lease",
                "pod": s.name, "identity": id, "term": term, "revision": s.revision,
                "taken-at": next.0, "by": next.1,
            }));
        }
        first_act.entry(term).or_insert(s.seen_ms);
    }
    // Acquisitions during the run: when the monitor saw each, the new leader's first act,
    // and for a takeover (a new holder) the last fault before it that hit the previous
    // holder's master during the previous term (a replica's identity begins with its
    // host's name, as the kill and pause faults name it), with the time from that fault's
    // start to the first act. A fault before the previous term began did not end it.
    let takeovers: Vec<_> = terms
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.1.is_empty())
        .filter_map(|(i, t)| Some((i, t, t.2?)))
        .map(|(i, t, seen)| {
            let first = first_act.get(&t.0).copied();
            let before = terms[..i].iter().rev().find(|p| !p.1.is_empty());
            // A replica acquiring again after losing its renewals is no takeover.
            let host = before
                .filter(|p| p.1 != t.1)
                .and_then(|p| p.1.split_once('_'))
                .map(|(h, _)| h);
            // When the previous term began (None: before the run).
            let since = before.and_then(|p| p.2).unwrap_or(f64::NEG_INFINITY);
            let fault = faults
                .iter()
                .filter(|w| (w.start as f64) / 1e6 <= seen && (w.start as f64) / 1e6 >= since)
                .filter(|w| host.is_some_and(|h| w.start_detail.split_whitespace().any(|x| x == h)))
                .max_by_key(|w| w.start);
            json!({
                "revision": t.0, "holder": t.1, "previous": before.map(|p| p.1), "seen-ms": seen,
                "first-act-ms": first,
                "after-fault": fault.map(|w| format!("{} {}", w.fault, w.start_detail)),
                "fault-to-first-act-ms": fault.zip(first).map(|(w, f)| f - w.start as f64 / 1e6),
            })
        })
        .collect();
    v.stats = json!({
        "acts": count,
        "by-replica": by,
        "acting-replicas": by.len(),
        "acquisitions": terms.len(),
        "takeovers": takeovers,
    });
    if let Some(why) = monitor.incomplete() {
        v.unknown(why);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::pods::{FenceSeen, PodSeen};
    use crate::checker::Validity;

    fn fence(revision: i64, holder: &str) -> FenceSeen {
        FenceSeen {
            revision,
            lease: SCHEDULER.into(),
            holder: holder.into(),
            seen_ms: Some(revision as f64),
        }
    }

    fn bind(revision: i64, uid: &str, by: &str) -> PodSeen {
        PodSeen {
            revision,
            name: format!("p-{uid}"),
            uid: uid.into(),
            node: Some("a0".into()),
            bound_by: Some(by.into()),
            created_by: None,
            deleted: false,
            seen_ms: revision as f64,
        }
    }

    fn log(fences: Vec<FenceSeen>, seen: Vec<PodSeen>) -> MonitorLog {
        MonitorLog {
            seen,
            fences,
            complete: true,
            gap: None,
        }
    }

    #[test]
    fn bindings_within_their_terms_are_valid() {
        let l = log(
            vec![fence(5, "s1"), fence(20, "s2")],
            vec![
                bind(10, "a", "s1@5"),
                bind(19, "b", "s1@5"),
                bind(21, "c", "s2@20"),
            ],
        );
        let v = one_scheduler(&l, &[]);
        assert_eq!(v.valid, Validity::Valid, "{v:?}");
        assert_eq!(v.stats["acting-replicas"], 2);
        assert_eq!(v.stats["takeovers"][1]["first-act-ms"], 21.0);
        assert_eq!(v.stats["takeovers"][1]["previous"], "s1");
    }

    #[test]
    fn a_takeover_is_timed_from_the_fault_on_the_previous_leaders_host() {
        let window = |fault: &str, host: &str, start_ms: u64| Window {
            fault: fault.into(),
            start: start_ms * 1_000_000,
            stop: None,
            start_detail: host.into(),
            stop_detail: String::new(),
        };
        let l = log(
            vec![fence(5, "m0_a"), fence(20, "m1_b")],
            vec![bind(10, "a", "m0_a@5"), bind(25, "b", "m1_b@20")],
        );
        // m0's term began at 5: the pause of m0 at 2 did not end it, the kill at 12 did.
        let faults = [
            window("pause", "m0", 2),
            window("kill", "m0", 12),
            window("pause", "m2", 14),
        ];
        let v = one_scheduler(&l, &faults);
        let t = &v.stats["takeovers"][1];
        assert_eq!(t["after-fault"], "kill m0");
        assert_eq!(t["fault-to-first-act-ms"], 13.0);
        let early = [window("kill", "m0", 4)];
        let v = one_scheduler(&l, &early);
        assert_eq!(
            v.stats["takeovers"][1]["after-fault"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn a_deposed_leader_binding_is_caught() {
        let l = log(
            vec![fence(5, "s1"), fence(20, "s2")],
            vec![bind(10, "a", "s1@5"), bind(22, "b", "s1@5")],
        );
        let v = one_scheduler(&l, &[]);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.anomalies[0]["type"], "acted-after-losing-lease");
        assert_eq!(v.anomalies[0]["by"], "s2");
    }

    #[test]
    fn schedulers_without_leader_election_are_caught() {
        let l = log(vec![], vec![bind(10, "a", "m0_x"), bind(11, "b", "m1_y")]);
        let v = one_scheduler(&l, &[]);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.anomalies.len(), 2);
        assert_eq!(v.anomalies[0]["type"], "acted-without-lease");
        assert_eq!(v.stats["acting-replicas"], 2);
    }

    #[test]
    fn a_term_claimed_by_another_replica_is_caught() {
        let l = log(vec![fence(5, "s1")], vec![bind(10, "a", "s2@5")]);
        assert_eq!(
            one_scheduler(&l, &[]).anomalies[0]["type"],
            "term-of-another"
        );
    }

    #[test]
    fn pods_created_without_a_term_are_caught() {
        let mut p = bind(10, "a", "s1@5");
        p.node = None;
        p.created_by = Some("cm1".into());
        let mut q = bind(11, "a", "s1@5");
        q.created_by = Some("cm1".into());
        let l = log(vec![fence(5, "s1")], vec![p, q]);
        // One creation (the first change of the pod), one binding.
        let v = one_controller_manager(&l, &[]);
        assert_eq!(v.stats["acts"], 1);
        assert_eq!(v.anomalies[0]["type"], "acted-without-lease");
        assert_eq!(one_scheduler(&l, &[]).valid, Validity::Valid);
    }

    #[test]
    fn an_incomplete_record_cannot_be_valid() {
        let mut l = log(vec![fence(5, "s1")], vec![bind(10, "a", "s1@5")]);
        l.complete = false;
        assert_eq!(one_scheduler(&l, &[]).valid, Validity::Unknown);
    }
}
