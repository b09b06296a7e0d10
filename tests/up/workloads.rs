//! Workloads on the README's cluster (Docker, three masters, cluster DNS): a StatefulSet
//! whose pods resolve each other by their stable names through the headless Service, each
//! with a volume from the default `local-path` class that outlives the pod; and an
//! Indexed Job that finishes every index exactly once although the leading
//! controller-manager is killed (SIGKILL) while it runs.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::k8s::{kubectl_ok, kubectl_stdin};
use crate::common::wait_for;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

const DB: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: default}
spec:
  replicas: 3
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: IMAGE
        command: ["sh", "-c", "if [ -f /data/who ]; then echo found $(cat /data/who); else hostname > /data/who; echo wrote; fi; until nslookup db-0.db.default.svc.cluster.local && nslookup db-1.db.default.svc.cluster.local && nslookup db-2.db.default.svc.cluster.local; do sleep 1; done >/dev/null 2>&1; echo peers; exec sleep 3600"]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 10Mi}}
"#;

const JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: ix, namespace: default}
spec:
  completionMode: Indexed
  completions: 5
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: c, image: IMAGE, command: ["sh", "-c", "sleep 2; echo index $JOB_COMPLETION_INDEX"]}
"#;

fn logs(kc: &Path, pod: &str) -> String {
    kubectl_ok(kc, &["logs", pod])
}

/// The pod's log once its container has started (empty before).
fn logs_so_far(kc: &Path, pod: &str) -> String {
    let o = crate::common::k8s::kubectl(kc, &["logs", pod]);
    if o.status.success() {
        String::from_utf8_lossy(&o.stdout).into_owned()
    } else {
        String::new()
    }
}

pub async fn check(kc: &Path, client: &kube::Client, data: &Path, image: &str) {
    statefulset(kc, client, image).await;
    job_through_failover(kc, client, data, image).await;
}

async fn statefulset(kc: &Path, client: &kube::Client, image: &str) {
    let o = kubectl_stdin(kc, &["apply", "-f", "-"], &DB.replace("IMAGE", image));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = kubectl_ok(
        kc,
        &["rollout", "status", "statefulset/db", "--timeout=120s"],
    );
    assert!(out.contains("partitioned roll out complete"), "{out}");
    for i in 0..3 {
        let pod = format!("db-{i}");
        wait_for(
            Duration::from_secs(60),
            &format!("{pod} resolving its peers"),
            || async { logs_so_far(kc, &pod).contains("peers").then_some(()) },
        )
        .await;
        assert!(logs(kc, &pod).starts_with("wrote"), "{}", logs(kc, &pod));
    }
    let pvc = kubectl_ok(
        kc,
        &[
            "get",
            "pvc",
            "data-db-1",
            "-o",
            "jsonpath={.status.phase} {.spec.storageClassName}",
        ],
    );
    assert_eq!(pvc, "Bound local-path");
    // db-1 deleted: back under its name, on its volume's node, with what it wrote.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let before = pods.get("db-1").await.unwrap();
    kubectl_ok(kc, &["delete", "pod", "db-1"]);
    let again = wait_for(Duration::from_secs(90), "db-1 back", || async {
        let p = pods.get("db-1").await.ok()?;
        (p.metadata.uid != before.metadata.uid && logs_so_far(kc, "db-1").contains("peers"))
            .then_some(p)
    })
    .await;
    assert!(
        logs(kc, "db-1").starts_with("found db-1"),
        "{}",
        logs(kc, "db-1")
    );
    assert_eq!(
        again.spec.unwrap().node_name,
        before.spec.unwrap().node_name
    );
    kubectl_ok(kc, &["delete", "statefulset/db", "service/db"]);
}

/// The controller-manager that leads: the one whose log says last that it became the
/// leader (log lines start with an RFC 3339 time, which sorts as time).
fn leading_controller_manager(data: &Path) -> String {
    (0..3)
        .map(|i| format!("controller-manager-m{i}"))
        .filter_map(|n| {
            let log = std::fs::read_to_string(data.join("logs").join(format!("{n}.log"))).ok()?;
            let at = log
                .lines()
                .filter(|l| l.contains("became the leader"))
                .filter_map(|l| l.split_whitespace().next())
                .max()?
                .to_string();
            Some((at, n))
        })
        .max()
        .map(|(_, n)| n)
        .expect("a leading controller-manager")
}

async fn job_through_failover(kc: &Path, client: &kube::Client, data: &Path, image: &str) {
    let o = kubectl_stdin(kc, &["apply", "-f", "-"], &JOB.replace("IMAGE", image));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    wait_for(Duration::from_secs(60), "two indexes done", || async {
        let s = jobs.get("ix").await.ok()?.status?;
        (s.succeeded.unwrap_or(0) >= 2).then_some(())
    })
    .await;
    let leader = leading_controller_manager(data);
    let victims: Vec<u32> = super::processes_under(data)
        .into_iter()
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(" controller-manager ") && cmd.contains(&format!("{leader}."))
        })
        .collect();
    assert_eq!(victims.len(), 1, "{leader}: {victims:?}");
    let _ = Command::new("kill")
        .args(["-9", &victims[0].to_string()])
        .status();
    let out = kubectl_ok(
        kc,
        &[
            "wait",
            "--for=condition=complete",
            "job/ix",
            "--timeout=180s",
        ],
    );
    assert!(out.contains("condition met"), "{out}");
    let st = jobs.get("ix").await.unwrap().status.unwrap();
    assert_eq!(st.succeeded, Some(5), "{st:?}");
    assert_eq!(st.completed_indexes.as_deref(), Some("0-4"), "{st:?}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let done: Vec<String> = pods
        .list(&ListParams::default().labels("batch.kubernetes.io/job-name=ix"))
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
        .map(|p| {
            p.metadata.labels.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"].clone()
        })
        .collect();
    let mut sorted = done.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["0", "1", "2", "3", "4"],
        "each index succeeded once"
    );
    kubectl_ok(kc, &["delete", "job", "ix"]);
}
