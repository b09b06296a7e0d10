//! The masters of `deploy/compose.yaml` as the members under test: the whole deployment
//! (3 masters, 2 agents, the front) runs in containers from an image of the binary under
//! test, and faults hit the masters' containers: `docker kill` (SIGKILL to every process
//! of the master) and `docker start`, `docker pause` (the cgroup freezer) and `unpause`,
//! partitions as iptables rules inside the masters' network namespaces (entered with
//! nsenter), which cut master-to-master traffic only: the front, the agents and the
//! harness still reach every master, so a master cut off from its peers keeps serving its
//! clients, as a partitioned apiserver would. The agents' faults are the same: kill and
//! start, pause and unpause, and isolation from the masters and the front by iptables in
//! the agent's namespace. Needs root and Docker; everything is named
//! after the run's tag and removed by `teardown`.
//!
//! The compose file is the repository's own, built into this program, so a run tests the
//! deployment users run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{bail, Context};
use tracing::{info, warn};

use super::{AgentAct, ApiServer, ClusterControl, Grudge, Start};

const COMPOSE: &str = include_str!("../../../deploy/compose.yaml");
const IMAGE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/image");
const MASTERS: usize = 3;
/// The agents of deploy/compose.yaml (a0, a1).
const AGENTS: usize = 2;

pub struct ComposeCluster {
    tag: String,
    /// The first three octets of the deployment's /24.
    net: String,
    image: String,
    dir: PathBuf,
    /// The deployment's settings from the harness's options (leader election).
    env: Vec<(&'static str, String)>,
    /// etcdctl's credentials, which the deployment's init writes at the first start.
    client_tls: std::sync::OnceLock<proto::tls::ClientTls>,
    /// Container IDs by service name, once known.
    containers: Mutex<std::collections::HashMap<String, String>>,
    /// Whether `docker-compose up` has run.
    up: Mutex<bool>,
    /// Each master's restart count when the harness last started or killed it: more
    /// afterwards is a restart the harness did not cause (a crash).
    restarts: Mutex<Vec<u64>>,
    crashed: Mutex<Vec<(usize, String)>>,
    torn_down: Mutex<bool>,
}

/// Runs a command; returns its stdout, or fails with its stderr.
fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl ComposeCluster {
    /// Builds the image from `bin` and writes the compose file into `dir`; starts nothing.
    pub fn create(
        n: usize,
        bin: &Path,
        dir: &Path,
        env: Vec<(&'static str, String)>,
    ) -> anyhow::Result<ComposeCluster> {
        if n != MASTERS {
            bail!("the compose deployment has {MASTERS} masters (--nodes {MASTERS})");
        }
        let x = std::process::id() & 0xffff;
        let tag = format!("fjc{x:04x}");
        let net = format!("10.238.{}", x % 250);
        let image = format!("flotilla-jepsen:{tag}");
        run(Command::new(IMAGE_SCRIPT)
            .arg("--binary")
            .arg(bin)
            .args(["--tag", &image]))
        .context("building the image (scripts/image)")?;
        std::fs::write(dir.join("compose.yaml"), COMPOSE)?;
        let c = ComposeCluster {
            tag,
            net,
            image,
            dir: dir.to_path_buf(),
            env,
            client_tls: std::sync::OnceLock::new(),
            containers: Mutex::new(Default::default()),
            up: Mutex::new(false),
            restarts: Mutex::new(vec![0; MASTERS]),
            crashed: Mutex::new(Vec::new()),
            torn_down: Mutex::new(false),
        };
        Ok(c)
    }

    fn compose(&self) -> Command {
        let mut c = Command::new("docker-compose");
        c.arg("-p")
            .arg(&self.tag)
            .arg("-f")
            .arg(self.dir.join("compose.yaml"))
            .env("FLOTILLA_IMAGE", &self.image)
            .env("FLOTILLA_NET", &self.net)
            // Published on loopback only; ports of this run's own.
            .env("FLOTILLA_API_PORT", "0")
            .env("FLOTILLA_ETCD_PORT", "0")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        c
    }

    fn ip(&self, node: usize) -> String {
        format!("{}.{}", self.net, 10 + node)
    }

    fn container(&self, node: usize) -> anyhow::Result<String> {
        self.service(&self.name(node))
    }

    /// The container of one of the deployment's services (m0, a1, front). A container
    /// keeps its ID through kills and restarts, so each is asked of docker-compose (a
    /// Python program, slow to start) once.
    fn service(&self, name: &str) -> anyhow::Result<String> {
        let mut ids = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = ids.get(name) {
            return Ok(id.clone());
        }
        let id = run(self.compose().args(["ps", "-q", name]))?;
        if id.is_empty() {
            bail!("{name} has no container");
        }
        ids.insert(name.to_string(), id.clone());
        Ok(id)
    }

    fn inspect(&self, node: usize, format: &str) -> anyhow::Result<String> {
        self.inspect_service(&self.name(node), format)
    }

    fn inspect_service(&self, name: &str, format: &str) -> anyhow::Result<String> {
        let id = self.service(name)?;
        run(Command::new("docker").args(["inspect", "-f", format, &id]))
    }

    fn restart_count(&self, node: usize) -> u64 {
        self.inspect(node, "{{.RestartCount}}")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Notes masters Docker restarted without the harness asking (a component exited).
    fn note_restarts(&self) {
        let mut seen = self.restarts.lock().unwrap_or_else(|e| e.into_inner());
        let mut crashed = self.crashed.lock().unwrap_or_else(|e| e.into_inner());
        for (i, last) in seen.iter_mut().enumerate() {
            let now = self.restart_count(i);
            if now > *last {
                warn!(node = %self.name(i), restarts = now, "master restarted by itself");
                crashed.push((i, format!("restarted by Docker ({now} in all)")));
                *last = now;
            }
        }
    }

    /// The iptables command run inside master `node`'s network namespace.
    fn in_netns(&self, node: usize, args: &[&str]) -> anyhow::Result<String> {
        self.iptables_in(&self.name(node), args)
    }

    /// The iptables command run inside a service's network namespace.
    fn iptables_in(&self, name: &str, args: &[&str]) -> anyhow::Result<String> {
        let pid = self.inspect_service(name, "{{.State.Pid}}")?;
        run(Command::new("nsenter")
            .args(["-t", &pid, "-n", "iptables"])
            .args(args))
    }

    fn service_running(&self, name: &str) -> bool {
        self.inspect_service(name, "{{.State.Running}}")
            .is_ok_and(|s| s == "true")
    }

    /// The front's address: agents reach the apiservers through it.
    fn front_ip(&self) -> String {
        format!("{}.5", self.net)
    }
}

impl ClusterControl for ComposeCluster {
    fn size(&self) -> usize {
        MASTERS
    }

    fn name(&self, node: usize) -> String {
        format!("m{node}")
    }

    fn client_url(&self, node: usize) -> String {
        format!("https://{}:2379", self.ip(node))
    }

    fn client_tls(&self) -> Option<&proto::tls::ClientTls> {
        self.client_tls.get()
    }

    fn peer_url(&self, node: usize) -> String {
        format!("https://{}:2380", self.ip(node))
    }

    fn apiserver(&self, node: usize) -> Option<ApiServer> {
        Some(ApiServer {
            url: format!("https://{}:6443", self.ip(node)),
            kubeconfig: self.dir.join("cluster").join("admin.kubeconfig"),
        })
    }

    fn agents(&self) -> usize {
        AGENTS
    }

    fn agent(&self, i: usize, act: AgentAct) -> anyhow::Result<()> {
        let name = self.agent_name(i);
        let docker = |verb: &str| -> anyhow::Result<()> {
            let id = self.service(&name)?;
            run(Command::new("docker").args([verb, &id])).map(drop)
        };
        match act {
            AgentAct::Kill => docker("kill"),
            AgentAct::Start => docker("start"),
            AgentAct::Pause => docker("pause"),
            AgentAct::Resume => docker("unpause"),
            AgentAct::Isolate => {
                let mut from: Vec<String> = (0..MASTERS).map(|m| self.ip(m)).collect();
                from.push(self.front_ip());
                for ip in from {
                    self.iptables_in(&name, &["-A", "INPUT", "-s", &ip, "-j", "DROP"])?;
                }
                Ok(())
            }
            AgentAct::Reconnect => self.iptables_in(&name, &["-F", "INPUT"]).map(drop),
        }
    }

    fn start(&self, node: usize, how: Start) -> anyhow::Result<()> {
        let mut up = self.up.lock().unwrap_or_else(|e| e.into_inner());
        match how {
            Start::New if !*up => {
                run(self.compose().args(["up", "-d"])).context("docker-compose up")?;
                *up = true;
                let d = self.dir.join("cluster").join("etcdctl");
                let tls = proto::tls::ClientTls::load(
                    Some(&d.join("ca.crt")),
                    Some((&d.join("admin.crt"), &d.join("admin.key"))),
                )
                .map_err(anyhow::Error::msg)?;
                let _ = self.client_tls.set(tls);
                info!(tag = %self.tag, net = %format!("{}.0/24", self.net), "deployment up");
                Ok(())
            }
            Start::New => Ok(()),
            Start::Restart => {
                let id = self.container(node)?;
                run(Command::new("docker").args(["start", &id]))?;
                self.restarts.lock().unwrap_or_else(|e| e.into_inner())[node] =
                    self.restart_count(node);
                Ok(())
            }
            Start::Join { .. } => bail!(
                "the compose cluster replaces members as its README does, not through the member nemesis"
            ),
        }
    }

    fn kill(&self, node: usize) -> anyhow::Result<()> {
        self.note_restarts();
        let id = self.container(node)?;
        run(Command::new("docker").args(["kill", &id]))?;
        Ok(())
    }

    fn pause(&self, node: usize) -> anyhow::Result<()> {
        let id = self.container(node)?;
        run(Command::new("docker").args(["pause", &id])).map(drop)
    }

    fn resume(&self, node: usize) -> anyhow::Result<()> {
        let id = self.container(node)?;
        run(Command::new("docker").args(["unpause", &id])).map(drop)
    }

    fn wipe(&self, _node: usize) -> anyhow::Result<()> {
        bail!("wiping a master's volume is not a fault of the compose cluster")
    }

    fn partition(&self, grudge: &Grudge) -> anyhow::Result<()> {
        self.heal()?;
        for (i, drops) in grudge.iter().enumerate() {
            for &j in drops {
                let ip = self.ip(j);
                self.in_netns(i, &["-A", "INPUT", "-s", &ip, "-j", "DROP"])?;
            }
        }
        Ok(())
    }

    fn heal(&self) -> anyhow::Result<()> {
        for i in 0..MASTERS {
            if self.running(i) {
                self.in_netns(i, &["-F", "INPUT"])?;
            }
        }
        for i in 0..AGENTS {
            let name = self.agent_name(i);
            if self.service_running(&name) {
                self.iptables_in(&name, &["-F", "INPUT"])?;
            }
        }
        Ok(())
    }

    fn running(&self, node: usize) -> bool {
        self.inspect(node, "{{.State.Running}}")
            .is_ok_and(|s| s == "true")
    }

    fn crashed(&self) -> Vec<(usize, String)> {
        self.note_restarts();
        self.crashed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn teardown(&self) {
        let mut done = self.torn_down.lock().unwrap_or_else(|e| e.into_inner());
        if *done {
            return;
        }
        *done = true;
        if let Ok(logs) = run(self.compose().args(["logs", "--no-color"])) {
            let _ = std::fs::write(self.dir.join("deployment.log"), logs);
        }
        self.note_restarts();
        if let Err(e) = run(self
            .compose()
            .args(["down", "--volumes", "--timeout", "20"]))
        {
            warn!(error = %e, "docker-compose down");
        }
        let _ = run(Command::new("docker").args(["image", "rm", &self.image]));
        info!(tag = %self.tag, "deployment removed");
    }
}

impl Drop for ComposeCluster {
    fn drop(&mut self) {
        self.teardown();
    }
}
