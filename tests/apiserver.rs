//! The apiserver end to end: real kvstore members (or Debian's etcd 3.4), two real
//! apiservers, kubectl 1.32 and kube-rs as clients.

mod common;
#[path = "apiserver/operator.rs"]
mod operator;

use std::collections::BTreeMap;
use std::time::Duration;

use common::k8s::{kubectl, kubectl_ok, kubectl_stdin, Apiservers, Backend, KillOnDrop};
use common::wait_for;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};

const MANIFEST: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
  labels: {app: web}
data:
  greeting: hello
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  labels: {app: web, tier: front}
spec:
  containers:
  - name: main
    image: busybox:1.36
    ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata:
  name: web-2
  labels: {app: web, tier: back}
spec:
  containers: [{name: main, image: busybox}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: main, image: nginx:1.27}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#;

/// The kubectl part of the suite, run against whatever backend the apiservers use.
async fn kubectl_suite(backend: Backend) {
    let mut a = Apiservers::start(2, &backend.urls()).await;
    let (ka, kb) = (a.kubeconfig(0).to_path_buf(), a.kubeconfig(1).to_path_buf());

    // A watch on apiserver B sees what is written through A.
    let watch_out = a.dir.path().join("watch.out");
    let watcher = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kb)
        .args(["get", "configmaps", "--watch", "--output-watch-events"])
        .stdout(std::fs::File::create(&watch_out).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _watcher = KillOnDrop(watcher);

    // create -f with several documents, through A.
    let out = kubectl_stdin(&ka, &["create", "-f", "-"], MANIFEST);
    assert!(
        out.status.success(),
        "create -f: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created = String::from_utf8_lossy(&out.stdout);
    for want in [
        "configmap/cfg created",
        "pod/web-1 created",
        "pod/web-2 created",
        "deployment.apps/web created",
        "service/web created",
    ] {
        assert!(created.contains(want), "{want} in {created}");
    }

    // get, -o json, -o yaml through B: defaults and server-set metadata are there.
    let names = kubectl_ok(&kb, &["get", "pods", "-o", "name"]);
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        ["pod/web-1", "pod/web-2"]
    );
    let pod: serde_json::Value =
        serde_json::from_str(&kubectl_ok(&kb, &["get", "pod", "web-1", "-o", "json"])).unwrap();
    assert_eq!(pod["spec"]["restartPolicy"], "Always");
    assert_eq!(
        pod["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert_eq!(pod["spec"]["containers"][0]["ports"][0]["protocol"], "TCP");
    assert_eq!(pod["status"]["phase"], "Pending");
    assert!(pod["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| u.len() == 36));
    assert!(pod["metadata"]["resourceVersion"]
        .as_str()
        .is_some_and(|r| r.parse::<i64>().unwrap() > 0));
    let yaml = kubectl_ok(&kb, &["get", "deployment", "web", "-o", "yaml"]);
    assert!(
        yaml.contains("revisionHistoryLimit: 10") && yaml.contains("generation: 1"),
        "{yaml}"
    );
    let svc: serde_json::Value =
        serde_json::from_str(&kubectl_ok(&ka, &["get", "svc", "web", "-o", "json"])).unwrap();
    assert!(
        svc["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .starts_with("10."),
        "{svc}"
    );

    // label, annotate, selectors.
    kubectl_ok(&ka, &["label", "pod", "web-1", "tier=edge", "--overwrite"]);
    kubectl_ok(&kb, &["annotate", "pod", "web-2", "note=second"]);
    assert_eq!(
        kubectl_ok(&kb, &["get", "pods", "-l", "tier=edge", "-o", "name"]).trim(),
        "pod/web-1"
    );
    assert_eq!(
        kubectl_ok(
            &ka,
            &["get", "pods", "-l", "tier in (back,x),app", "-o", "name"]
        )
        .trim(),
        "pod/web-2"
    );
    assert_eq!(
        kubectl_ok(
            &ka,
            &[
                "get",
                "pods",
                "--field-selector",
                "metadata.name=web-2",
                "-o",
                "name"
            ]
        )
        .trim(),
        "pod/web-2"
    );
    assert_eq!(
        kubectl_ok(
            &ka,
            &[
                "get",
                "pods",
                "--field-selector",
                "status.phase=Running",
                "-o",
                "name"
            ]
        )
        .trim(),
        ""
    );
    let anno = kubectl_ok(
        &ka,
        &[
            "get",
            "pod",
            "web-2",
            "-o",
            "jsonpath={.metadata.annotations.note}",
        ],
    );
    assert_eq!(anno, "second");
    let desc = kubectl_ok(&kb, &["describe", "pod", "web-1"]);
    assert!(
        desc.contains("tier=edge") && desc.contains("busybox:1.36"),
        "{desc}"
    );

    // Errors come back in Kubernetes' words.
    let out = kubectl_stdin(&ka, &["create", "-f", "-"], MANIFEST);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let bad = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bad"},"spec":{"containers":[{"name":"c"}]}}"#;
    let out = kubectl_stdin(&ka, &["create", "-f", "-"], bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is invalid") && err.contains("spec.containers[0].image: Required value"),
        "{err}"
    );
    let unknown = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"u"},"dataa":{}}"#;
    let out = kubectl_stdin(&ka, &["create", "-f", "-"], unknown);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown field \"dataa\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kubectl(&ka, &["get", "pod", "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("pods \"nope\" not found"));
    let out = kubectl(&ka, &["--token", "wrong", "get", "pods"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Unauthorized"));

    // delete waits for the object to be gone (kubectl watches for it).
    kubectl_ok(&kb, &["delete", "configmap", "cfg"]);
    kubectl_ok(&ka, &["delete", "pod", "web-1", "web-2"]);
    assert_eq!(kubectl_ok(&ka, &["get", "pods", "-o", "name"]).trim(), "");

    // kubectl's generators send protobuf bodies.
    kubectl_ok(&ka, &["create", "namespace", "gen"]);
    kubectl_ok(
        &kb,
        &[
            "-n",
            "gen",
            "create",
            "configmap",
            "lit",
            "--from-literal=a=1",
            "--from-literal=b=two",
        ],
    );
    kubectl_ok(
        &ka,
        &[
            "-n",
            "gen",
            "create",
            "secret",
            "generic",
            "pw",
            "--from-literal=pw=hunter2",
        ],
    );
    kubectl_ok(
        &kb,
        &[
            "-n",
            "gen",
            "create",
            "deployment",
            "zero",
            "--image=nginx:1.27",
            "--replicas=0",
            "--port=80",
        ],
    );
    kubectl_ok(
        &ka,
        &[
            "-n",
            "gen",
            "create",
            "service",
            "clusterip",
            "gsvc",
            "--tcp=80:8080",
        ],
    );
    assert_eq!(
        kubectl_ok(
            &ka,
            &["-n", "gen", "get", "cm", "lit", "-o", "jsonpath={.data.b}"]
        ),
        "two"
    );
    assert_eq!(
        kubectl_ok(
            &ka,
            &[
                "-n",
                "gen",
                "get",
                "secret",
                "pw",
                "-o",
                "jsonpath={.data.pw}"
            ]
        ),
        "aHVudGVyMg=="
    );
    assert_eq!(
        kubectl_ok(
            &ka,
            &[
                "-n",
                "gen",
                "get",
                "deploy",
                "zero",
                "-o",
                "jsonpath={.spec.replicas}"
            ]
        ),
        "0"
    );
    let c0 = kubectl_ok(
        &ka,
        &[
            "-n",
            "gen",
            "get",
            "deploy",
            "zero",
            "-o",
            "jsonpath={.spec.template.spec.containers[0]}",
        ],
    );
    let c0: serde_json::Value = serde_json::from_str(&c0).unwrap();
    assert_eq!(
        (
            c0["image"].as_str(),
            c0["ports"][0]["containerPort"].as_i64()
        ),
        (Some("nginx:1.27"), Some(80)),
        "{c0}"
    );
    assert_eq!(
        kubectl_ok(
            &ka,
            &[
                "-n",
                "gen",
                "get",
                "svc",
                "gsvc",
                "-o",
                "jsonpath={.spec.ports[0].targetPort}"
            ]
        ),
        "8080"
    );
    // Node ports: allocated from 30000-32767, or as asked; one port, one service.
    kubectl_ok(
        &ka,
        &[
            "-n",
            "gen",
            "create",
            "service",
            "nodeport",
            "np1",
            "--tcp=80:8080",
        ],
    );
    let np: i64 = kubectl_ok(
        &kb,
        &[
            "-n",
            "gen",
            "get",
            "svc",
            "np1",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ],
    )
    .parse()
    .unwrap();
    assert!((30000..=32767).contains(&np), "{np}");
    kubectl_ok(
        &ka,
        &[
            "-n",
            "gen",
            "create",
            "service",
            "nodeport",
            "np2",
            "--tcp=81:8081",
            "--node-port=30999",
        ],
    );
    let out = kubectl(
        &kb,
        &[
            "-n",
            "gen",
            "create",
            "service",
            "nodeport",
            "np3",
            "--tcp=82:8082",
            "--node-port=30999",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("provided port is already allocated"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    kubectl_ok(&ka, &["-n", "gen", "delete", "service", "np2"]);
    kubectl_ok(
        &kb,
        &[
            "-n",
            "gen",
            "create",
            "service",
            "nodeport",
            "np3",
            "--tcp=82:8082",
            "--node-port=30999",
        ],
    );

    wait_for(
        Duration::from_secs(10),
        "the watch on B to see cfg added and deleted",
        || {
            let text = std::fs::read_to_string(&watch_out).unwrap_or_default();
            async move {
                (text.contains("ADDED") && text.contains("DELETED") && text.contains("cfg"))
                    .then_some(())
            }
        },
    )
    .await;
    kubernetes_service(&mut a).await;
}

/// `default/kubernetes` is the first address of the service range, 443 to the secure
/// port, and its endpoints are the apiservers alive: both replicas (one subset per port,
/// one slice per port), then, after one stops, the other alone.
async fn kubernetes_service(a: &mut Apiservers) {
    let ka = a.kubeconfig(0).to_path_buf();
    let svc = kubectl_ok(
        &ka,
        &[
            "get",
            "service",
            "kubernetes",
            "-n",
            "default",
            "-o",
            "jsonpath={.spec.clusterIP} {.spec.ports[0].port} {.spec.ports[0].name}",
        ],
    );
    assert_eq!(svc, "10.96.0.1 443 https");
    let ports = |a: &Apiservers| {
        let mut p = vec![a.port(0), a.port(1)];
        p.sort();
        p
    };
    let want = ports(a);
    let endpoints = |want: Vec<u16>| {
        let ka = ka.clone();
        async move {
            let out = kubectl(
                &ka,
                &[
                    "get",
                    "endpoints",
                    "kubernetes",
                    "-n",
                    "default",
                    "-o",
                    "jsonpath={range .subsets[*]}{.addresses[0].ip}:{.ports[0].port} {end}",
                ],
            );
            let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let want: Vec<String> = want.iter().map(|p| format!("127.0.0.1:{p}")).collect();
            (got == want.join(" ")).then_some(())
        }
    };
    wait_for(
        Duration::from_secs(30),
        "the kubernetes endpoints to list both apiservers",
        || endpoints(want.clone()),
    )
    .await;
    let slices = kubectl_ok(
        &ka,
        &[
            "get",
            "endpointslices",
            "-n",
            "default",
            "-l",
            "kubernetes.io/service-name=kubernetes",
            "-o",
            "name",
        ],
    );
    assert_eq!(slices.lines().count(), 2, "{slices}");
    // Apiserver 1 stops (SIGTERM): it gives up its lease, and within an interval of the
    // other's reconcile the endpoints list apiserver 0 alone.
    a.terminate(1);
    let left = vec![a.port(0)];
    wait_for(
        Duration::from_secs(30),
        "the kubernetes endpoints to drop the stopped apiserver",
        || endpoints(left.clone()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_kubectl_against_two_apiservers_on_the_kvstore() {
    kubectl_suite(Backend::flotilla().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t11_kubectl_against_two_apiservers_on_etcd() {
    kubectl_suite(Backend::etcd().await).await;
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(
        serde_json::json!({ "metadata": { "name": name }, "data": { "k": name } }),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_watch_resumed_after_its_apiserver_was_killed_misses_nothing() {
    watch_resume_suite(Backend::flotilla().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t21_watch_resumed_after_its_apiserver_was_killed_misses_nothing_on_etcd() {
    watch_resume_suite(Backend::etcd().await).await;
}

async fn watch_resume_suite(backend: Backend) {
    let mut a = Apiservers::start(2, &backend.urls()).await;
    let api: Api<ConfigMap> = Api::namespaced(a.client(0).await, "default");
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("w-{i}")))
            .await
            .unwrap();
    }
    let list = api.list(&ListParams::default()).await.unwrap();
    let mut last_rv = list.metadata.resource_version.clone().unwrap();
    // Watch through A from the list's revision; see two more changes.
    let mut stream = api
        .watch(&WatchParams::default(), &last_rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &cm("w-5"))
        .await
        .unwrap();
    api.delete("w-0", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("event")
            .expect("stream open")
            .unwrap()
        {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                last_rv = o.metadata.resource_version.clone().unwrap();
                seen.push(o.metadata.name.unwrap());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["w-5", "w-0"]);
    drop(stream);

    // A dies; changes go through B while no watch is open.
    a.kill(0);
    let api_b: Api<ConfigMap> = Api::namespaced(a.client(1).await, "default");
    let mut want = Vec::new();
    for i in 6..12 {
        api_b
            .create(&PostParams::default(), &cm(&format!("w-{i}")))
            .await
            .unwrap();
        want.push(("ADDED", format!("w-{i}")));
    }
    api_b.delete("w-1", &DeleteParams::default()).await.unwrap();
    want.push(("DELETED", "w-1".to_string()));

    // Resume from the last resourceVersion on B, and on A restarted (whose cache starts
    // after that revision): both deliver exactly the missed changes, in order.
    a.spawn(0);
    a.wait_ready(0).await;
    for i in [1, 0] {
        let api: Api<ConfigMap> = Api::namespaced(a.client(i).await, "default");
        let mut stream = api
            .watch(&WatchParams::default(), &last_rv)
            .await
            .unwrap()
            .boxed();
        let mut got = Vec::new();
        let mut prev_rv = last_rv.parse::<i64>().unwrap();
        while got.len() < want.len() {
            let ev = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .expect("event")
                .expect("open")
                .unwrap();
            let (typ, o) = match ev {
                WatchEvent::Added(o) => ("ADDED", o),
                WatchEvent::Deleted(o) => ("DELETED", o),
                other => panic!("unexpected {other:?}"),
            };
            let rv: i64 = o.metadata.resource_version.unwrap().parse().unwrap();
            assert!(rv > prev_rv, "resourceVersions increase");
            prev_rv = rv;
            got.push((typ, o.metadata.name.unwrap()));
        }
        assert_eq!(got, want, "resumed on apiserver {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_killing_an_apiserver_and_a_kvstore_member_loses_no_acknowledged_object() {
    no_loss_suite(Backend::flotilla().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t31_killing_an_apiserver_and_an_etcd_member_loses_no_acknowledged_object() {
    no_loss_suite(Backend::etcd().await).await;
}

async fn no_loss_suite(mut backend: Backend) {
    let mut a = Apiservers::start(2, &backend.urls()).await;
    let apis = [
        Api::<ConfigMap>::namespaced(a.client(0).await, "default"),
        Api::<ConfigMap>::namespaced(a.client(1).await, "default"),
    ];
    let mut acked = Vec::new();
    for i in 0..60 {
        if i == 20 {
            a.kill(0);
        }
        if i == 35 {
            backend.kill_leader().await;
        }
        let name = format!("d-{i:02}");
        let api = &apis[if i < 20 { i % 2 } else { 1 }];
        // A write that fails (the kvstore electing a leader) is retried: creating again
        // answers AlreadyExists if the first attempt took effect after all.
        for attempt in 0..20 {
            match api.create(&PostParams::default(), &cm(&name)).await {
                Ok(_) => {
                    acked.push(name.clone());
                    break;
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    acked.push(name.clone());
                    break;
                }
                Err(e) => {
                    assert!(attempt < 19, "create {name} kept failing: {e}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }
    let list = apis[1]
        .list(&ListParams::default().labels(""))
        .await
        .unwrap();
    let names: Vec<String> = list
        .items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .filter(|n| n.starts_with("d-"))
        .collect();
    assert_eq!(names, acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_kube_rs_typed_api_and_runtime_watcher() {
    kube_rs_suite(Backend::flotilla().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t41_kube_rs_typed_api_and_runtime_watcher_on_etcd() {
    kube_rs_suite(Backend::etcd().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t42_kube_rs_operator_with_a_custom_resource() {
    operator::operator_suite(Backend::flotilla().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t43_kube_rs_operator_with_a_custom_resource_on_etcd() {
    operator::operator_suite(Backend::etcd().await).await;
}

async fn kube_rs_suite(backend: Backend) {
    use kube::runtime::watcher::{self, Event};
    let a = Apiservers::start(2, &backend.urls()).await;
    let client = a.client(0).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = events.clone();
    let watch_pods: Api<Pod> = Api::namespaced(a.client(1).await, "default");
    let task = tokio::spawn(async move {
        let mut s = watcher::watcher(watch_pods, watcher::Config::default()).boxed();
        while let Ok(Some(ev)) = s.try_next().await {
            let line = match ev {
                Event::Apply(p) => format!(
                    "apply {} {}",
                    p.metadata.name.unwrap_or_default(),
                    p.metadata
                        .labels
                        .unwrap_or_default()
                        .get("v")
                        .cloned()
                        .unwrap_or_default()
                ),
                Event::Delete(p) => format!("delete {}", p.metadata.name.unwrap_or_default()),
                Event::InitDone => "init".to_string(),
                _ => continue,
            };
            seen.lock().unwrap().push(line);
        }
    });
    wait_for(
        Duration::from_secs(10),
        "the watcher's initial list",
        || {
            let e = events.clone();
            async move {
                e.lock()
                    .unwrap()
                    .contains(&"init".to_string())
                    .then_some(())
            }
        },
    )
    .await;

    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "kr", "labels": { "v": "1" } },
        "spec": { "containers": [{ "name": "c", "image": "busybox" }] }
    }))
    .unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    let got = pods.get("kr").await.unwrap();
    assert_eq!(got.metadata.uid, created.metadata.uid);
    let listed = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    let mut changed = got.clone();
    changed.metadata.labels = Some(BTreeMap::from([("v".to_string(), "2".to_string())]));
    let replaced = pods
        .replace("kr", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_ne!(
        replaced.metadata.resource_version,
        got.metadata.resource_version
    );
    // A replace from the stale version is a conflict.
    let err = pods
        .replace("kr", &PostParams::default(), &changed)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 409 && e.reason == "Conflict"),
        "{err:?}"
    );
    pods.delete("kr", &DeleteParams::default()).await.unwrap();

    wait_for(
        Duration::from_secs(10),
        "the watcher to see every change",
        || {
            let e = events.clone();
            async move {
                let e = e.lock().unwrap().clone();
                (e == ["init", "apply kr 1", "apply kr 2", "delete kr"]).then_some(())
            }
        },
    )
    .await;
    task.abort();

    // Workload kinds through their typed APIs: a Job and a StatefulSet.
    let job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kr-job"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .unwrap();
    let made = create_watch_delete(Api::namespaced(client.clone(), "default"), &job).await;
    assert_eq!(made.spec.unwrap().backoff_limit, Some(6));
    let sts: k8s_openapi::api::apps::v1::StatefulSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kr-sts"},
        "spec": {"serviceName": "kr", "selector": {"matchLabels": {"app": "kr"}},
            "template": {"metadata": {"labels": {"app": "kr"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .unwrap();
    let made = create_watch_delete(Api::namespaced(client.clone(), "default"), &sts).await;
    assert_eq!(
        made.spec.unwrap().pod_management_policy.as_deref(),
        Some("OrderedReady")
    );
}

/// Creates `obj`, sees it through a kube-rs watcher, deletes it and sees it go; returns
/// it as created.
async fn create_watch_delete<K>(api: Api<K>, obj: &K) -> K
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + 'static,
{
    use kube::runtime::watcher::{self, Event};
    let name = obj.meta().name.clone().unwrap();
    let mut stream = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    let made = api.create(&PostParams::default(), obj).await.unwrap();
    let mut applied = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ev = tokio::time::timeout_at(deadline, stream.try_next())
            .await
            .expect("the watcher in time")
            .expect("a watch event")
            .expect("an open stream");
        match ev {
            Event::Apply(o) | Event::InitApply(o) if o.meta().name.as_ref() == Some(&name) => {
                if !applied {
                    applied = true;
                    api.delete(&name, &DeleteParams::background())
                        .await
                        .unwrap();
                }
            }
            Event::Delete(o) if o.meta().name.as_ref() == Some(&name) => break,
            _ => {}
        }
    }
    assert!(applied);
    made
}
