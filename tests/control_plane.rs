//! The reconciling control plane as real processes: 3 kvstore members, 2 apiservers,
//! 2 schedulers and 2 controller-managers electing leaders through Leases; Nodes created
//! with kubectl; a stand-in agent marks bound pods Running and Ready.

mod common;

use std::time::{Duration, Instant};

use common::control::{fake_agent, Replicas, LEASE_DURATION};
use common::k8s::{kubectl_ok, kubectl_stdin, Apiservers, Backend};
use common::wait_for;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

const NODES: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-a, labels: {zone: a, disk: ssd, kubernetes.io/hostname: node-a}}
status: {capacity: {cpu: "4", memory: 8Gi, pods: "110"}, allocatable: {cpu: "4", memory: 8Gi, pods: "110"}}
---
apiVersion: v1
kind: Node
metadata: {name: node-b, labels: {zone: b, disk: ssd, kubernetes.io/hostname: node-b}}
status: {capacity: {cpu: "4", memory: 8Gi, pods: "110"}, allocatable: {cpu: "4", memory: 8Gi, pods: "110"}}
---
apiVersion: v1
kind: Node
metadata: {name: node-c, labels: {zone: c, disk: hdd, kubernetes.io/hostname: node-c}}
spec: {taints: [{key: dedicated, value: gpu, effect: NoSchedule}]}
status: {capacity: {cpu: "16", memory: 64Gi, pods: "110"}, allocatable: {cpu: "16", memory: 64Gi, pods: "110"}}
"#;

fn deployment(ns: &str, name: &str, replicas: u32, extra_spec: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  {extra_spec}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      nodeSelector: {{disk: ssd}}
      containers:
      - name: c
        image: busybox:v1
        resources: {{requests: {{cpu: "1", memory: 64Mi}}}}
"#
    )
}

async fn bound_pods(client: &kube::Client, ns: &str, selector: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default().labels(selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
        .collect()
}

async fn wait_bound(
    client: &kube::Client,
    ns: &str,
    selector: &str,
    n: usize,
    within: Duration,
) -> Vec<Pod> {
    wait_for(within, &format!("{n} pods bound ({selector})"), || async {
        let pods = bound_pods(client, ns, selector).await;
        (pods.len() == n).then_some(pods)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_scheduling_and_leader_failover() {
    let backend = Backend::flotilla().await;
    let api = Apiservers::start(2, &backend.urls()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (kc0, kc1) = (
        api.kubeconfig(0).to_path_buf(),
        api.kubeconfig(1).to_path_buf(),
    );
    let mut sched = Replicas::start("scheduler", &[&kc0, &kc1], dir.path(), &[]);
    let mut cm = Replicas::start("controller-manager", &[&kc1, &kc0], dir.path(), &[]);
    let client = api.client(0).await;
    let agent = fake_agent(client.clone());

    let out = kubectl_stdin(&kc0, &["apply", "-f", "-"], NODES);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kubectl_stdin(
        &kc0,
        &["apply", "-f", "-"],
        &deployment("default", "web", 6, ""),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Six pods, 1 cpu each, only on ssd nodes (node-c is hdd and tainted).
    let pods = wait_bound(&client, "default", "app=web", 6, Duration::from_secs(60)).await;
    let on = |n: &str| {
        pods.iter()
            .filter(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some(n))
            .count()
    };
    assert_eq!(
        on("node-c"),
        0,
        "node selector and taint keep pods off node-c"
    );
    assert_eq!(on("node-a") + on("node-b"), 6);
    assert!(
        on("node-a") >= 2 && on("node-b") >= 2,
        "least-allocated spreads: a={} b={}",
        on("node-a"),
        on("node-b")
    );

    // The scheduler leader dies: the other replica binds new pods.
    let leader = wait_for(Duration::from_secs(20), "a scheduler leader", || {
        sched.leader()
    })
    .await;
    sched.kill(leader);
    let killed = Instant::now();
    kubectl_ok(
        &kc0,
        &[
            "patch",
            "deployment",
            "web",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"replicas":7}}"#,
        ],
    );
    wait_bound(
        &client,
        "default",
        "app=web",
        7,
        LEASE_DURATION + Duration::from_secs(15),
    )
    .await;
    eprintln!(
        "scheduler failover: 7th pod bound {:?} after the leader was killed",
        killed.elapsed()
    );
    assert_eq!(sched.leader().await, Some(1 - leader));

    // The controller-manager leader dies: the other replica creates the new pod.
    let leader = wait_for(
        Duration::from_secs(20),
        "a controller-manager leader",
        || cm.leader(),
    )
    .await;
    cm.kill(leader);
    let killed = Instant::now();
    kubectl_ok(
        &kc1,
        &[
            "patch",
            "deployment",
            "web",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"replicas":8}}"#,
        ],
    );
    wait_bound(
        &client,
        "default",
        "app=web",
        8,
        LEASE_DURATION + Duration::from_secs(15),
    )
    .await;
    eprintln!(
        "controller-manager failover: 8th pod bound {:?} after the leader was killed",
        killed.elapsed()
    );
    assert_eq!(cm.leader().await, Some(1 - leader));
    // 8 × 1 cpu fill node-a and node-b exactly: the ninth has nowhere to go.
    kubectl_ok(
        &kc1,
        &[
            "patch",
            "deployment",
            "web",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"replicas":9}}"#,
        ],
    );

    // A pod that fits nowhere says why, in Kubernetes' words.
    kubectl_ok(
        &kc0,
        &[
            "run",
            "huge",
            "--image",
            "busybox",
            "--overrides",
            r#"{"spec":{"containers":[{"name":"huge","image":"busybox","resources":{"requests":{"cpu":"20"}}}]}}"#,
        ],
    );
    let msg = wait_for(
        Duration::from_secs(30),
        "huge to be marked unschedulable",
        || async {
            let out = kubectl_ok(
                &kc0,
                &[
                    "get",
                    "pod",
                    "huge",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}",
                ],
            );
            (!out.is_empty()).then_some(out)
        },
    )
    .await;
    assert_eq!(msg, "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu.");
    let reason = kubectl_ok(
        &kc0,
        &[
            "get",
            "pod",
            "huge",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].reason}",
        ],
    );
    assert_eq!(reason, "Unschedulable");
    wait_for(
        Duration::from_secs(20),
        "a FailedScheduling event",
        || async {
            let out = kubectl_ok(
                &kc0,
                &[
                    "get",
                    "events",
                    "--field-selector",
                    "reason=FailedScheduling,involvedObject.name=huge",
                    "-o",
                    "name",
                ],
            );
            (!out.trim().is_empty()).then_some(())
        },
    )
    .await;
    let ninth = wait_for(
        Duration::from_secs(30),
        "the ninth web pod to be unschedulable",
        || async {
            let out = kubectl_ok(
                &kc0,
                &[
                    "get",
                    "pods",
                    "-l",
                    "app=web",
                    "--field-selector",
                    "spec.nodeName=",
                    "-o",
                    "jsonpath={.items[*].status.conditions[0].message}",
                ],
            );
            (!out.is_empty()).then_some(out)
        },
    )
    .await;
    // Filters stop at the first failure per node, in Kubernetes' order (taints before
    // node affinity), so node-c reports its taint.
    assert_eq!(ninth, "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu.");

    // Adding capacity gives unschedulable pods another try at once.
    let more = NODES
        .replace("node-b", "node-d")
        .replace("zone: b", "zone: d");
    let out = kubectl_stdin(&kc0, &["apply", "-f", "-"], &more);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_bound(&client, "default", "app=web", 9, Duration::from_secs(20)).await;
    agent.abort();
}
