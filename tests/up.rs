//! The README's own command, `flotilla up --masters 3 --agents 2` (what `scripts/run
//! --masters 3 --agents 2` runs), end to end with its default ports and data directory:
//! a Deployment of a locally built busybox serving HTTP and its Service run on both nodes
//! and answer; `kubectl logs` works; a second `flotilla up` on the same directory is
//! refused by name; Ctrl-C stops every process and container within seconds although
//! pods ignore SIGTERM; running it again resumes the same cluster with its objects; and
//! when `flotilla up` itself is killed, its components die with it. Service networking
//! (DNS, the proxies, the pod network) is checked on the same cluster (`up/network.rs`).

#[path = "up/autoscaling.rs"]
mod autoscaling;
mod common;
#[path = "up/logging.rs"]
mod logging;
#[path = "up/monitoring.rs"]
mod monitoring;
#[path = "up/network.rs"]
mod network;
#[path = "up/workloads.rs"]
mod workloads;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::agents::{http_get, pod_ready};
use common::k8s::{kubectl_ok, kubectl_stdin};
use common::wait_for;
use k8s_openapi::api::core::v1::{Endpoints, Pod};
use kube::api::{Api, ListParams};

struct Up {
    /// The working directory `flotilla up` runs in; its data is `./flotilla-data`.
    cwd: PathBuf,
    data: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    out: PathBuf,
}

impl Up {
    fn start(&mut self) {
        let out = std::fs::File::create(&self.out).unwrap();
        self.child = Some(
            Command::new(common::BIN)
                .arg("up")
                .args(&self.args)
                .current_dir(&self.cwd)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap(),
        );
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    async fn wait_up(&self) {
        wait_for(Duration::from_secs(120), "the cluster to be up", || async {
            let o = self.output();
            assert!(!o.contains("Error"), "{o}");
            o.contains("The cluster is up").then_some(())
        })
        .await;
    }

    /// Ctrl-C, and the exit status once it is down.
    fn interrupt(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-INT", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "up did not stop: {}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.data.join("kubeconfig")
    }
}

/// Processes whose command line names `dir` (the cluster's components).
fn processes_under(dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(&needle) {
            out.push(pid);
        }
    }
    out
}

/// The docker containers of this cluster's agents (by the owner label they carry).
fn containers_of(data: &Path, nodes: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for n in nodes {
        let root = data.join("agents").join(n);
        let root = root.canonicalize().unwrap_or(root);
        let owner = format!(
            "{:016x}",
            agent::node_state::fnv(root.display().to_string().as_bytes())
        );
        let out = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=flotilla.owner={owner}"),
            ])
            .output()
            .unwrap();
        ids.extend(
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(String::from),
        );
    }
    ids
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in processes_under(&self.data) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        // A killed `flotilla up` leaves its proxies' tables; the agents always leave the
        // pod network (networks, masquerade tables, DOCKER-USER rules) for their pods.
        for t in ["flotilla-proxy-0", "flotilla-proxy-1"] {
            let _ = Command::new("nft")
                .args(["delete", "table", "ip", t])
                .output();
        }
        let ids = containers_of(&self.data, &["flotilla-0", "flotilla-1"]);
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
        common::images::remove_pod_network("flotilla", "10.244.0.0/16");
        if std::thread::panicking() {
            eprintln!("---- flotilla up printed ----\n{}", self.output());
            if let Ok(rd) = std::fs::read_dir(self.data.join("logs")) {
                for e in rd.flatten() {
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    eprintln!(
                        "---- {} ----\n{}",
                        e.path().display(),
                        lines[lines.len().saturating_sub(40)..].join("\n")
                    );
                }
            }
        }
    }
}

async fn ready_web(client: &kube::Client) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_for(Duration::from_secs(90), "3 ready web pods", || async {
        let pods: Vec<Pod> = api
            .list(&ListParams::default().labels("app=web"))
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        (pods.len() == 3 && pods.iter().all(pod_ready)).then_some(pods)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_up_three_masters_two_agents_stop_and_resume() {
    common::images::ensure_busybox().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("flotilla-data");
    // The README's ports: kvstore 2379/2380, 12379/12380, 22379/22380 (and +2 to +6 for
    // each master's scheduler, controller-manager, DNS, DNS metrics and kvstore
    // metrics), apiservers 6443-6445, agents 10250-10251, proxies 10249-10248. They must
    // be free on the machine that runs this test.
    let mut defaults = vec![6443, 6444, 6445, 10250, 10251, 10249, 10248];
    for m in 0..3 {
        defaults.extend((0..7).map(|j| 2379 + 10_000 * m + j));
    }
    for p in defaults {
        assert!(
            TcpListener::bind(("127.0.0.1", p)).is_ok(),
            "port {p}, one of flotilla up's defaults, is taken on this machine"
        );
    }
    // The agents ship their containers' logs to a Loki stand-in.
    let mut loki = common::loki::Loki::start(common::free_port()).await;
    let mut up = Up {
        cwd: dir.path().to_path_buf(),
        data: data.clone(),
        args: [
            "--masters",
            "3",
            "--agents",
            "2",
            "--log-sink",
            &format!("loki={}", loki.url()),
        ]
        .map(String::from)
        .to_vec(),
        child: None,
        out: dir.path().join("up.out"),
    };
    up.start();
    up.wait_up().await;
    let out = up.output();
    assert!(
        out.contains("Starting a cluster") && out.contains("kubectl get nodes"),
        "{out}"
    );
    let kc = up.kubeconfig();
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kc).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap(),
    )
    .unwrap();

    let manifest = format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: default}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      # Spread over both nodes on purpose: the scheduler has no system-default spreading
      # (kube's default topology constraints), so ties between nodes are random.
      topologySpreadConstraints:
      - {{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {{matchLabels: {{app: web}}}}}}
      containers:
      - name: c
        image: {image}
        command: ["sh", "-c", "echo starting $(POD_NAME); mkdir -p /www && echo $(POD_NAME) > /www/index.html && exec httpd -f -p 80 -h /www"]
        env: [{{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}]
        ports: [{{containerPort: 80}}]
        readinessProbe: {{httpGet: {{path: /, port: 80}}, periodSeconds: 1}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: stubborn, namespace: default}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: stubborn}}}}
  template:
    metadata: {{labels: {{app: stubborn}}}}
    spec:
      containers:
      - name: c
        image: {image}
        command: ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80}}]
"#,
        image = common::images::BUSYBOX
    );
    let o = kubectl_stdin(&kc, &["apply", "-f", "-"], &manifest);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pods = ready_web(&client).await;
    let nodes: std::collections::BTreeSet<String> = pods
        .iter()
        .map(|p| p.spec.as_ref().unwrap().node_name.clone().unwrap())
        .collect();
    assert_eq!(nodes.len(), 2, "both nodes run pods");
    let mut ips: Vec<String> = pods
        .iter()
        .map(|p| p.status.as_ref().unwrap().pod_ip.clone().unwrap())
        .collect();
    ips.sort();
    for (p, ip) in pods.iter().zip(
        pods.iter()
            .map(|p| p.status.as_ref().unwrap().pod_ip.clone().unwrap()),
    ) {
        let body = http_get(&ip, 80).await.unwrap_or_default();
        assert!(
            body.contains(p.metadata.name.as_deref().unwrap()),
            "{ip}: {body}"
        );
    }
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    wait_for(
        Duration::from_secs(20),
        "the Service's endpoints",
        || async {
            let s = eps
                .get_opt("web")
                .await
                .ok()
                .flatten()?
                .subsets?
                .into_iter()
                .next()?;
            let mut got: Vec<String> = s.addresses?.into_iter().map(|a| a.ip).collect();
            got.sort();
            (got == ips).then_some(())
        },
    )
    .await;
    network::check(&kc, &client, &pods, common::images::BUSYBOX).await;
    workloads::check(&kc, &client, &data, common::images::BUSYBOX).await;
    autoscaling::check(&kc, &client, common::images::BUSYBOX).await;
    monitoring::check(&data, &kc);
    monitoring::prometheus(&data, dir.path());
    logging::check(&kc, &data, &client, &mut loki, common::images::BUSYBOX).await;
    let name = pods[0].metadata.name.clone().unwrap();
    assert_eq!(
        kubectl_ok(&kc, &["logs", &name]),
        format!("starting {name}\n")
    );
    // The controllers that made and published those pods acted as their own accounts
    // (`--use-service-account-credentials`), the controller-manager's identity having
    // only kube's narrow `system:kube-controller-manager` role.
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
        "endpoint-controller",
        "endpointslice-controller",
    ] {
        assert!(
            accounts.split_whitespace().any(|n| n == a),
            "{a} in {accounts}"
        );
    }

    // Two pods that ignore SIGTERM and have the default 30 s of grace.
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_for(
        Duration::from_secs(60),
        "2 running stubborn pods",
        || async {
            let pods = pods_api
                .list(&ListParams::default().labels("app=stubborn"))
                .await
                .ok()?
                .items;
            (pods.len() == 2 && pods.iter().all(pod_ready)).then_some(())
        },
    )
    .await;

    // A second `flotilla up` on the same directory is refused by name, touching nothing.
    let mut second = Command::new(common::BIN)
        .arg("up")
        .args(&up.args)
        .current_dir(&up.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while second.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "a second flotilla up kept running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = second.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        said.contains("is in use by another `flotilla up`")
            && !said.contains("Address already in use"),
        "{said}"
    );

    // Ctrl-C: everything stops, containers included, without waiting out any pod's grace
    // (five pods, two of which ignore SIGTERM, took over a minute when stopped one by one).
    let stopping = Instant::now();
    let st = up.interrupt();
    let took = stopping.elapsed();
    assert!(st.success(), "{st:?}: {}", up.output());
    assert!(
        took < Duration::from_secs(25),
        "stopping took {took:?}: {}",
        up.output()
    );
    assert!(up.output().contains("Stopped in"), "{}", up.output());
    assert!(processes_under(&data).is_empty(), "every component exited");
    let left = Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            "label=io.kubernetes.pod.namespace=default",
        ])
        .output()
        .unwrap();
    let running: Vec<String> = String::from_utf8_lossy(&left.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    let ours = containers_of(&data, &["flotilla-0", "flotilla-1"]);
    assert!(
        !running
            .iter()
            .any(|r| ours.iter().any(|o| o.starts_with(r.as_str()))),
        "no container of the cluster runs"
    );

    // Again: the same cluster, the same pods, running again.
    up.start();
    up.wait_up().await;
    assert!(
        up.output().contains("Resuming a cluster"),
        "{}",
        up.output()
    );
    let again = ready_web(&client).await;
    let names = |ps: &[Pod]| {
        let mut v: Vec<String> = ps
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&pods), names(&again));
    for p in &again {
        let ip = p.status.as_ref().unwrap().pod_ip.clone().unwrap();
        let body = http_get(&ip, 80).await.unwrap_or_default();
        assert!(
            body.contains(p.metadata.name.as_deref().unwrap()),
            "{ip}: {body}"
        );
    }

    // `flotilla up` killed outright: its components die with it, nothing holds a port.
    let mut c = up.child.take().unwrap();
    c.kill().unwrap();
    c.wait().unwrap();
    wait_for(
        Duration::from_secs(30),
        "every component to exit with flotilla up",
        || async { processes_under(&data).is_empty().then_some(()) },
    )
    .await;
    wait_for(
        Duration::from_secs(10),
        "the apiserver's port to be free",
        || async { TcpListener::bind(("127.0.0.1", 6443)).is_ok().then_some(()) },
    )
    .await;
}
