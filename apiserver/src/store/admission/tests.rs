//! The admission plugins in the registry, on the in-memory storage: PodSecurity on pod
//! creates and updates, controllers' templates and namespace labels.

use serde_json::{json, Value};

use super::super::tests::{create, store, target, w};
use super::super::{Store, Target, Write};
use crate::error::ApiError;
use crate::patch::PatchType;

async fn labelled_namespace(s: &Store, name: &str, labels: Value) -> Result<Value, ApiError> {
    let t = target(s, "", "namespaces", None, None);
    create(s, &t, json!({"metadata": {"name": name, "labels": labels}})).await
}

/// A strategic merge patch (containers merge by name).
async fn merge(s: &Store, t: &Target, patch: Value, w: &Write) -> Result<Value, ApiError> {
    let p = s
        .patch(
            t,
            PatchType::Strategic,
            &serde_json::to_vec(&patch).unwrap(),
            None,
            w,
            false,
        )
        .await?;
    Ok(serde_json::from_slice(&p.object).unwrap())
}

fn pod(name: &str, spec_extra: Value) -> Value {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        s.extend(extra.clone());
    }
    json!({"metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn pod_security_enforces_one_level_and_warns_about_another() {
    let (s, _) = store();
    labelled_namespace(
        &s,
        "team",
        json!({"pod-security.kubernetes.io/enforce": "baseline", "pod-security.kubernetes.io/warn": "restricted"}),
    )
    .await
    .unwrap();
    let pods = target(&s, "", "pods", Some("team"), None);
    let e = create(&s, &pods, pod("hn", json!({"hostNetwork": true})))
        .await
        .unwrap_err();
    assert_eq!(e.code(), 403);
    assert_eq!(
        e.to_string(),
        r#"pods "hn" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostNetwork)"#
    );
    let wr = w();
    s.create(
        &pods,
        &serde_json::to_vec(&pod("plain", json!({}))).unwrap(),
        &wr,
    )
    .await
    .unwrap();
    let warnings = wr.warnings.take();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(
            r#"would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false"#
        ),
        "{warnings:?}"
    );
    // Unlabelled namespaces admit anything.
    labelled_namespace(&s, "free", json!({})).await.unwrap();
    let free = target(&s, "", "pods", Some("free"), None);
    create(&s, &free, pod("hn", json!({"hostNetwork": true})))
        .await
        .unwrap();
}

#[tokio::test]
async fn pod_updates_are_evaluated_when_they_can_change_the_outcome() {
    let (s, _) = store();
    labelled_namespace(&s, "team", json!({})).await.unwrap();
    let pods = target(&s, "", "pods", Some("team"), None);
    create(&s, &pods, pod("hn", json!({"hostNetwork": true})))
        .await
        .unwrap();
    // Enforcing baseline now names the pod that violates it, and admits the change.
    let ns = target(&s, "", "namespaces", None, Some("team"));
    let wr = w();
    let enforce =
        json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}});
    merge(&s, &ns, enforce, &wr).await.unwrap();
    assert_eq!(
        wr.warnings.take(),
        [
            r#"existing pods in namespace "team" violate the new PodSecurity enforce level "baseline:latest""#,
            "hn: host namespaces",
        ]
    );
    // A label change of the pod is not evaluated; a new image is.
    let hn = target(&s, "", "pods", Some("team"), Some("hn"));
    merge(&s, &hn, json!({"metadata": {"labels": {"a": "b"}}}), &w())
        .await
        .unwrap();
    let image = json!({"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}});
    let e = merge(&s, &hn, image, &w()).await.unwrap_err();
    assert_eq!(e.code(), 403, "{e}");
    assert!(
        e.to_string()
            .starts_with(r#"pods "hn" is forbidden: violates PodSecurity "baseline:latest""#),
        "{e}"
    );
}

#[tokio::test]
async fn controllers_get_warnings_only() {
    let (s, _) = store();
    labelled_namespace(
        &s,
        "team",
        json!({"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "baseline"}),
    )
    .await
    .unwrap();
    let deployments = target(&s, "apps", "deployments", Some("team"), None);
    let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "busybox"}]}}}});
    let wr = w();
    s.create(&deployments, &serde_json::to_vec(&d).unwrap(), &wr)
        .await
        .unwrap();
    assert_eq!(
        wr.warnings.take(),
        [r#"would violate PodSecurity "baseline:latest": host namespaces (hostNetwork)"#]
    );
}

#[tokio::test]
async fn namespace_labels_must_name_a_level() {
    let (s, _) = store();
    let e = labelled_namespace(
        &s,
        "bad",
        json!({"pod-security.kubernetes.io/enforce": "strict"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), 422);
    assert_eq!(
        e.to_string(),
        r#"Namespace "bad" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#
    );
    labelled_namespace(
        &s,
        "ok",
        json!({"pod-security.kubernetes.io/enforce": "baseline"}),
    )
    .await
    .unwrap();
    let ok = target(&s, "", "namespaces", None, Some("ok"));
    let bad_version =
        json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce-version": "1.30"}}});
    let e = merge(&s, &ok, bad_version, &w()).await.unwrap_err();
    assert_eq!(e.code(), 422, "{e}");
    assert!(
        e.to_string()
            .ends_with(r#"Invalid value: "1.30": must be "latest" or "v1.x""#),
        "{e}"
    );
}
