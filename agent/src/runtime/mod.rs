//! What the agent asks of a container runtime, in the shape of Kubernetes' CRI: a pod
//! sandbox (what holds the pod's network), containers started into it, and a view of
//! everything the runtime has, labelled with the pod's identity so that a restarted agent
//! finds (adopts) what it started before.
//!
//! Runtimes: `fake.rs` (nothing runs, as kwok's nodes), `process.rs` (host processes under
//! a supervising shim), `docker.rs` (real containers through the Docker Engine API).
//!
//! Contract for every implementation:
//! - `pods()` lists every pod sandbox and container the runtime holds for this agent, also
//!   those started by an earlier run of the agent; a container's `attempt` never repeats
//!   within a pod.
//! - Starting a container returns only once it runs, or fails with an error whose
//!   `reason()` is the waiting reason Kubernetes shows (ErrImagePull, CreateContainerError...).
//! - Stopping sends SIGTERM, waits up to the grace period, then SIGKILL; it returns once
//!   the container has exited. Stopping what is gone already is not an error.

pub mod attach;
pub mod cgroup;
pub mod docker;
pub mod fake;
pub mod process;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;

/// The pod a sandbox or container belongs to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PodRef {
    pub uid: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub pod: PodRef,
    pub hostname: String,
    /// Where the pod's volumes and logs live on the host.
    pub pod_dir: PathBuf,
}

/// A bind mount of a host path into a container.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub host_path: PathBuf,
    pub container_path: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn parse(s: Option<&str>) -> PullPolicy {
        match s {
            Some("Always") => PullPolicy::Always,
            Some("Never") => PullPolicy::Never,
            _ => PullPolicy::IfNotPresent,
        }
    }
}

/// Everything needed to start one attempt of one container.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    pub pod: PodRef,
    pub name: String,
    pub attempt: u32,
    pub init: bool,
    /// Hash of the container's spec; a running container whose spec changed is restarted.
    pub hash: u64,
    pub image: String,
    pub pull_policy: PullPolicy,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub mounts: Vec<Mount>,
    pub cpu_limit_millis: Option<i64>,
    pub memory_limit_bytes: Option<i64>,
    /// The container's log file, in the CRI log format (`<time> <stream> F <line>`).
    pub log_path: PathBuf,
    /// How the container is confined (its effective securityContext).
    pub security: Security,
}

/// A container's effective securityContext (the pod's defaults applied, container values
/// winning), as the kubelet hands it to the CRI. The default confines nothing beyond the
/// runtime's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Security {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    /// The pod's supplementalGroups, then its fsGroup.
    pub supplemental_groups: Vec<i64>,
    /// Refuse to start unless the process runs as a non-zero uid.
    pub run_as_non_root: bool,
    pub read_only_root: bool,
    pub privileged: bool,
    /// Capability names as Kubernetes writes them (`NET_ADMIN`, `ALL`).
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `allowPrivilegeEscalation: false`: the no_new_privs bit.
    pub no_new_privileges: bool,
    pub seccomp: Seccomp,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub enum Seccomp {
    /// The runtime's default profile (also when none is set: as the kubelet with
    /// `--seccomp-default`).
    #[default]
    RuntimeDefault,
    Unconfined,
    /// A profile from `<root-dir>/seccomp/<name>`, with its JSON.
    Localhost {
        name: String,
        profile: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct SandboxStatus {
    pub id: String,
    pub ready: bool,
    pub ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ContainerState {
    /// Created but never started (a start that failed half-way).
    Created,
    Running {
        started_at: Timestamp,
    },
    Exited {
        exit_code: i32,
        started_at: Option<Timestamp>,
        finished_at: Timestamp,
        /// `Completed`, `Error`, `OOMKilled`, or `Unknown` when the exit was not observed.
        reason: String,
        message: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerStatus {
    pub id: String,
    pub name: String,
    pub attempt: u32,
    pub init: bool,
    pub hash: u64,
    pub image: String,
    pub image_id: String,
    pub state: ContainerState,
    pub log_path: PathBuf,
}

impl ContainerStatus {
    pub fn running(&self) -> bool {
        matches!(self.state, ContainerState::Running { .. })
    }
}

/// What the runtime holds for one pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodView {
    pub pod: Option<PodRef>,
    pub sandbox: Option<SandboxStatus>,
    /// Every attempt of every container still known, in no particular order.
    pub containers: Vec<ContainerStatus>,
}

impl PodView {
    /// The newest attempt of container `name`.
    pub fn latest(&self, name: &str, init: bool) -> Option<&ContainerStatus> {
        self.containers
            .iter()
            .filter(|c| c.name == name && c.init == init)
            .max_by_key(|c| c.attempt)
    }

    /// The attempt before the newest one.
    pub fn previous(&self, name: &str, init: bool) -> Option<&ContainerStatus> {
        let latest = self.latest(name, init)?.attempt;
        self.containers
            .iter()
            .filter(|c| c.name == name && c.init == init && c.attempt < latest)
            .max_by_key(|c| c.attempt)
    }

    pub fn any_running(&self) -> bool {
        self.containers.iter().any(|c| c.running())
    }
}

#[derive(Debug, Clone)]
pub struct ExecResult {
    pub exit_code: i32,
    pub output: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("failed to pull image {image:?}: {message}")]
    ImagePull { image: String, message: String },
    #[error("container image {image:?} is not present with pull policy of Never")]
    ImageNeverPull { image: String },
    #[error("{0}")]
    InvalidConfig(String),
    #[error("failed to create container: {0}")]
    Create(String),
    #[error("failed to start container: {0}")]
    Start(String),
    #[error("no such container or sandbox {0:?}")]
    NotFound(String),
    #[error("runtime: {0}")]
    Other(String),
}

impl RuntimeError {
    /// The container's waiting reason, as the kubelet names it.
    pub fn reason(&self) -> &'static str {
        match self {
            RuntimeError::ImagePull { .. } => "ErrImagePull",
            RuntimeError::ImageNeverPull { .. } => "ErrImageNeverPull",
            RuntimeError::InvalidConfig(_) => "CreateContainerConfigError",
            RuntimeError::Create(_) => "CreateContainerError",
            RuntimeError::Start(_) => "RunContainerError",
            RuntimeError::NotFound(_) | RuntimeError::Other(_) => "CreateContainerError",
        }
    }
}

impl From<std::io::Error> for RuntimeError {
    fn from(e: std::io::Error) -> Self {
        RuntimeError::Other(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

/// A failed dial of a forwarded port in Go's words (what kubectl users know from the
/// kubelet): `dial tcp4 127.0.0.1:80: connect: connection refused`.
pub fn dial_error(port: u16, e: &std::io::Error) -> RuntimeError {
    let why = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        std::io::ErrorKind::TimedOut => "i/o timeout".to_string(),
        _ => e.to_string(),
    };
    RuntimeError::Other(format!("dial tcp4 127.0.0.1:{port}: {why}"))
}

/// How big a container's log may grow: rotated before a file passes `max_size` bytes,
/// keeping `max_files` files, the current one included (`--container-log-max-size`,
/// `--container-log-max-files`; the kubelet's 10Mi and 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    pub max_size: u64,
    pub max_files: u32,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            max_size: 10 << 20,
            max_files: 5,
        }
    }
}

/// Cumulative CPU time and current memory of a group of processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_ns: u64,
    pub memory_bytes: u64,
    /// Usage less inactive file pages.
    pub working_set_bytes: u64,
    /// Anonymous memory, where the kernel tells it.
    pub rss_bytes: Option<u64>,
}

#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// The scheme of container IDs (`docker://...`).
    fn name(&self) -> &'static str;
    /// Everything the runtime holds, by pod uid.
    async fn pods(&self) -> Result<BTreeMap<String, PodView>>;
    /// What the runtime holds for one pod (empty when nothing).
    async fn pod(&self, uid: &str) -> Result<PodView>;
    /// Creates the pod's sandbox (replacing a dead one) and returns it ready.
    async fn run_sandbox(&self, cfg: &SandboxConfig) -> Result<SandboxStatus>;
    /// Stops every container of the pod (grace each) and then its sandbox.
    async fn stop_pod(&self, uid: &str, grace: Duration) -> Result<()>;
    /// Removes everything of a stopped pod, its records included.
    async fn remove_pod(&self, uid: &str) -> Result<()>;
    /// Starts one attempt of a container in the sandbox; returns its id.
    async fn start_container(
        &self,
        sandbox: &SandboxStatus,
        cfg: &ContainerConfig,
    ) -> Result<String>;
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()>;
    /// Removes an exited container (an old attempt).
    async fn remove_container(&self, id: &str) -> Result<()>;
    /// Runs a command inside a running container (exec probes and hooks).
    async fn exec(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecResult>;
    /// Starts a command in a running container with the caller's streams attached
    /// (`kubectl exec`); see `attach.rs` for the contract.
    async fn exec_attached(
        &self,
        _id: &str,
        _cmd: &[String],
        _streams: attach::Streams,
    ) -> Result<attach::Session> {
        Err(RuntimeError::Other(format!(
            "the {} runtime cannot attach to a command",
            self.name()
        )))
    }
    /// A TCP connection to `port` on the loopback address of the pod's network namespace
    /// (`kubectl port-forward`: what listens on localhost in the pod is reached too).
    async fn port_forward(
        &self,
        _sandbox: &SandboxStatus,
        _port: u16,
    ) -> Result<tokio::net::TcpStream> {
        Err(RuntimeError::Other(format!(
            "the {} runtime cannot forward ports",
            self.name()
        )))
    }
    /// The running container's usage now (its cgroups), if the runtime can tell.
    async fn usage(&self, _c: &ContainerStatus) -> Option<Usage> {
        None
    }
    /// Sends container `c`'s logs as `opts` selects them into `tx`; when following, until
    /// the container stops or the receiver goes away.
    async fn logs(
        &self,
        c: &ContainerStatus,
        opts: &crate::logs::LogOptions,
        tx: tokio::sync::mpsc::Sender<bytes::Bytes>,
    ) -> Result<()>;
}
