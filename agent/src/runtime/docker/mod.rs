//! The Docker runtime: real containers through the Docker Engine API.
//!
//! Each pod has an infra container (`flotilla/pause`, built by the agent when missing) on
//! its node's pod network: a Docker bridge network of the node's podCIDR
//! (`<--pod-network>-10.244.1.0-24`, `network.rs`), given to the runtime with
//! [`DockerRuntime::set_pod_cidr`] once the Node has one; until then no sandbox starts
//! ("network is not ready"). The pod's containers join the infra container's network
//! namespace, so they share localhost and the pod IP. Everything the runtime creates carries labels
//! (`io.kubernetes.pod.uid`, `io.kubernetes.container.name`, `flotilla.node`,
//! `flotilla.attempt`, ...) from which a restarted agent rebuilds its view.
//!
//! What the daemon says is cached per container and read again only when a listing shows
//! its state changed, so a worker's look at its pod costs one list call.
//!
//! Layout: `client.rs` (the Engine API client), `image.rs` (the infra image the agent
//! builds), `network.rs` (the pod network), `inspect.rs` (listing, inspecting and the cache
//! of what the daemon says), `container.rs` (containers' names, labels and lifecycle),
//! `security.rs` (a securityContext as create-body fields, runAsNonRoot), `pull.rs`
//! (pulling images), `streams.rs` (exec and logs); this file holds the runtime,
//! its pod sandboxes and the `Runtime` implementation over those parts.

pub mod client;
mod container;
pub mod image;
mod inspect;
mod network;
mod portforward;
mod pull;
pub mod security;
mod streams;
mod usage;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use hyper::Method;
use jiff::Timestamp;
use serde_json::{json, Value};

use self::client::{Docker, DockerError};
use self::container::container_name;
use self::inspect::{from_inspect, Inspected};
pub use self::pull::split_image;
use super::*;
use crate::podnet::plan::Cidr;

const L_UID: &str = "io.kubernetes.pod.uid";
const L_NAME: &str = "io.kubernetes.pod.name";
const L_NS: &str = "io.kubernetes.pod.namespace";
const L_CONTAINER: &str = "io.kubernetes.container.name";
const L_NODE: &str = "flotilla.node";
/// Which agent instance (its root directory) made it: two clusters on one machine may
/// have nodes of the same name.
const L_OWNER: &str = "flotilla.owner";
const L_KIND: &str = "flotilla.kind";
const L_ATTEMPT: &str = "flotilla.attempt";
const L_INIT: &str = "flotilla.init";
const L_HASH: &str = "flotilla.hash";
const L_IMAGE: &str = "flotilla.image";

pub struct DockerRuntime {
    docker: Docker,
    node: String,
    owner: String,
    /// The pod networks' name prefix (`--pod-network`).
    network_prefix: String,
    /// The node's pod network, once its podCIDR is known and the host routes it.
    network: Mutex<Option<PodNetwork>>,
    /// Why there is no pod network yet.
    pending: Mutex<String>,
    /// Inspected containers by id, with the listed state they were inspected in.
    cache: Mutex<HashMap<String, (String, Inspected)>>,
    /// Running containers' main pids, by id (`usage.rs`).
    pids: Mutex<HashMap<String, i32>>,
    /// App containers log through Docker's json-file driver, rotated at these limits.
    log_limits: crate::runtime::LogLimits,
}

/// The Docker network of the node's podCIDR.
#[derive(Debug, Clone)]
struct PodNetwork {
    id: String,
    name: String,
    cidr: Cidr,
}

fn other(e: DockerError) -> RuntimeError {
    RuntimeError::Other(e.to_string())
}

impl DockerRuntime {
    /// Connects to the daemon and builds the infra image if missing. `owner` tells this
    /// agent's containers from those of another agent of the same node name on the machine
    /// (the agent passes a digest of its root directory). `network_prefix` starts the
    /// names of pod networks; the network itself comes with [`Self::set_pod_cidr`].
    pub async fn new(
        socket: PathBuf,
        node: &str,
        owner: &str,
        network_prefix: &str,
    ) -> std::result::Result<Self, String> {
        let docker = Docker::new(socket);
        docker
            .version(Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string())?;
        image::ensure_infra(&docker).await?;
        Ok(DockerRuntime {
            docker,
            node: node.to_string(),
            owner: owner.to_string(),
            network_prefix: network_prefix.to_string(),
            network: Mutex::new(None),
            pending: Mutex::new(format!(
                "node {node} has no podCIDR yet (none in its spec and no --pod-cidr)"
            )),
            cache: Mutex::new(HashMap::new()),
            pids: Mutex::new(HashMap::new()),
            log_limits: crate::runtime::LogLimits::default(),
        })
    }

    /// Containers started from now on rotate their logs at `limits`.
    pub fn with_log_limits(mut self, limits: crate::runtime::LogLimits) -> Self {
        self.log_limits = limits;
        self
    }

    /// Makes sure the pod network of `cidr` (the node's podCIDR) exists (again: one
    /// removed behind the agent's back is made anew) and starts new sandboxes on it.
    /// Another CIDR than before moves new sandboxes to its network (running ones keep
    /// theirs). Errors name the network and what Docker said.
    pub async fn set_pod_cidr(&self, cidr: Cidr) -> std::result::Result<(), String> {
        let name = crate::podnet::plan::network_name(&self.network_prefix, &cidr);
        let id = network::ensure(&self.docker, &name, &cidr)
            .await
            .map_err(|e| format!("pod network {name}: {e}"))?;
        let mut cur = self.network.lock().unwrap_or_else(|e| e.into_inner());
        if cur.as_ref().is_none_or(|n| n.id != id || n.cidr != cidr) {
            tracing::info!(node = %self.node, network = %name, pod_cidr = %cidr, "pod network ready");
        }
        *cur = Some(PodNetwork { id, name, cidr });
        Ok(())
    }

    /// Whether sandboxes can start: the node's pod network is known. The error is the
    /// kubelet's words for a missing network.
    pub fn network_ready(&self) -> std::result::Result<(), String> {
        match self.current_network() {
            Some(_) => Ok(()),
            None => Err(format!(
                "container runtime network not ready: NetworkReady=false \
                 reason:NetworkPluginNotReady message:{}",
                self.pending.lock().unwrap_or_else(|e| e.into_inner())
            )),
        }
    }

    /// Says why the pod network is not there yet (while it is not).
    pub fn network_pending(&self, why: String) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }

    /// The pod network's Docker name, once known.
    pub fn network_name(&self) -> Option<String> {
        self.current_network().map(|n| n.name)
    }

    fn current_network(&self) -> Option<PodNetwork> {
        self.network
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The daemon's version, for the Node's `containerRuntimeVersion`.
    pub async fn version(&self) -> String {
        self.docker
            .version(Duration::from_secs(5))
            .await
            .ok()
            .and_then(|v| v.get("Version").and_then(|s| s.as_str()).map(String::from))
            .unwrap_or_else(|| "unknown".into())
    }
}

#[async_trait::async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn pods(&self) -> Result<BTreeMap<String, PodView>> {
        Ok(Self::view(self.list(None).await?))
    }

    async fn pod(&self, uid: &str) -> Result<PodView> {
        Ok(Self::view(self.list(Some(uid)).await?)
            .remove(uid)
            .unwrap_or_default())
    }

    async fn run_sandbox(&self, cfg: &SandboxConfig) -> Result<SandboxStatus> {
        let Some(net) = self.current_network() else {
            let why = self.network_ready().err().unwrap_or_default();
            return Err(RuntimeError::Other(format!("network is not ready: {why}")));
        };
        // Dead sandboxes of this pod go first.
        for (_, ins) in self.list(Some(&cfg.pod.uid)).await? {
            if let Inspected::Sandbox(s) = ins {
                self.remove_id(&s.id).await?;
            }
        }
        image::ensure_infra(&self.docker)
            .await
            .map_err(RuntimeError::Other)?;
        let mut labels = self.labels(&cfg.pod, "POD", "sandbox");
        labels.insert(L_IMAGE.into(), Value::String(image::INFRA_IMAGE.into()));
        let body = json!({
            "Image": image::INFRA_IMAGE,
            "Hostname": cfg.hostname,
            "Labels": labels,
            "HostConfig": {"NetworkMode": net.id, "RestartPolicy": {"Name": "no"}},
        });
        let name = container_name(&[
            "k8s",
            "POD",
            &cfg.pod.name,
            &cfg.pod.namespace,
            &cfg.pod.uid,
            &Timestamp::now().as_millisecond().to_string(),
        ]);
        let id = self.create_and_start(&name, &body).await?;
        let v = self
            .docker
            .json(Method::GET, &format!("/containers/{id}/json"), None)
            .await
            .map_err(other)?;
        match from_inspect(&v) {
            Some(Inspected::Sandbox(s)) => Ok(s),
            _ => Err(RuntimeError::Other(format!("sandbox {id} is not readable"))),
        }
    }

    async fn stop_pod(&self, uid: &str, grace: Duration) -> Result<()> {
        let items = self.list(Some(uid)).await?;
        let apps = items.iter().filter_map(|(_, i)| match i {
            Inspected::Container(c) if c.running() => Some(self.stop_id(&c.id, grace)),
            _ => None,
        });
        for r in futures::future::join_all(apps).await {
            r?;
        }
        for (_, i) in &items {
            if let Inspected::Sandbox(s) = i {
                if s.ready {
                    self.stop_id(&s.id, Duration::from_secs(2)).await?;
                }
            }
        }
        Ok(())
    }

    async fn remove_pod(&self, uid: &str) -> Result<()> {
        for (_, i) in self.list(Some(uid)).await? {
            let id = match &i {
                Inspected::Sandbox(s) => s.id.clone(),
                Inspected::Container(c) => c.id.clone(),
            };
            self.remove_id(&id).await?;
        }
        Ok(())
    }

    async fn start_container(
        &self,
        sandbox: &SandboxStatus,
        cfg: &ContainerConfig,
    ) -> Result<String> {
        self.start_app(sandbox, cfg).await
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        self.stop_id(id, grace).await
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        self.remove_id(id).await
    }

    async fn exec(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecResult> {
        self.exec_in(id, cmd, timeout).await
    }

    async fn port_forward(
        &self,
        sandbox: &crate::runtime::SandboxStatus,
        port: u16,
    ) -> Result<tokio::net::TcpStream> {
        self.dial_in_pod(sandbox, port).await
    }

    async fn exec_attached(
        &self,
        id: &str,
        cmd: &[String],
        streams: crate::runtime::attach::Streams,
    ) -> Result<crate::runtime::attach::Session> {
        self.exec_attach(id, cmd, streams).await
    }

    async fn usage(&self, c: &ContainerStatus) -> Option<crate::runtime::Usage> {
        self.container_usage(&c.id).await
    }

    async fn logs(
        &self,
        c: &ContainerStatus,
        opts: &crate::logs::LogOptions,
        tx: tokio::sync::mpsc::Sender<bytes::Bytes>,
    ) -> Result<()> {
        self.stream_logs(c, opts, tx).await
    }
}

#[cfg(test)]
mod tests;
