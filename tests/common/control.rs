//! The reconciling half of the control plane as real processes: `flotilla scheduler` and
//! `flotilla controller-manager` replicas, and a stand-in for the node agent that marks
//! bound pods Running and Ready (and finishes their graceful deletion), as the issue asks
//! where no agent exists yet.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher::{self, watcher, Event};

use super::{free_port, BIN};

/// One replica of a leader-elected component.
pub struct Replica {
    pub child: Option<Child>,
    /// Its secure port (`/metrics`, `/healthz`).
    pub metrics_port: u16,
    /// The kubeconfig it runs with: its credentials also read its `/metrics`.
    pub kubeconfig: PathBuf,
    pub log: PathBuf,
}

/// Replicas of one component (`scheduler` or `controller-manager`).
pub struct Replicas {
    pub component: &'static str,
    pub replicas: Vec<Replica>,
    /// The controller-managers' `--cluster-cidr` (they run with `--allocate-node-cidrs`):
    /// see [`cluster_cidr`]. None for other components.
    pub cluster_cidr: Option<String>,
}

/// A test cluster's pod CIDR, 10.X.0.0/16 with X in 112..=211 (clear of the default
/// Service range 10.96.0.0/12, which the controller-manager refuses to overlap, and of
/// 10.244.0.0/16): derived from `port` (unique per cluster, the first replica's), and
/// never one this process gave another cluster before while any is left, so clusters
/// running in parallel never overlap.
pub fn cluster_cidr(port: u16) -> String {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    static USED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut used = USED.lock().unwrap_or_else(|e| e.into_inner());
    let start = port % 100;
    let x = (0..100)
        .map(|i| 112 + (start + i) % 100)
        .find(|x| !used.contains(x))
        .unwrap_or(112 + start);
    used.insert(x);
    format!("10.{x}.0.0/16")
}

/// Short leases so failover tests take seconds (kube's defaults are 15 s / 10 s / 2 s).
pub const LEASE_ARGS: &[&str] = &[
    "--leader-elect-lease-duration",
    "6s",
    "--leader-elect-renew-deadline",
    "4s",
    "--leader-elect-retry-period",
    "1s",
];
pub const LEASE_DURATION: Duration = Duration::from_secs(6);

impl Replicas {
    /// Starts one replica per kubeconfig.
    pub fn start(
        component: &'static str,
        kubeconfigs: &[&Path],
        dir: &Path,
        extra: &[&str],
    ) -> Replicas {
        let mut replicas = Vec::new();
        let ports: Vec<u16> = kubeconfigs.iter().map(|_| free_port()).collect();
        // Every replica allocates from the same range, so failover keeps it.
        let cidr = (component == "controller-manager")
            .then(|| cluster_cidr(ports.first().copied().unwrap_or_default()));
        let ipam: Vec<&str> = match &cidr {
            Some(c) => vec!["--allocate-node-cidrs=true", "--cluster-cidr", c],
            None => vec![],
        };
        for (i, kc) in kubeconfigs.iter().enumerate() {
            let port = ports[i];
            let log = dir.join(format!("{component}-{i}.log"));
            let f = std::fs::File::create(&log).expect("log");
            let child = Command::new(BIN)
                .arg(component)
                .arg("--kubeconfig")
                .arg(kc)
                .args([
                    "--bind-address",
                    "127.0.0.1",
                    "--secure-port",
                    &port.to_string(),
                ])
                .args(["--leader-elect-identity", &format!("{component}-{i}")])
                .args(LEASE_ARGS)
                .args(&ipam)
                .args(extra)
                .env(
                    "RUST_LOG",
                    std::env::var("FLOTILLA_TEST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .stdin(Stdio::null())
                .stdout(f.try_clone().expect("log"))
                .stderr(f)
                .spawn()
                .expect("spawn flotilla component");
            replicas.push(Replica {
                child: Some(child),
                metrics_port: port,
                kubeconfig: kc.to_path_buf(),
                log,
            });
        }
        Replicas {
            component,
            replicas,
            cluster_cidr: cidr,
        }
    }

    /// `path` of replica `i`'s secure port, as the credentials of `kubeconfig` (its
    /// self-signed certificate is not checked): the body, or the error's HTTP code and
    /// message; None if it does not answer.
    pub async fn get_as(
        &self,
        i: usize,
        kubeconfig: &Path,
        path: &str,
    ) -> Option<Result<String, (u16, String)>> {
        let kc = kube::config::Kubeconfig::read_from(kubeconfig).ok()?;
        let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .ok()?;
        cfg.cluster_url = format!("https://127.0.0.1:{}", self.replicas[i].metrics_port)
            .parse()
            .ok()?;
        cfg.root_cert = None;
        cfg.accept_invalid_certs = true;
        let client = kube::Client::try_from(cfg).ok()?;
        let req = http::Request::get(path).body(Vec::new()).ok()?;
        match client.request_text(req).await {
            Ok(body) => Some(Ok(body)),
            Err(kube::Error::Api(e)) => Some(Err((e.code, e.message))),
            Err(_) => None,
        }
    }

    /// `/metrics` of replica `i`, read with its own kubeconfig, if it answers.
    pub async fn metrics(&self, i: usize) -> Option<String> {
        let kc = self.replicas[i].kubeconfig.clone();
        self.get_as(i, &kc, "/metrics").await?.ok()
    }

    /// The replica whose metrics say it holds the lease.
    pub async fn leader(&self) -> Option<usize> {
        for i in 0..self.replicas.len() {
            if self.replicas[i].child.is_none() {
                continue;
            }
            if let Some(m) = self.metrics(i).await {
                if m.lines()
                    .any(|l| l.starts_with("leader_election_master_status") && l.ends_with(" 1"))
                {
                    return Some(i);
                }
            }
        }
        None
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.replicas[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.replicas[i].log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        for i in 0..self.replicas.len() {
            self.kill(i);
            if failing {
                eprintln!(
                    "---- log of {} {i} ----\n{}",
                    self.component,
                    self.log_tail(i, 400)
                );
            }
        }
    }
}

/// What an agent would do for every bound pod, until the returned task is aborted: mark it
/// Running and Ready with an IP, and remove it once it is being deleted.
pub fn fake_agent(client: kube::Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let all: Api<Pod> = Api::all(client.clone());
        let mut stream = watcher(all, watcher::Config::default()).boxed();
        let mut next_ip = 2u32;
        while let Some(ev) = stream.next().await {
            let pod = match ev {
                Ok(Event::Apply(p)) | Ok(Event::InitApply(p)) => p,
                _ => continue,
            };
            if pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_none()
            {
                continue;
            }
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            if pod.metadata.deletion_timestamp.is_some() {
                let _ = api
                    .delete(
                        &name,
                        &DeleteParams {
                            grace_period_seconds: Some(0),
                            ..Default::default()
                        },
                    )
                    .await;
                continue;
            }
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                continue;
            }
            let now = Time(jiff::Timestamp::now());
            let cond = |t: &str| PodCondition {
                type_: t.into(),
                status: "True".into(),
                last_transition_time: Some(now.clone()),
                ..Default::default()
            };
            let mut p = pod.clone();
            next_ip += 1;
            p.status = Some(PodStatus {
                phase: Some("Running".into()),
                host_ip: Some("10.0.0.1".into()),
                pod_ip: Some(format!("10.244.{}.{}", next_ip / 250, next_ip % 250 + 1)),
                start_time: Some(now.clone()),
                conditions: Some(vec![
                    cond("PodScheduled"),
                    cond("Initialized"),
                    cond("ContainersReady"),
                    cond("Ready"),
                ]),
                ..p.status.unwrap_or_default()
            });
            let _ = api.replace_status(&name, &PostParams::default(), &p).await;
        }
    })
}

/// Renews a Lease in kube-node-lease every 500 ms for each node in `nodes` (as agents do),
/// until the returned task is aborted; a node removed from the shared list stops beating.
pub fn heartbeats(
    client: kube::Client,
    nodes: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
    tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, "kube-node-lease");
        loop {
            let names = nodes.lock().unwrap().clone();
            for n in names {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(n.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(n.clone()),
                        lease_duration_seconds: Some(40),
                        renew_time: Some(MicroTime(jiff::Timestamp::now())),
                        ..Default::default()
                    }),
                };
                match api.get_opt(&n).await {
                    Ok(Some(mut cur)) => {
                        cur.spec = lease.spec;
                        let _ = api.replace(&n, &PostParams::default(), &cur).await;
                    }
                    Ok(None) => {
                        let _ = api.create(&PostParams::default(), &lease).await;
                    }
                    Err(_) => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}
