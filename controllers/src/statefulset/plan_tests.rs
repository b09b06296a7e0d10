//! Cases after kube's `stateful_set_control_test.go`.

use serde_json::json;

use super::*;
use crate::history::HASH_LABEL;

const NOW: &str = "2026-01-01T00:10:00Z";

fn now() -> jiff::Timestamp {
    NOW.parse().unwrap()
}

fn sts(spec: serde_json::Value) -> StatefulSet {
    let mut v = json!({
        "metadata": {"name": "web", "namespace": "d", "uid": "u", "generation": 2},
        "spec": {"replicas": 3, "serviceName": "web", "selector": {"matchLabels": {"app": "w"}},
                 "podManagementPolicy": "OrderedReady",
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                 "template": {"metadata": {"labels": {"app": "w"}}, "spec": {"containers": []}}}
    });
    for (k, val) in spec.as_object().unwrap() {
        v["spec"][k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

/// A pod of ordinal `o` at revision `rev` in `state`: "ready", "running" (not ready),
/// "pending", "failed", "deleting".
fn pod(o: i32, rev: &str, state: &str) -> Pod {
    let (phase, ready) = match state {
        "ready" | "deleting" => ("Running", "True"),
        "running" => ("Running", "False"),
        "pending" => ("Pending", "False"),
        "failed" => ("Failed", "False"),
        other => panic!("{other}"),
    };
    let mut p: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("web-{o}"), "namespace": "d",
            "labels": {"app": "w", HASH_LABEL: rev,
                       "statefulset.kubernetes.io/pod-name": format!("web-{o}"),
                       "apps.kubernetes.io/pod-index": o.to_string()}},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    }))
    .unwrap();
    if state == "deleting" {
        p.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
    }
    p
}

const REVS: Revisions<'static> = Revisions {
    current: "web-a",
    update: "web-a",
};
const ROLLING: Revisions<'static> = Revisions {
    current: "web-a",
    update: "web-b",
};

fn steps(s: &StatefulSet, pods: &[Pod], revs: Revisions<'_>) -> Vec<Step> {
    let refs: Vec<&Pod> = pods.iter().collect();
    plan(s, &refs, revs, now()).steps
}

#[test]
fn ordered_ready_creates_one_at_a_time_in_order() {
    let s = sts(json!({}));
    assert_eq!(
        steps(&s, &[], REVS),
        [Step::Create {
            ordinal: 0,
            update: true
        }]
    );
    // web-0 not ready yet: wait.
    assert_eq!(steps(&s, &[pod(0, "web-a", "running")], REVS), []);
    assert_eq!(
        steps(&s, &[pod(0, "web-a", "pending")], REVS),
        [Step::Claims { ordinal: 0 }]
    );
    assert_eq!(
        steps(&s, &[pod(0, "web-a", "ready")], REVS),
        [Step::Create {
            ordinal: 1,
            update: true
        }]
    );
    // A failed pod is deleted to be made again, and nothing after it moves.
    assert_eq!(
        steps(
            &s,
            &[pod(0, "web-a", "failed"), pod(1, "web-a", "ready")],
            REVS
        ),
        [Step::Delete {
            pod: "web-0".into()
        }]
    );
}

#[test]
fn parallel_creates_every_missing_pod_at_once() {
    let s = sts(json!({"podManagementPolicy": "Parallel"}));
    assert_eq!(
        steps(&s, &[pod(1, "web-a", "running")], REVS),
        [
            Step::Create {
                ordinal: 0,
                update: true
            },
            Step::Create {
                ordinal: 2,
                update: true
            }
        ]
    );
}

#[test]
fn scale_down_goes_from_the_highest_ordinal_once_all_are_healthy() {
    let s = sts(json!({"replicas": 1}));
    let pods = [
        pod(0, "web-a", "ready"),
        pod(1, "web-a", "ready"),
        pod(2, "web-a", "ready"),
    ];
    assert_eq!(
        steps(&s, &pods, REVS),
        [Step::Condemn {
            pod: "web-2".into(),
            ordinal: 2
        }]
    );
    // The next waits for web-2 to go.
    let pods = [
        pod(0, "web-a", "ready"),
        pod(1, "web-a", "ready"),
        pod(2, "web-a", "deleting"),
    ];
    assert_eq!(steps(&s, &pods, REVS), []);
    // Parallel deletes them together.
    let s = sts(json!({"replicas": 1, "podManagementPolicy": "Parallel"}));
    let pods = [
        pod(0, "web-a", "ready"),
        pod(1, "web-a", "running"),
        pod(2, "web-a", "ready"),
    ];
    assert_eq!(
        steps(&s, &pods, REVS),
        [
            Step::Condemn {
                pod: "web-2".into(),
                ordinal: 2
            },
            Step::Condemn {
                pod: "web-1".into(),
                ordinal: 1
            }
        ]
    );
}

#[test]
fn rolling_update_goes_down_to_the_partition_one_pod_at_a_time() {
    let s = sts(json!({}));
    let pods = [
        pod(0, "web-a", "ready"),
        pod(1, "web-a", "ready"),
        pod(2, "web-a", "ready"),
    ];
    let p = plan(&s, &pods.iter().collect::<Vec<_>>(), ROLLING, now());
    assert_eq!(
        p.steps,
        [Step::Delete {
            pod: "web-2".into()
        }]
    );
    assert_eq!(p.status.current_replicas, Some(2));
    // web-2 came back updated but is not ready: wait.
    let pods = [
        pod(0, "web-a", "ready"),
        pod(1, "web-a", "ready"),
        pod(2, "web-b", "running"),
    ];
    assert_eq!(steps(&s, &pods, ROLLING), []);
    let pods = [
        pod(0, "web-a", "ready"),
        pod(1, "web-a", "ready"),
        pod(2, "web-b", "ready"),
    ];
    assert_eq!(
        steps(&s, &pods, ROLLING),
        [Step::Delete {
            pod: "web-1".into()
        }]
    );
    // With partition 2 only web-2 is updated, and a re-made web-1 keeps the old revision.
    let s = sts(
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}),
    );
    assert_eq!(steps(&s, &pods, ROLLING), []);
    let pods = [pod(0, "web-a", "ready"), pod(2, "web-b", "ready")];
    assert_eq!(
        steps(&s, &pods, ROLLING),
        [Step::Create {
            ordinal: 1,
            update: false
        }]
    );
    // OnDelete never deletes for an update.
    let s = sts(json!({"updateStrategy": {"type": "OnDelete"}}));
    let pods = [
        pod(0, "web-a", "ready"),
        pod(1, "web-a", "ready"),
        pod(2, "web-a", "ready"),
    ];
    assert_eq!(steps(&s, &pods, ROLLING), []);
}

#[test]
fn status_counts_and_the_finished_rollout() {
    let s = sts(json!({}));
    let pods = [
        pod(0, "web-b", "ready"),
        pod(1, "web-b", "ready"),
        pod(2, "web-b", "ready"),
    ];
    let p = plan(&s, &pods.iter().collect::<Vec<_>>(), ROLLING, now());
    assert!(p.steps.is_empty());
    let st = p.status;
    assert_eq!(st.replicas, 3);
    assert_eq!(st.ready_replicas, Some(3));
    assert_eq!(st.available_replicas, Some(3));
    assert_eq!(st.updated_replicas, Some(3));
    assert_eq!(st.current_replicas, Some(3));
    assert_eq!(
        st.current_revision.as_deref(),
        Some("web-b"),
        "the update is now current"
    );
    assert_eq!(st.observed_generation, Some(2));
    // Not available before minReadySeconds.
    let s = sts(json!({"minReadySeconds": 3600}));
    let p = plan(&s, &pods.iter().collect::<Vec<_>>(), ROLLING, now());
    assert_eq!(p.status.available_replicas, None);
}

#[test]
fn a_pod_without_its_labels_is_relabelled() {
    let s = sts(json!({"replicas": 1}));
    let mut p = pod(0, "web-a", "ready");
    p.metadata
        .labels
        .as_mut()
        .unwrap()
        .remove("apps.kubernetes.io/pod-index");
    assert_eq!(
        steps(&s, &[p], REVS),
        [Step::Relabel {
            pod: "web-0".into(),
            ordinal: 0
        }]
    );
}

#[test]
fn ordinals_start_where_asked() {
    let s = sts(json!({"ordinals": {"start": 5}, "replicas": 2}));
    assert_eq!(
        steps(&s, &[], REVS),
        [Step::Create {
            ordinal: 5,
            update: true
        }]
    );
    // web-0 is outside 5..7: condemned once the range is healthy.
    let pods = [
        pod(5, "web-a", "ready"),
        pod(6, "web-a", "ready"),
        pod(0, "web-a", "ready"),
    ];
    assert_eq!(
        steps(&s, &pods, REVS),
        [Step::Condemn {
            pod: "web-0".into(),
            ordinal: 0
        }]
    );
}
