//! The HA deployment of `deploy/compose.yaml`, from scratch, as the README runs it, and
//! its day-2 operations, each as the README gives it. One deployment serves every step,
//! in order:
//!
//! 1. `scripts/image`, `docker-compose up -d`, kubectl with the admin kubeconfig that
//!    lands next to the compose file: both agents' Nodes Ready, a Deployment running on
//!    them, the three kvstore members answering etcdctl on the published port;
//! 2. a backup (`etcdctl snapshot save`);
//! 3. a rolling restart of the masters under load (`scripts/deploy-roll`): every write
//!    acknowledged through the front is there afterwards;
//! 4. a rolling upgrade of every host to another image (`FLOTILLA_IMAGE=… deploy-roll`),
//!    under load, the same check;
//! 5. a dead master replaced with an empty one (`etcdctl member remove`/`add`, then the
//!    master started with an empty volume joins by itself);
//! 6. a third agent added (`add-agent.yaml`): init runs again, nothing else restarts;
//! 7. disaster recovery: everything removed but the credentials, a fresh deployment
//!    restored from the backup serves the objects of the backup.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::compose::Compose;
use common::k8s::{kubectl, kubectl_ok, kubectl_stdin};
use common::wait_for;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};

/// The names of the Nodes whose Ready condition is True.
fn ready_nodes(kubeconfig: &Path) -> Option<Vec<String>> {
    let out = kubectl(kubeconfig, &["get", "nodes", "-o", "json"]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let mut ready: Vec<String> = v["items"]
        .as_array()?
        .iter()
        .filter(|n| {
            n["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    ready.sort();
    Some(ready)
}

/// Each node Lease's renewTime.
fn lease_renewals(kubeconfig: &Path) -> Option<std::collections::BTreeMap<String, String>> {
    let out = kubectl(
        kubeconfig,
        &["get", "leases", "-n", "kube-node-lease", "-o", "json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(
        v["items"]
            .as_array()?
            .iter()
            .filter_map(|l| {
                Some((
                    l["metadata"]["name"].as_str()?.to_string(),
                    l["spec"]["renewTime"].as_str()?.to_string(),
                ))
            })
            .collect(),
    )
}

async fn wait_nodes(c: &Compose, want: &[&str]) {
    let kc = c.kubeconfig();
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    let what = format!("the Nodes {want:?} Ready");
    wait_for(Duration::from_secs(240), &what, || {
        let (kc, want) = (kc.clone(), want.clone());
        async move { ready_nodes(&kc).filter(|n| *n == want) }
    })
    .await;
}

/// etcdctl as the kvstore's root, at `endpoints` (default: m0's published port).
fn etcdctl(c: &Compose, endpoints: Option<String>, args: &[&str]) -> String {
    match try_etcdctl(c, endpoints, args) {
        Ok(text) => text,
        Err(e) => panic!("etcdctl {args:?}: {e}"),
    }
}

/// etcdctl's output, or its output and errors when it fails.
fn try_etcdctl(c: &Compose, endpoints: Option<String>, args: &[&str]) -> Result<String, String> {
    let d = c.cluster().join("cluster/etcdctl");
    let endpoints = endpoints.unwrap_or(format!("https://127.0.0.1:{}", c.etcd_port));
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg(format!("--cacert={}", d.join("ca.crt").display()))
        .arg(format!("--cert={}", d.join("admin.crt").display()))
        .arg(format!("--key={}", d.join("admin.key").display()))
        .args(args)
        .output()
        .expect("etcdctl is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

async fn admin_client(c: &Compose) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(c.kubeconfig()).expect("kubeconfig");
    let mut cfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("config");
    cfg.connect_timeout = Some(Duration::from_secs(2));
    cfg.read_timeout = Some(Duration::from_secs(5));
    kube::Client::try_from(cfg).expect("client")
}

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"test": "deploy"}},
        "data": {"k": name},
    }))
    .unwrap()
}

/// Writes through the front while it runs: one create at a time, each acknowledged
/// name kept.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    failed: Arc<Mutex<u32>>,
    /// The longest time between two acknowledged writes.
    longest_gap: Arc<Mutex<Duration>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(client: kube::Client, prefix: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(0));
        let longest_gap = Arc::new(Mutex::new(Duration::ZERO));
        let (s, a, f, g) = (
            stop.clone(),
            acked.clone(),
            failed.clone(),
            longest_gap.clone(),
        );
        let prefix = prefix.to_string();
        let task = tokio::spawn(async move {
            let api: Api<ConfigMap> = Api::namespaced(client, "default");
            let mut last = Instant::now();
            let mut i = 0u32;
            while !s.load(Ordering::Relaxed) {
                let name = format!("{prefix}-{i}");
                i += 1;
                match api.create(&PostParams::default(), &config_map(&name)).await {
                    Ok(_) => {
                        a.lock().unwrap().push(name);
                        let mut longest = g.lock().unwrap();
                        *longest = (*longest).max(last.elapsed());
                        last = Instant::now();
                    }
                    Err(_) => {
                        *f.lock().unwrap() += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Load {
            stop,
            acked,
            failed,
            longest_gap,
            task,
        }
    }

    /// Stops it; checks every acknowledged write is there; returns (acknowledged,
    /// failed, longest gap).
    async fn check(self, client: kube::Client) -> (usize, u32, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        let api: Api<ConfigMap> = Api::namespaced(client, "default");
        let have: std::collections::HashSet<String> = api
            .list(&ListParams::default().labels("test=deploy"))
            .await
            .expect("list")
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect();
        let acked = self.acked.lock().unwrap().clone();
        let lost: Vec<&String> = acked.iter().filter(|n| !have.contains(*n)).collect();
        assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
        assert!(!acked.is_empty(), "no write was acknowledged");
        let failed = *self.failed.lock().unwrap();
        let gap = *self.longest_gap.lock().unwrap();
        (acked.len(), failed, gap)
    }
}

/// Runs scripts/deploy-roll on the deployment with `env`.
fn roll(c: &Compose, env: &[(&str, &str)]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/deploy-roll");
    let mut cmd = c.command(script);
    cmd.args(c.options(&["compose.yaml"]));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "deploy-roll failed:\n{text}");
    text
}

const SLEEPER: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: sleeper
spec:
  replicas: 2
  selector:
    matchLabels: {app: sleeper}
  template:
    metadata:
      labels: {app: sleeper}
    spec:
      containers:
      - name: sleep
        image: busybox
        command: ["sleep", "3600"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_deployment_and_its_day_two_operations() {
    let c = Compose::new("deploy");
    let kc = c.kubeconfig();

    // 1. From scratch.
    let started = Instant::now();
    c.ok(&["up", "-d"]);
    wait_nodes(&c, &["a0", "a1"]).await;
    println!(
        "compose up to both Nodes Ready: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let list = etcdctl(&c, None, &["member", "list"]);
    for m in ["m0", "m1", "m2"] {
        assert!(list.contains(&format!(", {m}, https://")), "{list}");
    }
    let out = kubectl_stdin(&kc, &["apply", "-f", "-"], SLEEPER);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        Duration::from_secs(90),
        "the Deployment's 2 pods ready",
        || {
            let kc = kc.clone();
            async move {
                let out = kubectl(
                    &kc,
                    &[
                        "get",
                        "deploy",
                        "sleeper",
                        "-o",
                        "jsonpath={.status.readyReplicas}",
                    ],
                );
                (String::from_utf8_lossy(&out.stdout).trim() == "2").then_some(())
            }
        },
    )
    .await;

    // 2. A backup, holding the ConfigMaps before-0..9.
    let client = admin_client(&c).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..10 {
        api.create(&PostParams::default(), &config_map(&format!("before-{i}")))
            .await
            .unwrap();
    }
    let backup = c.cluster().join("backup");
    std::fs::create_dir_all(&backup).unwrap();
    let snapshot = backup.join("snapshot.db");
    etcdctl(&c, None, &["snapshot", "save", snapshot.to_str().unwrap()]);

    // 3. Rolling restart of the masters under load.
    let load = Load::start(admin_client(&c).await, "restart");
    let started = Instant::now();
    let out = roll(&c, &[("DEPLOY_ROLL_ONLY", "m0 m1 m2")]);
    let took = started.elapsed();
    let (acked, failed, gap) = load.check(client.clone()).await;
    println!("{out}rolling restart of the masters: {took:.1?}, {acked} writes acknowledged, {failed} failed, longest gap between acknowledged writes {gap:.1?}");

    // 4. Rolling upgrade of every host to another image.
    let next = format!("{}-next", c.image);
    let tag = std::process::Command::new("docker")
        .args(["tag", &c.image, &next])
        .status()
        .unwrap();
    assert!(tag.success());
    let load = Load::start(admin_client(&c).await, "upgrade");
    let started = Instant::now();
    let out = roll(&c, &[("FLOTILLA_IMAGE", &next)]);
    let took = started.elapsed();
    let (acked, failed, gap) = load.check(client.clone()).await;
    println!("{out}rolling upgrade of every host: {took:.1?}, {acked} writes acknowledged, {failed} failed, longest gap {gap:.1?}");
    for svc in ["m0", "m1", "m2", "front", "a0", "a1"] {
        let id = c.container(svc);
        let image = std::process::Command::new("docker")
            .args(["inspect", "-f", "{{.Config.Image}}", &id])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&image.stdout).trim(), next, "{svc}");
    }
    wait_nodes(&c, &["a0", "a1"]).await;
    let _ = std::process::Command::new("docker")
        .args(["image", "rm", &next])
        .output();

    // 5. A dead master replaced with an empty one.
    let started = Instant::now();
    c.ok(&["kill", "m1"]);
    c.ok(&["rm", "-f", "m1"]);
    let volume = format!("{}_m1", c.project.replace('-', ""));
    let out = std::process::Command::new("docker")
        .args(["volume", "rm", &format!("{}_m1", c.project)])
        .output()
        .unwrap();
    if !out.status.success() {
        // Older compose versions strip the project name's dashes.
        let _ = std::process::Command::new("docker")
            .args(["volume", "rm", &volume])
            .output();
    }
    let list = etcdctl(&c, None, &["member", "list"]);
    let id = list
        .lines()
        .find(|l| l.contains(", m1, "))
        .and_then(|l| l.split(',').next())
        .unwrap_or_else(|| panic!("m1 in {list}"))
        .to_string();
    // The dead master may have led the Raft group: until the others elect a leader the
    // removal times out, as etcd's would. An attempt that timed out may still have been
    // applied, so a member already gone counts as removed.
    wait_for(
        Duration::from_secs(60),
        "m1 removed from the kvstore",
        || {
            let r = try_etcdctl(&c, None, &["member", "remove", &id]);
            async move {
                match r {
                    Ok(_) => Some(()),
                    Err(e) if e.contains("member not found") => Some(()),
                    Err(e) => {
                        eprintln!("member remove: {}", e.trim());
                        None
                    }
                }
            }
        },
    )
    .await;
    let peer = format!("--peer-urls=https://{}:2380", c.ip(11));
    etcdctl(&c, None, &["member", "add", "m1", &peer]);
    c.ok(&["up", "-d", "--no-deps", "m1"]);
    wait_for(Duration::from_secs(120), "the new m1 healthy", || {
        let h = c.health("m1");
        async move { (h == "healthy").then_some(()) }
    })
    .await;
    let list = etcdctl(&c, None, &["member", "list"]);
    assert!(list.contains(", m1, https://"), "m1 has started: {list}");
    assert!(!list.contains(&id), "the old m1 is gone: {list}");
    // Its copy of the data is the others': the same hash at one revision.
    let endpoints = (10..13)
        .map(|i| format!("https://{}:2379", c.ip(i)))
        .collect::<Vec<_>>()
        .join(",");
    wait_for(
        Duration::from_secs(30),
        "the same HashKV on every member",
        || {
            let out = etcdctl(
                &c,
                Some(endpoints.clone()),
                &["endpoint", "hashkv", "-w", "json"],
            );
            async move {
                let v: serde_json::Value = serde_json::from_str(&out).ok()?;
                let hashes: std::collections::BTreeSet<u64> = v
                    .as_array()?
                    .iter()
                    .filter_map(|e| e["HashKV"]["hash"].as_u64())
                    .collect();
                (hashes.len() == 1 && v.as_array()?.len() == 3).then_some(())
            }
        },
    )
    .await;
    println!(
        "a dead master replaced by an empty one, in sync: {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // 6. A third agent.
    let started_at = |svc: &str| {
        let out = std::process::Command::new("docker")
            .args(["inspect", "-f", "{{.State.StartedAt}}", &c.container(svc)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let before: Vec<String> = ["m0", "m1", "m2", "front", "a0", "a1"]
        .iter()
        .map(|s| started_at(s))
        .collect();
    let started = Instant::now();
    let out = c.run_with(
        &["compose.yaml", "add-agent.yaml"],
        &["up", "-d", "--no-deps", "init", "a2"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_nodes(&c, &["a0", "a1", "a2"]).await;
    println!(
        "a third agent Ready: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let after: Vec<String> = ["m0", "m1", "m2", "front", "a0", "a1"]
        .iter()
        .map(|s| started_at(s))
        .collect();
    assert_eq!(before, after, "adding an agent restarted another host");

    // 7. Disaster recovery: everything gone but the credentials and the backup.
    let out = c.run_with(
        &["compose.yaml", "add-agent.yaml"],
        &["down", "--volumes", "--timeout", "20"],
    );
    assert!(out.status.success());
    let started = Instant::now();
    let out = c
        .command("docker-compose")
        .args(c.options(&["compose.yaml"]))
        .args(["up", "-d"])
        .env("FLOTILLA_RESTORE", "/backup/snapshot.db")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The restored Nodes say Ready from the backup: wait for both agents to renew their
    // Leases in the new deployment.
    let restored = wait_for(Duration::from_secs(240), "the restored node Leases", || {
        let kc = kc.clone();
        async move { lease_renewals(&kc).filter(|m| m.len() == 2) }
    })
    .await;
    wait_for(
        Duration::from_secs(120),
        "both agents renewing their Leases",
        || {
            let (kc, restored) = (kc.clone(), restored.clone());
            async move {
                let now = lease_renewals(&kc)?;
                restored
                    .iter()
                    .all(|(n, t)| now.get(n).is_some_and(|u| u != t))
                    .then_some(())
            }
        },
    )
    .await;
    wait_nodes(&c, &["a0", "a1"]).await;
    println!(
        "restored from the backup to both agents renewing: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    kubectl_ok(&kc, &["create", "configmap", "after-restore"]);
    let names = kubectl_ok(
        &kc,
        &["get", "configmaps", "-l", "test=deploy", "-o", "name"],
    );
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    let want: Vec<String> = {
        let mut w: Vec<String> = (0..10).map(|i| format!("configmap/before-{i}")).collect();
        w.sort();
        w
    };
    assert_eq!(names, want, "the backup's objects, and only those");
}
