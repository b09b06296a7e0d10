use super::*;
use serde_json::json;

fn at(s: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()
}

fn defaults() -> (Rules, Rules) {
    of(None)
}

#[test]
fn kubes_defaults() {
    let (up, down) = defaults();
    assert_eq!(up.window, Duration::ZERO);
    assert_eq!(down.window, Duration::from_secs(300));
    assert_eq!(
        (up.select, up.policies.len(), down.policies.len()),
        (Select::Max, 2, 1)
    );
    let b: HorizontalPodAutoscalerBehavior = serde_json::from_value(json!({
        "scaleDown": {"stabilizationWindowSeconds": 0, "selectPolicy": "Min",
                      "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}
    }))
    .unwrap();
    let (up, down) = of(Some(&b));
    assert_eq!(up, defaults().0, "scale-up keeps its defaults");
    assert_eq!(down.window, Duration::ZERO);
    assert_eq!(down.select, Select::Min);
    assert_eq!(
        down.policies,
        vec![Policy {
            kind: PolicyKind::Pods,
            value: 1,
            period: Duration::from_secs(60)
        }]
    );
}

#[test]
fn scale_up_is_limited_by_the_faster_default_policy_and_max() {
    let (up, down) = defaults();
    let mut h = History::default();
    let n = normalize(&mut h, &up, &down, 1, 10, 1, 20, at(0));
    assert_eq!(
        (n.replicas, n.limited, n.limited_reason),
        (5, true, "ScaleUpLimit")
    );
    assert_eq!(n.able_reason, "ReadyForNewScale");
    let n = normalize(&mut History::default(), &up, &down, 1, 10, 1, 3, at(0));
    assert_eq!((n.replicas, n.limited_reason), (3, "TooManyReplicas"));
    // Within a period, what was added already counts: 4 added 5 s ago from 1.
    let mut h = History::default();
    h.record_scale(1, 5, at(-5), Duration::from_secs(60));
    let n = normalize(&mut h, &up, &down, 5, 10, 1, 20, at(0));
    assert_eq!(n.replicas, 5, "no more than +4 (or +100%) from 1 per 15 s");
    let n = normalize(&mut h, &up, &down, 5, 10, 1, 20, at(11));
    assert_eq!(n.replicas, 10, "a new period");
    let n = normalize(&mut History::default(), &up, &down, 3, 5, 1, 20, at(0));
    assert_eq!(
        (n.replicas, n.limited, n.limited_reason),
        (5, false, "DesiredWithinRange")
    );
}

#[test]
fn scale_down_waits_out_its_stabilization_window() {
    let (up, down) = defaults();
    let mut h = History::default();
    let n = normalize(&mut h, &up, &down, 8, 8, 1, 10, at(0));
    assert_eq!(n.replicas, 8);
    let n = normalize(&mut h, &up, &down, 8, 2, 1, 10, at(100));
    assert_eq!((n.replicas, n.able_reason), (8, "ScaleDownStabilized"));
    assert!(!n.limited);
    // 300 s after the recommendation of 8, only 2s remain in the window.
    let n = normalize(&mut h, &up, &down, 8, 2, 1, 10, at(301));
    assert_eq!((n.replicas, n.able_reason), (2, "ReadyForNewScale"));
}

#[test]
fn min_and_disabled_select_policies() {
    let (mut up, down) = defaults();
    up.select = Select::Min;
    let n = normalize(&mut History::default(), &up, &down, 10, 40, 1, 100, at(0));
    assert_eq!(n.replicas, 14, "the smaller of +4 and +100%");
    up.select = Select::Disabled;
    let n = normalize(&mut History::default(), &up, &down, 10, 40, 1, 100, at(0));
    assert_eq!(n.replicas, 10);
    let (up, mut down) = defaults();
    down.window = Duration::ZERO;
    down.policies = vec![Policy {
        kind: PolicyKind::Pods,
        value: 2,
        period: Duration::from_secs(60),
    }];
    let n = normalize(&mut History::default(), &up, &down, 10, 1, 1, 100, at(0));
    assert_eq!((n.replicas, n.limited_reason), (8, "ScaleDownLimit"));
    let n = normalize(&mut History::default(), &up, &down, 3, 0, 2, 100, at(0));
    assert_eq!((n.replicas, n.limited_reason), (2, "TooFewReplicas"));
}
