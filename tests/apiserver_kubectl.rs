//! What kubectl users do beyond create/get/delete, end to end against real kvstore members
//! and a real apiserver: `apply` (client-side, three-way) through a change and a removal,
//! `patch` of every type, `scale`, the tables `get` prints, and `explain`.

#[path = "apiserver_kubectl/aggregation.rs"]
mod aggregation;
mod common;
#[path = "apiserver_kubectl/conversion.rs"]
mod conversion;
#[path = "apiserver_kubectl/crd.rs"]
mod crd;
#[path = "apiserver_kubectl/webhooks.rs"]
mod webhooks;

use common::k8s::{kubectl, kubectl_ok, kubectl_stdin, Apiservers, Backend};

fn deployment(image: &str, env: &[(&str, &str)], tier: Option<&str>) -> String {
    let env: Vec<String> = env
        .iter()
        .map(|(k, v)| format!("{{name: {k}, value: \"{v}\"}}"))
        .collect();
    let tier = tier.map(|t| format!(", tier: {t}")).unwrap_or_default();
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{app: web{tier}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: main
        image: {image}
        env: [{}]
"#,
        env.join(", ")
    )
}

fn json_of(kc: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&kubectl_ok(kc, &a)).expect("kubectl prints JSON")
}

fn env_names(d: &serde_json::Value, container: usize) -> Vec<String> {
    d["spec"]["template"]["spec"]["containers"][container]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str().map(String::from))
        .collect()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_apply_patch_scale_tables_explain() {
    let backend = Backend::flotilla().await;
    let a = Apiservers::start(1, &backend.urls()).await;
    let kc = a.kubeconfig(0).to_path_buf();

    // apply creates, with the last-applied annotation; validation is the server's.
    let v1 = deployment("nginx:1.27", &[("A", "1"), ("B", "2")], Some("front"));
    let out = kubectl_stdin(&kc, &["apply", "-f", "-"], &v1);
    assert!(out.status.success(), "apply: {}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("deployment.apps/web created"));
    let d = json_of(&kc, &["get", "deploy", "web"]);
    assert!(
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .is_some_and(|s| s.contains("nginx:1.27"))
    );

    // A label set outside the manifest survives applies; one removed from the manifest goes.
    kubectl_ok(&kc, &["label", "deploy", "web", "owner=ops"]);
    let v2 = deployment("nginx:1.28", &[("A", "1"), ("C", "3")], None);
    let out = kubectl_stdin(&kc, &["apply", "-f", "-"], &v2);
    assert!(out.status.success(), "apply v2: {}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("deployment.apps/web configured"));
    let d = json_of(&kc, &["get", "deploy", "web"]);
    let c0 = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c0["image"], "nginx:1.28", "{d}");
    assert_eq!(env_names(&d, 0), ["A", "C"], "{d}");
    let labels = &d["metadata"]["labels"];
    assert_eq!(labels["owner"], "ops", "{d}");
    assert!(labels.get("tier").is_none(), "{d}");
    assert_eq!(d["metadata"]["generation"], 2, "{d}");
    let out = kubectl_stdin(&kc, &["apply", "-f", "-"], &v2);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deployment.apps/web unchanged"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Validation is the server's, on the patched object too: an unknown field in a manifest
    // applied to an existing object is refused.
    let bad = v2.replace("replicas: 2", "replicas: 2\n  replicaz: 3");
    let out = kubectl_stdin(&kc, &["apply", "-f", "-"], &bad);
    assert!(
        !out.status.success() && stderr(&out).contains("unknown field \"spec.replicaz\""),
        "{}",
        stderr(&out)
    );

    // patch: strategic merges containers by name (a new one first), merge and json replace.
    let smp =
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox"}]}}}}"#;
    kubectl_ok(
        &kc,
        &["patch", "deploy", "web", "--type", "strategic", "-p", smp],
    );
    let d = json_of(&kc, &["get", "deploy", "web"]);
    let names: Vec<&str> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["side", "main"], "{d}");
    let del =
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","$patch":"delete"}]}}}}"#;
    kubectl_ok(&kc, &["patch", "deploy", "web", "-p", del]);
    let d = json_of(&kc, &["get", "deploy", "web"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    kubectl_ok(
        &kc,
        &[
            "patch",
            "deploy",
            "web",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"replicas":3}}"#,
        ],
    );
    let json_patch = r#"[{"op":"test","path":"/spec/replicas","value":3},{"op":"replace","path":"/spec/replicas","value":4}]"#;
    kubectl_ok(
        &kc,
        &["patch", "deploy", "web", "--type", "json", "-p", json_patch],
    );
    assert_eq!(
        json_of(&kc, &["get", "deploy", "web"])["spec"]["replicas"],
        4
    );
    let out = kubectl(
        &kc,
        &["patch", "deploy", "web", "--type", "json", "-p", json_patch],
    );
    assert!(
        !out.status.success() && stderr(&out).contains("the server rejected our request"),
        "{}",
        stderr(&out)
    );

    // set image sends a strategic merge patch.
    kubectl_ok(&kc, &["set", "image", "deploy/web", "main=nginx:1.29"]);
    let d = json_of(&kc, &["get", "deploy", "web"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.29"
    );

    // scale, through the scale subresource.
    let out = kubectl_ok(&kc, &["scale", "deploy", "web", "--replicas=5"]);
    assert!(out.contains("deployment.apps/web scaled"), "{out}");
    assert_eq!(
        json_of(&kc, &["get", "deploy", "web"])["spec"]["replicas"],
        5
    );
    let out = kubectl(
        &kc,
        &[
            "scale",
            "deploy",
            "web",
            "--current-replicas=2",
            "--replicas=1",
        ],
    );
    assert!(
        !out.status.success(),
        "a stale --current-replicas must fail"
    );
    let raw = kubectl_ok(
        &kc,
        &[
            "get",
            "--raw",
            "/apis/apps/v1/namespaces/default/deployments/web/scale",
        ],
    );
    let scale: serde_json::Value = serde_json::from_str(&raw).expect("a Scale");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["status"]["selector"], "app=web");

    // Tables: the columns kube-apiserver prints; -o wide adds the priority-1 ones.
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#;
    let out = kubectl_stdin(&kc, &["create", "-f", "-"], pod);
    assert!(out.status.success(), "{}", stderr(&out));
    let pods = kubectl_ok(&kc, &["get", "pods"]);
    let header: Vec<&str> = pods
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{pods}"
    );
    assert!(
        pods.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("p1") && l.contains("0/1") && l.contains("Pending")),
        "{pods}"
    );
    let wide = kubectl_ok(&kc, &["get", "pods", "-o", "wide"]);
    assert!(
        wide.lines().next().is_some_and(|h| h.contains("IP")
            && h.contains("NOMINATED NODE")
            && h.contains("READINESS GATES")),
        "{wide}"
    );
    let deps = kubectl_ok(&kc, &["get", "deploy"]);
    let header: Vec<&str> = deps
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{deps}"
    );
    assert!(deps.contains("0/5"), "{deps}");
    kubectl_ok(
        &kc,
        &["create", "service", "clusterip", "web", "--tcp=80:8080"],
    );
    let svc = kubectl_ok(&kc, &["get", "svc", "-A"]);
    assert!(
        svc.lines()
            .next()
            .is_some_and(|h| h.starts_with("NAMESPACE")
                && h.contains("CLUSTER-IP")
                && h.contains("PORT(S)")),
        "{svc}"
    );
    assert!(svc.contains("80/TCP"), "{svc}");
    let one = kubectl_ok(
        &kc,
        &["get", "deploy", "web", "--show-kind", "--no-headers"],
    );
    assert!(one.starts_with("deployment.apps/web"), "{one}");

    // Server-side apply: ownership, conflicts with another manager, force, removal.
    let cm = |data: &str| {
        format!("{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"ssa\"}},\"data\":{{{data}}}}}")
    };
    let ssa = ["apply", "--server-side", "-f", "-"];
    let out = kubectl_stdin(&kc, &ssa, &cm(r#""a":"1","b":"2""#));
    assert!(
        out.status.success(),
        "apply --server-side: {}",
        stderr(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configmap/ssa serverside-applied"));
    let c = json_of(&kc, &["get", "cm", "ssa", "--show-managed-fields"]);
    let mf = &c["metadata"]["managedFields"][0];
    assert_eq!(
        (mf["manager"].as_str(), mf["operation"].as_str()),
        (Some("kubectl"), Some("Apply")),
        "{c}"
    );
    assert_eq!(
        mf["fieldsV1"],
        serde_json::json!({"f:data": {"f:a": {}, "f:b": {}}}),
        "{c}"
    );
    kubectl_ok(
        &kc,
        &["patch", "cm", "ssa", "-p", r#"{"data":{"a":"changed"}}"#],
    );
    let out = kubectl_stdin(&kc, &ssa, &cm(r#""a":"1","b":"2""#));
    let err = stderr(&out);
    assert!(
        !out.status.success()
            && err.contains("conflict with \"kubectl-patch\"")
            && err.contains(".data.a"),
        "{err}"
    );
    let forced = ["apply", "--server-side", "--force-conflicts", "-f", "-"];
    let out = kubectl_stdin(&kc, &forced, &cm(r#""a":"1""#));
    assert!(out.status.success(), "forced apply: {}", stderr(&out));
    let c = json_of(&kc, &["get", "cm", "ssa"]);
    assert_eq!(c["data"], serde_json::json!({"a": "1"}), "{c}");

    pod_security(&kc);
    jobs(&kc);
    cronjobs(&kc);

    // explain reads the OpenAPI v3 schemas.
    let ex = kubectl_ok(&kc, &["explain", "pod.spec.containers"]);
    assert!(
        ex.contains("KIND:")
            && ex.contains("Pod")
            && ex.contains("containers")
            && ex.contains("image"),
        "{ex}"
    );
    let ex = kubectl_ok(&kc, &["explain", "deployment.spec.strategy"]);
    assert!(ex.contains("rollingUpdate"), "{ex}");
}

/// batch/v1 Jobs through kubectl: the generated selector, kube's columns, kube's 422s for
/// a bad spec and an immutable field.
fn jobs(kc: &std::path::Path) {
    let out = kubectl_ok(
        kc,
        &[
            "create",
            "job",
            "pi",
            "--image=busybox",
            "--",
            "sh",
            "-c",
            "echo 3.14",
        ],
    );
    assert!(out.contains("job.batch/pi created"), "{out}");
    let j = json_of(kc, &["get", "job", "pi"]);
    let uid = j["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"], uid,
        "{j}"
    );
    let labels = &j["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["batch.kubernetes.io/job-name"], "pi", "{j}");
    assert_eq!(labels["controller-uid"], uid, "{j}");
    assert_eq!(j["spec"]["backoffLimit"], 6, "{j}");
    assert_eq!(j["spec"]["completionMode"], "NonIndexed", "{j}");
    let table = kubectl_ok(kc, &["get", "jobs"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["pi", "Running", "0/1"], "{table}");

    let bad = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: bad}
spec:
  completions: -1
  template:
    spec:
      containers: [{name: c, image: busybox}]
"#;
    let out = kubectl_stdin(kc, &["create", "-f", "-"], bad);
    let err = stderr(&out);
    assert!(
        !out.status.success()
            && err.contains("The Job \"bad\" is invalid")
            && err.contains("spec.completions: Invalid value: -1: must be greater than or equal to 0")
            && err.contains("spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""),
        "{err}"
    );
    assert!(!kubectl_ok(kc, &["get", "jobs", "-o", "name"]).contains("bad"));
    let out = kubectl(
        kc,
        &[
            "patch",
            "job",
            "pi",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"completions":3}}"#,
        ],
    );
    assert!(
        !out.status.success()
            && stderr(&out).contains("spec.completions: Invalid value: 3: field is immutable"),
        "{}",
        stderr(&out)
    );
    // What may change does.
    kubectl_ok(
        kc,
        &[
            "patch",
            "job",
            "pi",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"parallelism":2,"suspend":true}}"#,
        ],
    );
    let ex = kubectl_ok(kc, &["explain", "job.spec.podFailurePolicy"]);
    assert!(ex.contains("rules"), "{ex}");
    kubectl_ok(kc, &["delete", "job", "pi"]);
}

fn cronjobs(kc: &std::path::Path) {
    let out = kubectl_ok(
        kc,
        &[
            "create",
            "cronjob",
            "nightly",
            "--image=busybox",
            "--schedule=0 3 * * *",
            "--",
            "echo",
            "hi",
        ],
    );
    assert!(out.contains("cronjob.batch/nightly created"), "{out}");
    let cj = json_of(kc, &["get", "cj", "nightly"]);
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow", "{cj}");
    assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3, "{cj}");
    let table = kubectl_ok(kc, &["get", "cronjobs"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"],
        "{table}"
    );
    assert!(
        table.contains("0 3 * * *") && table.contains("<none>"),
        "{table}"
    );
    // A Job from it now, as kubectl makes it.
    let out = kubectl_ok(kc, &["create", "job", "now", "--from=cronjob/nightly"]);
    assert!(out.contains("job.batch/now created"), "{out}");
    let j = json_of(kc, &["get", "job", "now"]);
    assert_eq!(
        j["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"], "manual",
        "{j}"
    );
    assert_eq!(
        j["metadata"]["ownerReferences"][0]["kind"], "CronJob",
        "{j}"
    );
    assert_eq!(
        j["metadata"]["ownerReferences"][0]["uid"], cj["metadata"]["uid"],
        "{j}"
    );

    let bad = r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: bad}
spec:
  schedule: "61 * * *"
  timeZone: Mars/Olympus
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: c, image: busybox}]
"#;
    let out = kubectl_stdin(kc, &["create", "-f", "-"], bad);
    let err = stderr(&out);
    assert!(
        !out.status.success()
            && err.contains("The CronJob \"bad\" is invalid")
            && err.contains("spec.schedule: Invalid value: \"61 * * *\": expected exactly 5 fields, found 4: [61 * * *]")
            && err.contains("spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus")
            && err.contains("spec.jobTemplate.spec.template.spec.restartPolicy: Required value"),
        "{err}"
    );
    kubectl_ok(kc, &["delete", "job", "now"]);
    kubectl_ok(kc, &["delete", "cronjob", "nightly"]);
}

/// A pod named `name` in namespace `ns` with one container `c` and `extra` merged into
/// its spec (`spec_extra`) and into the container (`container_extra`), as JSON.
fn psa_pod(ns: &str, name: &str, spec_extra: &str, container_extra: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"{ns}"}},"spec":{{{spec_extra}"containers":[{{"name":"c","image":"busybox"{container_extra}}}]}}}}"#
    )
}

/// PodSecurity admission: namespaces labelled with a level refuse pods that violate it
/// with kube's message, warn about a warn level, and validate the labels.
fn pod_security(kc: &std::path::Path) {
    kubectl_ok(kc, &["create", "namespace", "psa-r"]);
    kubectl_ok(
        kc,
        &[
            "label",
            "namespace",
            "psa-r",
            "pod-security.kubernetes.io/enforce=restricted",
        ],
    );
    let privileged = psa_pod(
        "psa-r",
        "priv",
        "",
        r#","securityContext":{"privileged":true}"#,
    );
    let out = kubectl_stdin(kc, &["create", "-f", "-"], &privileged);
    let err = stderr(&out);
    assert!(!out.status.success(), "a privileged pod was admitted");
    assert!(
        err.contains(concat!(
            r#"Error from server (Forbidden): error when creating "STDIN": pods "priv" is forbidden: violates PodSecurity "restricted:latest": "#,
            r#"privileged (container "c" must not set securityContext.privileged=true), "#,
            r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), "#,
            r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), "#,
            r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), "#,
            r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
        )),
        "{err}"
    );
    let compliant = psa_pod(
        "psa-r",
        "ok",
        r#""securityContext":{"runAsNonRoot":true,"runAsUser":1000,"seccompProfile":{"type":"RuntimeDefault"}},"#,
        r#","securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}"#,
    );
    let out = kubectl_stdin(kc, &["create", "-f", "-"], &compliant);
    assert!(out.status.success(), "{}", stderr(&out));

    // Baseline enforced, restricted warned.
    kubectl_ok(kc, &["create", "namespace", "psa-b"]);
    kubectl_ok(
        kc,
        &[
            "label",
            "namespace",
            "psa-b",
            "pod-security.kubernetes.io/enforce=baseline",
            "pod-security.kubernetes.io/warn=restricted",
        ],
    );
    let host = psa_pod("psa-b", "hn", r#""hostNetwork":true,"#, "");
    let out = kubectl_stdin(kc, &["create", "-f", "-"], &host);
    let err = stderr(&out);
    assert!(
        !out.status.success()
            && err.contains(r#"pods "hn" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostNetwork)"#),
        "{err}"
    );
    let plain = psa_pod("psa-b", "plain", "", "");
    let out = kubectl_stdin(kc, &["create", "-f", "-"], &plain);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(r#"Warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false)"#),
        "{err}"
    );

    // Enforcing restricted there names the pods that already violate it.
    let out = kubectl(
        kc,
        &[
            "label",
            "--overwrite",
            "namespace",
            "psa-b",
            "pod-security.kubernetes.io/enforce=restricted",
        ],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(r#"Warning: existing pods in namespace "psa-b" violate the new PodSecurity enforce level "restricted:latest""#)
            && err.contains("Warning: plain: allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"),
        "{err}"
    );

    // A level that is not one is refused.
    let out = kubectl(
        kc,
        &[
            "label",
            "--overwrite",
            "namespace",
            "psa-b",
            "pod-security.kubernetes.io/enforce=strict",
        ],
    );
    let err = stderr(&out);
    assert!(
        !out.status.success()
            && err.contains(r#"Namespace "psa-b" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#),
        "{err}"
    );
}

/// One apiserver whose static token file also holds `line` (token,user,uid[,"groups"]).
async fn with_static_token(backend: &Backend, line: &str) -> Apiservers {
    let mut a = Apiservers::start(1, &backend.urls()).await;
    a.kill(0);
    let tokens = a.dir.path().join("certs").join("tokens.csv");
    let mut text = std::fs::read_to_string(&tokens).expect("tokens.csv");
    text.push_str(line);
    text.push('\n');
    std::fs::write(&tokens, text).expect("write tokens.csv");
    a.spawn(0);
    a.wait_ready(0).await;
    a
}

/// CustomResourceDefinitions and their objects over two apiservers (`crd.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t15_custom_resources() {
    let backend = Backend::flotilla().await;
    let a = Apiservers::start(2, &backend.urls()).await;
    crd::custom_resources(&a).await;
}

/// Admission and conversion webhooks called by two apiservers, and an aggregated API
/// served through them (`webhooks.rs`, `conversion.rs`, `aggregation.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t16_webhooks_and_aggregation() {
    let backend = Backend::flotilla().await;
    let a = Apiservers::start(2, &backend.urls()).await;
    webhooks::admission_webhooks(&a).await;
    conversion::conversion_webhook(&a).await;
    aggregation::aggregated_api(&a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_rbac_restricted_user_and_auth_can_i() {
    let backend = Backend::flotilla().await;
    // A second, unprivileged user in the static token file.
    let mut a = with_static_token(&backend, "alice-token,alice,1001").await;
    let kc = a.kubeconfig(0).to_path_buf();
    let alice = |args: &[&str]| {
        let mut all = vec!["--token", "alice-token"];
        all.extend_from_slice(args);
        kubectl(&kc, &all)
    };

    let out = alice(&["get", "pods", "-n", "team"]);
    assert!(
        stderr(&out).contains(
            "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"team\""
        ),
        "{}",
        stderr(&out)
    );
    let objects = r#"{"apiVersion":"v1","kind":"List","items":[
      {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team"}},
      {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":"pod-reader","namespace":"team"},
       "rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["get","list","watch"]}]},
      {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"alice-reads","namespace":"team"},
       "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"pod-reader"},
       "subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"User","name":"alice"}]}]}"#;
    let out = kubectl_stdin(&kc, &["create", "--validate=false", "-f", "-"], objects);
    assert!(out.status.success(), "{}", stderr(&out));
    // Inside its namespace alice may read pods (the authorizer sees the new binding).
    common::wait_for(
        std::time::Duration::from_secs(10),
        "alice to be allowed to list pods in team",
        || {
            let ok = alice(&["get", "pods", "-n", "team"]).status.success();
            async move { ok.then_some(()) }
        },
    )
    .await;
    let out = alice(&["get", "pods", "-n", "default"]);
    assert!(
        !out.status.success() && stderr(&out).contains("forbidden"),
        "{}",
        stderr(&out)
    );
    let out = alice(&["run", "x", "--image=busybox", "-n", "team"]);
    assert!(
        !out.status.success() && stderr(&out).contains("cannot create resource \"pods\""),
        "{}",
        stderr(&out)
    );

    // kubectl auth can-i asks the server (SelfSubjectAccessReview).
    let yes = alice(&["auth", "can-i", "list", "pods", "-n", "team"]);
    assert_eq!(
        String::from_utf8_lossy(&yes.stdout).trim(),
        "yes",
        "{}",
        stderr(&yes)
    );
    let no = alice(&["auth", "can-i", "create", "pods", "-n", "team"]);
    assert_eq!(String::from_utf8_lossy(&no.stdout).trim(), "no");
    assert_eq!(no.status.code(), Some(1));
    let admin = kubectl(&kc, &["auth", "can-i", "delete", "nodes"]);
    assert_eq!(String::from_utf8_lossy(&admin.stdout).trim(), "yes");
    let list = alice(&["auth", "can-i", "--list", "-n", "team"]);
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("pods"),
        "{}",
        stderr(&list)
    );

    // /metrics: for the admin (and system:monitoring), not for alice.
    let m = kubectl_ok(&kc, &["get", "--raw", "/metrics"]);
    assert!(
        m.contains("apiserver_request_total{verb=\"LIST\",resource=\"pods\",code=\"403\"}"),
        "{m}"
    );
    let out = alice(&["get", "--raw", "/metrics"]);
    assert!(
        stderr(&out).contains("cannot get path \"/metrics\""),
        "{}",
        stderr(&out)
    );

    // The bootstrap roles are there, in the default table.
    let roles = kubectl_ok(&kc, &["get", "clusterroles"]);
    assert!(
        roles
            .lines()
            .next()
            .is_some_and(|h| h.contains("CREATED AT")),
        "{roles}"
    );
    assert!(
        roles.contains("cluster-admin") && roles.contains("system:kube-scheduler"),
        "{roles}"
    );
    let bindings = kubectl_ok(&kc, &["get", "rolebindings", "-n", "team", "-o", "wide"]);
    assert!(
        bindings.contains("Role/pod-reader") && bindings.contains("alice"),
        "{bindings}"
    );
    rbac_escalation_is_refused(&kc, &alice).await;
    // Last: it leaves the apiserver auditing (dropped with the test, as t30's encryption).
    audit_log(&mut a).await;
}

/// Audit logging as kube-apiserver's: a policy and a log path, then a list, a secret
/// created at Metadata (its data never in the log), a forbidden request and a
/// RequestResponse read whose `Audit-Id` header names its events.
async fn audit_log(a: &mut Apiservers) {
    let dir = a.dir.path().to_path_buf();
    let policy = dir.join("audit-policy.yaml");
    std::fs::write(
        &policy,
        r#"apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: None
  nonResourceURLs: ["/livez*", "/readyz*", "/version"]
- level: Metadata
  resources: [{group: "", resources: [secrets]}]
- level: RequestResponse
  resources: [{group: "", resources: [configmaps]}]
- level: Metadata
"#,
    )
    .expect("write the policy");
    let log = dir.join("audit").join("audit.log");
    a.restart_with(0, "--audit-log-path", &log.display().to_string())
        .await;
    a.restart_with(0, "--audit-policy-file", &policy.display().to_string())
        .await;
    let kc = a.kubeconfig(0).to_path_buf();
    kubectl_ok(&kc, &["get", "namespaces"]);
    kubectl_ok(
        &kc,
        &[
            "create",
            "secret",
            "generic",
            "audited",
            "-n",
            "team",
            "--from-literal=password=hunter2-audited",
        ],
    );
    let out = kubectl(
        &kc,
        &["--token", "alice-token", "get", "secrets", "-n", "default"],
    );
    assert!(
        !out.status.success(),
        "alice may not list secrets in default"
    );
    let client = a.client(0).await;
    let req = http::Request::get("/api/v1/namespaces/team/configmaps")
        .body(kube::client::Body::empty())
        .expect("request");
    let resp = client.send(req).await.expect("list configmaps");
    let id = resp.headers()["audit-id"]
        .to_str()
        .expect("an Audit-Id")
        .to_string();

    let events = |pred: &dyn Fn(&serde_json::Value) -> bool| -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON event a line"))
            .filter(|e| pred(e))
            .collect()
    };
    let with_id = |id: String| move |e: &serde_json::Value| e["auditID"] == id.as_str();
    common::wait_for(
        std::time::Duration::from_secs(10),
        "the configmaps list in the audit log",
        || {
            let n = events(&with_id(id.clone())).len();
            async move { (n == 2).then_some(()) }
        },
    )
    .await;
    let text = std::fs::read_to_string(&log).expect("the audit log");
    for e in events(&|_| true) {
        assert_eq!(e["kind"], "Event", "{e}");
        assert_eq!(e["apiVersion"], "audit.k8s.io/v1", "{e}");
        assert!(
            !e["requestURI"]
                .as_str()
                .unwrap_or("")
                .starts_with("/readyz"),
            "level None: {e}"
        );
    }
    // The Audit-Id header names the RequestResponse events of its request.
    let cm = events(&with_id(id.clone()));
    assert_eq!(cm[0]["stage"], "RequestReceived");
    assert_eq!(cm[1]["stage"], "ResponseComplete");
    assert_eq!(cm[1]["level"], "RequestResponse");
    assert_eq!(
        cm[1]["responseObject"]["kind"], "ConfigMapList",
        "{}",
        cm[1]
    );
    assert_eq!(cm[1]["responseStatus"]["code"], 200);
    assert_eq!(
        cm[1]["annotations"]["authorization.k8s.io/decision"],
        "allow"
    );
    // kubectl get namespaces: a list at Metadata, by a system:masters user.
    let ns = events(&|e| e["verb"] == "list" && e["objectRef"]["resource"] == "namespaces");
    let stages: Vec<&str> = ns.iter().filter_map(|e| e["stage"].as_str()).collect();
    assert_eq!(stages, ["RequestReceived", "ResponseComplete"], "{ns:?}");
    assert_eq!(ns[1]["level"], "Metadata");
    assert!(ns[1]["user"]["groups"]
        .as_array()
        .is_some_and(|g| g.contains(&"system:masters".into())));
    assert!(ns[1].get("responseObject").is_none());
    // The secret: named in objectRef, its data nowhere.
    let created = events(&|e| e["verb"] == "create" && e["objectRef"]["resource"] == "secrets");
    assert_eq!(created.len(), 2, "{created:?}");
    assert_eq!(created[1]["objectRef"]["name"], "audited");
    assert_eq!(created[1]["objectRef"]["namespace"], "team");
    assert_eq!(created[1]["level"], "Metadata");
    assert_eq!(created[1]["responseStatus"]["code"], 201);
    assert!(created[1].get("requestObject").is_none());
    assert!(
        !text.contains("hunter2-audited") && !text.contains("aHVudGVyMi1hdWRpdGVk"),
        "secret data in the audit log"
    );
    // alice's forbidden list: the decision and the 403.
    let denied = events(&|e| e["user"]["username"] == "alice" && e["verb"] == "list");
    let last = denied.last().expect("alice's list is audited");
    assert_eq!(last["stage"], "ResponseComplete");
    assert_eq!(
        last["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );
    assert_eq!(last["responseStatus"]["code"], 403);
    assert_eq!(last["responseStatus"]["reason"], "Forbidden");
    assert!(last["stageTimestamp"]
        .as_str()
        .is_some_and(|t| t.len() == 27 && t.ends_with('Z')));
}

/// alice may write Roles and RoleBindings in `team` but grant only what she holds there,
/// unless she may `bind` the role (kube's RBAC escalation prevention).
async fn rbac_escalation_is_refused(
    kc: &std::path::Path,
    alice: &dyn Fn(&[&str]) -> std::process::Output,
) {
    let writer = r#"{"apiVersion":"v1","kind":"List","items":[
      {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":"rbac-writer","namespace":"team"},
       "rules":[{"apiGroups":["rbac.authorization.k8s.io"],"resources":["roles","rolebindings"],"verbs":["create","get","list","update","patch"]}]},
      {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"alice-writes","namespace":"team"},
       "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"rbac-writer"},
       "subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"User","name":"alice"}]}]}"#;
    let out = kubectl_stdin(kc, &["create", "--validate=false", "-f", "-"], writer);
    assert!(out.status.success(), "{}", stderr(&out));
    common::wait_for(
        std::time::Duration::from_secs(10),
        "alice to be allowed to create rolebindings in team",
        || {
            let yes = String::from_utf8_lossy(
                &alice(&["auth", "can-i", "create", "rolebindings", "-n", "team"]).stdout,
            )
            .trim()
                == "yes";
            async move { yes.then_some(()) }
        },
    )
    .await;
    let take_over = [
        "create",
        "rolebinding",
        "take-over",
        "--clusterrole=cluster-admin",
        "--user=alice",
        "-n",
        "team",
    ];
    let out = alice(&take_over);
    let err = stderr(&out);
    assert!(!out.status.success(), "binding cluster-admin was allowed");
    assert!(
        err.contains(
            "rolebindings.rbac.authorization.k8s.io \"take-over\" is forbidden: user \"alice\""
        ) && err.contains("is attempting to grant RBAC permissions not currently held:")
            && err.contains(r#"{APIGroups:["*"], Resources:["*"], Verbs:["*"]}"#),
        "{err}"
    );
    let out = alice(&[
        "create",
        "role",
        "deleter",
        "--verb=delete",
        "--resource=pods",
        "-n",
        "team",
    ]);
    let err = stderr(&out);
    assert!(
        !out.status.success()
            && err.contains(r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#),
        "{err}"
    );
    // What she holds she may grant, to a role or to someone else.
    let out = alice(&[
        "create",
        "role",
        "reader2",
        "--verb=get,list",
        "--resource=pods",
        "-n",
        "team",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = alice(&[
        "create",
        "rolebinding",
        "bob-reads",
        "--role=pod-reader",
        "--user=bob",
        "-n",
        "team",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // An update is held to the same rule.
    let out = alice(&[
        "patch",
        "role",
        "reader2",
        "-n",
        "team",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/rules/0/verbs/-","value":"delete"}]"#,
    ]);
    assert!(
        !out.status.success() && stderr(&out).contains("not currently held"),
        "{}",
        stderr(&out)
    );
    // With `bind` on cluster-admin (by name), she may bind it.
    let bind = r#"{"apiVersion":"v1","kind":"List","items":[
      {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":"admin-binder","namespace":"team"},
       "rules":[{"apiGroups":["rbac.authorization.k8s.io"],"resources":["clusterroles"],"resourceNames":["cluster-admin"],"verbs":["bind"]}]},
      {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"alice-binds","namespace":"team"},
       "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"admin-binder"},
       "subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"User","name":"alice"}]}]}"#;
    let out = kubectl_stdin(kc, &["create", "--validate=false", "-f", "-"], bind);
    assert!(out.status.success(), "{}", stderr(&out));
    common::wait_for(
        std::time::Duration::from_secs(10),
        "alice to be allowed to bind cluster-admin in team",
        || {
            let ok = alice(&take_over).status.success();
            async move { ok.then_some(()) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_service_account_tokens_node_restriction_health() {
    let backend = Backend::flotilla().await;
    // An agent's identity in the static token file.
    let a = with_static_token(&backend, "n1-token,system:node:n1,n1,\"system:nodes\"").await;
    let kc = a.kubeconfig(0).to_path_buf();
    let with = |token: &str, args: &[&str]| {
        let mut all = vec!["--token", token];
        all.extend_from_slice(args);
        kubectl(&kc, &all)
    };

    // A ServiceAccount's token (kubectl create token) names the account.
    kubectl_ok(&kc, &["create", "namespace", "team"]);
    kubectl_ok(&kc, &["create", "serviceaccount", "builder", "-n", "team"]);
    let token = kubectl_ok(&kc, &["create", "token", "builder", "-n", "team"]);
    let token = token.trim().to_string();
    assert_eq!(token.split('.').count(), 3, "{token}");
    let who = with(&token, &["auth", "whoami", "-o", "json"]);
    let who: serde_json::Value =
        serde_json::from_slice(&who.stdout).unwrap_or_else(|_| panic!("whoami: {}", stderr(&who)));
    assert_eq!(
        who["status"]["userInfo"]["username"],
        "system:serviceaccount:team:builder"
    );
    assert!(who["status"]["userInfo"]["groups"]
        .as_array()
        .unwrap()
        .contains(&"system:serviceaccounts:team".into()));
    let out = with(&token, &["get", "pods", "-n", "team"]);
    assert!(
        stderr(&out)
            .contains("User \"system:serviceaccount:team:builder\" cannot list resource \"pods\""),
        "{}",
        stderr(&out)
    );
    kubectl_ok(
        &kc,
        &[
            "create",
            "role",
            "pod-reader",
            "--verb=get,list",
            "--resource=pods",
            "-n",
            "team",
        ],
    );
    kubectl_ok(
        &kc,
        &[
            "create",
            "rolebinding",
            "builder-reads",
            "--role=pod-reader",
            "--serviceaccount=team:builder",
            "-n",
            "team",
        ],
    );
    common::wait_for(
        std::time::Duration::from_secs(10),
        "the service account to be allowed to list pods",
        || {
            let ok = with(&token, &["get", "pods", "-n", "team"])
                .status
                .success();
            async move { ok.then_some(()) }
        },
    )
    .await;
    // TokenReview and SubjectAccessReview, as a node's agent asks them (the system:node
    // role may create both; the account may not), found through discovery.
    let resources = kubectl_ok(&kc, &["api-resources", "--api-group=authentication.k8s.io"]);
    assert!(
        resources.contains("tokenreviews") && resources.contains("TokenReview"),
        "{resources}"
    );
    let resources = kubectl_ok(&kc, &["api-resources", "--api-group=authorization.k8s.io"]);
    assert!(resources.contains("subjectaccessreviews"), "{resources}");
    let review = |who: &str, token: &str| {
        let body = format!(
            r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":"{token}"}}}}"#
        );
        let out = kubectl_stdin(
            &kc,
            &[
                "--token",
                who,
                "create",
                "--validate=false",
                "-o",
                "json",
                "-f",
                "-",
            ],
            &body,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("a TokenReview")
    };
    let r = review("n1-token", &token);
    assert_eq!(r["status"]["authenticated"], true, "{r}");
    assert_eq!(
        r["status"]["user"]["username"],
        "system:serviceaccount:team:builder"
    );
    assert!(r["status"]["user"]["groups"]
        .as_array()
        .unwrap()
        .contains(&"system:authenticated".into()));
    assert!(
        r["status"]["audiences"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{r}"
    );
    let r = review("n1-token", "made-up-token");
    assert!(
        r["status"]["authenticated"].is_null() || r["status"]["authenticated"] == false,
        "{r}"
    );
    let denied = kubectl_stdin(
        &kc,
        &["--token", &token, "create", "--validate=false", "-f", "-"],
        r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"x"}}"#,
    );
    assert!(
        stderr(&denied).contains(
            "cannot create resource \"tokenreviews\" in API group \"authentication.k8s.io\""
        ),
        "{}",
        stderr(&denied)
    );
    let sar = |verb: &str| {
        let body = format!(
            r#"{{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{{"user":"system:serviceaccount:team:builder","groups":["system:serviceaccounts"],"resourceAttributes":{{"verb":"{verb}","resource":"pods","namespace":"team"}}}}}}"#
        );
        let out = kubectl_stdin(
            &kc,
            &[
                "--token",
                "n1-token",
                "create",
                "--validate=false",
                "-o",
                "json",
                "-f",
                "-",
            ],
            &body,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("a SubjectAccessReview")
    };
    assert_eq!(sar("list")["status"]["allowed"], true);
    assert_eq!(sar("delete")["status"]["allowed"], false);
    let can = with(
        "n1-token",
        &[
            "auth",
            "can-i",
            "create",
            "tokenreviews.authentication.k8s.io",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&can.stdout).trim(),
        "yes",
        "{}",
        stderr(&can)
    );

    let out = kubectl(
        &kc,
        &["create", "token", "builder", "-n", "team", "--duration=1m"],
    );
    assert!(
        stderr(&out).contains("may not specify a duration less than 10 minutes"),
        "{}",
        stderr(&out)
    );
    let out = kubectl(&kc, &["create", "token", "nobody", "-n", "team"]);
    assert!(
        stderr(&out).contains("serviceaccounts \"nobody\" not found"),
        "{}",
        stderr(&out)
    );
    // Deleting the account revokes its tokens, and one of the same name is another.
    kubectl_ok(&kc, &["delete", "serviceaccount", "builder", "-n", "team"]);
    kubectl_ok(&kc, &["create", "serviceaccount", "builder", "-n", "team"]);
    let out = with(&token, &["get", "pods", "-n", "team"]);
    assert!(
        !out.status.success() && stderr(&out).contains("Unauthorized"),
        "{}",
        stderr(&out)
    );
    let r = review("n1-token", &token);
    assert!(r["status"]["authenticated"].is_null(), "{r}");
    assert!(
        r["status"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("serviceaccounts")),
        "{r}"
    );
    // A forged token (another key) is refused too.
    let mut forged = token.clone();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    assert!(stderr(&with(&forged, &["get", "pods", "-n", "team"])).contains("Unauthorized"));

    // A node's agent changes only its own Node, Lease and pods.
    let node = |name: &str| {
        format!(r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{name}"}}}}"#)
    };
    let as_n1 = |args: &[&str], body: &str| {
        let mut all = vec!["--token", "n1-token"];
        all.extend_from_slice(args);
        kubectl_stdin(&kc, &all, body)
    };
    let out = as_n1(&["create", "--validate=false", "-f", "-"], &node("n1"));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = as_n1(&["create", "--validate=false", "-f", "-"], &node("n2"));
    assert!(
        stderr(&out).contains("node \"n1\" is not allowed to modify node \"n2\""),
        "{}",
        stderr(&out)
    );
    kubectl_stdin(&kc, &["create", "--validate=false", "-f", "-"], &node("n2"));
    assert!(with("n1-token", &["label", "node", "n1", "zone=a"])
        .status
        .success());
    let out = with("n1-token", &["label", "node", "n2", "zone=a"]);
    assert!(
        stderr(&out).contains("is not allowed to modify node \"n2\""),
        "{}",
        stderr(&out)
    );
    let lease = |name: &str| {
        format!(
            r#"{{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{{"name":"{name}","namespace":"kube-node-lease"}},"spec":{{"holderIdentity":"{name}"}}}}"#
        )
    };
    assert!(as_n1(&["create", "-f", "-"], &lease("n1")).status.success());
    let out = as_n1(&["create", "-f", "-"], &lease("n2"));
    assert!(
        stderr(&out).contains("can only access leases with the same name as itself"),
        "{}",
        stderr(&out)
    );
    let pod = |name: &str, node: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"team"}},"spec":{{"nodeName":"{node}","containers":[{{"name":"c","image":"busybox"}}]}}}}"#
        )
    };
    for (p, n) in [("on-n1", "n1"), ("on-n2", "n2")] {
        let out = kubectl_stdin(&kc, &["create", "-f", "-"], &pod(p, n));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = with(
        "n1-token",
        &["delete", "pod", "on-n2", "-n", "team", "--wait=false"],
    );
    assert!(
        stderr(&out).contains("node \"n1\" can only delete pods with spec.nodeName set to itself"),
        "{}",
        stderr(&out)
    );
    let out = with(
        "n1-token",
        &["delete", "pod", "on-n1", "-n", "team", "--wait=false"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = as_n1(&["create", "-f", "-"], &pod("mine", "n1"));
    assert!(stderr(&out).contains("forbidden"), "{}", stderr(&out));

    // A node reads a Secret only by name, and only one a pod bound to it uses.
    let secrets = r#"{"apiVersion":"v1","kind":"List","items":[
      {"apiVersion":"v1","kind":"Secret","metadata":{"name":"for-n1","namespace":"team"},"stringData":{"k":"v"}},
      {"apiVersion":"v1","kind":"Secret","metadata":{"name":"for-n2","namespace":"team"},"stringData":{"k":"v"}},
      {"apiVersion":"v1","kind":"Pod","metadata":{"name":"uses-secret","namespace":"team"},
       "spec":{"nodeName":"n1","containers":[{"name":"c","image":"busybox",
         "env":[{"name":"K","valueFrom":{"secretKeyRef":{"name":"for-n1","key":"k"}}}]}]}},
      {"apiVersion":"v1","kind":"Pod","metadata":{"name":"uses-other","namespace":"team"},
       "spec":{"nodeName":"n2","containers":[{"name":"c","image":"busybox",
         "env":[{"name":"K","valueFrom":{"secretKeyRef":{"name":"for-n2","key":"k"}}}]}]}}]}"#;
    let out = kubectl_stdin(&kc, &["create", "--validate=false", "-f", "-"], secrets);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = with("n1-token", &["get", "secret", "for-n1", "-n", "team"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = with("n1-token", &["get", "secret", "for-n2", "-n", "team"]);
    assert!(
        stderr(&out).contains("secrets \"for-n2\" is forbidden: User \"system:node:n1\" cannot get resource \"secrets\"")
            && stderr(&out).contains("no relationship found between node 'n1' and this object"),
        "{}",
        stderr(&out)
    );
    let out = with("n1-token", &["get", "secrets", "-n", "team"]);
    assert!(
        stderr(&out).contains("can only read individual resources of this type"),
        "{}",
        stderr(&out)
    );

    // A server-side apply configuration in YAML, as curl sends a manifest file.
    let client = a.client(0).await;
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\n  namespace: team\ndata:\n  k: v\n";
    let req =
        http::Request::patch("/api/v1/namespaces/team/configmaps/from-yaml?fieldManager=curl")
            .header("content-type", "application/apply-patch+yaml")
            .body(yaml.as_bytes().to_vec())
            .expect("request");
    let out = client
        .request_text(req)
        .await
        .expect("apply of a YAML body");
    assert!(
        out.contains("\"k\":\"v\"") && out.contains("\"manager\":\"curl\""),
        "{out}"
    );

    // Every response names its request's id (the client's Audit-ID, or a fresh one).
    let req = http::Request::get("/api/v1/namespaces/team/configmaps")
        .header("audit-id", "my-request-1")
        .body(kube::client::Body::empty())
        .expect("request");
    let resp = client.send(req).await.expect("list");
    assert_eq!(resp.headers()["audit-id"], "my-request-1");
    let req = http::Request::get("/version")
        .body(kube::client::Body::empty())
        .expect("request");
    let resp = client.send(req).await.expect("version");
    assert_eq!(resp.headers()["audit-id"].len(), 36);

    // OpenAPI v2, derived from the v3 documents.
    let v2: serde_json::Value =
        serde_json::from_str(&kubectl_ok(&kc, &["get", "--raw", "/openapi/v2"])).expect("v2 JSON");
    assert_eq!(v2["swagger"], "2.0");
    assert!(v2["definitions"]["io.k8s.api.core.v1.Pod"].is_object());

    // Health reports the kvstore check.
    let ready = kubectl_ok(&kc, &["get", "--raw", "/readyz?verbose"]);
    assert!(
        ready.contains("[+]etcd ok") && ready.contains("[+]watch-cache ok"),
        "{ready}"
    );
    assert_eq!(kubectl_ok(&kc, &["get", "--raw", "/livez"]).trim(), "ok");
    let m = kubectl_ok(&kc, &["get", "--raw", "/metrics"]);
    assert!(
        m.contains("etcd_request_duration_seconds_count{operation=\"txn\"}")
            && m.contains("apiserver_storage_objects{resource=\"pods\"} 4")
            && m.contains("apiserver_watch_cache_capacity"),
        "{m}"
    );
    drop(a);
    encryption_at_rest(&backend).await;
}

/// Secrets at rest, as kube documents it: encryption turned on over existing plaintext,
/// keys rotated by `kubectl replace`, and a tampered value refused, read straight from
/// the kvstore.
async fn encryption_at_rest(backend: &Backend) {
    let Backend::Flotilla(cluster) = backend else {
        return;
    };
    let mut a = Apiservers::start(1, &backend.urls()).await;
    let kc = a.kubeconfig(0).to_path_buf();
    let raw = |name: &'static str| async move {
        let mut c = cluster.any_client().await;
        let r = c
            .get(format!("/registry/secrets/vault/{name}"), None)
            .await
            .expect("a read of the kvstore");
        r.kvs()
            .first()
            .map(|kv| kv.value().to_vec())
            .unwrap_or_default()
    };
    let dir = a.dir.path().to_path_buf();
    let config = |file: &str, providers: &str| {
        let path = dir.join(file);
        let text = format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n{providers}"
        );
        std::fs::write(&path, text).expect("write the configuration");
        path.display().to_string()
    };
    const FLAG: &str = "--encryption-provider-config";
    let key1 = "  - aesgcm: {keys: [{name: key1, secret: c2VjcmV0IGlzIHNlY3VyZSwgaSBhbSBzdXJlIDEyMzQ=}]}\n";
    let key2 = "  - aesgcm: {keys: [{name: key2, secret: YW5vdGhlciBzZWNyZXQgaXMgaGVyZSwgMzIgYnl0ZXM=}]}\n";
    let identity = "  - identity: {}\n";
    let create = |name: &str| {
        let lit = format!("--from-literal=password=hunter2-{name}");
        kubectl_ok(
            &kc,
            &["create", "secret", "generic", name, "-n", "vault", &lit],
        );
    };
    let replace_all = || {
        let all = kubectl_ok(&kc, &["get", "secrets", "-n", "vault", "-o", "json"]);
        // kubectl validates a List through the protobuf OpenAPI v2, which is not served.
        let out = kubectl_stdin(&kc, &["replace", "--validate=false", "-f", "-"], &all);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    let reads = |name: &str| {
        kubectl(
            &kc,
            &[
                "get",
                "secret",
                name,
                "-n",
                "vault",
                "-o",
                "jsonpath={.data.password}",
            ],
        )
    };

    kubectl_ok(&kc, &["create", "namespace", "vault"]);
    create("old");
    assert!(
        raw("old").await.starts_with(b"{"),
        "plaintext before encryption"
    );

    // Encryption on, identity kept last so the old secret still reads.
    a.restart_with(0, FLAG, &config("on.yaml", &format!("{key1}{identity}")))
        .await;
    create("new");
    let stored = raw("new").await;
    assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:key1:"), "{stored:?}");
    assert!(!String::from_utf8_lossy(&stored).contains("hunter2"));
    assert!(reads("old").status.success());
    // Rewriting every secret, unchanged, encrypts the old one.
    replace_all();
    assert!(raw("old").await.starts_with(b"k8s:enc:aesgcm:v1:key1:"));

    // Rotation: key2 first and key1 to read what is not rewritten yet; replace; key1 goes.
    a.restart_with(0, FLAG, &config("rotate.yaml", &format!("{key2}{key1}")))
        .await;
    replace_all();
    for name in ["old", "new"] {
        let stored = raw(name).await;
        assert!(
            stored.starts_with(b"k8s:enc:aesgcm:v1:key2:"),
            "{name}: {stored:?}"
        );
    }
    a.restart_with(0, FLAG, &config("key2.yaml", key2)).await;
    let out = reads("old");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "aHVudGVyMi1vbGQ=");

    // A value changed behind the apiserver's back is an error, never a value.
    let mut tampered = raw("old").await;
    if let Some(last) = tampered.last_mut() {
        *last ^= 1;
    }
    let mut c = cluster.any_client().await;
    c.put("/registry/secrets/vault/old", tampered, None)
        .await
        .expect("a write to the kvstore");
    let out = reads("old");
    assert!(
        !out.status.success() && stderr(&out).contains("cannot be decrypted"),
        "{}",
        stderr(&out)
    );
    assert!(reads("new").status.success());
}
