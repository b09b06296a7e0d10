use super::*;
use serde_json::json;

const NOW: &str = "2026-01-01T00:10:00Z";

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn ds(strategy: serde_json::Value) -> DaemonSet {
    serde_json::from_value(json!({
        "metadata": {"name": "agent", "namespace": "kube-system", "uid": "ds-uid", "generation": 2,
                     "annotations": {"deprecated.daemonset.template.generation": "2"}},
        "spec": {"selector": {"matchLabels": {"app": "a"}},
                 "updateStrategy": strategy,
                 "template": {"metadata": {"labels": {"app": "a"}},
                              "spec": {"nodeSelector": {"role": "worker"},
                                       "containers": [{"name": "c", "image": "i"}]}}}
    }))
    .unwrap()
}

fn node(name: &str, role: &str, taints: serde_json::Value) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"role": role}},
        "spec": {"taints": taints}
    }))
    .unwrap()
}

/// A pod on `node` of revision `hash`, Ready since the start (available) unless `ready` is
/// false.
fn pod(name: &str, node: &str, hash: &str, ready: bool) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "kube-system", "uid": format!("uid-{name}"),
                     "creationTimestamp": "2026-01-01T00:00:00Z",
                     "labels": {"app": "a", HASH_LABEL: hash}},
        "spec": {"nodeName": node, "containers": []},
        "status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" },
             "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    }))
    .unwrap()
}

fn names(p: &Plan) -> Vec<&str> {
    p.delete.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn one_pod_per_fitting_node() {
    let d = ds(json!({"type": "OnDelete"}));
    let n1 = node("n1", "worker", json!([]));
    let n2 = node(
        "n2",
        "worker",
        json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
    );
    let n3 = node("n3", "db", json!([]));
    // Cordoned: the daemon tolerations let it run there.
    let n4 = node(
        "n4",
        "worker",
        json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
    );
    let stray = pod("agent-x", "n3", "h1", true);
    let p = plan(
        &d,
        &[&n1, &n2, &n3, &n4],
        &[&stray],
        "h1",
        true,
        &mut FailedPods::default(),
        ts(NOW),
    );
    assert_eq!(p.create, vec!["n1", "n4"]);
    assert_eq!(names(&p), vec!["agent-x"], "a pod where none belongs goes");
    assert_eq!(p.status.desired_number_scheduled, 2);
    assert_eq!(p.status.number_misscheduled, 1);
    assert_eq!(p.status.observed_generation, Some(2));
    // Under unmet expectations nothing is done, the generation is not observed.
    let p = plan(
        &d,
        &[&n1],
        &[],
        "h1",
        false,
        &mut FailedPods::default(),
        ts(NOW),
    );
    assert!(p.create.is_empty() && p.status.observed_generation.is_none());
}

#[test]
fn duplicates_and_finished_pods_go() {
    let d = ds(json!({"type": "OnDelete"}));
    let n1 = node("n1", "worker", json!([]));
    let a = pod("a", "n1", "h1", true);
    let mut b = pod("b", "n1", "h1", true);
    b.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts(
        NOW,
    )));
    let p = plan(
        &d,
        &[&n1],
        &[&a, &b],
        "h1",
        true,
        &mut FailedPods::default(),
        ts(NOW),
    );
    assert_eq!(names(&p), vec!["b"], "the oldest stays");
    let mut failed = pod("f", "n1", "h1", false);
    failed.status.as_mut().unwrap().phase = Some("Failed".into());
    let p = plan(
        &d,
        &[&n1],
        &[&failed],
        "h1",
        true,
        &mut FailedPods::default(),
        ts(NOW),
    );
    assert_eq!(names(&p), vec!["f"]);
    assert_eq!(p.delete[0].1.as_ref().unwrap().1, "FailedDaemonPod");
    // A node that keeps failing its pod: the next failed pod waits out the backoff.
    let mut backoff = FailedPods::default();
    let p = plan(&d, &[&n1], &[&failed], "h1", true, &mut backoff, ts(NOW));
    assert_eq!(names(&p), vec!["f"]);
    let p = plan(&d, &[&n1], &[&failed], "h1", true, &mut backoff, ts(NOW));
    assert!(p.delete.is_empty() && p.create.is_empty(), "{p:?}");
    assert_eq!(p.requeue_after, Some(super::super::backoff::INITIAL));
    let later = ts(NOW) + jiff::SignedDuration::from_secs(1);
    let p = plan(&d, &[&n1], &[&failed], "h1", true, &mut backoff, later);
    assert_eq!(names(&p), vec!["f"], "after the backoff");
    // OnDelete: old pods stay; status counts them as not updated.
    let old = pod("o", "n1", "h0", true);
    let p = plan(
        &d,
        &[&n1],
        &[&old],
        "h1",
        true,
        &mut FailedPods::default(),
        ts(NOW),
    );
    assert!(p.delete.is_empty() && p.create.is_empty());
    assert_eq!(p.status.updated_number_scheduled, Some(0));
    assert_eq!(p.status.number_available, Some(1));
}

#[test]
fn rolling_update_under_max_unavailable() {
    let d =
        ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}));
    let nodes: Vec<Node> = (1..=3)
        .map(|i| node(&format!("n{i}"), "worker", json!([])))
        .collect();
    let nodes: Vec<&Node> = nodes.iter().collect();
    let olds: Vec<Pod> = (1..=3)
        .map(|i| pod(&format!("o{i}"), &format!("n{i}"), "h0", true))
        .collect();
    let pods: Vec<&Pod> = olds.iter().collect();
    let p = plan(
        &d,
        &nodes,
        &pods,
        "h1",
        true,
        &mut FailedPods::default(),
        ts(NOW),
    );
    assert_eq!(names(&p), vec!["o1"], "one at a time");
    // While n1's new pod is not available, nothing more goes.
    let new1 = pod("new1", "n1", "h1", false);
    let p = plan(
        &d,
        &nodes,
        &[&new1, &olds[1], &olds[2]],
        "h1",
        true,
        &mut FailedPods::default(),
        ts(NOW),
    );
    assert!(p.delete.is_empty());
    let new1 = pod("new1", "n1", "h1", true);
    let p = plan(
        &d,
        &nodes,
        &[&new1, &olds[1], &olds[2]],
        "h1",
        true,
        &mut FailedPods::default(),
        ts(NOW),
    );
    assert_eq!(names(&p), vec!["o2"]);
    assert_eq!(p.status.updated_number_scheduled, Some(1));
    // An old pod that is not available is replaced at once.
    let sick = pod("sick", "n3", "h0", false);
    let p = plan(
        &d,
        &nodes,
        &[&new1, &olds[1], &sick],
        "h1",
        true,
        &mut FailedPods::default(),
        ts(NOW),
    );
    assert_eq!(names(&p), vec!["sick", "o2"]);
}

#[test]
fn rolling_update_with_surge() {
    let d =
        ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}));
    let n1 = node("n1", "worker", json!([]));
    let n2 = node("n2", "worker", json!([]));
    let o1 = pod("o1", "n1", "h0", true);
    let o2 = pod("o2", "n2", "h0", true);
    let p = plan(
        &d,
        &[&n1, &n2],
        &[&o1, &o2],
        "h1",
        true,
        &mut FailedPods::default(),
        ts(NOW),
    );
    assert_eq!(p.create, vec!["n1"], "one new pod beside an old one");
    assert!(p.delete.is_empty());
    // The old one goes once the new one is available.
    let new1 = pod("new1", "n1", "h1", true);
    let p = plan(
        &d,
        &[&n1, &n2],
        &[&o1, &new1, &o2],
        "h1",
        true,
        &mut FailedPods::default(),
        ts(NOW),
    );
    assert_eq!(names(&p), vec!["o1"]);
}

#[test]
fn pods_are_pinned_and_tolerate_node_trouble() {
    let d = ds(json!({"type": "OnDelete"}));
    let p = super::super::pod_for(&d, "h1", "n7");
    assert_eq!(target_node(&p).as_deref(), Some("n7"));
    let labels = p.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[HASH_LABEL], "h1");
    assert_eq!(labels[GENERATION_LABEL], "2");
    let tols = p.spec.as_ref().unwrap().tolerations.as_ref().unwrap();
    assert!(tols.iter().any(
        |t| t.key.as_deref() == Some("node.kubernetes.io/unreachable")
            && t.effect.as_deref() == Some("NoExecute")
    ));
    assert_eq!(p.metadata.generate_name.as_deref(), Some("agent-"));
}
