//! `flotilla agent` processes for end-to-end tests, each with its own node name, port and
//! root directory. Dropping them kills the agents and every container process their
//! process runtime started (found by the pid files the shims wrote); for docker-runtime
//! agents, their containers, the Docker networks, nftables tables and DOCKER-USER rules
//! of their pod network (by exact name and rule).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{free_port, BIN};

pub struct Agent {
    pub node: String,
    /// The agent's HTTPS port.
    pub port: u16,
    pub root: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
    args: Vec<String>,
}

pub struct Agents {
    pub dir: tempfile::TempDir,
    pub agents: Vec<Agent>,
    /// The pod network of docker-runtime agents, removed with them.
    pub network: Option<PodNet>,
}

/// What docker-runtime agents of a test put on the machine for their pod network.
pub struct PodNet {
    /// `--pod-network`: the prefix of the nodes' Docker network names.
    pub prefix: String,
    /// `--cluster-cidr`.
    pub cluster_cidr: String,
}

/// Waits until each node has a podCIDR inside `cluster_cidr` (the node IPAM controller of
/// the test's controller-manager gives them) and returns them in order.
pub async fn pod_cidrs(client: &kube::Client, cluster_cidr: &str, nodes: &[&str]) -> Vec<String> {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::Api;
    let cluster: agent::podnet::plan::Cidr = cluster_cidr.parse().expect("a cluster CIDR");
    let api: Api<Node> = Api::all(client.clone());
    let mut out = Vec::new();
    for n in nodes {
        let c = super::wait_for(
            std::time::Duration::from_secs(30),
            &format!("node {n} to get a podCIDR in {cluster_cidr}"),
            || async {
                let node = api.get_opt(n).await.ok().flatten()?;
                node.spec?.pod_cidr.filter(|c| {
                    c.parse::<agent::podnet::plan::Cidr>()
                        .is_ok_and(|c| cluster.contains(&c))
                })
            },
        )
        .await;
        out.push(c);
    }
    out
}

impl Agents {
    /// Starts one agent per node name with the process runtime; heartbeats are fast
    /// (status every second, a 4 s Lease) so failure tests take seconds. With `certs` (a
    /// CA directory, `Apiservers::certs`), each agent serves a certificate from that CA
    /// and takes client certificates from it, as under `flotilla up`.
    pub fn start_process(
        kubeconfig: &Path,
        certs: Option<&Path>,
        nodes: &[&str],
        extra: &[&str],
    ) -> Agents {
        Self::start(kubeconfig, certs, "process", nodes, extra)
    }

    /// The same with the docker runtime: the pod networks' names start with a prefix of
    /// the test's own; `cluster_cidr` (`--cluster-cidr`) must be the test cluster's own
    /// (the controller-manager's `Replicas::cluster_cidr`, from which its node IPAM
    /// controller gives the nodes their podCIDRs; until then their pods wait).
    pub fn start_docker(
        kubeconfig: &Path,
        certs: Option<&Path>,
        nodes: &[&str],
        cluster_cidr: &str,
        extra: &[&str],
    ) -> Agents {
        let prefix = format!("flotilla-test-{}-{}", std::process::id(), nodes[0]);
        let mut args: Vec<&str> = vec!["--pod-network", &prefix, "--cluster-cidr", cluster_cidr];
        args.extend_from_slice(extra);
        let mut a = Self::start(kubeconfig, certs, "docker", nodes, &args);
        a.network = Some(PodNet {
            prefix,
            cluster_cidr: cluster_cidr.to_string(),
        });
        a
    }

    /// One agent process running `n` hollow nodes `<name>-0..` (fake runtime).
    pub fn start_fake(kubeconfig: &Path, name: &str, n: usize) -> Agents {
        let count = n.to_string();
        Self::start(kubeconfig, None, "fake", &[name], &["--fake-nodes", &count])
    }

    /// The same, each hollow node serving its own agent port on its address in `cidr`
    /// (`--fake-node-cidr`), with one certificate from `certs` that names every address.
    pub fn start_fake_serving(
        kubeconfig: &Path,
        certs: &Path,
        name: &str,
        n: usize,
        cidr: &str,
    ) -> Agents {
        let net: agent::podnet::plan::Cidr = cidr.parse().expect("a CIDR");
        let hosts: Vec<String> = (1..=n as u32)
            .map(|i| net.host(i).expect("an address per hollow node").to_string())
            .collect();
        let count = n.to_string();
        let extra = ["--fake-nodes", &count, "--fake-node-cidr", cidr];
        Self::start_with_hosts(kubeconfig, Some(certs), "fake", &[name], &extra, &hosts)
    }

    fn start(
        kubeconfig: &Path,
        certs: Option<&Path>,
        runtime: &str,
        nodes: &[&str],
        extra: &[&str],
    ) -> Agents {
        Self::start_with_hosts(kubeconfig, certs, runtime, nodes, extra, &[])
    }

    /// `hosts`: more names for the serving certificates than 127.0.0.1 and the node's.
    fn start_with_hosts(
        kubeconfig: &Path,
        certs: Option<&Path>,
        runtime: &str,
        nodes: &[&str],
        extra: &[&str],
        hosts: &[String],
    ) -> Agents {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut agents = Vec::new();
        for n in nodes {
            let root = dir.path().join(n);
            let port = free_port();
            let mut args: Vec<String> = vec![
                "agent".into(),
                "--kubeconfig".into(),
                kubeconfig.display().to_string(),
                "--node-name".into(),
                n.to_string(),
                "--runtime".into(),
                runtime.into(),
                "--root-dir".into(),
                root.display().to_string(),
                "--node-ip".into(),
                "127.0.0.1".into(),
                "--address".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string(),
                "--node-status-update-frequency".into(),
                "1s".into(),
                "--node-lease-duration-seconds".into(),
                "4".into(),
            ];
            if let Some(certs) = certs {
                let mut hosts = hosts.to_vec();
                hosts.extend(["127.0.0.1".to_string(), n.to_string()]);
                let served = apiserver::tls::issue(
                    certs,
                    &format!("agent-{n}"),
                    &format!("system:node:{n}"),
                    &hosts,
                    apiserver::tls::Usage::Server,
                )
                .expect("the agent's serving certificate");
                for (flag, path) in [
                    ("--tls-cert-file", &served.cert),
                    ("--tls-private-key-file", &served.key),
                    ("--client-ca-file", &served.ca),
                ] {
                    args.push(flag.into());
                    args.push(path.display().to_string());
                }
            }
            args.extend(extra.iter().map(|s| s.to_string()));
            agents.push(Agent {
                node: n.to_string(),
                port,
                log: dir.path().join(format!("agent-{n}.log")),
                root,
                child: None,
                args,
            });
        }
        let mut a = Agents {
            dir,
            agents,
            network: None,
        };
        for i in 0..a.agents.len() {
            a.spawn(i);
        }
        a
    }

    pub fn spawn(&mut self, i: usize) {
        let a = &mut self.agents[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&a.log)
            .expect("log");
        let child = Command::new(BIN)
            .args(&a.args)
            .env(
                "RUST_LOG",
                std::env::var("FLOTILLA_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn flotilla agent");
        a.child = Some(child);
    }

    /// SIGKILLs agent `i` (its containers keep running, as a kubelet's do).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.agents[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends agent `i` a signal by name (`STOP` freezes it as a partition would: its
    /// heartbeats stop and its containers run on; `CONT` lets it go on).
    pub fn signal(&self, i: usize, sig: &str) {
        if let Some(c) = &self.agents[i].child {
            let _ = Command::new("kill")
                .args([&format!("-{sig}"), &c.id().to_string()])
                .status();
        }
    }

    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.agents[i].log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The process group of a container of the process runtime, from its shim's pid file.
    pub fn container_pid(&self, i: usize, container_id: &str) -> Option<i32> {
        let id = container_id.trim_start_matches("process://");
        let text = std::fs::read_to_string(
            self.agents[i]
                .root
                .join("process/containers")
                .join(id)
                .join("pid"),
        )
        .ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Every container process group the agents' shims started and that still runs.
    pub fn running_container_pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for a in &self.agents {
            let Ok(rd) = std::fs::read_dir(a.root.join("process/containers")) else {
                continue;
            };
            for e in rd.flatten() {
                if e.path().join("exit").exists() {
                    continue;
                }
                if let Some(pid) = std::fs::read_to_string(e.path().join("pid"))
                    .ok()
                    .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
                {
                    if Path::new(&format!("/proc/{pid}")).exists() {
                        out.push(pid);
                    }
                }
            }
        }
        out
    }
}

/// Whether the pod's Ready condition is True.
pub fn pod_ready(p: &k8s_openapi::api::core::v1::Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `GET /` over HTTP/1.0 at `ip:port`, the whole answer, or None within 2 s each for the
/// connection and the reading.
pub async fn http_get(ip: &str, port: u16) -> Option<String> {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connect = tokio::net::TcpStream::connect((ip, port));
    let mut s = tokio::time::timeout(Duration::from_secs(2), connect)
        .await
        .ok()?
        .ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out))
        .await
        .ok()?
        .ok()?;
    Some(out)
}

/// SIGKILLs a whole process group.
pub fn kill_group(pgid: i32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status();
}

impl Drop for Agents {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        for i in 0..self.agents.len() {
            self.kill(i);
            if failing {
                eprintln!(
                    "---- log of agent {} ----\n{}",
                    self.agents[i].node,
                    self.log_tail(i, 300)
                );
            }
        }
        for pid in self.running_container_pids() {
            kill_group(pid);
        }
        if let Some(net) = &self.network {
            for a in &self.agents {
                super::images::remove_containers(&a.node);
            }
            super::images::remove_pod_network(&net.prefix, &net.cluster_cidr);
        }
    }
}
