//! The node agent end to end with real processes: 3 kvstore members, an apiserver, a
//! scheduler, a controller-manager and two `flotilla agent --runtime process` nodes whose
//! containers are real host processes.

mod common;
#[path = "agent/storage.rs"]
mod storage;
#[path = "agent/streams.rs"]
mod streams;
#[path = "agent/usage.rs"]
mod usage;

use std::time::Duration;

use common::agents::{http_get, kill_group, pod_ready, Agents};
use common::control::Replicas;
use common::k8s::{kubectl_ok, kubectl_stdin, Apiservers, Backend};
use common::wait_for;
use k8s_openapi::api::core::v1::{ContainerStatus, Endpoints, Node, Pod};
use kube::api::{Api, ListParams};

#[path = "agent/disruption.rs"]
mod disruption;
#[path = "agent/workloads.rs"]
mod workloads;

struct World {
    _backend: Backend,
    api: Apiservers,
    sched: Replicas,
    _cm: Replicas,
    agents: Agents,
    client: kube::Client,
}

async fn world(nodes: &[&str]) -> World {
    world_with(nodes, false).await
}

async fn world_with(nodes: &[&str], docker: bool) -> World {
    world_args(nodes, docker, &[]).await
}

/// The world with extra agent flags.
async fn world_args(nodes: &[&str], docker: bool, extra: &[&str]) -> World {
    let backend = Backend::flotilla().await;
    let api = Apiservers::start(1, &backend.urls()).await;
    let kc = api.kubeconfig(0).to_path_buf();
    let dir = api.dir.path().to_path_buf();
    let sched = Replicas::start("scheduler", &[&kc], &dir, &[]);
    let local_path = dir.join("local-path");
    let cm = Replicas::start(
        "controller-manager",
        &[&kc],
        &dir,
        &[
            "--node-monitor-period",
            "1s",
            "--node-monitor-grace-period",
            "6s",
            "--node-eviction-rate",
            "10",
            "--local-path-root",
            local_path.to_str().unwrap(),
            "--local-path-helper-image",
            common::images::BUSYBOX,
        ],
    );
    let certs = api.certs();
    let client = api.client(0).await;
    let agents = if docker {
        common::images::ensure_busybox().await;
        // The test cluster's own pod network: the controller-manager's node IPAM
        // controller gives each node a podCIDR from it.
        let cluster_cidr = cm.cluster_cidr.clone().expect("the cluster's pod CIDR");
        let agents = Agents::start_docker(&kc, Some(&certs), nodes, &cluster_cidr, extra);
        common::agents::pod_cidrs(&client, &cluster_cidr, nodes).await;
        agents
    } else {
        Agents::start_process(&kc, Some(&certs), nodes, extra)
    };
    let nodes_api: Api<Node> = Api::all(client.clone());
    for n in nodes {
        wait_for(
            Duration::from_secs(30),
            &format!("node {n} Ready"),
            || async {
                // Ready, and no longer tainted not-ready (the node lifecycle controller
                // lifts it after seeing Ready; until then the scheduler passes the node by).
                let node = nodes_api.get_opt(n).await.ok().flatten()?;
                let tainted = node
                    .spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .is_some_and(|t| t.iter().any(|t| t.key.starts_with("node.kubernetes.io/")));
                ready_condition(&node)
                    .filter(|s| s == "True" && !tainted)
                    .map(|_| ())
            },
        )
        .await;
    }
    World {
        _backend: backend,
        api,
        sched,
        _cm: cm,
        agents,
        client,
    }
}

fn ready_condition(n: &Node) -> Option<String> {
    n.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

fn status_of<'a>(p: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)
}

fn node_of(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

async fn ready_pods(client: &kube::Client, selector: &str, n: usize, within: Duration) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_for(within, &format!("{n} ready pods {selector}"), || async {
        let pods: Vec<Pod> = api
            .list(&ListParams::default().labels(selector))
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        (pods.len() == n && pods.iter().all(pod_ready)).then_some(pods)
    })
    .await
}

fn apply(w: &World, yaml: &str) {
    let out = kubectl_stdin(w.api.kubeconfig(0), &["apply", "-f", "-"], yaml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      containers:
      - name: c
        image: busybox
        command: ["sh", "-c", "echo hello from $(POD_NAME) on $(NODE) api $(KUBERNETES_SERVICE_HOST):${KUBERNETES_SERVICE_PORT}; exec sleep 600"]
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
        readinessProbe: {exec: {command: ["true"]}, periodSeconds: 1}
"#;

fn log_of(w: &World, p: &Pod, container: &str, attempt: u32) -> String {
    let node = node_of(p);
    let i = w.agents.agents.iter().position(|a| a.node == node).unwrap();
    let dir = w.agents.agents[i].root.join("pods").join(format!(
        "default_{}_{}",
        p.metadata.name.as_deref().unwrap(),
        p.metadata.uid.as_deref().unwrap()
    ));
    std::fs::read_to_string(dir.join(container).join(format!("{attempt}.log"))).unwrap_or_default()
}

/// `kubectl get --raw` of `path` straight from an agent's port, as `token`, trusting the
/// cluster CA (which the agent's serving certificate must come from, naming 127.0.0.1).
fn agent_get(w: &World, port: u16, token: &str, path: &str) -> std::process::Output {
    let empty = w.api.dir.path().join("empty-kubeconfig");
    std::fs::write(&empty, "apiVersion: v1\nkind: Config\n").unwrap();
    std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&empty)
        .args(["--request-timeout", "20s"])
        .args(["--server", &format!("https://127.0.0.1:{port}")])
        .arg("--certificate-authority")
        .arg(w.api.certs().join("ca.crt"))
        .args(["--token", token, "get", "--raw", path])
        .output()
        .expect("kubectl is installed")
}

/// The scheduler's secure port, as kube-scheduler's: TLS, `/healthz` for anyone,
/// `/metrics` for whom the apiserver allows (401 without credentials, 403 for a
/// ServiceAccount without `get` on the path, in the generic apiserver's words).
async fn secure_port_is_guarded(w: &World) {
    let kc = w.api.kubeconfig(0).to_path_buf();
    // A kubeconfig with `token` (none if empty); get_as points it at the port.
    let as_token = |name: &str, token: &str| {
        let path = w.api.dir.path().join(name);
        let user = if token.is_empty() {
            "{}".to_string()
        } else {
            format!("{{token: {token}}}")
        };
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
                 clusters: [{{name: c, cluster: {{server: \"https://127.0.0.1:1\"}}}}]\n\
                 users: [{{name: u, user: {user}}}]\n\
                 contexts: [{{name: c, context: {{cluster: c, user: u}}}}]\n"
            ),
        )
        .unwrap();
        path
    };
    let anonymous = as_token("anonymous-kubeconfig", "");
    let got = w.sched.get_as(0, &anonymous, "/healthz").await;
    assert_eq!(got, Some(Ok("ok".to_string())));
    let got = w.sched.get_as(0, &anonymous, "/metrics").await;
    assert_eq!(got.unwrap().unwrap_err().0, 401);
    let nosy = kubectl_ok(&kc, &["create", "token", "nosy"]);
    let nosy = as_token("nosy-kubeconfig", nosy.trim());
    let (code, msg) = w
        .sched
        .get_as(0, &nosy, "/metrics")
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(code, 403);
    assert_eq!(
        msg,
        r#"forbidden: User "system:serviceaccount:default:nosy" cannot get path "/metrics""#
    );
    // The admin (its kubeconfig's token) reads it.
    let m = w.sched.metrics(0).await.expect("the admin reads /metrics");
    assert!(m.contains("leader_election_master_status"), "{m}");
}

/// The agent's port answers the apiserver's client certificate (`kubectl logs` before),
/// refuses a token the apiserver does not know (401) and a ServiceAccount without
/// `nodes/proxy` (403, the kubelet's words), and serves one that has it.
async fn agent_port_is_guarded(w: &World, p: &Pod) {
    let kc = w.api.kubeconfig(0).to_path_buf();
    let name = p.metadata.name.clone().unwrap();
    let node = node_of(p);
    let port = w
        .agents
        .agents
        .iter()
        .find(|a| a.node == node)
        .unwrap()
        .port;
    let path = format!("/containerLogs/default/{name}/c");
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // kubectl's words for a 401.
    let out = agent_get(w, port, "made-up-token", &path);
    assert!(
        !out.status.success() && stderr(&out).contains("You must be logged in to the server"),
        "{}",
        stderr(&out)
    );
    kubectl_ok(&kc, &["create", "serviceaccount", "nosy"]);
    let nosy = kubectl_ok(&kc, &["create", "token", "nosy"]);
    let out = agent_get(w, port, nosy.trim(), &path);
    assert!(
        stderr(&out).contains(
            "Forbidden (user=system:serviceaccount:default:nosy, verb=get, resource=nodes, subresource(s)=[proxy])"
        ),
        "{}",
        stderr(&out)
    );

    // An account bound to a role with nodes/proxy reads the log straight from the agent.
    let grant = r#"{"apiVersion":"v1","kind":"List","items":[
      {"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"log-reader","namespace":"default"}},
      {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"node-proxy"},
       "rules":[{"apiGroups":[""],"resources":["nodes/proxy"],"verbs":["get"]}]},
      {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"log-reader-proxy"},
       "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"node-proxy"},
       "subjects":[{"kind":"ServiceAccount","name":"log-reader","namespace":"default"}]}]}"#;
    let out = kubectl_stdin(&kc, &["create", "--validate=false", "-f", "-"], grant);
    assert!(out.status.success(), "{}", stderr(&out));
    let reader = kubectl_ok(&kc, &["create", "token", "log-reader"]);
    // The apiserver allows it once its RBAC cache has the binding (a SubjectAccessReview
    // says so); only then is the agent asked, so no early "no" is kept for 30 s.
    let sar = format!(
        r#"{{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{{"user":"system:serviceaccount:default:log-reader","groups":["system:serviceaccounts","system:authenticated"],"resourceAttributes":{{"verb":"get","resource":"nodes","subresource":"proxy","name":"{node}"}}}}}}"#
    );
    wait_for(
        Duration::from_secs(10),
        "the apiserver to allow log-reader nodes/proxy",
        || async {
            let out = kubectl_stdin(
                &kc,
                &["create", "--validate=false", "-o", "json", "-f", "-"],
                &sar,
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (v["status"]["allowed"] == true).then_some(())
        },
    )
    .await;
    let out = agent_get(w, port, reader.trim(), &path);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("hello from {name} on {node} api 10.96.0.1:443\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_pods_run_as_processes_restart_and_report_status() {
    let w = world(&["node-a", "node-b"]).await;
    let kc = w.api.kubeconfig(0).to_path_buf();

    // Registration: capacity and labels from the machine.
    let node: Node = Api::all(w.client.clone()).get("node-a").await.unwrap();
    let st = node.status.as_ref().unwrap();
    let cpus = std::thread::available_parallelism()
        .unwrap()
        .get()
        .to_string();
    assert_eq!(st.capacity.as_ref().unwrap()["cpu"].0, cpus);
    assert_eq!(
        node.metadata.labels.as_ref().unwrap()["kubernetes.io/os"],
        "linux"
    );
    assert!(
        kubectl_ok(&kc, &["get", "lease", "-n", "kube-node-lease", "node-a"]).contains("node-a")
    );

    // A Deployment: every pod runs, is ready, and its log has its environment (with the
    // `kubernetes` Service's variables, expanded by the agent and by the shell: as with
    // the kubelet, a pod started before that Service exists has none, so it is awaited).
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(w.client.clone(), "default");
    wait_for(
        Duration::from_secs(30),
        "the kubernetes Service",
        || async {
            services
                .get_opt("kubernetes")
                .await
                .ok()
                .flatten()
                .map(|_| ())
        },
    )
    .await;
    apply(&w, WEB);
    let pods = ready_pods(&w.client, "app=web", 3, Duration::from_secs(60)).await;
    let on_a = pods.iter().filter(|p| node_of(p) == "node-a").count();
    assert!(
        on_a >= 1 && on_a <= 2,
        "spread over both nodes: {on_a} on node-a"
    );
    for p in &pods {
        let name = p.metadata.name.clone().unwrap();
        let want = format!("hello from {name} on {} api 10.96.0.1:443", node_of(p));
        wait_for(Duration::from_secs(10), "the log line", || async {
            log_of(&w, p, "c", 0).contains(&want).then_some(())
        })
        .await;
        let st = p.status.as_ref().unwrap();
        assert_eq!(st.phase.as_deref(), Some("Running"));
        assert_eq!(st.pod_ip.as_deref(), Some("127.0.0.1"));
        assert!(status_of(p, "c")
            .unwrap()
            .container_id
            .as_deref()
            .unwrap()
            .starts_with("process://"));
    }

    // A container killed from outside is restarted; its restart count and last state say so.
    let victim = pods[0].clone();
    let i = w
        .agents
        .agents
        .iter()
        .position(|a| a.node == node_of(&victim))
        .unwrap();
    let cid = status_of(&victim, "c")
        .unwrap()
        .container_id
        .clone()
        .unwrap();
    let pid = w.agents.container_pid(i, &cid).expect("pid file");
    kill_group(pid);
    let pods_api: Api<Pod> = Api::namespaced(w.client.clone(), "default");
    let vname = victim.metadata.name.clone().unwrap();
    let restarted = wait_for(
        Duration::from_secs(20),
        "the killed container restarted",
        || async {
            let p = pods_api.get(&vname).await.ok()?;
            let cs = status_of(&p, "c")?.clone();
            (cs.restart_count == 1 && cs.state.as_ref()?.running.is_some() && pod_ready(&p))
                .then_some(cs)
        },
    )
    .await;
    let last = restarted.last_state.unwrap().terminated.unwrap();
    assert_eq!(last.exit_code, 137, "SIGKILL");

    // A container that keeps failing goes into CrashLoopBackOff.
    apply(
        &w,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: crasher, namespace: default}
spec:
  containers:
  - {name: c, image: busybox, command: ["sh", "-c", "echo failing; exit 3"]}
"#,
    );
    let cs = wait_for(Duration::from_secs(30), "CrashLoopBackOff", || async {
        let p = pods_api.get("crasher").await.ok()?;
        let cs = status_of(&p, "c")?.clone();
        let waiting = cs.state.as_ref()?.waiting.as_ref()?;
        (waiting.reason.as_deref() == Some("CrashLoopBackOff")).then_some(cs)
    })
    .await;
    assert!(cs.restart_count >= 1, "{cs:?}");
    assert_eq!(cs.last_state.unwrap().terminated.unwrap().exit_code, 3);

    // restartPolicy Never with an init container: runs once, in order, and succeeds.
    apply(
        &w,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: job, namespace: default}
spec:
  restartPolicy: Never
  initContainers:
  - {name: prepare, image: busybox, command: ["sh", "-c", "echo prepared"]}
  containers:
  - {name: main, image: busybox, command: ["sh", "-c", "echo done"]}
"#,
    );
    let p = wait_for(Duration::from_secs(30), "the job to succeed", || async {
        let p = pods_api.get("job").await.ok()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Succeeded")).then_some(p)
    })
    .await;
    let init = &p
        .status
        .as_ref()
        .unwrap()
        .init_container_statuses
        .as_ref()
        .unwrap()[0];
    let t = init.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    assert!(log_of(&w, &p, "init-prepare", 0).contains(" stdout F prepared"));

    // kubectl logs through the apiserver's pods/log and the agent's port.
    let web0 = pods[1].metadata.name.clone().unwrap();
    let out = kubectl_ok(&kc, &["logs", &web0]);
    assert_eq!(
        out,
        format!(
            "hello from {web0} on {} api 10.96.0.1:443\n",
            node_of(&pods[1])
        )
    );
    assert_eq!(
        kubectl_ok(&kc, &["logs", "job", "-c", "prepare"]),
        "prepared\n"
    );
    let out = kubectl_ok(&kc, &["logs", "crasher", "--previous", "--timestamps"]);
    assert!(
        out.ends_with(" failing\n") && out.starts_with("20"),
        "{out:?}"
    );
    let out = common::k8s::kubectl(&kc, &["logs", "job", "-c", "nope"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("container nope is not valid for pod job"),
        "{out:?}"
    );
    agent_port_is_guarded(&w, &pods[1]).await;
    secure_port_is_guarded(&w).await;

    // Lifecycle hooks: postStart runs after the start, preStop before the stop.
    let marks = tempfile::tempdir().unwrap();
    let (post, pre) = (marks.path().join("post"), marks.path().join("pre"));
    apply(
        &w,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: hooked, namespace: default}}
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
    lifecycle:
      postStart: {{exec: {{command: ["sh", "-c", "echo started > {post}"]}}}}
      preStop: {{exec: {{command: ["sh", "-c", "echo stopping > {pre}"]}}}}
"#,
            post = post.display(),
            pre = pre.display()
        ),
    );
    wait_for(
        Duration::from_secs(30),
        "hooked Running with its postStart done",
        || async {
            let p = pods_api.get("hooked").await.ok()?;
            (p.status?.phase.as_deref() == Some("Running") && post.exists()).then_some(())
        },
    )
    .await;
    assert!(!pre.exists());
    kubectl_ok(&kc, &["delete", "pod", "hooked", "--wait=false"]);
    wait_for(
        Duration::from_secs(30),
        "hooked gone after its preStop",
        || async {
            pods_api
                .get_opt("hooked")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert_eq!(std::fs::read_to_string(&pre).unwrap(), "stopping\n");

    // An HTTP server with an httpGet readiness probe, behind a Service.
    let port = common::free_port();
    apply(
        &w,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: http, namespace: default, labels: {{app: http}}}}
spec:
  containers:
  - name: s
    image: python
    command: ["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
    ports: [{{name: web, containerPort: {port}}}]
    readinessProbe: {{httpGet: {{path: /, port: web}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: http, namespace: default}}
spec:
  selector: {{app: http}}
  ports: [{{port: 80, targetPort: web}}]
"#
        ),
    );
    ready_pods(&w.client, "app=http", 1, Duration::from_secs(30)).await;
    let eps: Api<Endpoints> = Api::namespaced(w.client.clone(), "default");
    wait_for(
        Duration::from_secs(20),
        "the Service's endpoints",
        || async {
            let e = eps.get_opt("http").await.ok().flatten()?;
            let s = e.subsets?.into_iter().next()?;
            let addr = s.addresses?.into_iter().next()?;
            let p = s.ports?.into_iter().next()?;
            (addr.ip == "127.0.0.1" && p.port == i32::from(port)).then_some(())
        },
    )
    .await;

    // Deleting the Deployment stops its processes and removes its pods.
    let web = pods_api
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    let pids: Vec<i32> = web
        .iter()
        .map(|p| {
            let i = w
                .agents
                .agents
                .iter()
                .position(|a| a.node == node_of(p))
                .unwrap();
            let cid = status_of(p, "c").unwrap().container_id.clone().unwrap();
            w.agents.container_pid(i, &cid).expect("pid file")
        })
        .collect();
    assert_eq!(pids.len(), 3);
    kubectl_ok(&kc, &["delete", "deployment", "web"]);
    wait_for(Duration::from_secs(40), "the web pods gone", || async {
        let l = pods_api
            .list(&ListParams::default().labels("app=web"))
            .await
            .ok()?;
        l.items.is_empty().then_some(())
    })
    .await;
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} of a deleted pod still runs"
        );
    }
    workloads::jobs(&w, &kc).await;
    disruption::drain(&w, &kc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_restarted_agent_adopts_and_dead_node_is_evacuated() {
    let mut w = world(&["node-a", "node-b"]).await;
    apply(&w, WEB);
    let pods = ready_pods(&w.client, "app=web", 3, Duration::from_secs(60)).await;
    let ids = |pods: &[Pod]| -> Vec<(String, String, i32)> {
        let mut v: Vec<_> = pods
            .iter()
            .map(|p| {
                let cs = status_of(p, "c").unwrap();
                (
                    p.metadata.name.clone().unwrap(),
                    cs.container_id.clone().unwrap(),
                    cs.restart_count,
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = ids(&pods);
    let procs = w.agents.running_container_pids();

    // An agent killed and started again adopts what runs: same containers, nothing new.
    w.agents.kill(0);
    w.agents.spawn(0);
    let nodes_api: Api<Node> = Api::all(w.client.clone());
    wait_for(Duration::from_secs(20), "node-a reports again", || async {
        let l = w.agents.log_tail(0, 50);
        l.matches("node already registered")
            .count()
            .ge(&1)
            .then_some(())
    })
    .await;
    // Give the restarted agent a few status rounds: nothing may change.
    let pods_api: Api<Pod> = Api::namespaced(w.client.clone(), "default");
    for _ in 0..3 {
        ready_pods(&w.client, "app=web", 3, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let after = ids(&pods_api
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items);
    assert_eq!(before, after, "same containers, no restarts");
    let mut procs_after = w.agents.running_container_pids();
    let mut procs = procs;
    procs.sort();
    procs_after.sort();
    assert_eq!(procs, procs_after, "no process started twice");

    // node-b's agent freezes (as if cut off): the node goes unknown, its pods are marked
    // not ready at once, and those that do not tolerate it for long come back on node-a.
    apply(&w, PINNED);
    let pinned_ready = |want: bool| {
        let api = pods_api.clone();
        async move {
            let p = api.get("pinned").await.ok()?;
            (pod_ready(&p) == want).then_some(p)
        }
    };
    wait_for(Duration::from_secs(30), "pinned ready", || {
        pinned_ready(true)
    })
    .await;
    let b = w
        .agents
        .agents
        .iter()
        .position(|a| a.node == "node-b")
        .unwrap();
    w.agents.signal(b, "STOP");
    wait_for(Duration::from_secs(30), "node-b Unknown", || async {
        let n = nodes_api.get("node-b").await.ok()?;
        (ready_condition(&n)? == "Unknown").then_some(())
    })
    .await;
    let p = wait_for(Duration::from_secs(20), "pinned marked not ready", || {
        pinned_ready(false)
    })
    .await;
    let cond = p
        .status
        .and_then(|s| s.conditions)
        .and_then(|cs| cs.into_iter().find(|c| c.type_ == "Ready"))
        .unwrap();
    assert_eq!(cond.reason.as_deref(), Some("NodeNotReady"));
    let pods = wait_for(
        Duration::from_secs(60),
        "3 ready web pods on node-a",
        || async {
            let pods: Vec<Pod> = pods_api
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            (pods.len() == 3 && pods.iter().all(|p| pod_ready(p) && node_of(p) == "node-a"))
                .then_some(pods)
        },
    )
    .await;
    assert_eq!(pods.len(), 3);

    // Back in touch, the agent says again that what runs on its node is ready.
    w.agents.signal(b, "CONT");
    wait_for(Duration::from_secs(30), "pinned ready again", || {
        pinned_ready(true)
    })
    .await;
}

/// A pod on node-b that stays through an outage of its node.
const PINNED: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: pinned, namespace: default}
spec:
  nodeName: node-b
  tolerations:
  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute}
  - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute}
  containers:
  - {name: c, image: busybox, command: ["sleep", "600"]}
"#;

fn docker_web(replicas: u32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: default}}
spec:
  replicas: {replicas}
  strategy: {{rollingUpdate: {{maxUnavailable: 1, maxSurge: 1}}}}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: c
        image: {image}
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "mkdir -p /www && echo $(POD_NAME) $(VERSION) > /www/index.html && exec httpd -f -p 80 -h /www"]
        env:
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        - {{name: VERSION, value: v1}}
        ports: [{{name: http, containerPort: 80}}]
        readinessProbe: {{httpGet: {{path: /, port: http}}, periodSeconds: 1}}
        resources: {{limits: {{cpu: 200m, memory: 64Mi}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: http}}]
"#,
        image = common::images::BUSYBOX
    )
}

/// The first `n` lines a streaming kubectl command prints, read within `within`; the
/// command is killed afterwards.
fn follow_lines(
    kubeconfig: &std::path::Path,
    args: &[&str],
    n: usize,
    within: Duration,
) -> Vec<String> {
    use std::io::BufRead;
    let mut child = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => out.push(l),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_docker_deployment_serves_scales_rolls_and_restarts() {
    let a = format!("dk{}-a", std::process::id());
    let b = format!("dk{}-b", std::process::id());
    let w = world_with(&[&a, &b], true).await;
    let kc = w.api.kubeconfig(0).to_path_buf();
    apply(&w, &docker_web(3));
    let pods = ready_pods(&w.client, "app=web", 3, Duration::from_secs(90)).await;
    let nodes: std::collections::BTreeSet<String> = pods.iter().map(node_of).collect();
    assert_eq!(nodes.len(), 2, "pods on both nodes");

    // Each node's pods get addresses from its podCIDR.
    let nodes_api: Api<Node> = Api::all(w.client.clone());
    for p in &pods {
        let node = nodes_api.get(&node_of(p)).await.unwrap();
        let cidr: agent::podnet::plan::Cidr = node
            .spec
            .and_then(|s| s.pod_cidr)
            .expect("the node has a podCIDR")
            .parse()
            .unwrap();
        let ip = p.status.as_ref().unwrap().pod_ip.clone().unwrap();
        assert!(cidr.contains_ip(ip.parse().unwrap()), "{ip} not in {cidr}");
    }

    // A pod on one node reaches a pod on the other by pod IP, and is seen there with its
    // own address (no NAT): a CGI script of busybox httpd in the server pod answers the
    // client's address.
    let on_a = pods.iter().find(|p| node_of(p) == a).unwrap();
    let on_b = pods.iter().find(|p| node_of(p) == b).unwrap();
    let cid = |p: &Pod| {
        status_of(p, "c")
            .unwrap()
            .container_id
            .clone()
            .unwrap()
            .trim_start_matches("docker://")
            .to_string()
    };
    let ip_of = |p: &Pod| p.status.as_ref().unwrap().pod_ip.clone().unwrap();
    let docker_exec = |id: &str, cmd: &str| {
        std::process::Command::new("docker")
            .args(["exec", id, "sh", "-c", cmd])
            .output()
            .unwrap()
    };
    let out = docker_exec(
        &cid(on_b),
        r#"mkdir -p /www/cgi-bin && printf '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "$REMOTE_ADDR"\n' > /www/cgi-bin/peer && chmod +x /www/cgi-bin/peer"#,
    );
    assert!(out.status.success(), "{out:?}");
    // (busybox nc: this static busybox's wget crashes inside containers here.)
    let get = |from: &Pod, ip: String, path: &str| {
        docker_exec(
            &cid(from),
            &format!("printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 80"),
        )
    };
    let seen = wait_for(
        Duration::from_secs(20),
        "a pod on node a to reach a pod on node b",
        || async {
            let out = get(on_a, ip_of(on_b), "/cgi-bin/peer");
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let body = text
                .split("\r\n\r\n")
                .nth(1)
                .or_else(|| text.split("\n\n").nth(1))?;
            // httpd listens on IPv6 and says `[::ffff:10.X.Y.Z]`.
            let addr = body.trim().trim_start_matches('[').trim_end_matches(']');
            let addr = addr.trim_start_matches("::ffff:").to_string();
            (out.status.success() && !addr.is_empty()).then_some(addr)
        },
    )
    .await;
    assert_eq!(seen, ip_of(on_a), "the source address is the client pod's");
    // And back.
    let back = get(on_b, ip_of(on_a), "/");
    assert!(
        String::from_utf8_lossy(&back.stdout).contains(on_a.metadata.name.as_deref().unwrap()),
        "{back:?}"
    );

    // Each pod answers at its own IP with its own name; the Service lists every pod.
    let mut ips = Vec::new();
    for p in &pods {
        let ip = p.status.as_ref().unwrap().pod_ip.clone().unwrap();
        let body = http_get(&ip, 80).await.unwrap_or_default();
        assert!(
            body.contains(p.metadata.name.as_deref().unwrap()),
            "{ip}: {body}"
        );
        assert!(status_of(p, "c")
            .unwrap()
            .container_id
            .as_deref()
            .unwrap()
            .starts_with("docker://"));
        ips.push(ip);
    }
    ips.sort();
    let eps: Api<Endpoints> = Api::namespaced(w.client.clone(), "default");
    wait_for(
        Duration::from_secs(20),
        "the endpoints of every pod",
        || async {
            let e = eps.get_opt("web").await.ok().flatten()?;
            let s = e.subsets?.into_iter().next()?;
            let mut got: Vec<String> = s.addresses?.into_iter().map(|a| a.ip).collect();
            got.sort();
            (got == ips).then_some(())
        },
    )
    .await;

    // Volumes: a ConfigMap and a Secret as files, an emptyDir shared by two containers.
    apply(
        &w,
        &format!(
            r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: site, namespace: default}}
data: {{greeting: "hello from a configmap"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: creds, namespace: default}}
stringData: {{token: s3cret}}
---
apiVersion: v1
kind: Pod
metadata: {{name: vols, namespace: default, labels: {{app: vols}}}}
spec:
  volumes:
  - {{name: www, emptyDir: {{}}}}
  - {{name: cfg, configMap: {{name: site}}}}
  - {{name: creds, secret: {{secretName: creds}}}}
  - {{name: mem, emptyDir: {{medium: Memory, sizeLimit: 1Mi}}}}
  initContainers:
  - name: render
    image: {image}
    command: ["sh", "-c", "cat /cfg/greeting /creds/token > /www/index.html; grep -q ' /creds tmpfs ' /proc/mounts && grep -q ' /mem tmpfs ' /proc/mounts && echo memory-backed >> /www/index.html"]
    volumeMounts: [{{name: www, mountPath: /www}}, {{name: cfg, mountPath: /cfg}}, {{name: creds, mountPath: /creds}}, {{name: mem, mountPath: /mem}}]
  containers:
  - name: serve
    image: {image}
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    volumeMounts: [{{name: www, mountPath: /www, readOnly: true}}]
    readinessProbe: {{tcpSocket: {{port: 80}}, periodSeconds: 1}}
"#,
            image = common::images::BUSYBOX
        ),
    );
    let vols = ready_pods(&w.client, "app=vols", 1, Duration::from_secs(30)).await;
    let ip = vols[0].status.as_ref().unwrap().pod_ip.clone().unwrap();
    let body = http_get(&ip, 80).await.unwrap_or_default();
    assert!(
        body.contains("hello from a configmap") && body.contains("s3cret"),
        "{body}"
    );
    // The Secret and the Memory emptyDir are tmpfs mounts, inside the container and on
    // the host, and the host's mounts go with the pod.
    assert!(body.contains("memory-backed"), "{body}");
    let uid = vols[0].metadata.uid.clone().unwrap();
    let host_mounts = || {
        std::fs::read_to_string("/proc/self/mounts")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&uid) && l.starts_with("tmpfs "))
            .count()
    };
    assert_eq!(host_mounts(), 2);
    kubectl_ok(&kc, &["delete", "pod", "vols", "--wait=false"]);
    wait_for(
        Duration::from_secs(60),
        "the pod's tmpfs mounts to go",
        || async { (host_mounts() == 0).then_some(()) },
    )
    .await;

    // `kubectl logs -f` streams while the container writes.
    apply(
        &w,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: ticker, namespace: default, labels: {{app: ticker}}}}
spec:
  containers:
  - {{name: t, image: {image}, command: ["sh", "-c", "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.2; done"]}}
"#,
            image = common::images::BUSYBOX
        ),
    );
    ready_pods(&w.client, "app=ticker", 1, Duration::from_secs(30)).await;
    let lines = follow_lines(&kc, &["logs", "-f", "ticker"], 5, Duration::from_secs(20));
    assert_eq!(lines.len(), 5, "{lines:?}");

    // kubectl exec and port-forward.
    streams::check(&w).await;
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l, &format!("tick {i}"));
    }
    let out = kubectl_ok(&kc, &["logs", "--tail=1", "ticker"]);
    assert!(
        out.starts_with("tick ") && out.lines().count() == 1,
        "{out:?}"
    );

    // Scale to 5 (`kubectl scale` needs the scale subresource, which is issue 8's).
    kubectl_ok(
        &kc,
        &[
            "patch",
            "deployment/web",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":5}}"#,
        ],
    );
    ready_pods(&w.client, "app=web", 5, Duration::from_secs(60)).await;

    // A rolling update of an env var replaces every pod while at most one is unavailable.
    let old: std::collections::BTreeSet<String> =
        Api::<Pod>::namespaced(w.client.clone(), "default")
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
    // (`kubectl set env` sends a strategic merge patch with lists, issue 8's; a JSON
    // patch changes the same field.)
    kubectl_ok(
        &kc,
        &[
            "patch",
            "deployment/web",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/template/spec/containers/0/env/1/value","value":"v2"}]"#,
        ],
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (client, stop) = (w.client.clone(), stop.clone());
        tokio::spawn(async move {
            let api: Api<Pod> = Api::namespaced(client, "default");
            let mut min_ready = usize::MAX;
            for _ in 0..1200 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                if let Ok(l) = api.list(&ListParams::default().labels("app=web")).await {
                    let ready = l
                        .items
                        .iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p))
                        .count();
                    min_ready = min_ready.min(ready);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            min_ready
        })
    };
    let out = common::k8s::kubectl(
        &kc,
        &["rollout", "status", "deployment/web", "--timeout=120s"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let min_ready = watcher.await.unwrap();
    assert!(
        min_ready >= 4,
        "at most one of 5 unavailable during the rollout: {min_ready} ready"
    );
    let new = ready_pods(&w.client, "app=web", 5, Duration::from_secs(30)).await;
    for p in &new {
        assert!(
            !old.contains(p.metadata.name.as_deref().unwrap()),
            "every pod replaced"
        );
        let ip = p.status.as_ref().unwrap().pod_ip.clone().unwrap();
        let body = http_get(&ip, 80).await.unwrap_or_default();
        assert!(body.contains(" v2"), "{body}");
    }

    // A container killed from outside is restarted in place.
    let victim = &new[0];
    let cid = status_of(victim, "c")
        .unwrap()
        .container_id
        .clone()
        .unwrap();
    let out = std::process::Command::new("docker")
        .args(["kill", cid.trim_start_matches("docker://")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pods_api: Api<Pod> = Api::namespaced(w.client.clone(), "default");
    let vname = victim.metadata.name.clone().unwrap();
    wait_for(
        Duration::from_secs(30),
        "the killed container restarted",
        || async {
            let p = pods_api.get(&vname).await.ok()?;
            let cs = status_of(&p, "c")?.clone();
            (cs.restart_count == 1 && pod_ready(&p)).then_some(())
        },
    )
    .await;

    // Deleting the Deployment removes every container it had.
    kubectl_ok(&kc, &["delete", "deployment", "web"]);
    wait_for(
        Duration::from_secs(60),
        "no web containers left",
        || async {
            let l = pods_api
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            let out = std::process::Command::new("docker")
                .args([
                    "ps",
                    "-aq",
                    "--filter",
                    &format!("label=flotilla.node={a}"),
                    "--filter",
                    "label=io.kubernetes.container.name=c",
                ])
                .output()
                .ok()?;
            (l.items.is_empty() && out.stdout.is_empty()).then_some(())
        },
    )
    .await;
    storage::claims(&w, &kc).await;
    storage::provisioned(&w, &kc).await;
    usage::check(&w, &kc).await;
}

/// The output of `kubectl logs <args>` once it has `want` in it.
async fn logs_with(kc: &std::path::Path, args: &[&str], want: &str) -> String {
    wait_for(
        Duration::from_secs(60),
        &format!("kubectl logs {args:?} to show {want:?}"),
        || async {
            let mut a = vec!["logs"];
            a.extend_from_slice(args);
            let out = common::k8s::kubectl(kc, &a);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            text.contains(want).then_some(text)
        },
    )
    .await
}

/// Pods' DNS as the kubelet's (`agent/src/dns.rs`): with `--cluster-dns` and
/// `--cluster-domain`, a ClusterFirst pod's containers (init and app) see the cluster
/// nameserver, the cluster search domains before the host's, `ndots:5`, their hostname and
/// the kubelet's /etc/hosts; a Default pod sees `--resolv-conf`; a None pod only its
/// dnsConfig.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t35_docker_pod_dns() {
    let n = format!("dns{}", std::process::id());
    let host = tempfile::tempdir().unwrap();
    let resolv = host.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "# the test's host\nnameserver 10.255.0.1\nsearch host.example\noptions timeout:3\n",
    )
    .unwrap();
    let resolv = resolv.display().to_string();
    let w = world_args(
        &[&n],
        true,
        &[
            "--cluster-dns",
            "10.96.0.10",
            "--cluster-domain",
            "cluster.local",
            "--resolv-conf",
            &resolv,
        ],
    )
    .await;
    let kc = w.api.kubeconfig(0).to_path_buf();
    let show = "cat /etc/resolv.conf; echo ---; cat /etc/hosts; echo ---; hostname; echo end";
    apply(
        &w,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: cf, namespace: default, labels: {{app: dns}}}}
spec:
  hostname: h1
  subdomain: sub
  hostAliases: [{{ip: 10.1.2.3, hostnames: [alias.example]}}]
  initContainers:
  - {{name: init, image: {image}, command: ["sh", "-c", "cat /etc/resolv.conf; echo end"]}}
  containers:
  - {{name: c, image: {image}, command: ["sh", "-c", "{show}; exec sleep 600"],
     securityContext: {{runAsUser: 1000}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: dflt, namespace: default, labels: {{app: dns}}}}
spec:
  dnsPolicy: Default
  containers:
  - {{name: c, image: {image}, command: ["sh", "-c", "{show}; exec sleep 600"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: none, namespace: default, labels: {{app: dns}}}}
spec:
  dnsPolicy: None
  dnsConfig:
    nameservers: [1.1.1.1]
    searches: [my.example]
    options: [{{name: ndots, value: "2"}}, {{name: edns0}}]
  containers:
  - {{name: c, image: {image}, command: ["sh", "-c", "{show}; exec sleep 600"]}}
"#,
            image = common::images::BUSYBOX
        ),
    );
    let pods = ready_pods(&w.client, "app=dns", 3, Duration::from_secs(90)).await;
    let ip = |name: &str| {
        pods.iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .and_then(|p| p.status.as_ref()?.pod_ip.clone())
            .unwrap()
    };
    let cluster = "search default.svc.cluster.local svc.cluster.local cluster.local \
                   host.example\nnameserver 10.96.0.10\noptions ndots:5\n";
    let out = logs_with(&kc, &["cf", "-c", "init"], "end").await;
    assert_eq!(out, format!("{cluster}end\n"));
    // A non-root user reads them too.
    let out = logs_with(&kc, &["cf", "-c", "c"], "end").await;
    let parts: Vec<&str> = out.split("---\n").collect();
    assert_eq!(parts[0], cluster, "{out}");
    assert!(
        parts[1].starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"),
        "{out}"
    );
    assert!(
        parts[1].contains(&format!(
            "\n{}\th1.sub.default.svc.cluster.local\th1\n",
            ip("cf")
        )),
        "{out}"
    );
    assert!(parts[1].ends_with("\n10.1.2.3\talias.example\n"), "{out}");
    assert_eq!(parts[2], "h1\nend\n", "{out}");

    let out = logs_with(&kc, &["dflt"], "end").await;
    let parts: Vec<&str> = out.split("---\n").collect();
    assert_eq!(
        parts[0], "search host.example\nnameserver 10.255.0.1\noptions timeout:3\n",
        "{out}"
    );
    assert!(
        parts[1].contains(&format!("\n{}\tdflt\n", ip("dflt"))),
        "{out}"
    );
    assert_eq!(parts[2], "dflt\nend\n", "{out}");

    let out = logs_with(&kc, &["none"], "end").await;
    assert!(
        out.starts_with("search my.example\nnameserver 1.1.1.1\noptions ndots:2 edns0\n---"),
        "{out}"
    );
}
