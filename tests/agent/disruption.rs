//! Disruption budgets and node maintenance with real pods on the t10 cluster: the
//! disruption controller keeps a PodDisruptionBudget's status, and `kubectl drain`
//! empties a node through the eviction API without ever leaving the budget's
//! application below minAvailable, while the node's DaemonSet pod stays.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use super::*;

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: guarded, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: guarded}}
  template:
    metadata: {labels: {app: guarded}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: c, image: busybox, command: ["sleep", "3600"]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: keeper, namespace: default}
spec:
  selector: {matchLabels: {app: keeper}}
  template:
    metadata: {labels: {app: keeper}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: c, image: busybox, command: ["sleep", "3600"]}
"#;

fn ready_and_staying(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub(super) async fn drain(w: &World, kc: &std::path::Path) {
    let o = kubectl_stdin(kc, &["apply", "-f", "-"], APP);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // kubectl's generator sends the budget as protobuf.
    let out = kubectl_ok(
        kc,
        &[
            "create",
            "poddisruptionbudget",
            "guarded",
            "--selector=app=guarded",
            "--min-available=2",
        ],
    );
    assert!(
        out.contains("poddisruptionbudget.policy/guarded created"),
        "{out}"
    );
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(w.client.clone(), "default");
    wait_for(
        Duration::from_secs(60),
        "the budget allowing one disruption of three healthy pods",
        || async {
            let s = pdbs.get("guarded").await.ok()?.status?;
            (s.current_healthy == 3 && s.desired_healthy == 2 && s.disruptions_allowed == 1)
                .then_some(())
        },
    )
    .await;
    let table = kubectl_ok(kc, &["get", "pdb", "guarded"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .filter(|s| !s.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS",
            "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["guarded", "2", "N/A", "1"], "{table}");
    let out = kubectl_ok(
        kc,
        &["rollout", "status", "daemonset/keeper", "--timeout=60s"],
    );
    assert!(out.contains("successfully rolled out"), "{out}");

    // Drain the node holding most of the application.
    let pods_api: Api<Pod> = Api::namespaced(w.client.clone(), "default");
    let guarded = pods_api
        .list(&ListParams::default().labels("app=guarded"))
        .await
        .unwrap()
        .items;
    let on = |n: &str| guarded.iter().filter(|p| node_of(p) == n).count();
    let node = if on("node-a") >= on("node-b") {
        "node-a"
    } else {
        "node-b"
    };
    let keeper_before: Vec<String> = pods_api
        .list(&ListParams::default().labels("app=keeper"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| node_of(p) == node)
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(keeper_before.len(), 1);

    // Watch the application while the node drains: never fewer than minAvailable.
    let fewest = Arc::new(AtomicUsize::new(usize::MAX));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (fewest, stop, api) = (fewest.clone(), stop.clone(), pods_api.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(l) = api.list(&ListParams::default().labels("app=guarded")).await {
                    let n = l.items.iter().filter(|p| ready_and_staying(p)).count();
                    fewest.fetch_min(n, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let kc2 = kc.to_path_buf();
    let node2 = node.to_string();
    let o = tokio::task::spawn_blocking(move || {
        common::k8s::kubectl(
            &kc2,
            &[
                "drain",
                &node2,
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                // Bare pods earlier cases left on the node go too.
                "--force",
                "--timeout=120s",
            ],
        )
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    watcher.await.unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    );
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("node/{node} cordoned")),
        "{stdout}"
    );
    assert!(stdout.contains("evicting pod default/guarded-"), "{stdout}");
    assert!(stdout.contains(&format!("node/{node} drained")), "{stdout}");
    assert!(
        stderr.contains("ignoring DaemonSet-managed Pods"),
        "{stderr}"
    );
    if on(node) >= 2 {
        // The second eviction had to wait for a replacement to become ready.
        assert!(
            stderr.contains("Cannot evict pod as it would violate the pod's disruption budget."),
            "{stderr}"
        );
    }
    let fewest = fewest.load(Ordering::Relaxed);
    assert!(
        (2..=3).contains(&fewest),
        "the application fell to {fewest} ready pods"
    );
    let after = pods_api
        .list(&ListParams::default().labels("app=guarded"))
        .await
        .unwrap()
        .items;
    assert!(
        after
            .iter()
            .filter(|p| ready_and_staying(p))
            .all(|p| node_of(p) != node),
        "guarded pods left on {node}"
    );
    let keeper_after = pods_api.get(&keeper_before[0]).await.unwrap();
    assert!(
        keeper_after.metadata.deletion_timestamp.is_none(),
        "the DaemonSet pod stays"
    );
    let nodes: Api<Node> = Api::all(w.client.clone());
    let n = nodes.get(node).await.unwrap();
    assert_eq!(n.spec.unwrap().unschedulable, Some(true));

    let out = kubectl_ok(kc, &["uncordon", node]);
    assert!(out.contains(&format!("node/{node} uncordoned")), "{out}");
    assert_ne!(
        nodes.get(node).await.unwrap().spec.unwrap().unschedulable,
        Some(true)
    );
    kubectl_ok(
        kc,
        &[
            "delete",
            "deployment/guarded",
            "daemonset/keeper",
            "pdb/guarded",
        ],
    );
}
