use super::*;
use serde_json::json;

fn now() -> jiff::Timestamp {
    "2026-12-05T10:00:00Z".parse().unwrap()
}

/// A running pod, Ready for an hour, asking 100m CPU and 64Mi.
fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "d"},
        "spec": {"containers": [{"name": "app", "image": "x",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
        "status": {"phase": "Running", "startTime": "2026-12-05T09:00:00Z",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-05T09:00:10Z"}]}
    }))
    .unwrap()
}

fn list(usages: &[(&str, &str)]) -> serde_json::Value {
    json!({"items": usages.iter().map(|(n, cpu)| json!({
        "metadata": {"name": n}, "timestamp": "2026-12-05T09:59:50Z", "window": "10s",
        "containers": [{"name": "app", "usage": {"cpu": cpu, "memory": "32Mi"}}]
    })).collect::<Vec<_>>()})
}

fn cpu(target: serde_json::Value) -> MetricSpec {
    serde_json::from_value(
        json!({"type": "Resource", "resource": {"name": "cpu", "target": target}}),
    )
    .unwrap()
}

#[test]
fn cpu_utilization_above_target_scales_up_with_kubes_status() {
    let (a, b) = (pod("a"), pod("b"));
    let l = list(&[("a", "200m"), ("b", "200m")]);
    let c = metric(
        &cpu(json!({"type": "Utilization", "averageUtilization": 50})),
        2,
        &[&a, &b],
        &Ok(&l),
        now(),
    )
    .unwrap();
    assert_eq!(c.replicas, 8);
    assert_eq!(c.name, "cpu resource utilization (percentage of request)");
    assert_eq!(
        serde_json::to_value(&c.status).unwrap(),
        json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 200, "averageValue": "200m"}}})
    );
}

#[test]
fn average_value_targets_compare_usage_per_pod() {
    let (a, b) = (pod("a"), pod("b"));
    let l = list(&[("a", "10m"), ("b", "10m")]);
    let mem: MetricSpec =
        serde_json::from_value(json!({"type": "Resource", "resource": {"name": "memory",
        "target": {"type": "AverageValue", "averageValue": "16Mi"}}}))
        .unwrap();
    let c = metric(&mem, 2, &[&a, &b], &Ok(&l), now()).unwrap();
    assert_eq!(c.replicas, 4, "32Mi per pod against 16Mi");
    assert_eq!(c.name, "memory resource");
}

#[test]
fn failures_carry_kubes_reasons_and_error_chains() {
    let a = pod("a");
    let empty = json!({"items": []});
    let f = metric(
        &cpu(json!({"type": "Utilization", "averageUtilization": 50})),
        1,
        &[&a],
        &Ok(&empty),
        now(),
    )
    .unwrap_err();
    assert_eq!(f.reason, "FailedGetResourceMetric");
    assert_eq!(
        f.message,
        "failed to get cpu resource metric value: failed to get cpu utilization: unable to get metrics for resource cpu: no metrics returned from resource metrics API"
    );
    let f = metric(
        &cpu(json!({"type": "Utilization", "averageUtilization": 50})),
        1,
        &[&a],
        &Err("the server is currently unable to handle the request".into()),
        now(),
    )
    .unwrap_err();
    assert!(
        f.message.ends_with(
            "failed to get cpu utilization: the server is currently unable to handle the request"
        ),
        "{}",
        f.message
    );
    let pods: MetricSpec =
        serde_json::from_value(json!({"type": "Pods", "pods": {"metric": {"name": "qps"},
        "target": {"type": "AverageValue", "averageValue": "1"}}}))
        .unwrap();
    assert_eq!(
        metric(&pods, 1, &[&a], &Ok(&empty), now())
            .unwrap_err()
            .reason,
        "FailedGetPodsMetric"
    );
}

#[test]
fn combining_takes_the_largest_unless_failures_could_ask_for_more() {
    let ok = |n: i32| {
        Ok(Computed {
            replicas: n,
            name: format!("m{n}"),
            status: MetricStatus::default(),
        })
    };
    let bad = || {
        Err(Failure {
            reason: "FailedGetResourceMetric",
            message: "x".into(),
        })
    };
    assert_eq!(
        combine(&[ok(3), ok(5)], 4),
        Proposal::Scale {
            replicas: 5,
            metric: "m5".into(),
            partial: None
        }
    );
    assert!(matches!(
        combine(&[ok(5), bad()], 4),
        Proposal::Scale {
            replicas: 5,
            partial: Some(_),
            ..
        }
    ));
    assert!(matches!(
        combine(&[ok(2), bad()], 4),
        Proposal::Invalid {
            invalid: 1,
            total: 2,
            ..
        }
    ));
    assert!(matches!(
        combine(&[bad()], 4),
        Proposal::Invalid {
            invalid: 1,
            total: 1,
            ..
        }
    ));
}
