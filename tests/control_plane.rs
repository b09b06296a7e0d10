//! The reconciling control plane as real processes: 3 kvstore members, 2 apiservers,
//! 2 schedulers and 2 controller-managers electing leaders through Leases; Nodes created
//! with kubectl; a stand-in agent marks bound pods Running and Ready.

#[path = "control_plane/autoscaling.rs"]
mod autoscaling;
mod common;
#[path = "control_plane/statefulset.rs"]
mod statefulset;

use std::time::{Duration, Instant};

use common::control::{fake_agent, heartbeats, Replicas, LEASE_DURATION};
use common::k8s::{kubectl, kubectl_ok, kubectl_stdin, Apiservers, Backend};
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

/// Every controller-manager here runs each controller as its own ServiceAccount, so the
/// suites prove the controllers' `system:controller:*` roles are enough for their work.
const OWN_ACCOUNTS: &[&str] = &["--use-service-account-credentials"];

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
    let mut cm = Replicas::start(
        "controller-manager",
        &[&kc1, &kc0],
        dir.path(),
        OWN_ACCOUNTS,
    );
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

    // A pod of higher priority preempts one web pod and takes its place.
    let vip = "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: high}\nvalue: 1000\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: vip}\nspec:\n  priorityClassName: high\n  nodeSelector: {disk: ssd}\n  containers: [{name: c, image: busybox, resources: {requests: {cpu: \"1\"}}}]\n";
    let out = kubectl_stdin(&kc0, &["apply", "-f", "-"], vip);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        kubectl_ok(
            &kc0,
            &["get", "pod", "vip", "-o", "jsonpath={.spec.priority}"]
        ),
        "1000"
    );
    let vip_node = wait_for(
        Duration::from_secs(40),
        "vip to be bound by preemption",
        || async {
            let n = kubectl_ok(
                &kc0,
                &["get", "pod", "vip", "-o", "jsonpath={.spec.nodeName}"],
            );
            (!n.is_empty()).then_some(n)
        },
    )
    .await;
    assert!(
        vip_node == "node-a" || vip_node == "node-b",
        "vip on {vip_node}"
    );
    let preempted = kubectl_ok(
        &kc0,
        &[
            "get",
            "events",
            "--field-selector",
            "reason=Preempted",
            "-o",
            "jsonpath={.items[*].involvedObject.name}",
        ],
    );
    assert!(
        preempted.starts_with("web-"),
        "a web pod was preempted: {preempted:?}"
    );

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

/// `kubectl set image` sends a strategic merge patch with a list, which the apiserver does
/// not take yet (the "apiserver, complete" issue); a JSON patch changes the same field.
/// Whether `user` (in `groups`) may `verb` the `resource` (`group`, `sub`resource) in
/// `ns`, as the apiserver's SubjectAccessReview says.
async fn may(
    client: &kube::Client,
    user: &str,
    groups: &[&str],
    (verb, group, resource, sub, ns): (&str, &str, &str, &str, &str),
) -> bool {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(groups.iter().map(|g| g.to_string()).collect()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource: Some(sub.into()).filter(|s: &String| !s.is_empty()),
                namespace: Some(ns.into()).filter(|s: &String| !s.is_empty()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    api.create(&kube::api::PostParams::default(), &review)
        .await
        .expect("subjectaccessreview")
        .status
        .expect("a review's status")
        .allowed
}

/// The controller-manager as kube runs it: its own identity has only the
/// `system:kube-controller-manager` role (here through a ServiceAccount bound to it), and
/// with `--use-service-account-credentials` each controller acts as its own account in
/// kube-system with its `system:controller:*` role; a Deployment still rolls out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t15_controllers_act_as_their_own_service_accounts() {
    let backend = Backend::flotilla().await;
    let api = Apiservers::start(1, &backend.urls()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kc = api.kubeconfig(0).to_path_buf();
    let client = api.client(0).await;

    // A kubeconfig with the controller-manager's role only.
    kubectl_ok(
        &kc,
        &["create", "serviceaccount", "kcm", "-n", "kube-system"],
    );
    kubectl_ok(
        &kc,
        &[
            "create",
            "clusterrolebinding",
            "kcm-under-test",
            "--clusterrole=system:kube-controller-manager",
            "--serviceaccount=kube-system:kcm",
        ],
    );
    let token = kubectl_ok(
        &kc,
        &[
            "create",
            "token",
            "kcm",
            "-n",
            "kube-system",
            "--duration=2h",
        ],
    );
    let mut narrow: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&kc).expect("kubeconfig"))
            .expect("kubeconfig JSON");
    for u in narrow["users"].as_array_mut().expect("users") {
        u["user"] = serde_json::json!({ "token": token.trim() });
    }
    let kcm_kc = dir.path().join("kubeconfig-kcm");
    std::fs::write(&kcm_kc, narrow.to_string()).expect("write kubeconfig");
    let kcm = "system:serviceaccount:kube-system:kcm";
    let kcm_groups = ["system:serviceaccounts", "system:authenticated"];
    assert!(
        !may(
            &client,
            kcm,
            &kcm_groups,
            ("create", "", "pods", "", "default")
        )
        .await,
        "the controller-manager's own identity creates no pods"
    );

    let _sched = Replicas::start("scheduler", &[&kc], dir.path(), &[]);
    let cm = Replicas::start("controller-manager", &[&kcm_kc], dir.path(), OWN_ACCOUNTS);
    let agent = fake_agent(client.clone());
    // The nodes stay Ready through the minute the account's deletion takes to heal.
    let beats = heartbeats(
        client.clone(),
        std::sync::Arc::new(std::sync::Mutex::new(vec![
            "node-a".to_string(),
            "node-b".to_string(),
            "node-c".to_string(),
        ])),
    );
    let out = kubectl_stdin(&kc, &["apply", "-f", "-"], NODES);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kubectl_stdin(
        &kc,
        &["apply", "-f", "-"],
        &deployment("default", "web", 3, ""),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rollout = || {
        let out = kubectl(
            &kc,
            &[
                "rollout",
                "status",
                "deployment/web",
                "--timeout",
                "60s",
                "--watch",
            ],
        );
        assert!(
            out.status.success(),
            "rollout: {}\ncontroller-manager log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&cm.replicas[0].log).unwrap_or_default()
        );
    };
    rollout();
    let patch = r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"busybox:v2"}]"#;
    kubectl_ok(
        &kc,
        &["patch", "deployment", "web", "--type", "json", "-p", patch],
    );
    rollout();
    let pods = wait_bound(&client, "default", "app=web", 3, Duration::from_secs(30)).await;
    assert!(pods
        .iter()
        .all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("busybox:v2")));

    // The controller-manager made the accounts the controllers act as.
    let accounts = kubectl_ok(
        &kc,
        &[
            "get",
            "serviceaccounts",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
    );
    for a in [
        "deployment-controller",
        "replicaset-controller",
        "replication-controller",
        "generic-garbage-collector",
        "node-controller",
        "endpoint-controller",
        "endpointslice-controller",
        "namespace-controller",
        "service-account-controller",
    ] {
        assert!(
            accounts.split_whitespace().any(|n| n == a),
            "{a} in {accounts}"
        );
    }
    // The deployment controller records its events as itself.
    wait_for(
        Duration::from_secs(20),
        "a ScalingReplicaSet event from deployment-controller",
        || async {
            let events: Api<k8s_openapi::api::core::v1::Event> =
                Api::namespaced(client.clone(), "default");
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("ScalingReplicaSet")
                        && e.source.as_ref().and_then(|s| s.component.as_deref())
                            == Some("deployment-controller")
                })
                .then_some(())
        },
    )
    .await;

    // The deployment controller's identity may do its work, and not more.
    let d = "system:serviceaccount:kube-system:deployment-controller";
    let d_groups = [
        "system:serviceaccounts",
        "system:serviceaccounts:kube-system",
        "system:authenticated",
    ];
    for (attrs, allowed) in [
        (("update", "apps", "deployments", "status", "default"), true),
        (("create", "apps", "replicasets", "", "default"), true),
        (("get", "", "secrets", "", "default"), false),
        (("list", "", "secrets", "", ""), false),
        (("delete", "", "nodes", "", ""), false),
        (("create", "", "pods", "", "default"), false),
    ] {
        assert_eq!(
            may(&client, d, &d_groups, attrs).await,
            allowed,
            "deployment-controller {attrs:?}"
        );
    }

    // Deleting an account revokes its tokens: the controller-manager makes it again and
    // its controller goes on with a new token (within the account check period and
    // kube-rs' reload of the token file, about a minute).
    let uid = || {
        let out = kubectl(
            &kc,
            &[
                "get",
                "serviceaccount",
                "deployment-controller",
                "-n",
                "kube-system",
                "-o",
                "jsonpath={.metadata.uid}",
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let before = uid();
    assert!(!before.is_empty());
    kubectl_ok(
        &kc,
        &[
            "delete",
            "serviceaccount",
            "deployment-controller",
            "-n",
            "kube-system",
        ],
    );
    wait_for(
        Duration::from_secs(60),
        "deployment-controller's account made again",
        || async {
            let now = uid();
            (!now.is_empty() && now != before).then_some(())
        },
    )
    .await;
    kubectl_ok(&kc, &["scale", "deployment", "web", "--replicas", "4"]);
    let deadline = Instant::now() + Duration::from_secs(150);
    while bound_pods(&client, "default", "app=web").await.len() != 4 {
        assert!(
            Instant::now() < deadline,
            "no 4th pod after the account was made again; controller-manager log:\n{}",
            std::fs::read_to_string(&cm.replicas[0].log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    beats.abort();
    agent.abort();
}

fn set_image(kc: &std::path::Path, image: &str) {
    let patch = format!(
        r#"[{{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"{image}"}}]"#
    );
    kubectl_ok(
        kc,
        &[
            "patch",
            "deployment",
            "web",
            "-n",
            "team",
            "--type",
            "json",
            "-p",
            &patch,
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_deployments_garbage_collection_and_namespaces() {
    let backend = Backend::flotilla().await;
    let api = Apiservers::start(1, &backend.urls()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kc = api.kubeconfig(0).to_path_buf();
    let _sched = Replicas::start("scheduler", &[&kc], dir.path(), &[]);
    let _cm = Replicas::start("controller-manager", &[&kc], dir.path(), OWN_ACCOUNTS);
    let client = api.client(0).await;
    let agent = fake_agent(client.clone());
    let out = kubectl_stdin(&kc, &["apply", "-f", "-"], NODES);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every namespace gets a default ServiceAccount.
    kubectl_ok(&kc, &["create", "namespace", "team"]);
    wait_for(
        Duration::from_secs(20),
        "the default ServiceAccount",
        || async {
            kubectl(&kc, &["get", "serviceaccount", "default", "-n", "team"])
                .status
                .success()
                .then_some(())
        },
    )
    .await;

    // A rolling update with maxUnavailable 0: rollout status, history, undo, pause, restart.
    let strategy =
        "strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}";
    let out = kubectl_stdin(
        &kc,
        &["apply", "-f", "-"],
        &deployment("team", "web", 3, strategy),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rollout = |what: &str| {
        kubectl_ok(
            &kc,
            &[
                "rollout",
                "status",
                "deployment/web",
                "-n",
                "team",
                "--timeout",
                "60s",
                "--watch",
            ],
        ) + what
    };
    assert!(rollout("").contains("successfully rolled out"));
    set_image(&kc, "busybox:v2");
    assert!(rollout("").contains("successfully rolled out"));
    let rs_list = || {
        kubectl_ok(&kc, &["get", "rs", "-n", "team", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.annotations.deployment\\.kubernetes\\.io/revision}={.spec.replicas}={.spec.template.spec.containers[0].image} {end}"])
    };
    let mut sets: Vec<String> = rs_list().split_whitespace().map(str::to_string).collect();
    sets.sort();
    assert_eq!(sets, ["1=0=busybox:v1", "2=3=busybox:v2"]);
    let pods = bound_pods(&client, "team", "app=web").await;
    assert!(pods
        .iter()
        .all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("busybox:v2")));

    kubectl_ok(&kc, &["rollout", "undo", "deployment/web", "-n", "team"]);
    assert!(rollout("").contains("successfully rolled out"));
    let mut sets: Vec<String> = rs_list().split_whitespace().map(str::to_string).collect();
    sets.sort();
    assert_eq!(
        sets,
        ["2=0=busybox:v2", "3=3=busybox:v1"],
        "undo makes revision 1 current as revision 3"
    );

    // A Deployment made without annotations (`kubectl create deployment`): the controller
    // keeps the revision on the Deployment itself, so kubectl's undo (a JSON patch that
    // replaces /metadata/annotations) works, to the previous or a named revision.
    kubectl_ok(
        &kc,
        &[
            "create",
            "deployment",
            "plain",
            "--image=busybox:v1",
            "-n",
            "team",
        ],
    );
    let plain_rollout = || {
        kubectl_ok(
            &kc,
            &[
                "rollout",
                "status",
                "deployment/plain",
                "-n",
                "team",
                "--timeout",
                "60s",
            ],
        )
    };
    let plain_image = || {
        kubectl_ok(
            &kc,
            &["get", "deployment", "plain", "-n", "team", "-o",
              "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision} {.spec.template.spec.containers[0].image}"],
        )
    };
    assert!(plain_rollout().contains("successfully rolled out"));
    wait_for(
        Duration::from_secs(20),
        "revision 1 on the Deployment",
        || async { (plain_image() == "1 busybox:v1").then_some(()) },
    )
    .await;
    kubectl_ok(
        &kc,
        &[
            "set",
            "image",
            "deployment/plain",
            "busybox=busybox:v2",
            "-n",
            "team",
        ],
    );
    assert!(plain_rollout().contains("successfully rolled out"));
    let history = kubectl_ok(
        &kc,
        &["rollout", "history", "deployment/plain", "-n", "team"],
    );
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    kubectl_ok(&kc, &["rollout", "undo", "deployment/plain", "-n", "team"]);
    assert!(plain_rollout().contains("successfully rolled out"));
    wait_for(Duration::from_secs(20), "revision 3 runs v1", || async {
        (plain_image() == "3 busybox:v1").then_some(())
    })
    .await;
    kubectl_ok(
        &kc,
        &[
            "rollout",
            "undo",
            "deployment/plain",
            "--to-revision=2",
            "-n",
            "team",
        ],
    );
    assert!(plain_rollout().contains("successfully rolled out"));
    wait_for(Duration::from_secs(20), "revision 4 runs v2", || async {
        (plain_image() == "4 busybox:v2").then_some(())
    })
    .await;
    let detail = kubectl_ok(
        &kc,
        &[
            "rollout",
            "history",
            "deployment/plain",
            "-n",
            "team",
            "--revision=4",
        ],
    );
    assert!(detail.contains("busybox:v2"), "{detail}");
    kubectl_ok(&kc, &["delete", "deployment", "plain", "-n", "team"]);

    // A ReplicationController (the kind and controller added by the recipes): kubectl's
    // columns, `kubectl scale rc`, and the controller keeping its pods.
    let rc = r#"
apiVersion: v1
kind: ReplicationController
metadata: {name: legacy, namespace: team}
spec:
  replicas: 2
  template:
    metadata: {labels: {app: legacy}}
    spec: {containers: [{name: c, image: "busybox:v1"}]}
"#;
    let out = kubectl_stdin(&kc, &["apply", "-f", "-"], rc);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_bound(&client, "team", "app=legacy", 2, Duration::from_secs(30)).await;
    let row = || {
        kubectl_ok(&kc, &["get", "rc", "legacy", "-n", "team", "--no-headers"])
            .split_whitespace()
            .take(4)
            .collect::<Vec<_>>()
            .join(" ")
    };
    wait_for(Duration::from_secs(30), "rc legacy 2/2/2", || async {
        (row() == "legacy 2 2 2").then_some(())
    })
    .await;
    let wide = kubectl_ok(&kc, &["get", "rc", "-n", "team", "-o", "wide"]);
    let header: Vec<&str> = wide
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ],
        "{wide}"
    );
    assert!(wide.contains("app=legacy"), "{wide}");
    kubectl_ok(
        &kc,
        &["scale", "rc", "legacy", "--replicas=3", "-n", "team"],
    );
    wait_bound(&client, "team", "app=legacy", 3, Duration::from_secs(30)).await;
    wait_for(Duration::from_secs(30), "rc legacy 3/3/3", || async {
        (row() == "legacy 3 3 3").then_some(())
    })
    .await;
    let scale = kubectl_ok(
        &kc,
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/team/replicationcontrollers/legacy/scale",
        ],
    );
    let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=legacy");
    kubectl_ok(&kc, &["delete", "rc", "legacy", "-n", "team"]);

    kubectl_ok(&kc, &["rollout", "pause", "deployment/web", "-n", "team"]);
    set_image(&kc, "busybox:v3");
    let progressing = || {
        kubectl_ok(
            &kc,
            &[
                "get",
                "deployment",
                "web",
                "-n",
                "team",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
            ],
        )
    };
    wait_for(
        Duration::from_secs(20),
        "Progressing=DeploymentPaused",
        || async { (progressing() == "DeploymentPaused").then_some(()) },
    )
    .await;
    assert!(
        !rs_list().contains("busybox:v3"),
        "a paused deployment starts no rollout"
    );
    kubectl_ok(&kc, &["rollout", "resume", "deployment/web", "-n", "team"]);
    assert!(rollout("").contains("successfully rolled out"));
    kubectl_ok(&kc, &["rollout", "restart", "deployment/web", "-n", "team"]);
    assert!(rollout("").contains("successfully rolled out"));
    let revisions = rs_list();
    assert!(
        revisions.contains("5=3=busybox:v3"),
        "restart is a new revision: {revisions}"
    );

    // Orphaning: the ReplicaSet goes, its pods stay and lose their owner; a new ReplicaSet
    // with the same selector adopts them instead of creating more.
    let rs = |name: &str| {
        format!(
            "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {{name: {name}, namespace: team}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: solo}}}}\n  template:\n    metadata: {{labels: {{app: solo}}}}\n    spec: {{containers: [{{name: c, image: busybox}}]}}\n"
        )
    };
    let out = kubectl_stdin(&kc, &["apply", "-f", "-"], &rs("solo"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = wait_bound(&client, "team", "app=solo", 2, Duration::from_secs(30)).await;
    kubectl_ok(
        &kc,
        &["delete", "rs", "solo", "-n", "team", "--cascade=orphan"],
    );
    wait_for(
        Duration::from_secs(20),
        "the orphaned pods to lose their owner",
        || async {
            let pods = bound_pods(&client, "team", "app=solo").await;
            (pods.len() == 2
                && pods.iter().all(|p| {
                    p.metadata
                        .owner_references
                        .as_ref()
                        .is_none_or(|r| r.is_empty())
                }))
            .then_some(())
        },
    )
    .await;
    let out = kubectl_stdin(&kc, &["apply", "-f", "-"], &rs("solo2"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        Duration::from_secs(20),
        "solo2 to adopt the orphans",
        || async {
            let pods = bound_pods(&client, "team", "app=solo").await;
            let adopted = pods.iter().all(|p| {
                p.metadata.owner_references.as_ref().is_some_and(|r| {
                    r.iter()
                        .any(|r| r.name == "solo2" && r.controller == Some(true))
                })
            });
            (pods.len() == 2 && adopted).then_some(())
        },
    )
    .await;
    let uids = |ps: &[Pod]| {
        let mut v: Vec<String> = ps.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(
        uids(&bound_pods(&client, "team", "app=solo").await),
        uids(&first),
        "adopted, not recreated"
    );

    // Foreground: the pods go first, then the ReplicaSet.
    kubectl_ok(
        &kc,
        &[
            "delete",
            "rs",
            "solo2",
            "-n",
            "team",
            "--cascade=foreground",
            "--timeout=60s",
        ],
    );
    assert!(
        bound_pods(&client, "team", "app=solo").await.is_empty(),
        "dependents are gone before the owner"
    );

    // Background (the default): deleting the Deployment removes its ReplicaSets and pods.
    kubectl_ok(&kc, &["delete", "deployment", "web", "-n", "team"]);
    wait_for(
        Duration::from_secs(30),
        "the web ReplicaSets and pods to be collected",
        || async {
            let rs = kubectl_ok(&kc, &["get", "rs", "-n", "team", "-o", "name"]);
            let pods = kubectl_ok(&kc, &["get", "pods", "-n", "team", "-o", "name"]);
            (rs.trim().is_empty() && pods.trim().is_empty()).then_some(())
        },
    )
    .await;

    // Deleting a namespace deletes what is in it, then the namespace.
    kubectl_ok(
        &kc,
        &[
            "create",
            "configmap",
            "settings",
            "-n",
            "team",
            "--from-literal",
            "a=b",
        ],
    );
    let out = kubectl_stdin(
        &kc,
        &["apply", "-f", "-"],
        &deployment("team", "api", 2, ""),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_bound(&client, "team", "app=api", 2, Duration::from_secs(30)).await;
    statefulset::statefulsets(&kc, &client).await;
    autoscaling::bad_input(&kc, &client).await;
    kubectl_ok(&kc, &["delete", "namespace", "team", "--timeout=60s"]);
    let out = kubectl(&kc, &["get", "namespace", "team"]);
    assert!(!out.status.success(), "the namespace is gone");
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_dead_nodes_are_evacuated_and_endpoints_follow_the_pods() {
    let backend = Backend::flotilla().await;
    let api = Apiservers::start(1, &backend.urls()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kc = api.kubeconfig(0).to_path_buf();
    let _sched = Replicas::start("scheduler", &[&kc], dir.path(), &[]);
    let _cm = Replicas::start(
        "controller-manager",
        &[&kc],
        dir.path(),
        &[
            "--node-monitor-period",
            "500ms",
            "--node-monitor-grace-period",
            "4s",
            "--use-service-account-credentials",
        ],
    );
    let client = api.client(0).await;
    let agent = fake_agent(client.clone());
    let beating = std::sync::Arc::new(std::sync::Mutex::new(vec![
        "node-a".to_string(),
        "node-b".to_string(),
        "node-c".to_string(),
    ]));
    let beats = heartbeats(client.clone(), beating.clone());
    let out = kubectl_stdin(&kc, &["apply", "-f", "-"], NODES);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Two pods that tolerate an unreachable node for 1 s only, one per ssd node.
    let d = deployment("default", "web", 2, "").replace(
        "      nodeSelector: {disk: ssd}",
        "      nodeSelector: {disk: ssd}\n      tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 1}]",
    );
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n";
    for doc in [d.as_str(), svc] {
        let out = kubectl_stdin(&kc, &["apply", "-f", "-"], doc);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pods = wait_bound(&client, "default", "app=web", 2, Duration::from_secs(30)).await;
    let node_of = |p: &Pod| p.spec.as_ref().unwrap().node_name.clone().unwrap();
    let mut nodes: Vec<String> = pods.iter().map(node_of).collect();
    nodes.sort();
    assert_eq!(
        nodes,
        ["node-a", "node-b"],
        "least-allocated puts one pod per node"
    );

    // Endpoints and the EndpointSlice list both ready pods on the target port.
    let endpoint_ips = || {
        let out = kubectl_ok(
            &kc,
            &[
                "get",
                "endpoints",
                "web",
                "-o",
                "jsonpath={.subsets[*].addresses[*].ip}",
            ],
        );
        let mut v: Vec<String> = out.split_whitespace().map(str::to_string).collect();
        v.sort();
        v
    };
    let pod_ips = |ps: &[Pod]| {
        let mut v: Vec<String> = ps
            .iter()
            .filter_map(|p| p.status.as_ref().and_then(|s| s.pod_ip.clone()))
            .collect();
        v.sort();
        v
    };
    let ready = wait_for(
        Duration::from_secs(20),
        "both pods ready with IPs",
        || async {
            let ps = bound_pods(&client, "default", "app=web").await;
            (pod_ips(&ps).len() == 2).then_some(ps)
        },
    )
    .await;
    wait_for(
        Duration::from_secs(20),
        "the endpoints of both pods",
        || async { (endpoint_ips() == pod_ips(&ready)).then_some(()) },
    )
    .await;
    assert_eq!(
        kubectl_ok(
            &kc,
            &[
                "get",
                "endpoints",
                "web",
                "-o",
                "jsonpath={.subsets[0].ports[0].port}"
            ]
        ),
        "8080"
    );
    let slice = kubectl_ok(
        &kc,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={.items[0].endpoints[*].addresses[0]}",
        ],
    );
    let mut slice_ips: Vec<String> = slice.split_whitespace().map(str::to_string).collect();
    slice_ips.sort();
    assert_eq!(slice_ips, pod_ips(&ready));

    // node-a stops heartbeating: Unknown, tainted, its pod evicted and replaced elsewhere.
    beating.lock().unwrap().retain(|n| n != "node-a");
    let stopped = Instant::now();
    wait_for(
        Duration::from_secs(30),
        "node-a to be tainted unreachable",
        || async {
            let taints = kubectl_ok(
                &kc,
                &[
                    "get",
                    "node",
                    "node-a",
                    "-o",
                    "jsonpath={.spec.taints[*].key}",
                ],
            );
            taints
                .contains("node.kubernetes.io/unreachable")
                .then_some(())
        },
    )
    .await;
    let ready_status = kubectl_ok(
        &kc,
        &[
            "get",
            "node",
            "node-a",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
    );
    assert_eq!(ready_status, "Unknown");
    let moved = wait_for(
        Duration::from_secs(40),
        "the pod on node-a to be replaced on another node",
        || async {
            let ps = bound_pods(&client, "default", "app=web").await;
            (ps.len() == 2 && ps.iter().all(|p| node_of(p) != "node-a") && pod_ips(&ps).len() == 2)
                .then_some(ps)
        },
    )
    .await;
    eprintln!(
        "node-a silent → its pod replaced elsewhere in {:?}",
        stopped.elapsed()
    );
    wait_for(
        Duration::from_secs(20),
        "the endpoints to follow",
        || async { (endpoint_ips() == pod_ips(&moved)).then_some(()) },
    )
    .await;

    // It beats again: the taints go.
    beating.lock().unwrap().push("node-a".into());
    wait_for(
        Duration::from_secs(30),
        "node-a's taints to be removed",
        || async {
            let taints = kubectl_ok(
                &kc,
                &[
                    "get",
                    "node",
                    "node-a",
                    "-o",
                    "jsonpath={.spec.taints[*].key}",
                ],
            );
            (!taints.contains("node.kubernetes.io/unreachable")).then_some(())
        },
    )
    .await;
    beats.abort();
    agent.abort();
}

/// The node IPAM controller (`--allocate-node-cidrs`, which the harness sets with a
/// per-cluster `--cluster-cidr`): Nodes get distinct ranges inside the cluster CIDR, the
/// apiserver refuses to change one, a deleted Node's range may be given again, and no
/// range is ever shared, also after the controller-manager leader is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_node_ipam_distinct_pod_cidrs_across_failover() {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::Node;
    use kube::api::{DeleteParams, Patch, PatchParams, PostParams};

    let backend = Backend::flotilla().await;
    let api = Apiservers::start(2, &backend.urls()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (kc0, kc1) = (
        api.kubeconfig(0).to_path_buf(),
        api.kubeconfig(1).to_path_buf(),
    );
    let mut cm = Replicas::start(
        "controller-manager",
        &[&kc0, &kc1],
        dir.path(),
        OWN_ACCOUNTS,
    );
    let cidr = cm
        .cluster_cidr
        .clone()
        .expect("the harness sets --cluster-cidr");
    // 10.X.0.0/16: the node ranges are 10.X.N.0/24.
    let prefix = cidr.trim_end_matches("0.0/16").to_string();
    let client = api.client(0).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let create = |name: &'static str| {
        let nodes = nodes.clone();
        async move {
            let n: Node = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            }))
            .unwrap();
            nodes
                .create(&PostParams::default(), &n)
                .await
                .expect("create node");
        }
    };
    // Every node's podCIDRs, once all of `names` have one; checked inside the cluster
    // CIDR, podCIDR == podCIDRs[0], and never shared.
    let ranges = |names: &'static [&'static str]| {
        let nodes = nodes.clone();
        let prefix = prefix.clone();
        async move {
            let all = nodes.list(&ListParams::default()).await.ok()?.items;
            let mut got = BTreeMap::new();
            for n in &all {
                let spec = n.spec.clone().unwrap_or_default();
                let Some(cidrs) = spec.pod_cidrs.filter(|c| !c.is_empty()) else {
                    continue;
                };
                let name = n.metadata.name.clone().unwrap();
                assert_eq!(cidrs.len(), 1, "{name}: {cidrs:?}");
                assert_eq!(spec.pod_cidr.as_ref(), Some(&cidrs[0]), "{name}");
                assert!(
                    cidrs[0].starts_with(&prefix) && cidrs[0].ends_with(".0/24"),
                    "{name}: {} outside {prefix}0.0/16",
                    cidrs[0]
                );
                got.insert(name, cidrs[0].clone());
            }
            let mut distinct: Vec<&String> = got.values().collect();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), got.len(), "a range shared: {got:?}");
            names.iter().all(|n| got.contains_key(*n)).then_some(got)
        }
    };

    create("ipam-a").await;
    create("ipam-b").await;
    let first = wait_for(
        Duration::from_secs(60),
        "ipam-a and ipam-b have podCIDRs",
        || ranges(&["ipam-a", "ipam-b"]),
    )
    .await;
    assert_ne!(first["ipam-a"], first["ipam-b"]);

    // The apiserver refuses to change a range once set.
    let change =
        serde_json::json!({"spec": {"podCIDR": "10.1.2.0/24", "podCIDRs": ["10.1.2.0/24"]}});
    match nodes
        .patch("ipam-b", &PatchParams::default(), &Patch::Merge(&change))
        .await
    {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422, "{e:?}");
            assert!(
                e.message
                    .contains("node updates may not change podCIDR except from \"\" to valid"),
                "{}",
                e.message
            );
        }
        other => panic!("changing podCIDR was not refused: {other:?}"),
    }

    // The leader dies; a Node is deleted and two more come while the other replica
    // takes over: it must occupy ipam-b's range before allocating.
    let leader = wait_for(
        Duration::from_secs(30),
        "a controller-manager leader",
        || cm.leader(),
    )
    .await;
    cm.kill(leader);
    nodes
        .delete("ipam-a", &DeleteParams::default())
        .await
        .expect("delete ipam-a");
    create("ipam-c").await;
    create("ipam-d").await;
    let after = wait_for(
        LEASE_DURATION * 2 + Duration::from_secs(60),
        "ipam-c and ipam-d have podCIDRs after failover",
        || ranges(&["ipam-b", "ipam-c", "ipam-d"]),
    )
    .await;
    assert!(!after.contains_key("ipam-a"));
    assert_eq!(after["ipam-b"], first["ipam-b"], "a range never changes");
    for n in ["ipam-c", "ipam-d"] {
        assert_ne!(after[n], after["ipam-b"], "{n} shares ipam-b's range");
    }
    // The survivor logged its start: it occupied what the listed nodes had.
    let survivor = 1 - leader;
    let log = std::fs::read_to_string(&cm.replicas[survivor].log).unwrap_or_default();
    assert!(
        log.contains("occupied the ranges of the listed nodes"),
        "{}",
        cm.log_tail(survivor, 100)
    );
}
