//! HorizontalPodAutoscalers against the stand-in agent (no usage to read): kube's 422 for
//! bounds that contradict, a target without a `scale` subresource and a target whose pods
//! have no metrics reported in conditions and Events, and the same object read through
//! autoscaling/v1 with the v2-only status in kube's annotations.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;

use super::*;

const HPAS: &str = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: no-scale, namespace: team}
spec:
  scaleTargetRef: {apiVersion: v1, kind: ConfigMap, name: settings}
  maxReplicas: 3
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: quiet, namespace: team}
spec:
  replicas: 1
  selector: {matchLabels: {app: quiet}}
  template:
    metadata: {labels: {app: quiet}}
    spec:
      containers: [{name: c, image: busybox, resources: {requests: {cpu: 100m}}}]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: quiet, namespace: team}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: quiet}
  maxReplicas: 3
"#;

async fn reason(api: &Api<HorizontalPodAutoscaler>, name: &str, ty: &str) -> Option<String> {
    api.get(name)
        .await
        .ok()?
        .status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == ty)
        .and_then(|c| c.reason)
}

pub(super) async fn bad_input(kc: &std::path::Path, client: &kube::Client) {
    let versions = kubectl_ok(kc, &["api-versions"]);
    assert!(
        versions.contains("autoscaling/v1") && versions.contains("autoscaling/v2"),
        "{versions}"
    );
    let out = kubectl_stdin(
        kc,
        &["apply", "-f", "-"],
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: bad, namespace: team}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: x}\n  minReplicas: 5\n  maxReplicas: 2\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"
        ),
        "{err}"
    );
    let out = kubectl_stdin(kc, &["apply", "-f", "-"], HPAS);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "team");
    wait_for(
        Duration::from_secs(30),
        "FailedGetScale on a ConfigMap target",
        || async {
            (reason(&hpas, "no-scale", "AbleToScale").await.as_deref() == Some("FailedGetScale"))
                .then_some(())
        },
    )
    .await;
    wait_for(
        Duration::from_secs(60),
        "FailedGetResourceMetric without usage",
        || async {
            (reason(&hpas, "quiet", "ScalingActive").await.as_deref()
                == Some("FailedGetResourceMetric"))
            .then_some(())
        },
    )
    .await;
    let events = kubectl_ok(
        kc,
        &[
            "get",
            "events",
            "-n",
            "team",
            "--field-selector",
            "involvedObject.name=quiet",
            "-o",
            "jsonpath={.items[*].reason}",
        ],
    );
    assert!(events.contains("FailedComputeMetricsReplicas"), "{events}");
    // The same object through autoscaling/v1: CPU at v1's default of 80% in its own field,
    // the conditions in kube's annotation.
    let v1 = kubectl_ok(
        kc,
        &[
            "get",
            "horizontalpodautoscalers.v1.autoscaling",
            "quiet",
            "-n",
            "team",
            "-o",
            "json",
        ],
    );
    let v1: serde_json::Value = serde_json::from_str(&v1).unwrap();
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 80);
    let conds = v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/conditions"]
        .as_str()
        .unwrap_or_default();
    assert!(conds.contains("FailedGetResourceMetric"), "{v1}");
    // A merge patch through v1 applies to the v1 form and keeps what only v2 has.
    kubectl_ok(
        kc,
        &[
            "patch",
            "horizontalpodautoscalers.v1.autoscaling",
            "quiet",
            "-n",
            "team",
            "--type=merge",
            "-p",
            r#"{"spec":{"maxReplicas":5,"targetCPUUtilizationPercentage":60}}"#,
        ],
    );
    let h = hpas.get("quiet").await.unwrap();
    let spec = h.spec.unwrap();
    assert_eq!(spec.max_replicas, 5);
    let metrics = serde_json::to_value(spec.metrics.unwrap()).unwrap();
    assert_eq!(
        metrics,
        serde_json::json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}])
    );
    let stored = h.metadata.annotations.unwrap_or_default();
    assert!(
        !stored
            .keys()
            .any(|k| k.starts_with("autoscaling.alpha.kubernetes.io/")),
        "the v1 annotations are not stored: {stored:?}"
    );
    kubectl_ok(kc, &["delete", "hpa", "--all", "-n", "team"]);
    kubectl_ok(kc, &["delete", "deployment", "quiet", "-n", "team"]);
}
