//! The process runtime, for machines without Docker: each container is a host process group
//! started by its own shim (`flotilla agent-shim`, see `shim.rs`), sharing the host's
//! network; the image is recorded but not used, so a container needs a `command`.
//!
//! State lives in files so a restarted agent sees it all again:
//! `<root>/pods/<uid>/pod.json` (the pod, its sandbox id, `stopped` once stopped) and
//! `<root>/containers/<id>/` with `config.json` (written by the agent), `pid` and `exit`
//! (written by the shim). A container id is `<pod uid>.<i|c>.<name>.<attempt>`.
//! Where the machine lets it, each container runs in cgroups of its own with its cpu and
//! memory limits (`cgroup.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use jiff::Timestamp;
use rustix::process::{kill_process_group, Pid, Signal};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::cgroup::{Cgroups, Limits};
use super::*;
use crate::shim::write_atomic;

pub struct ProcessRuntime {
    root: PathBuf,
    /// The program that runs `agent-shim` (the flotilla binary).
    shim: PathBuf,
    host_ip: String,
    /// Where containers get their resource limits; `None` on machines without writable
    /// cgroups.
    cgroups: Option<Cgroups>,
    /// Each container's shim rotates its log at these limits.
    log_limits: LogLimits,
}

#[derive(Serialize, Deserialize)]
struct PodFile {
    pod: PodRef,
    sandbox_id: String,
    stopped: bool,
}

#[derive(Serialize, Deserialize)]
struct ContainerFile {
    pod_uid: String,
    name: String,
    attempt: u32,
    init: bool,
    hash: u64,
    image: String,
    env: Vec<(String, String)>,
    working_dir: Option<String>,
    log_path: PathBuf,
    created: Timestamp,
}

impl ProcessRuntime {
    /// `cmd` as a command in container `id`'s environment and working directory.
    fn command_in(&self, id: &str, cmd: &[String]) -> Result<tokio::process::Command> {
        let dir = self.container_dir(id);
        let cfg: ContainerFile = std::fs::read_to_string(dir.join("config.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        let Some(program) = cmd.first() else {
            return Err(RuntimeError::InvalidConfig("empty exec command".into()));
        };
        let mut c = tokio::process::Command::new(program);
        c.args(&cmd[1..])
            .env_clear()
            .envs(cfg.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(wd) = &cfg.working_dir {
            c.current_dir(wd);
        }
        Ok(c)
    }

    pub fn new(root: &Path, shim: PathBuf, host_ip: String) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join("pods"))?;
        std::fs::create_dir_all(root.join("containers"))?;
        let canonical = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        let owner = format!(
            "{:016x}",
            crate::node_state::fnv(canonical.display().to_string().as_bytes())
        );
        let cgroups = Cgroups::detect(&owner);
        if cgroups.is_none() {
            tracing::warn!("no writable cgroups: containers run without resource limits");
        }
        Ok(ProcessRuntime {
            root: root.to_path_buf(),
            shim,
            host_ip,
            cgroups,
            log_limits: LogLimits::default(),
        })
    }

    /// Containers started from now on rotate their logs at `limits`.
    pub fn with_log_limits(mut self, limits: LogLimits) -> Self {
        self.log_limits = limits;
        self
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.join("pods").join(uid)
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    fn read_pod(&self, uid: &str) -> Option<PodFile> {
        let text = std::fs::read_to_string(self.pod_dir(uid).join("pod.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn write_pod(&self, p: &PodFile) -> Result<()> {
        let dir = self.pod_dir(&p.pod.uid);
        std::fs::create_dir_all(&dir)?;
        let text = serde_json::to_string(p).map_err(|e| RuntimeError::Other(e.to_string()))?;
        write_atomic(&dir, "pod.json", &text)?;
        Ok(())
    }

    /// The container's state from its files.
    fn read_container(&self, id: &str) -> Option<ContainerStatus> {
        let dir = self.container_dir(id);
        let cfg: ContainerFile =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).ok()?).ok()?;
        let pid = read_pid(&dir);
        let state = match read_exit(&dir) {
            Some((code, finished_at, message)) => ContainerState::Exited {
                exit_code: code,
                started_at: pid.as_ref().map(|p| p.1),
                finished_at,
                reason: if code != 0 && self.cgroups.as_ref().is_some_and(|c| c.oom_killed(id)) {
                    "OOMKilled".into()
                } else {
                    exit_reason(code, pid.is_none())
                },
                message: (!message.is_empty()).then_some(message),
            },
            None => match pid {
                Some((_, started_at)) => ContainerState::Running { started_at },
                None => ContainerState::Created,
            },
        };
        Some(ContainerStatus {
            id: id.to_string(),
            name: cfg.name,
            attempt: cfg.attempt,
            init: cfg.init,
            hash: cfg.hash,
            image: cfg.image.clone(),
            image_id: format!("process://{}", cfg.image),
            state,
            log_path: cfg.log_path,
        })
    }

    fn container_ids(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.root.join("containers")) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect()
    }

    fn view(&self, uid: &str, ids: &[String]) -> PodView {
        let pod = self.read_pod(uid);
        let containers = ids
            .iter()
            .filter(|id| id.split('.').next() == Some(uid))
            .filter_map(|id| self.read_container(id))
            .collect();
        PodView {
            sandbox: pod.as_ref().map(|p| SandboxStatus {
                id: p.sandbox_id.clone(),
                ready: !p.stopped,
                ip: Some(self.host_ip.clone()),
            }),
            pod: pod.map(|p| p.pod),
            containers,
        }
    }

    /// Signals the container's process group; waits for the shim to record the exit.
    async fn stop_one(&self, id: &str, grace: Duration) -> Result<()> {
        let dir = self.container_dir(id);
        if read_exit(&dir).is_some() {
            return Ok(());
        }
        let Some((pid, _)) = read_pid(&dir) else {
            // Never started: nothing runs.
            let _ = write_atomic(
                &dir,
                "exit",
                &format!("128\n{}\nnever started", Timestamp::now()),
            );
            return Ok(());
        };
        signal(pid, Signal::TERM);
        // A grace past the end of time (any terminationGracePeriodSeconds a pod may
        // have) never runs out: the container gets as long as it takes.
        let deadline = Instant::now().checked_add(grace);
        while deadline.is_none_or(|d| Instant::now() < d) {
            if read_exit(&dir).is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        signal(pid, Signal::KILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if read_exit(&dir).is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The shim is gone too (killed with the machine, say): record what we know.
        if !alive(pid) {
            let _ = write_atomic(
                &dir,
                "exit",
                &format!(
                    "137\n{}\nthe container's supervisor was gone",
                    Timestamp::now()
                ),
            );
            return Ok(());
        }
        Err(RuntimeError::Other(format!(
            "container {id} did not exit after SIGKILL"
        )))
    }
}

fn signal(pgid: i32, sig: Signal) {
    if let Some(p) = Pid::from_raw(pgid) {
        let _ = kill_process_group(p, sig);
    }
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn read_pid(dir: &Path) -> Option<(i32, Timestamp)> {
    let text = std::fs::read_to_string(dir.join("pid")).ok()?;
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse().ok()?;
    let started = lines.next()?.trim().parse().ok()?;
    Some((pid, started))
}

fn read_exit(dir: &Path) -> Option<(i32, Timestamp, String)> {
    let text = std::fs::read_to_string(dir.join("exit")).ok()?;
    let mut lines = text.splitn(3, '\n');
    let code = lines.next()?.trim().parse().ok()?;
    let at = lines.next()?.trim().parse().ok()?;
    Some((code, at, lines.next().unwrap_or("").trim().to_string()))
}

fn exit_reason(code: i32, never_started: bool) -> String {
    match (code, never_started) {
        (0, _) => "Completed",
        (_, true) => "StartError",
        _ => "Error",
    }
    .to_string()
}

#[async_trait::async_trait]
impl Runtime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn pods(&self) -> Result<BTreeMap<String, PodView>> {
        let ids = self.container_ids();
        let mut uids: Vec<String> = ids
            .iter()
            .filter_map(|id| id.split('.').next().map(String::from))
            .collect();
        if let Ok(rd) = std::fs::read_dir(self.root.join("pods")) {
            uids.extend(
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok()),
            );
        }
        uids.sort();
        uids.dedup();
        Ok(uids
            .into_iter()
            .map(|uid| {
                let v = self.view(&uid, &ids);
                (uid, v)
            })
            .collect())
    }

    async fn pod(&self, uid: &str) -> Result<PodView> {
        Ok(self.view(uid, &self.container_ids()))
    }

    async fn run_sandbox(&self, cfg: &SandboxConfig) -> Result<SandboxStatus> {
        let sandbox_id = format!(
            "{}.sandbox.{}",
            cfg.pod.uid,
            Timestamp::now().as_millisecond()
        );
        self.write_pod(&PodFile {
            pod: cfg.pod.clone(),
            sandbox_id: sandbox_id.clone(),
            stopped: false,
        })?;
        Ok(SandboxStatus {
            id: sandbox_id,
            ready: true,
            ip: Some(self.host_ip.clone()),
        })
    }

    async fn stop_pod(&self, uid: &str, grace: Duration) -> Result<()> {
        let ids: Vec<String> = self
            .container_ids()
            .into_iter()
            .filter(|id| id.split('.').next() == Some(uid))
            .collect();
        let stops = ids.iter().map(|id| self.stop_one(id, grace));
        for r in futures::future::join_all(stops).await {
            r?;
        }
        if let Some(mut p) = self.read_pod(uid) {
            p.stopped = true;
            self.write_pod(&p)?;
        }
        Ok(())
    }

    async fn remove_pod(&self, uid: &str) -> Result<()> {
        for id in self.container_ids() {
            if id.split('.').next() == Some(uid) {
                self.remove_container(&id).await?;
            }
        }
        match std::fs::remove_dir_all(self.pod_dir(uid)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn start_container(
        &self,
        sandbox: &SandboxStatus,
        cfg: &ContainerConfig,
    ) -> Result<String> {
        let mut argv: Vec<String> = cfg.command.clone();
        argv.extend(cfg.args.iter().cloned());
        if cfg.command.is_empty() {
            return Err(RuntimeError::InvalidConfig(
                "the process runtime cannot run an image's entrypoint: the container needs a command".into(),
            ));
        }
        let pod = self
            .read_pod(&cfg.pod.uid)
            .filter(|p| p.sandbox_id == sandbox.id && !p.stopped)
            .ok_or_else(|| RuntimeError::NotFound(sandbox.id.clone()))?;
        let id = format!(
            "{}.{}.{}.{}",
            pod.pod.uid,
            if cfg.init { "i" } else { "c" },
            cfg.name,
            cfg.attempt
        );
        let dir = self.container_dir(&id);
        if dir.exists() {
            return Err(RuntimeError::Create(format!(
                "container {id} exists already"
            )));
        }
        std::fs::create_dir_all(&dir)?;
        if let Some(parent) = cfg.log_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = ContainerFile {
            pod_uid: cfg.pod.uid.clone(),
            name: cfg.name.clone(),
            attempt: cfg.attempt,
            init: cfg.init,
            hash: cfg.hash,
            image: cfg.image.clone(),
            env: cfg.env.clone(),
            working_dir: cfg.working_dir.clone(),
            log_path: cfg.log_path.clone(),
            created: Timestamp::now(),
        };
        let text = serde_json::to_string(&file).map_err(|e| RuntimeError::Other(e.to_string()))?;
        write_atomic(&dir, "config.json", &text)?;
        let mut cmd = tokio::process::Command::new(&self.shim);
        cmd.arg("agent-shim")
            .arg("--dir")
            .arg(&dir)
            .arg("--log")
            .arg(&cfg.log_path)
            .arg("--log-max-size")
            .arg(self.log_limits.max_size.to_string())
            .arg("--log-max-files")
            .arg(self.log_limits.max_files.to_string());
        if let Some(wd) = &cfg.working_dir {
            cmd.arg("--workdir").arg(wd);
        }
        if let Some(cg) = &self.cgroups {
            let limits = Limits {
                cpu_millis: cfg.cpu_limit_millis,
                memory_bytes: cfg.memory_limit_bytes,
            };
            let dirs = cg
                .create(&id, &limits)
                .map_err(|e| RuntimeError::Create(format!("container cgroup: {e}")))?;
            for d in dirs {
                cmd.arg("--cgroup").arg(d);
            }
        }
        cmd.arg("--")
            .args(&argv)
            .env_clear()
            .envs(cfg.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        let mut shim = cmd.spawn().map_err(|e| {
            RuntimeError::Start(format!("starting the shim {}: {e}", self.shim.display()))
        })?;
        // Reap the shim whenever it ends; it outlives nothing it should not.
        tokio::spawn(async move {
            let _ = shim.wait().await;
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some((code, _, message)) = read_exit(&dir) {
                if read_pid(&dir).is_none() {
                    return Err(RuntimeError::Start(if message.is_empty() {
                        format!("exit code {code}")
                    } else {
                        message
                    }));
                }
                return Ok(id);
            }
            if read_pid(&dir).is_some() {
                return Ok(id);
            }
            if Instant::now() > deadline {
                return Err(RuntimeError::Start(
                    "the shim did not start the command within 10s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        if !self.container_dir(id).exists() {
            return Ok(());
        }
        self.stop_one(id, grace).await
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let dir = self.container_dir(id);
        if let Some((pid, _)) = read_pid(&dir) {
            if read_exit(&dir).is_none() && alive(pid) {
                return Err(RuntimeError::Other(format!("container {id} is running")));
            }
        }
        if let Some(cg) = &self.cgroups {
            if let Err(e) = cg.remove(id) {
                tracing::warn!(id, error = %e, "removing the container's cgroup");
            }
        }
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn exec(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecResult> {
        let mut c = self.command_in(id, cmd)?;
        let program = &cmd[0];
        c.stdin(Stdio::null()).kill_on_drop(true);
        match tokio::time::timeout(timeout, c.output()).await {
            Err(_) => Err(RuntimeError::Other(format!(
                "command timed out after {timeout:?}"
            ))),
            Ok(Err(e)) => Err(RuntimeError::Other(format!("exec {program:?}: {e}"))),
            Ok(Ok(out)) => {
                let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
                output.push_str(&String::from_utf8_lossy(&out.stderr));
                Ok(ExecResult {
                    exit_code: out.status.code().unwrap_or(137),
                    output,
                })
            }
        }
    }

    async fn port_forward(
        &self,
        _sandbox: &SandboxStatus,
        port: u16,
    ) -> Result<tokio::net::TcpStream> {
        // Host processes share the host's network.
        let addr = (std::net::Ipv4Addr::LOCALHOST, port);
        match tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(r) => r.map_err(|e| dial_error(port, &e)),
            Err(_) => Err(dial_error(
                port,
                &std::io::Error::from(std::io::ErrorKind::TimedOut),
            )),
        }
    }

    async fn exec_attached(
        &self,
        id: &str,
        cmd: &[String],
        streams: attach::Streams,
    ) -> Result<attach::Session> {
        if streams.tty {
            return Err(RuntimeError::InvalidConfig(
                "the process runtime gives commands no terminal: run it without a tty".into(),
            ));
        }
        let mut c = self.command_in(id, cmd)?;
        let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
        c.stdin(piped(streams.stdin))
            .stdout(piped(streams.stdout))
            .stderr(piped(streams.stderr));
        let child = c
            .spawn()
            .map_err(|e| RuntimeError::Other(format!("exec {:?}: {e}", cmd[0])))?;
        Ok(attach::from_child(child))
    }

    /// The container's cgroups; without writable cgroups nothing tells it apart.
    async fn usage(&self, c: &ContainerStatus) -> Option<crate::runtime::Usage> {
        let groups = self.cgroups.as_ref()?.groups(&c.id);
        tokio::task::spawn_blocking(move || crate::stats::cgroupfs::read(&groups))
            .await
            .ok()
            .flatten()
    }

    async fn logs(
        &self,
        c: &ContainerStatus,
        opts: &crate::logs::LogOptions,
        tx: tokio::sync::mpsc::Sender<bytes::Bytes>,
    ) -> Result<()> {
        let exit = self.container_dir(&c.id).join("exit");
        crate::logfile::follow_file(&c.log_path, opts, tx, move || !exit.exists()).await;
        Ok(())
    }
}
