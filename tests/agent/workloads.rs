//! Workload controllers with real pods on the t10 cluster: Jobs (Indexed, backoff limit,
//! pod failure policy, TTL after finished), CronJobs and DaemonSets.

use super::*;

/// The Job controller with real pods: an Indexed Job runs every index once and
/// completes (each pod sees its JOB_COMPLETION_INDEX, no pod keeps the tracking
/// finalizer), and a Job whose pods fail is Failed at its backoff limit.
pub(super) async fn jobs(w: &World, kc: &std::path::Path) {
    let indexed = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: ix, namespace: default}
spec:
  completionMode: Indexed
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: c, image: busybox, command: ["sh", "-c", "echo index $JOB_COMPLETION_INDEX"]}
"#;
    let o = kubectl_stdin(kc, &["apply", "-f", "-"], indexed);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = kubectl_ok(
        kc,
        &[
            "wait",
            "--for=condition=complete",
            "job/ix",
            "--timeout=90s",
        ],
    );
    assert!(out.contains("condition met"), "{out}");
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(w.client.clone(), "default");
    let st = jobs.get("ix").await.unwrap().status.unwrap();
    assert_eq!(st.succeeded, Some(3), "{st:?}");
    assert_eq!(st.completed_indexes.as_deref(), Some("0-2"), "{st:?}");
    assert!(st.completion_time.is_some());
    let pods_api: Api<Pod> = Api::namespaced(w.client.clone(), "default");
    let pods = pods_api
        .list(&ListParams::default().labels("batch.kubernetes.io/job-name=ix"))
        .await
        .unwrap()
        .items;
    let mut seen: Vec<String> = Vec::new();
    for p in &pods {
        assert!(
            p.metadata.finalizers.as_ref().is_none_or(|f| f.is_empty()),
            "{:?}",
            p.metadata.finalizers
        );
        let ix =
            p.metadata.labels.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"].clone();
        let name = p.metadata.name.clone().unwrap();
        let log = kubectl_ok(kc, &["logs", &name]);
        assert_eq!(log.trim(), format!("index {ix}"), "{name}");
        seen.push(ix);
    }
    seen.sort();
    assert_eq!(seen, ["0", "1", "2"], "each index ran once");
    let table = kubectl_ok(kc, &["get", "job", "ix"]);
    assert!(
        table.contains("Complete") && table.contains("3/3"),
        "{table}"
    );

    let failing = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: boom, namespace: default}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: c, image: busybox, command: ["sh", "-c", "exit 3"]}
"#;
    let o = kubectl_stdin(kc, &["apply", "-f", "-"], failing);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = kubectl_ok(
        kc,
        &[
            "wait",
            "--for=condition=failed",
            "job/boom",
            "--timeout=90s",
        ],
    );
    assert!(out.contains("condition met"), "{out}");
    let st = jobs.get("boom").await.unwrap().status.unwrap();
    assert_eq!(st.failed, Some(2), "{st:?}");
    let failed = st
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    kubectl_ok(kc, &["delete", "job", "ix", "boom"]);
    adoption(w, &jobs, kc).await;
    policy_and_ttl(&jobs, kc).await;
    cronjob(w, kc).await;
    daemonset(w, kc).await;
}

/// A DaemonSet runs one pod on each node, rolls a new template out node by node (`kubectl
/// rollout status`), keeps its revisions (`rollout history`) and goes back (`rollout undo`);
/// a node that joins gets its pod.
async fn daemonset(w: &World, kc: &std::path::Path) {
    let ds = |msg: &str| {
        format!(
            r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: everywhere, namespace: default}}
spec:
  selector: {{matchLabels: {{app: everywhere}}}}
  template:
    metadata: {{labels: {{app: everywhere}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {{name: c, image: busybox, command: ["sh", "-c", "echo {msg}; exec sleep 3600"]}}
"#
        )
    };
    let o = kubectl_stdin(kc, &["apply", "-f", "-"], &ds("one"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rollout = || {
        kubectl_ok(
            kc,
            &["rollout", "status", "daemonset/everywhere", "--timeout=90s"],
        )
    };
    let out = rollout();
    assert!(out.contains("successfully rolled out"), "{out}");
    let pods_api: Api<Pod> = Api::namespaced(w.client.clone(), "default");
    let on_nodes = || async {
        let mut nodes: Vec<String> = pods_api
            .list(&ListParams::default().labels("app=everywhere"))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.spec?.node_name)
            .collect();
        nodes.sort();
        nodes
    };
    assert_eq!(on_nodes().await, ["node-a", "node-b"]);
    let o = kubectl_stdin(kc, &["apply", "-f", "-"], &ds("two"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = rollout();
    assert!(out.contains("successfully rolled out"), "{out}");
    let history = kubectl_ok(kc, &["rollout", "history", "daemonset/everywhere"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|r| r.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    let out = kubectl_ok(kc, &["rollout", "undo", "daemonset/everywhere"]);
    assert!(out.contains("rolled back"), "{out}");
    let out = rollout();
    assert!(out.contains("successfully rolled out"), "{out}");
    let dsets: Api<k8s_openapi::api::apps::v1::DaemonSet> =
        Api::namespaced(w.client.clone(), "default");
    let back = dsets.get("everywhere").await.unwrap();
    let cmd = &back.spec.unwrap().template.spec.unwrap().containers[0].command;
    assert!(format!("{cmd:?}").contains("echo one"), "{cmd:?}");
    wait_for(
        Duration::from_secs(60),
        "pods of the first template on both nodes",
        || async {
            let pods = pods_api
                .list(&ListParams::default().labels("app=everywhere"))
                .await
                .ok()?
                .items;
            let live: Vec<&Pod> = pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let ok = live.len() == 2
                && live.iter().all(|p| {
                    format!("{:?}", p.spec.as_ref().map(|s| &s.containers[0].command))
                        .contains("echo one")
                });
            ok.then_some(())
        },
    )
    .await;
    let history = kubectl_ok(kc, &["rollout", "history", "daemonset/everywhere"]);
    assert!(
        history.lines().any(|l| l.starts_with('3')),
        "undo renumbers: {history}"
    );
    // A third node joins: it gets its daemon pod; when it leaves, the pod goes with it.
    let third = Agents::start_process(kc, Some(&w.api.certs()), &["node-c"], &[]);
    wait_for(
        Duration::from_secs(60),
        "a ready daemon pod on node-c",
        || async {
            let d = dsets.get("everywhere").await.ok()?;
            let st = d.status?;
            let ok = st.desired_number_scheduled == 3 && st.number_ready == 3;
            (ok && on_nodes().await == ["node-a", "node-b", "node-c"]).then_some(())
        },
    )
    .await;
    drop(third);
    kubectl_ok(kc, &["delete", "node", "node-c"]);
    wait_for(
        Duration::from_secs(60),
        "node-c's daemon pod gone",
        || async {
            let d = dsets.get("everywhere").await.ok()?;
            let gone = d.status?.desired_number_scheduled == 2;
            (gone && on_nodes().await == ["node-a", "node-b"]).then_some(())
        },
    )
    .await;
    kubectl_ok(kc, &["delete", "daemonset", "everywhere"]);
}

/// A Job with a manual selector adopts the running orphan pod it selects (controller
/// reference and tracking finalizer) instead of starting its own, and completes with it.
async fn adoption(w: &World, jobs: &Api<k8s_openapi::api::batch::v1::Job>, kc: &std::path::Path) {
    let orphan = r#"
apiVersion: v1
kind: Pod
metadata: {name: stray, namespace: default, labels: {app: adopt}}
spec:
  restartPolicy: Never
  containers:
  - {name: c, image: busybox, command: ["sh", "-c", "sleep 4"]}
"#;
    let o = kubectl_stdin(kc, &["apply", "-f", "-"], orphan);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ready_pods(&w.client, "app=adopt", 1, Duration::from_secs(60)).await;
    let job = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: adopter, namespace: default}
spec:
  manualSelector: true
  selector: {matchLabels: {app: adopt}}
  template:
    metadata: {labels: {app: adopt}}
    spec:
      restartPolicy: Never
      containers:
      - {name: c, image: busybox, command: ["true"]}
"#;
    let o = kubectl_stdin(kc, &["apply", "-f", "-"], job);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = kubectl_ok(
        kc,
        &[
            "wait",
            "--for=condition=complete",
            "job/adopter",
            "--timeout=60s",
        ],
    );
    assert!(out.contains("condition met"), "{out}");
    let uid = jobs.get("adopter").await.unwrap().metadata.uid.unwrap();
    let pods_api: Api<Pod> = Api::namespaced(w.client.clone(), "default");
    let pods = pods_api
        .list(&ListParams::default().labels("app=adopt"))
        .await
        .unwrap()
        .items;
    let names: Vec<&str> = pods
        .iter()
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();
    assert_eq!(names, ["stray"], "no pod of its own");
    let owner = pods[0].metadata.owner_references.as_ref().unwrap();
    assert!(
        owner
            .iter()
            .any(|r| r.uid == uid && r.controller == Some(true)),
        "{owner:?}"
    );
    assert!(
        pods[0]
            .metadata
            .finalizers
            .as_ref()
            .is_none_or(|f| f.is_empty()),
        "the tracking finalizer removed once counted"
    );
    kubectl_ok(kc, &["delete", "job", "adopter"]);
}

/// A pod failure policy fails its Job at the first matching exit, with kube's reason; the
/// TTL-after-finished controller then deletes the Job.
async fn policy_and_ttl(jobs: &Api<k8s_openapi::api::batch::v1::Job>, kc: &std::path::Path) {
    let policed = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: policed, namespace: default}
spec:
  backoffLimit: 5
  ttlSecondsAfterFinished: 2
  podFailurePolicy:
    rules:
    - action: FailJob
      onExitCodes: {operator: In, values: [42]}
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: c, image: busybox, command: ["sh", "-c", "exit 42"]}
"#;
    let o = kubectl_stdin(kc, &["apply", "-f", "-"], policed);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let failed = wait_for(
        Duration::from_secs(60),
        "the policed job to fail",
        || async {
            let j = jobs.get_opt("policed").await.ok()??;
            j.status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "Failed" && c.status == "True")
        },
    )
    .await;
    assert_eq!(failed.reason.as_deref(), Some("PodFailurePolicy"));
    let msg = failed.message.unwrap_or_default();
    assert!(
        msg.starts_with("Container c for pod default/policed-")
            && msg.ends_with("failed with exit code 42 matching FailJob rule at index 0"),
        "{msg}"
    );
    wait_for(
        Duration::from_secs(30),
        "the TTL controller to delete it",
        || async { jobs.get_opt("policed").await.ok()?.is_none().then_some(()) },
    )
    .await;
}

/// A CronJob runs on its schedule, keeps its history to the limit, and gives a Job at once
/// through `kubectl create job --from`.
async fn cronjob(w: &World, kc: &std::path::Path) {
    let cj = r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick, namespace: default}
spec:
  schedule: "@every 3s"
  concurrencyPolicy: Forbid
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - {name: c, image: busybox, command: ["true"]}
"#;
    let o = kubectl_stdin(kc, &["apply", "-f", "-"], cj);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cronjobs: Api<k8s_openapi::api::batch::v1::CronJob> =
        Api::namespaced(w.client.clone(), "default");
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(w.client.clone(), "default");
    // Two runs succeeded: the status has moved on, and only the newest success is kept.
    let successes = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    wait_for(Duration::from_secs(90), "two successful runs", || {
        let (cronjobs, jobs, seen) = (cronjobs.clone(), jobs.clone(), successes.clone());
        async move {
            let st = cronjobs.get("tick").await.ok()?.status?;
            let n = {
                let mut seen = seen.lock().unwrap();
                seen.insert(st.last_successful_time?.0);
                seen.len()
            };
            if n < 2 {
                return None;
            }
            let done = jobs
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|j| {
                    j.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with("tick-"))
                })
                .filter(|j| {
                    j.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Complete"))
                })
                .count();
            (done == 1).then_some(())
        }
    })
    .await;
    // Paused, with room in its history, so the Job made by hand stays.
    kubectl_ok(
        kc,
        &[
            "patch",
            "cronjob",
            "tick",
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":true,"successfulJobsHistoryLimit":10}}"#,
        ],
    );
    let out = kubectl_ok(kc, &["create", "job", "by-hand", "--from=cronjob/tick"]);
    assert!(out.contains("job.batch/by-hand created"), "{out}");
    let out = kubectl_ok(
        kc,
        &[
            "wait",
            "--for=condition=complete",
            "job/by-hand",
            "--timeout=60s",
        ],
    );
    assert!(out.contains("condition met"), "{out}");
    let table = kubectl_ok(kc, &["get", "cronjob", "tick"]);
    assert!(table.contains("@every 3s"), "{table}");
    // Deleting the CronJob deletes its Jobs (the garbage collector, in the background).
    kubectl_ok(kc, &["delete", "cronjob", "tick"]);
    wait_for(Duration::from_secs(60), "its jobs to go", || async {
        let left = jobs.list(&ListParams::default()).await.ok()?.items;
        left.iter()
            .all(|j| {
                !j.metadata
                    .name
                    .as_deref()
                    .unwrap_or("")
                    .starts_with("tick-")
                    && j.metadata.name.as_deref() != Some("by-hand")
            })
            .then_some(())
    })
    .await;
}
