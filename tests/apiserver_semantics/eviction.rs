//! `pods/eviction` against PodDisruptionBudgets whose status the test writes itself (no
//! controller): kube's refusals (429 with cause DisruptionBudget, 500 for two budgets,
//! 400 for a mismatched name), the decrement and `disruptedPods`, the DisruptionTarget
//! condition, and the pods a budget does not guard.

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::EvictParams;

use super::*;

async fn running_pod(pods: &Api<Pod>, name: &str, ready: bool) {
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "ev"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    let mut p = pods.create(&PostParams::default(), &p).await.unwrap();
    let st = p.status.get_or_insert_with(Default::default);
    st.phase = Some("Running".into());
    st.conditions = Some(vec![serde_json::from_value(
        json!({"type": "Ready", "status": if ready { "True" } else { "False" }}),
    )
    .unwrap()]);
    pods.replace_status(name, &PostParams::default(), &p)
        .await
        .unwrap();
}

async fn set_budget(pdbs: &Api<PodDisruptionBudget>, name: &str, allowed: i32, healthy: i32) {
    let mut b = pdbs.get(name).await.unwrap();
    b.status = Some(
        serde_json::from_value(json!({
            "observedGeneration": b.metadata.generation, "disruptionsAllowed": allowed,
            "currentHealthy": healthy, "desiredHealthy": 2, "expectedPods": 3
        }))
        .unwrap(),
    );
    pdbs.replace_status(name, &PostParams::default(), &b)
        .await
        .unwrap();
}

fn eviction(name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": name, "namespace": "default"}}))
    .unwrap()
}

fn code_of(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("{other:?}"),
    }
}

pub(super) async fn evictions(c: &kube::Client) {
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(c.clone(), "default");
    for n in ["e1", "e2", "e3"] {
        running_pod(&pods, n, true).await;
    }
    let b: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "ev"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "ev"}}}
    }))
    .unwrap();
    pdbs.create(&PostParams::default(), &b).await.unwrap();
    let path = |p: &str| format!("/api/v1/namespaces/default/pods/{p}/eviction");
    let j = "application/json";

    // Not yet seen by its controller: come back in 10 s.
    let (code, st) = raw(c, "POST", &path("e1"), j, eviction("e1")).await;
    assert_eq!(code, 429, "{st}");
    assert_eq!(st["details"]["retryAfterSeconds"], 10, "{st}");
    assert_eq!(
        st["details"]["causes"][0],
        json!({"reason": "DisruptionBudget",
               "message": "The disruption budget ev is still being processed by the server."})
    );

    set_budget(&pdbs, "ev", 1, 3).await;
    let (code, st) = raw(c, "POST", &path("e1"), j, eviction("e1")).await;
    assert_eq!(code, 201, "{st}");
    assert_eq!(st["status"], "Success");
    let e1 = pods.get("e1").await.unwrap();
    assert!(e1.metadata.deletion_timestamp.is_some(), "graceful delete");
    assert!(e1
        .status
        .unwrap()
        .conditions
        .unwrap()
        .iter()
        .any(|c| c.type_ == "DisruptionTarget"
            && c.reason.as_deref() == Some("EvictionByEvictionAPI")));
    let b = pdbs.get("ev").await.unwrap().status.unwrap();
    assert_eq!(b.disruptions_allowed, 0);
    assert!(b.disrupted_pods.unwrap().contains_key("e1"));

    // The budget is spent: kube's 429, which kubectl drain retries.
    let (code, st) = raw(c, "POST", &path("e2"), j, eviction("e2")).await;
    assert_eq!(code, 429, "{st}");
    assert_eq!(
        st["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(
        st["details"]["causes"][0]["message"],
        "The disruption budget ev needs 2 healthy pods and has 3 currently"
    );
    assert!(st["details"]["retryAfterSeconds"].is_null(), "{st}");
    // kube-rs' own call sees the same.
    let e = pods.evict("e2", &EvictParams::default()).await.unwrap_err();
    assert_eq!(code_of(e), 429);
    assert!(pods
        .get("e2")
        .await
        .unwrap()
        .metadata
        .deletion_timestamp
        .is_none());

    // An unready pod goes while the rest are healthy enough, without a disruption.
    running_pod(&pods, "e4", false).await;
    pods.evict("e4", &EvictParams::default()).await.unwrap();
    assert!(pods
        .get("e4")
        .await
        .unwrap()
        .metadata
        .deletion_timestamp
        .is_some());
    assert_eq!(
        pdbs.get("ev")
            .await
            .unwrap()
            .status
            .unwrap()
            .disruptions_allowed,
        0
    );
    // A pod that never started disrupts nothing.
    let mut pending = pod("e5");
    pending.metadata.labels = Some([("app".to_string(), "ev".to_string())].into());
    pods.create(&PostParams::default(), &pending).await.unwrap();
    pods.evict("e5", &EvictParams::default()).await.unwrap();
    assert!(pods.get_opt("e5").await.unwrap().is_none());

    // Bad evictions change nothing.
    let (code, st) = raw(c, "POST", &path("e2"), j, eviction("e3")).await;
    assert_eq!(code, 400, "{st}");
    assert_eq!(
        st["message"],
        "name in URL does not match name in Eviction object"
    );
    let (code, _) = raw(c, "POST", &path("nope"), j, eviction("nope")).await;
    assert_eq!(code, 404);
    let second: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "ev2"}, "spec": {"maxUnavailable": 1, "selector": {}}
    }))
    .unwrap();
    pdbs.create(&PostParams::default(), &second).await.unwrap();
    let (code, st) = raw(c, "POST", &path("e2"), j, eviction("e2")).await;
    assert_eq!(code, 500, "{st}");
    assert_eq!(
        st["message"],
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );
    assert!(pods
        .get("e2")
        .await
        .unwrap()
        .metadata
        .deletion_timestamp
        .is_none());

    // Both at once is kube's 422.
    let both: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "both"}, "spec": {"minAvailable": 1, "maxUnavailable": 1}
    }))
    .unwrap();
    let e = pdbs
        .create(&PostParams::default(), &both)
        .await
        .unwrap_err();
    assert_eq!(code_of(e), 422);
    pdbs.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
}
