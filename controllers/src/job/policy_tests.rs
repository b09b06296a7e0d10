use super::*;
use serde_json::json;

fn failed_pod(codes: &[(&str, i32)], conditions: serde_json::Value) -> Pod {
    let statuses: Vec<_> = codes
        .iter()
        .map(|(n, code)| {
            json!({"name": n, "image": "i", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": code}}})
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns"},
        "status": {"phase": "Failed", "containerStatuses": statuses, "conditions": conditions}
    }))
    .unwrap()
}

fn policy(rules: serde_json::Value) -> PodFailurePolicy {
    serde_json::from_value(json!({ "rules": rules })).unwrap()
}

#[test]
fn rules_match_in_order_on_exit_codes_and_conditions() {
    let pol = policy(json!([
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "Count", "onExitCodes": {"containerName": "side", "operator": "In", "values": [1]}},
        {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [1, 2]}},
    ]));
    let disrupted = failed_pod(
        &[("main", 5)],
        json!([{"type": "DisruptionTarget", "status": "True"}]),
    );
    assert_eq!(judge(Some(&pol), &disrupted), Verdict::Ignore);
    // Exit 1 of "main": the Count rule names another container, NotIn excludes 1.
    assert_eq!(
        judge(Some(&pol), &failed_pod(&[("main", 1)], json!([]))),
        Verdict::Count
    );
    assert_eq!(
        judge(Some(&pol), &failed_pod(&[("side", 1)], json!([]))),
        Verdict::Count
    );
    assert_eq!(
        judge(
            Some(&pol),
            &failed_pod(&[("ok", 0), ("main", 7)], json!([]))
        ),
        Verdict::FailJob(
            "Container main for pod ns/p failed with exit code 7 matching FailJob rule at index 2"
                .into()
        )
    );
    // Exit code 0 never matches, not even NotIn.
    assert_eq!(
        judge(Some(&pol), &failed_pod(&[("main", 0)], json!([]))),
        Verdict::Count
    );
    assert_eq!(judge(None, &disrupted), Verdict::Count);
    let cond = policy(json!([{"action": "FailJob",
        "onPodConditions": [{"type": "ConfigIssue", "status": "True"}]}]));
    assert_eq!(
        judge(
            Some(&cond),
            &failed_pod(&[], json!([{"type": "ConfigIssue", "status": "True"}]))
        ),
        Verdict::FailJob(
            "Pod ns/p has condition ConfigIssue matching FailJob rule at index 0".into()
        )
    );
}

#[test]
fn success_rules() {
    let pol: SuccessPolicy = serde_json::from_value(json!({"rules": [
        {"succeededIndexes": "0-2"},
        {"succeededCount": 3},
        {"succeededIndexes": "4-9", "succeededCount": 2},
    ]}))
    .unwrap();
    let set = |v: &[i32]| v.iter().copied().collect::<BTreeSet<i32>>();
    assert_eq!(success_rule_met(Some(&pol), &set(&[0, 1]), 10), None);
    assert_eq!(success_rule_met(Some(&pol), &set(&[0, 1, 2]), 10), Some(0));
    assert_eq!(success_rule_met(Some(&pol), &set(&[0, 1, 3]), 10), Some(1));
    assert_eq!(success_rule_met(Some(&pol), &set(&[5, 9]), 10), Some(2));
    assert_eq!(success_rule_met(Some(&pol), &set(&[3, 9]), 10), None);
    assert_eq!(success_rule_met(None, &set(&[0, 1, 2]), 10), None);
}

#[test]
fn failure_counts_follow_the_last_failed_pod_of_the_index() {
    let mut a = failed_pod(&[("c", 1)], json!([]));
    a.metadata.annotations = Some(
        [(INDEX_FAILURE_COUNT.to_string(), "2".to_string())]
            .into_iter()
            .collect(),
    );
    let b = failed_pod(&[("c", 1)], json!([]));
    let last = last_failed([&b, &a].into_iter()).unwrap();
    assert_eq!(failure_counts(last), (2, 0));
    assert_eq!(next_failure_counts(Some((last, Verdict::Count))), (3, 0));
    assert_eq!(next_failure_counts(Some((last, Verdict::Ignore))), (2, 1));
    assert_eq!(next_failure_counts(None), (0, 0));
}
