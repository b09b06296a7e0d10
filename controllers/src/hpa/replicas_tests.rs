use super::*;
use serde_json::json;

const NOW: i64 = 1_800_000_000;

fn at(secs_ago: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(NOW - secs_ago).unwrap()
}

/// A pod started `started` seconds ago, Ready since `ready` seconds ago (None: no
/// condition; negative: not ready), requesting `cpu` (None: no request).
fn pod(name: &str, phase: &str, ready: Option<i64>, started: i64, cpu: Option<&str>) -> Pod {
    let cond = ready.map(|r| {
        json!([{"type": "Ready", "status": if r >= 0 { "True" } else { "False" },
                "lastTransitionTime": at(r.abs()).to_string()}])
    });
    let resources = match cpu {
        Some(c) => json!({"requests": {"cpu": c, "memory": "100Mi"}}),
        None => json!({}),
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"containers": [{"name": "c", "image": "i", "resources": resources}]},
        "status": {"phase": phase, "startTime": at(started).to_string(), "conditions": cond},
    }))
    .unwrap()
}

fn running(name: &str) -> Pod {
    pod(name, "Running", Some(600), 900, Some("1"))
}

fn metrics(values: &[(&str, i64)]) -> BTreeMap<String, Metric> {
    values
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                Metric {
                    value: *v,
                    timestamp: at(0),
                    window: Duration::from_secs(30),
                },
            )
        })
        .collect()
}

fn calc(current: i32, target: i32, pods: &[Pod], m: &[(&str, i64)]) -> Result<Outcome, Error> {
    let refs: Vec<&Pod> = pods.iter().collect();
    resource_replicas(current, target, "cpu", None, &refs, &metrics(m), at(0))
}

#[test]
fn scale_up_and_down_follow_the_average_utilization() {
    let pods: Vec<Pod> = ["a", "b", "c"].iter().map(|n| running(n)).collect();
    // kube's TestReplicaCalcScaleUp: 50% against 30% over 3 pods is 5.
    let o = calc(3, 30, &pods, &[("a", 300), ("b", 500), ("c", 700)]).unwrap();
    assert_eq!((o.replicas, o.utilization, o.raw), (5, 50, 500));
    // kube's TestReplicaCalcScaleDown: 28% against 50% over 5 pods is 3.
    let pods: Vec<Pod> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|n| running(n))
        .collect();
    let m = [("a", 100), ("b", 300), ("c", 500), ("d", 250), ("e", 250)];
    let o = calc(5, 50, &pods, &m).unwrap();
    assert_eq!((o.replicas, o.utilization), (3, 28));
}

#[test]
fn within_the_tolerance_nothing_changes() {
    let pods = vec![
        pod("a", "Running", Some(600), 900, Some("900m")),
        pod("b", "Running", Some(600), 900, Some("1")),
        pod("c", "Running", Some(600), 900, Some("1100m")),
    ];
    let o = calc(3, 100, &pods, &[("a", 1010), ("b", 1030), ("c", 1020)]).unwrap();
    assert_eq!((o.replicas, o.utilization), (3, 102));
}

#[test]
fn unready_pods_count_as_idle_on_a_scale_up() {
    // kube's TestReplicaCalcScaleUpUnreadyLessScale: 60% of the ready pods, the unready
    // one as 0: 40% against 30% over 3 is 4.
    let pods = vec![
        pod("a", "Running", Some(-10), 20, Some("1")),
        running("b"),
        running("c"),
    ];
    let o = calc(3, 30, &pods, &[("a", 300), ("b", 500), ("c", 700)]).unwrap();
    assert_eq!((o.replicas, o.utilization), (4, 60));
    // A Pending pod does not hold a scale-down back: 10% of 2 ready pods against 50%.
    let pods = vec![
        pod("p", "Pending", None, 10, Some("1")),
        running("b"),
        running("c"),
    ];
    let o = calc(3, 50, &pods, &[("b", 100), ("c", 100)]).unwrap();
    assert_eq!(o.replicas, 1);
}

#[test]
fn missing_metrics_are_assumed_against_the_direction_of_change() {
    let pods: Vec<Pod> = ["a", "b", "c", "d"].iter().map(|n| running(n)).collect();
    // Scale-down: the missing two count at their full request (55% of 50%: crosses 1).
    let o = calc(4, 50, &pods, &[("a", 100), ("b", 100)]).unwrap();
    assert_eq!(o.replicas, 4);
    // With a 100% target, 55% over 4 pods is 3.
    let o = calc(4, 100, &pods, &[("a", 100), ("b", 100)]).unwrap();
    assert_eq!(o.replicas, 3);
    // Scale-up: a missing pod counts as 0; 45% against 50% crosses 1: kept.
    let pods: Vec<Pod> = ["a", "b"].iter().map(|n| running(n)).collect();
    assert_eq!(calc(2, 50, &pods, &[("a", 900)]).unwrap().replicas, 2);
    // Against 30%: 45% over 2 pods is 3.
    assert_eq!(calc(2, 30, &pods, &[("a", 900)]).unwrap().replicas, 3);
}

#[test]
fn a_fresh_pods_sample_from_before_its_readiness_is_not_trusted() {
    // Started a minute ago, Ready 10 s ago, a sample over a 30 s window taken now: it
    // covers time before readiness, so the pod is unready; with it the others scale.
    let fresh = pod("f", "Running", Some(10), 60, Some("1"));
    let pods = vec![fresh, running("b")];
    let o = calc(2, 50, &pods, &[("f", 1000), ("b", 1000)]).unwrap();
    // Only b counts first (100% against 50%); f as 0 gives 50%: within tolerance, kept.
    assert_eq!((o.replicas, o.utilization), (2, 100));
    // Memory is not subject to readiness.
    let refs: Vec<&Pod> = pods.iter().collect();
    let mem = metrics(&[("f", 100 << 20), ("b", 100 << 20)]);
    let o = resource_replicas(2, 50, "memory", None, &refs, &mem, at(0)).unwrap();
    assert_eq!((o.replicas, o.utilization), (4, 100));
}

#[test]
fn errors_name_what_is_missing() {
    assert_eq!(calc(1, 50, &[], &[]), Err(Error::NoPods));
    let pods = vec![running("a")];
    assert_eq!(calc(1, 50, &pods, &[]), Err(Error::NoMetrics));
    let pods = vec![pod("a", "Running", Some(600), 900, None)];
    assert_eq!(
        calc(1, 50, &pods, &[("a", 10)]).unwrap_err().to_string(),
        "missing request for cpu in container c of Pod a"
    );
    // Deleted and Failed pods are ignored entirely.
    let mut gone = running("g");
    gone.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(1)));
    let failed = pod("x", "Failed", Some(600), 900, Some("1"));
    let pods = vec![gone, failed, running("a")];
    let o = calc(3, 50, &pods, &[("g", 1000), ("x", 1000), ("a", 500)]).unwrap();
    assert_eq!((o.replicas, o.utilization), (3, 50));
}

#[test]
fn huge_values_saturate() {
    let pods = vec![pod("a", "Running", Some(600), 900, Some("1m"))];
    let o = calc(i32::MAX, 1, &pods, &[("a", i64::MAX)]).unwrap();
    assert_eq!(o.replicas, i32::MAX);
}
