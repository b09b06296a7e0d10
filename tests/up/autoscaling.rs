//! Autoscaling on the README's cluster: `kubectl autoscale` makes an autoscaling/v1 HPA
//! (50% CPU, 1 to 4 replicas) over a Deployment of busybox loops that burn CPU while a
//! file on the host exists; the controller reads their usage from the metrics API and
//! scales the Deployment up as far as the behavior allows, `kubectl get hpa` shows kube's
//! columns, and once the file is gone it scales back to 1 after the scale-down window (15
//! s, set through autoscaling/v2).

use std::path::Path;
use std::time::Duration;

use crate::common::k8s::{kubectl_ok, kubectl_stdin};
use crate::common::wait_for;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};

const BURN: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: burn, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: burn}}
  template:
    metadata: {labels: {app: burn}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: IMAGE
        command: ["sh", "-c", "while :; do while [ -e /load/on ]; do :; done; sleep 1; done"]
        resources: {requests: {cpu: 100m}, limits: {cpu: 200m}}
        volumeMounts: [{name: load, mountPath: /load}]
      volumes:
      - {name: load, hostPath: {path: LOAD, type: Directory}}
"#;

async fn replicas(d: &Api<Deployment>) -> i32 {
    d.get("burn")
        .await
        .ok()
        .and_then(|d| d.spec)
        .and_then(|s| s.replicas)
        .unwrap_or(-1)
}

pub async fn check(kc: &Path, client: &kube::Client, image: &str) {
    let load = tempfile::tempdir().unwrap();
    std::fs::write(load.path().join("on"), "").unwrap();
    let manifest = BURN
        .replace("IMAGE", image)
        .replace("LOAD", &load.path().display().to_string());
    let o = kubectl_stdin(kc, &["apply", "-f", "-"], &manifest);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let said = kubectl_ok(
        kc,
        &[
            "autoscale",
            "deployment",
            "burn",
            "--cpu-percent=50",
            "--min=1",
            "--max=4",
        ],
    );
    assert_eq!(
        said.trim(),
        "horizontalpodautoscaler.autoscaling/burn autoscaled"
    );
    // Read back in both versions: one object.
    let v1 = kubectl_ok(
        kc,
        &["get", "horizontalpodautoscalers.v1.autoscaling", "burn", "-o", "jsonpath={.apiVersion} {.spec.targetCPUUtilizationPercentage} {.spec.scaleTargetRef.kind}"],
    );
    assert_eq!(v1, "autoscaling/v1 50 Deployment");
    kubectl_ok(
        kc,
        &[
            "patch",
            "hpa",
            "burn",
            "--type=merge",
            "-p",
            r#"{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":15}}}}"#,
        ],
    );
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let h = hpas.get("burn").await.unwrap();
    let spec = h.spec.unwrap();
    let b = spec.behavior.unwrap();
    assert_eq!(b.scale_down.unwrap().stabilization_window_seconds, Some(15));
    assert_eq!(
        b.scale_up.unwrap().policies.unwrap().len(),
        2,
        "kube's defaults filled in"
    );

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    // 200m of busy loop against a 100m request is 200%, four times the target: up to the
    // maximum in one step (the default scale-up policy allows +4 pods per 15 s).
    wait_for(
        Duration::from_secs(150),
        "the HPA to scale burn up to 4",
        || async { (replicas(&deployments).await == 4).then_some(()) },
    )
    .await;
    // The status written with the rescale still counts the replicas it found; the next
    // sync (15 s) sees the four.
    let st = wait_for(
        Duration::from_secs(60),
        "the HPA to count 4 replicas",
        || async {
            let st = hpas.get("burn").await.ok()?.status?;
            (st.current_replicas == Some(4)).then_some(st)
        },
    )
    .await;
    let conds = st.conditions.unwrap_or_default();
    let reason = |t: &str| {
        conds
            .iter()
            .find(|c| c.type_ == t)
            .and_then(|c| c.reason.clone())
            .unwrap_or_default()
    };
    assert_eq!(reason("ScalingActive"), "ValidMetricFound", "{conds:?}");
    assert!(st.last_scale_time.is_some());
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let rescaled = events
        .list(&ListParams::default().fields("involvedObject.name=burn,reason=SuccessfulRescale"))
        .await
        .unwrap()
        .items;
    assert!(
        rescaled.iter().any(|e| e.message.as_deref()
            == Some("New size: 4; reason: cpu resource utilization (percentage of request) above target")),
        "{:?}",
        rescaled.iter().map(|e| e.message.clone()).collect::<Vec<_>>()
    );
    let table = kubectl_ok(kc, &["get", "hpa", "burn"]);
    let mut lines = table.lines();
    let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        head,
        [
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE"
        ]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["burn", "Deployment/burn", "cpu:"], "{table}");
    assert!(row[3].ends_with("%/50%"), "{table}");
    assert_eq!(&row[4..7], ["1", "4", "4"], "{table}");

    // The load stops: back to the minimum once the 15 s window has passed.
    std::fs::remove_file(load.path().join("on")).unwrap();
    wait_for(
        Duration::from_secs(150),
        "the HPA to scale burn down to 1",
        || async { (replicas(&deployments).await == 1).then_some(()) },
    )
    .await;
    kubectl_ok(kc, &["delete", "hpa", "burn"]);
    kubectl_ok(kc, &["delete", "deployment", "burn", "--wait=false"]);
}
