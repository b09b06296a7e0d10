//! Cluster-level logging on the README's cluster, started with `--log-sink` pointing at a
//! Loki stand-in (`common/loki.rs`: Loki is not installable here): `kubectl logs -l
//! --all-containers --prefix` reads pods on both nodes; a pod's lines are in the log store
//! by `{namespace, pod}` after the pod was deleted right after logging them; and lines
//! logged while the store was down for 30 s all arrive, in order, once it is back.

use std::path::Path;
use std::time::Duration;

use crate::common::k8s::{kubectl_ok, kubectl_stdin};
use crate::common::loki::Loki;
use crate::common::wait_for;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

fn pod(name: &str, image: &str, script: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    command: ["sh", "-c", "{script}"]
"#
    )
}

/// The lines of `{namespace="default", pod=<pod>}` through the store's query API.
fn stored(loki: &Loki, pod: &str) -> Vec<String> {
    let o = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "5", "-G", "--data-urlencode"])
        .arg(format!("query={{namespace=\"default\",pod=\"{pod}\"}}"))
        .arg(format!("{}/loki/api/v1/query_range", loki.url()))
        .output()
        .expect("curl runs");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    let mut entries: Vec<(i128, String)> = v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| Some((e[0].as_str()?.parse().ok()?, e[1].as_str()?.to_string())))
        .collect();
    entries.sort();
    entries.into_iter().map(|(_, l)| l).collect()
}

fn numbered(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("line {i}")).collect()
}

/// Waits until `kubectl logs <pod>` ends with `last`.
async fn logged(kc: &Path, pods: &Api<Pod>, name: &str, last: &str, within: Duration) {
    wait_for(within, &format!("{name} to log {last:?}"), || async {
        pods.get_opt(name).await.ok().flatten()?;
        let o = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kc)
            .args(["logs", name, "--tail", "1"])
            .output()
            .ok()?;
        (String::from_utf8_lossy(&o.stdout).trim() == last).then_some(())
    })
    .await;
}

/// A counter's value summed over both agents' `/metrics` (read with Prometheus' token).
fn agents_counter(data: &Path, name: &str) -> u64 {
    let token = std::fs::read_to_string(data.join("pki/prometheus.token")).unwrap();
    let ca = data.join("pki/ca.crt");
    (0..2)
        .map(|i| {
            let o = std::process::Command::new("curl")
                .args(["-sS", "--max-time", "5", "--cacert"])
                .arg(&ca)
                .arg("-H")
                .arg(format!("Authorization: Bearer {}", token.trim()))
                .arg(format!("https://127.0.0.1:{}/metrics", 10250 + i))
                .output()
                .expect("curl runs");
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {name} from agent {i}:\n{text}"))
        })
        .sum()
}

pub async fn check(kc: &Path, data: &Path, client: &kube::Client, loki: &mut Loki, image: &str) {
    // Pods on both nodes, read through one label selector.
    let all = kubectl_ok(
        kc,
        &["logs", "-l", "app=web", "--all-containers", "--prefix"],
    );
    let web: Vec<&str> = all
        .lines()
        .filter(|l| l.contains(" starting web-"))
        .collect();
    assert_eq!(web.len(), 3, "{all}");
    for l in web {
        let (prefix, rest) = l.split_once(' ').unwrap();
        let name = rest.strip_prefix("starting ").unwrap();
        assert_eq!(prefix, format!("[pod/{name}/c]"), "{all}");
    }

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Deleted right after logging: the lines were shipped while it ran.
    let o = kubectl_stdin(
        kc,
        &["apply", "-f", "-"],
        &pod(
            "chatty",
            image,
            "for i in $(seq 1 200); do echo line $i; done; sleep 3600",
        ),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    logged(kc, &pods, "chatty", "line 200", Duration::from_secs(60)).await;
    kubectl_ok(kc, &["delete", "pod", "chatty", "--wait=true"]);
    wait_for(
        Duration::from_secs(30),
        "chatty's 200 lines in the store",
        || async { (stored(loki, "chatty") == numbered(200)).then_some(()) },
    )
    .await;

    // The store is down for 30 s while a pod logs 300 lines.
    loki.stop();
    let o = kubectl_stdin(
        kc,
        &["apply", "-f", "-"],
        &pod(
            "outage",
            image,
            "for i in $(seq 1 300); do echo line $i; sleep 0.1; done; sleep 3600",
        ),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let down = std::time::Instant::now();
    logged(kc, &pods, "outage", "line 300", Duration::from_secs(90)).await;
    if let Some(rest) = Duration::from_secs(30).checked_sub(down.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    loki.resume().await;
    // The sender's backoff is at most 30 s.
    wait_for(
        Duration::from_secs(60),
        "every line logged during the outage",
        || async { (stored(loki, "outage") == numbered(300)).then_some(()) },
    )
    .await;
    kubectl_ok(kc, &["delete", "pod", "outage", "--wait=false"]);
    // The agents counted the failed pushes of the outage and what they sent.
    assert!(agents_counter(data, "flotilla_log_push_failures_total") > 0);
    assert!(agents_counter(data, "flotilla_log_batches_sent_total") > 0);
    assert_eq!(
        agents_counter(data, "flotilla_log_batches_refused_total"),
        0
    );
}
