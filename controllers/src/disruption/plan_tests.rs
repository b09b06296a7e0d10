//! Cases after kube's `disruption_test.go`.

use serde_json::json;

use super::*;

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn pdb(spec: serde_json::Value, status: serde_json::Value) -> PodDisruptionBudget {
    let mut spec = spec;
    spec["selector"] = json!({"matchLabels": {"app": "web"}});
    serde_json::from_value(json!({
        "metadata": {"name": "b", "namespace": "d", "generation": 1},
        "spec": spec, "status": status
    }))
    .unwrap()
}

fn pod(name: &str, ready: bool, owner: Option<&str>) -> Pod {
    let owners = owner.map(|uid| {
        json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                "uid": uid, "controller": true}])
    });
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "d", "labels": {"app": "web"},
                     "ownerReferences": owners},
        "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
    }))
    .unwrap()
}

fn scales(pairs: &[(&str, &str, i32)]) -> Scales {
    pairs
        .iter()
        .map(|(pod_ref, uid, n)| (pod_ref.to_string(), (uid.to_string(), *n)))
        .collect()
}

#[test]
fn percentages_round_up() {
    assert_eq!(scaled(&IntOrString::String("50%".into()), 3), Ok(2));
    assert_eq!(scaled(&IntOrString::String("34%".into()), 3), Ok(2));
    assert_eq!(scaled(&IntOrString::String("0%".into()), 3), Ok(0));
    assert_eq!(scaled(&IntOrString::String("100%".into()), 7), Ok(7));
    assert_eq!(scaled(&IntOrString::Int(4), 7), Ok(4));
    assert!(scaled(&IntOrString::String("5".into()), 7).is_err());
    // A stored value never overflows the arithmetic.
    let huge = format!("{}%", i64::MAX);
    assert_eq!(scaled(&IntOrString::String(huge), i32::MAX), Ok(i32::MAX));
}

#[test]
fn min_available_integer_counts_the_pods() {
    let b = pdb(json!({"minAvailable": 2}), json!({}));
    let pods = [
        pod("a", true, None),
        pod("b", true, None),
        pod("c", false, None),
    ];
    let refs: Vec<&Pod> = covered(&b, &pods);
    assert!(!needs_scales(&b));
    let e = expected(&b, &refs, &Scales::new()).unwrap();
    assert_eq!((e.expected, e.desired_healthy), (3, 2));
    let h = healthy(&refs, &BTreeMap::new(), at("2026-01-01T00:00:00Z"));
    assert_eq!(h, 2);
    let s = status(&b, h, &e, BTreeMap::new(), at("2026-01-01T00:00:00Z")).unwrap();
    assert_eq!(s.disruptions_allowed, 0);
    assert_eq!(s.observed_generation, Some(1));
    let c = &s.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "InsufficientPods")
    );
}

#[test]
fn max_unavailable_uses_the_controllers_scale_once_each() {
    let b = pdb(json!({"maxUnavailable": "25%"}), json!({}));
    // Two ReplicaSets of one Deployment (uid D, 4 replicas) mid-rollout.
    let pods = [
        pod("a", true, Some("rs1")),
        pod("b", true, Some("rs1")),
        pod("c", true, Some("rs2")),
        pod("d", true, Some("rs2")),
    ];
    let refs = covered(&b, &pods);
    assert!(needs_scales(&b));
    let e = expected(&b, &refs, &scales(&[("rs1", "D", 4), ("rs2", "D", 4)])).unwrap();
    assert_eq!((e.expected, e.desired_healthy), (4, 3));
    let s = status(&b, 4, &e, BTreeMap::new(), at("2026-01-01T00:00:00Z")).unwrap();
    assert_eq!(s.disruptions_allowed, 1);
    // Without the controller: kube's error, and the fail-safe status.
    let err = expected(&b, &refs, &scales(&[("rs1", "D", 4)])).unwrap_err();
    assert_eq!(err, "found no controllers for pod \"c\"");
    let f = fail_safe(&b, &err, at("2026-01-01T00:00:00Z"));
    assert_eq!(f.disruptions_allowed, 0);
    let c = &f.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (c.reason.as_str(), c.message.as_str()),
        ("SyncFailed", err.as_str())
    );
}

#[test]
fn unmanaged_pods_are_named_not_counted() {
    let b = pdb(json!({"minAvailable": "50%"}), json!({}));
    let pods = [pod("a", true, Some("rs1")), pod("loose", true, None)];
    let refs = covered(&b, &pods);
    let e = expected(&b, &refs, &scales(&[("rs1", "R", 2)])).unwrap();
    assert_eq!((e.expected, e.desired_healthy), (2, 1));
    assert_eq!(e.unmanaged, ["loose"]);
}

#[test]
fn evicted_pods_are_unhealthy_until_deleted_or_expired() {
    let now = at("2026-01-01T00:01:00Z");
    let b = pdb(
        json!({"minAvailable": 1}),
        json!({"disruptedPods": {
            "a": "2026-01-01T00:00:30Z",      // evicted 30 s ago: awaited
            "b": "2025-12-31T23:50:00Z",      // 11 min ago: expired
            "gone": "2026-01-01T00:00:50Z"    // no such pod: dropped
        }}),
    );
    let mut deleting = pod("c", true, None);
    deleting.metadata.deletion_timestamp = Some(Time(now));
    let pods = [pod("a", true, None), pod("b", true, None), deleting];
    let refs = covered(&b, &pods);
    let (kept, recheck, expired) = awaited(&b, &refs, now);
    assert_eq!(kept.keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(recheck, Some(at("2026-01-01T00:02:30Z")));
    assert_eq!(expired, ["b"]);
    // a is awaited, c is being deleted: only b is healthy.
    assert_eq!(healthy(&refs, &kept, now), 1);
}

#[test]
fn an_unchanged_status_is_not_written_again() {
    let now = at("2026-01-01T00:00:00Z");
    let b = pdb(json!({"minAvailable": 1}), json!({}));
    let e = Expected {
        expected: 3,
        desired_healthy: 1,
        unmanaged: vec![],
    };
    let s = status(&b, 3, &e, BTreeMap::new(), now).unwrap();
    assert_eq!(s.disruptions_allowed, 2);
    let mut written = b.clone();
    written.status = Some(s);
    assert_eq!(status(&written, 3, &e, BTreeMap::new(), now), None);
    // A new generation is observed even with the same counts.
    written.metadata.generation = Some(2);
    assert!(status(&written, 3, &e, BTreeMap::new(), now).is_some());
}

#[test]
fn no_expected_pods_allow_nothing() {
    let b = pdb(json!({"maxUnavailable": 1}), json!({}));
    let e = expected(&b, &[], &Scales::new()).unwrap();
    let s = status(&b, 0, &e, BTreeMap::new(), at("2026-01-01T00:00:00Z")).unwrap();
    assert_eq!(s.disruptions_allowed, 0);
    // A budget without a selector covers nothing.
    let mut none = pdb(json!({"minAvailable": 1}), json!({}));
    none.spec.as_mut().unwrap().selector = None;
    assert!(covered(&none, &[pod("a", true, None)]).is_empty());
}
