//! The eviction's decisions, as kube's eviction tests table them.

use serde_json::json;

use super::*;

fn pod(phase: &str, ready: bool, labels: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "d", "labels": labels},
        "status": {"phase": phase, "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }}
        ]}
    }))
    .unwrap()
}

fn budget(selector: serde_json::Value, status: serde_json::Value) -> PodDisruptionBudget {
    serde_json::from_value(json!({
        "metadata": {"name": "b", "namespace": "d", "generation": 1},
        "spec": {"selector": selector, "minAvailable": 1},
        "status": status
    }))
    .unwrap()
}

fn now() -> Time {
    Time("2026-01-01T00:00:00Z".parse().unwrap())
}

#[test]
fn pods_that_disrupt_nothing_skip_the_budget() {
    assert!(can_ignore_budget(&pod("Pending", false, json!({}))));
    assert!(can_ignore_budget(&pod("Succeeded", false, json!({}))));
    assert!(can_ignore_budget(&pod("Failed", true, json!({}))));
    assert!(!can_ignore_budget(&pod("Running", true, json!({}))));
    let mut going = pod("Running", true, json!({}));
    going.metadata.deletion_timestamp = Some(now());
    assert!(can_ignore_budget(&going));
    // A pending pod may start meanwhile: its delete is of the version judged.
    assert!(should_enforce_rv(&pod("Pending", false, json!({}))));
    assert!(!should_enforce_rv(&pod("Failed", false, json!({}))));
    assert!(!should_enforce_rv(&going));
}

#[test]
fn budgets_select_by_label_and_empty_selects_all() {
    let p = pod("Running", true, json!({"app": "web"}));
    let all = [
        budget(json!({"matchLabels": {"app": "web"}}), json!({})),
        budget(json!({"matchLabels": {"app": "db"}}), json!({})),
        budget(json!({}), json!({})),
        budget(
            json!({"matchExpressions": [{"key": "app", "operator": "Bogus"}]}),
            json!({}),
        ),
    ];
    assert_eq!(matching(&all, &p).len(), 2);
    let mut none: PodDisruptionBudget = all[0].clone();
    none.spec.as_mut().unwrap().selector = None;
    assert!(matching(&[none], &p).is_empty());
}

#[test]
fn decrement_takes_one_disruption_and_lists_the_pod() {
    let mut b = budget(
        json!({}),
        json!({"observedGeneration": 1, "disruptionsAllowed": 1,
               "currentHealthy": 3, "desiredHealthy": 2, "expectedPods": 3}),
    );
    check_and_decrement(&mut b, "p", now(), false).unwrap();
    let s = b.status.as_ref().unwrap();
    assert_eq!(s.disruptions_allowed, 0);
    assert_eq!(s.disrupted_pods.as_ref().unwrap()["p"], now());
    let c = &s.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
        ("DisruptionAllowed", "False", "InsufficientPods")
    );
    // The next one is refused with kube's 429 and cause.
    let e = check_and_decrement(&mut b, "q", now(), false).unwrap_err();
    assert_eq!(e.code(), 429);
    let st = e.to_status();
    assert_eq!(
        st.message.as_deref(),
        Some("Cannot evict pod as it would violate the pod's disruption budget.")
    );
    let cause = &st.details.unwrap().causes.unwrap()[0];
    assert_eq!(cause.reason.as_deref(), Some("DisruptionBudget"));
    assert_eq!(
        cause.message.as_deref(),
        Some("The disruption budget b needs 2 healthy pods and has 3 currently")
    );
}

#[test]
fn dry_run_decrements_without_listing() {
    let mut b = budget(
        json!({}),
        json!({"observedGeneration": 1, "disruptionsAllowed": 2}),
    );
    check_and_decrement(&mut b, "p", now(), true).unwrap();
    assert_eq!(b.status.as_ref().unwrap().disruptions_allowed, 1);
    assert!(b.status.as_ref().unwrap().disrupted_pods.is_none());
}

#[test]
fn unprocessed_negative_and_overfull_budgets_refuse() {
    let mut b = budget(
        json!({}),
        json!({"observedGeneration": 0, "disruptionsAllowed": 5}),
    );
    let e = check_and_decrement(&mut b, "p", now(), false).unwrap_err();
    assert_eq!(e.code(), 429);
    let st = e.to_status();
    let d = st.details.unwrap();
    assert_eq!(d.retry_after_seconds, Some(10));
    assert_eq!(
        d.causes.unwrap()[0].message.as_deref(),
        Some("The disruption budget b is still being processed by the server.")
    );
    let mut b = budget(
        json!({}),
        json!({"observedGeneration": 1, "disruptionsAllowed": -1}),
    );
    let e = check_and_decrement(&mut b, "p", now(), false).unwrap_err();
    assert_eq!(e.code(), 403);
    assert_eq!(
        e.to_string(),
        "poddisruptionbudget.policy \"b\" is forbidden: pdb disruptions allowed is negative"
    );
    let mut b = budget(
        json!({}),
        json!({"observedGeneration": 1, "disruptionsAllowed": 1}),
    );
    let many: std::collections::BTreeMap<String, Time> = (0..=MAX_DISRUPTED_PODS)
        .map(|i| (format!("p{i}"), now()))
        .collect();
    b.status.as_mut().unwrap().disrupted_pods = Some(many);
    assert_eq!(
        check_and_decrement(&mut b, "p", now(), false)
            .unwrap_err()
            .code(),
        403
    );
}

#[test]
fn unready_pods_go_when_the_application_is_healthy_or_always_allowed() {
    let healthy = budget(json!({}), json!({"currentHealthy": 2, "desiredHealthy": 2}));
    assert!(unhealthy_may_go(&healthy));
    let short = budget(json!({}), json!({"currentHealthy": 1, "desiredHealthy": 2}));
    assert!(!unhealthy_may_go(&short));
    let nothing_desired = budget(json!({}), json!({}));
    assert!(!unhealthy_may_go(&nothing_desired));
    let mut always = short.clone();
    always.spec.as_mut().unwrap().unhealthy_pod_eviction_policy = Some("AlwaysAllow".into());
    assert!(unhealthy_may_go(&always));
}
