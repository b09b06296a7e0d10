//! Resource usage from the agent's port on the Docker runtime: a busy-loop container with
//! a 200m CPU limit shows near 200m in `/stats/summary` and an idle one near 0; the
//! kubelet's `/metrics/resource` names carry them; both endpoints are `nodes/stats` and
//! `nodes/metrics` to the apiserver's authorization. Through the apiserver's
//! metrics.k8s.io, `kubectl top pod` and `kubectl top node` show the same.

use super::*;

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: burn, namespace: default, labels: {app: usage}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: IMAGE
    command: ["sh", "-c", "while :; do :; done"]
    resources: {limits: {cpu: 200m, memory: 32Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: idle, namespace: default, labels: {app: usage}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: IMAGE
    command: ["sleep", "3600"]
"#;

const GRANT: &str = r#"{"apiVersion":"v1","kind":"List","items":[
  {"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"scraper","namespace":"default"}},
  {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"node-usage"},
   "rules":[{"apiGroups":[""],"resources":["nodes/metrics","nodes/stats"],"verbs":["get"]}]},
  {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"scraper-usage"},
   "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"node-usage"},
   "subjects":[{"kind":"ServiceAccount","name":"scraper","namespace":"default"}]}]}"#;

/// The usage (nanocores) of pod `name`'s container in its node's summary, once it has a
/// rate.
fn nanocores(summary: &serde_json::Value, name: &str) -> Option<u64> {
    summary["pods"]
        .as_array()?
        .iter()
        .find(|p| p["podRef"]["name"] == name)?["containers"][0]["cpu"]["usageNanoCores"]
        .as_u64()
}

pub(super) async fn check(w: &World, kc: &std::path::Path) {
    apply(w, &PODS.replace("IMAGE", common::images::BUSYBOX));
    let pods = ready_pods(&w.client, "app=usage", 2, Duration::from_secs(90)).await;
    let port_of = |name: &str| {
        let p = pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .unwrap();
        let node = node_of(p);
        w.agents
            .agents
            .iter()
            .find(|a| a.node == node)
            .unwrap()
            .port
    };
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();

    kubectl_ok(kc, &["create", "serviceaccount", "no-usage"]);
    let nosy = kubectl_ok(kc, &["create", "token", "no-usage"]);
    let out = agent_get(w, port_of("burn"), nosy.trim(), "/metrics/resource");
    assert!(
        stderr(&out).contains("verb=get, resource=nodes, subresource(s)=[metrics])"),
        "{}",
        stderr(&out)
    );
    let out = kubectl_stdin(kc, &["create", "--validate=false", "-f", "-"], GRANT);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = kubectl_ok(kc, &["create", "token", "scraper"]);
    let token = token.trim();
    let sar = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":"system:serviceaccount:default:scraper","groups":["system:serviceaccounts","system:authenticated"],"resourceAttributes":{"verb":"get","resource":"nodes","subresource":"stats"}}}"#;
    wait_for(Duration::from_secs(10), "the scraper's grant", || async {
        let out = kubectl_stdin(
            kc,
            &["create", "--validate=false", "-o", "json", "-f", "-"],
            sar,
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["status"]["allowed"] == true).then_some(())
    })
    .await;

    let summary = |name: &'static str| {
        let port = port_of(name);
        move || async move {
            let out = agent_get(w, port, token, "/stats/summary");
            serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()
        }
    };
    let burn = wait_for(Duration::from_secs(90), "burn's CPU rate", || async {
        nanocores(&summary("burn")().await?, "burn")
    })
    .await;
    let idle = wait_for(Duration::from_secs(30), "idle's CPU rate", || async {
        nanocores(&summary("idle")().await?, "idle")
    })
    .await;
    assert!(
        (100_000_000..=260_000_000).contains(&burn),
        "a busy loop under a 200m limit: {burn} nanocores"
    );
    assert!(idle < 50_000_000, "an idle container: {idle} nanocores");
    let s = summary("burn")().await.unwrap();
    assert!(
        s["node"]["cpu"]["usageCoreNanoSeconds"].as_u64() > Some(0),
        "{s}"
    );
    assert!(
        s["node"]["memory"]["workingSetBytes"].as_u64() > Some(0),
        "{s}"
    );
    let ws = s["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["podRef"]["name"] == "burn")
        .unwrap()["memory"]["workingSetBytes"]
        .as_u64()
        .unwrap();
    assert!(ws > 0 && ws <= 32 << 20, "within its memory limit: {ws}");

    let out = agent_get(w, port_of("burn"), token, "/metrics/resource");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| {
            l.starts_with(
                "container_cpu_usage_seconds_total{container=\"c\",namespace=\"default\",pod=\"burn\"}",
            )
        })
        .unwrap_or_else(|| panic!("burn's CPU counter in\n{text}"));
    let seconds: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(seconds > 0.0, "{line}");
    for name in [
        "node_cpu_usage_seconds_total ",
        "node_memory_working_set_bytes ",
        "pod_memory_working_set_bytes{namespace=\"default\",pod=\"burn\"}",
        "resource_scrape_error 0",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} in\n{text}"
        );
    }

    // metrics.k8s.io through the apiserver: kubectl top.
    let top = wait_for(Duration::from_secs(60), "kubectl top pod", || async {
        let out = common::k8s::kubectl(kc, &["top", "pod", "-l", "app=usage", "--no-headers"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (out.status.success() && text.lines().count() == 2).then_some(text)
    })
    .await;
    let millicores = |pod: &str| -> u64 {
        let line = top.lines().find(|l| l.starts_with(pod)).unwrap();
        let cpu = line.split_whitespace().nth(1).unwrap();
        cpu.trim_end_matches('m').parse().unwrap()
    };
    assert!((100..=260).contains(&millicores("burn")), "{top}");
    assert!(millicores("idle") < 50, "{top}");
    let containers = kubectl_ok(kc, &["top", "pod", "burn", "--containers"]);
    assert!(
        containers.contains("burn") && containers.contains(" c "),
        "{containers}"
    );
    let nodes = wait_for(Duration::from_secs(60), "kubectl top node", || async {
        let out = common::k8s::kubectl(kc, &["top", "node"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let all = w.agents.agents.iter().all(|a| text.contains(&a.node));
        (out.status.success() && all).then_some(text)
    })
    .await;
    assert!(
        nodes.contains("CPU(cores)") && nodes.contains("MEMORY(%)"),
        "{nodes}"
    );
    let raw = kubectl_ok(
        kc,
        &[
            "get",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/burn",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["kind"], "PodMetrics");
    assert_eq!(v["metadata"]["labels"]["app"], "usage");
    kubectl_ok(kc, &["delete", "pod", "burn", "idle"]);
}
