//! The Docker runtime: real containers through the Docker Engine API.
//!
//! Each pod has an infra container (`flotilla/pause`, built by the agent when missing) on
//! the Docker network the agents manage (`flotilla` by default, shared by every agent of
//! the machine so pods reach each other); the pod's containers join its network namespace,
//! so they share localhost and the pod IP. Everything the runtime creates carries labels
//! (`io.kubernetes.pod.uid`, `io.kubernetes.container.name`, `flotilla.node`,
//! `flotilla.attempt`, ...) from which a restarted agent rebuilds its view.
//!
//! What the daemon says is cached per container and read again only when a listing shows
//! its state changed, so a worker's look at its pod costs one list call.

pub mod client;
pub mod image;
mod network;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use hyper::Method;
use jiff::Timestamp;
use serde_json::{json, Value};

use self::client::{enc, Docker, DockerError};
use super::*;

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
    /// The pod network's id.
    network: String,
    /// Inspected containers by id, with the listed state they were inspected in.
    cache: Mutex<HashMap<String, (String, Inspected)>>,
}

#[derive(Clone, Debug)]
enum Inspected {
    Sandbox(SandboxStatus),
    Container(ContainerStatus),
}

fn other(e: DockerError) -> RuntimeError {
    RuntimeError::Other(e.to_string())
}

fn label<'a>(labels: &'a Value, k: &str) -> &'a str {
    labels.get(k).and_then(|v| v.as_str()).unwrap_or("")
}

fn time(v: &Value) -> Option<Timestamp> {
    let t: Timestamp = v.as_str()?.parse().ok()?;
    (t.as_second() > 0).then_some(t)
}

/// A Docker container name from Kubernetes names (which are DNS labels and subdomains).
fn container_name(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| {
            p.replace(
                |c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'),
                "-",
            )
        })
        .collect::<Vec<_>>()
        .join("_")
}

/// The runtime's view of one inspected container.
fn from_inspect(v: &Value, network: &str) -> Option<Inspected> {
    let id = v.get("Id")?.as_str()?.to_string();
    let labels = v.pointer("/Config/Labels")?;
    let st = v.get("State")?;
    let status = st.get("Status").and_then(|s| s.as_str()).unwrap_or("");
    if label(labels, L_KIND) == "sandbox" {
        let ip = v
            .pointer("/NetworkSettings/Networks")
            .and_then(|n| n.as_object())
            .and_then(|nets| {
                nets.values()
                    .find(|n| n.get("NetworkID").and_then(|i| i.as_str()) == Some(network))
            })
            .and_then(|n| n.get("IPAddress"))
            .and_then(|i| i.as_str())
            .filter(|i| !i.is_empty())
            .map(String::from);
        return Some(Inspected::Sandbox(SandboxStatus {
            id,
            ready: status == "running",
            ip,
        }));
    }
    let code = st.get("ExitCode").and_then(|c| c.as_i64()).unwrap_or(0) as i32;
    let error = st
        .get("Error")
        .and_then(|e| e.as_str())
        .filter(|e| !e.is_empty())
        .map(String::from);
    let started = time(&st["StartedAt"]);
    let state = match status {
        "running" | "paused" | "restarting" => ContainerState::Running {
            started_at: started.unwrap_or_else(Timestamp::now),
        },
        "created" if error.is_none() => ContainerState::Created,
        _ => {
            let never_started = started.is_none();
            ContainerState::Exited {
                exit_code: if never_started && code == 0 {
                    128
                } else {
                    code
                },
                started_at: started,
                finished_at: time(&st["FinishedAt"]).unwrap_or_else(Timestamp::now),
                reason: if st.get("OOMKilled").and_then(|o| o.as_bool()) == Some(true) {
                    "OOMKilled"
                } else if never_started {
                    "StartError"
                } else if code == 0 {
                    "Completed"
                } else {
                    "Error"
                }
                .to_string(),
                message: error,
            }
        }
    };
    Some(Inspected::Container(ContainerStatus {
        id,
        name: label(labels, L_CONTAINER).to_string(),
        attempt: label(labels, L_ATTEMPT).parse().unwrap_or(0),
        init: label(labels, L_INIT) == "true",
        hash: label(labels, L_HASH).parse().unwrap_or(0),
        image: label(labels, L_IMAGE).to_string(),
        image_id: v
            .get("Image")
            .and_then(|i| i.as_str())
            .map(|i| format!("docker://{i}"))
            .unwrap_or_default(),
        state,
        log_path: v
            .get("LogPath")
            .and_then(|p| p.as_str())
            .unwrap_or("")
            .into(),
    }))
}

impl DockerRuntime {
    /// Connects to the daemon, builds the infra image if missing and makes sure the pod
    /// network exists. `owner` tells this agent's containers from those of another agent
    /// of the same node name on the machine (the agent passes a digest of its root
    /// directory).
    pub async fn new(
        socket: PathBuf,
        node: &str,
        owner: &str,
        network: &str,
    ) -> std::result::Result<Self, String> {
        let docker = Docker::new(socket);
        docker
            .version(Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string())?;
        image::ensure_infra(&docker).await?;
        let network_id = network::ensure(&docker, network)
            .await
            .map_err(|e| format!("pod network {network}: {e}"))?;
        Ok(DockerRuntime {
            docker,
            node: node.to_string(),
            owner: owner.to_string(),
            network: network_id,
            cache: Mutex::new(HashMap::new()),
        })
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

    fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Inspected)>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists this node's containers (of one pod, or all) and inspects what changed.
    async fn list(&self, uid: Option<&str>) -> Result<Vec<(Value, Inspected)>> {
        let mut labels = vec![
            format!("{L_NODE}={}", self.node),
            format!("{L_OWNER}={}", self.owner),
        ];
        if let Some(uid) = uid {
            labels.push(format!("{L_UID}={uid}"));
        }
        let filters = json!({ "label": labels }).to_string();
        let listed = self
            .docker
            .json(
                Method::GET,
                &format!("/containers/json?all=1&filters={}", enc(&filters)),
                None,
            )
            .await
            .map_err(other)?;
        let mut out = Vec::new();
        for c in listed.as_array().into_iter().flatten() {
            let Some(id) = c.get("Id").and_then(|i| i.as_str()) else {
                continue;
            };
            let state = c
                .get("State")
                .and_then(|s| s.as_str())
                .unwrap_or("")
                .to_string();
            let cached = self
                .lock()
                .get(id)
                .filter(|(s, _)| *s == state)
                .map(|(_, i)| i.clone());
            let ins = match cached {
                Some(i) => i,
                None => {
                    let v = match self
                        .docker
                        .json(Method::GET, &format!("/containers/{id}/json"), None)
                        .await
                    {
                        Ok(v) => v,
                        Err(e) if e.status() == Some(404) => continue,
                        Err(e) => return Err(other(e)),
                    };
                    let Some(i) = from_inspect(&v, &self.network) else {
                        continue;
                    };
                    self.lock().insert(id.to_string(), (state, i.clone()));
                    i
                }
            };
            out.push((c.get("Labels").cloned().unwrap_or(Value::Null), ins));
        }
        Ok(out)
    }

    fn view(items: Vec<(Value, Inspected)>) -> BTreeMap<String, PodView> {
        let mut pods: BTreeMap<String, PodView> = BTreeMap::new();
        // Newest sandbox wins: Docker lists newest first.
        for (labels, ins) in items {
            let uid = label(&labels, L_UID).to_string();
            let v = pods.entry(uid.clone()).or_default();
            if v.pod.is_none() {
                v.pod = Some(PodRef {
                    uid,
                    namespace: label(&labels, L_NS).to_string(),
                    name: label(&labels, L_NAME).to_string(),
                });
            }
            match ins {
                Inspected::Sandbox(s) => {
                    if v.sandbox.as_ref().is_none_or(|cur| !cur.ready && s.ready) {
                        v.sandbox = Some(s);
                    }
                }
                Inspected::Container(c) => v.containers.push(c),
            }
        }
        pods
    }

    fn labels(&self, pod: &PodRef, container: &str, kind: &str) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        for (k, v) in [
            (L_UID, pod.uid.as_str()),
            (L_NAME, pod.name.as_str()),
            (L_NS, pod.namespace.as_str()),
            (L_CONTAINER, container),
            (L_NODE, self.node.as_str()),
            (L_OWNER, self.owner.as_str()),
            (L_KIND, kind),
        ] {
            m.insert(k.to_string(), Value::String(v.to_string()));
        }
        m
    }

    async fn create_and_start(&self, name: &str, body: &Value) -> Result<String> {
        let created = self
            .docker
            .json(
                Method::POST,
                &format!("/containers/create?name={}", enc(name)),
                Some(body),
            )
            .await
            .map_err(|e| RuntimeError::Create(e.to_string()))?;
        let id = created
            .get("Id")
            .and_then(|i| i.as_str())
            .ok_or_else(|| RuntimeError::Create("the daemon returned no container id".into()))?
            .to_string();
        match self
            .docker
            .json(Method::POST, &format!("/containers/{id}/start"), None)
            .await
        {
            Ok(_) => Ok(id),
            Err(e) => Err(RuntimeError::Start(e.to_string())),
        }
    }

    async fn ensure_image(&self, image: &str, policy: PullPolicy) -> Result<()> {
        let present = image::present(&self.docker, image)
            .await
            .map_err(other)?
            .is_some();
        let pull = match policy {
            PullPolicy::Always => true,
            PullPolicy::IfNotPresent => !present,
            PullPolicy::Never if !present => {
                return Err(RuntimeError::ImageNeverPull {
                    image: image.into(),
                })
            }
            PullPolicy::Never => false,
        };
        if !pull {
            return Ok(());
        }
        let (repo, tag) = split_image(image);
        self.docker
            .progress(
                Method::POST,
                &format!("/images/create?fromImage={}&tag={}", enc(repo), enc(tag)),
                None,
                "application/json",
            )
            .await
            .map(|_| ())
            .map_err(|e| RuntimeError::ImagePull {
                image: image.into(),
                message: e.to_string(),
            })
    }

    async fn stop_id(&self, id: &str, grace: Duration) -> Result<()> {
        let t = grace.as_secs_f64().ceil() as u64;
        let r = self
            .docker
            .json(Method::POST, &format!("/containers/{id}/stop?t={t}"), None)
            .await;
        self.forget(id);
        match r {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.status(), Some(304) | Some(404)) => Ok(()),
            Err(e) => Err(other(e)),
        }
    }

    async fn remove_id(&self, id: &str) -> Result<()> {
        let r = self
            .docker
            .json(
                Method::DELETE,
                &format!("/containers/{id}?force=1&v=1"),
                None,
            )
            .await;
        self.forget(id);
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(other(e)),
        }
    }
}

/// `repo[:tag]` (a digest or a registry port is not a tag).
pub fn split_image(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    match image.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (image, "latest"),
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
            "HostConfig": {"NetworkMode": self.network, "RestartPolicy": {"Name": "no"}},
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
        match from_inspect(&v, &self.network) {
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
        self.ensure_image(&cfg.image, cfg.pull_policy).await?;
        let mut labels = self.labels(&cfg.pod, &cfg.name, "container");
        for (k, v) in [
            (L_ATTEMPT, cfg.attempt.to_string()),
            (L_INIT, cfg.init.to_string()),
            (L_HASH, cfg.hash.to_string()),
            (L_IMAGE, cfg.image.clone()),
        ] {
            labels.insert(k.into(), Value::String(v));
        }
        let binds: Vec<String> = cfg
            .mounts
            .iter()
            .map(|m| {
                format!(
                    "{}:{}{}",
                    m.host_path.display(),
                    m.container_path,
                    if m.read_only { ":ro" } else { "" }
                )
            })
            .collect();
        let mut host = json!({
            "NetworkMode": format!("container:{}", sandbox.id),
            "Binds": binds,
            "RestartPolicy": {"Name": "no"},
        });
        if let Some(m) = cfg.memory_limit_bytes {
            host["Memory"] = json!(m);
        }
        if let Some(c) = cfg.cpu_limit_millis {
            host["NanoCpus"] = json!(c.saturating_mul(1_000_000));
        }
        let mut body = json!({
            "Image": cfg.image,
            "Env": cfg.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "Labels": labels,
            "HostConfig": host,
        });
        if !cfg.command.is_empty() {
            body["Entrypoint"] = json!(cfg.command);
        }
        if !cfg.args.is_empty() {
            body["Cmd"] = json!(cfg.args);
        }
        if let Some(wd) = &cfg.working_dir {
            body["WorkingDir"] = json!(wd);
        }
        let name = container_name(&[
            "k8s",
            &cfg.name,
            &cfg.pod.name,
            &cfg.pod.namespace,
            &cfg.pod.uid,
            &cfg.attempt.to_string(),
        ]);
        self.create_and_start(&name, &body).await
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        self.stop_id(id, grace).await
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        self.remove_id(id).await
    }

    async fn exec(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecResult> {
        let run = async {
            let created = self
                .docker
                .json(
                    Method::POST,
                    &format!("/containers/{id}/exec"),
                    Some(&json!({"AttachStdout": true, "AttachStderr": true, "Cmd": cmd})),
                )
                .await
                .map_err(other)?;
            let eid = created
                .get("Id")
                .and_then(|i| i.as_str())
                .ok_or_else(|| RuntimeError::Other("exec: no id".into()))?
                .to_string();
            let (frames, mut rx) = tokio::sync::mpsc::channel::<(u8, bytes::Bytes)>(16);
            let collect = async move {
                let mut output = Vec::new();
                while let Some((_, data)) = rx.recv().await {
                    if output.len() < 64 * 1024 {
                        output.extend_from_slice(&data);
                    }
                }
                output
            };
            let start = json!({"Detach": false, "Tty": false});
            let start_path = format!("/exec/{eid}/start");
            let (r, output) = tokio::join!(
                self.docker
                    .stream(Method::POST, &start_path, Some(&start), frames),
                collect
            );
            r.map_err(other)?;
            let info = self
                .docker
                .json(Method::GET, &format!("/exec/{eid}/json"), None)
                .await
                .map_err(other)?;
            Ok(ExecResult {
                exit_code: info.get("ExitCode").and_then(|c| c.as_i64()).unwrap_or(-1) as i32,
                output: String::from_utf8_lossy(&output).into_owned(),
            })
        };
        tokio::time::timeout(timeout, run)
            .await
            .unwrap_or_else(|_| {
                Err(RuntimeError::Other(format!(
                    "command timed out after {timeout:?}"
                )))
            })
    }

    async fn logs(
        &self,
        c: &ContainerStatus,
        opts: &crate::logs::LogOptions,
        tx: tokio::sync::mpsc::Sender<bytes::Bytes>,
    ) -> Result<()> {
        let mut path = format!(
            "/containers/{}/logs?stdout=1&stderr=1&follow={}&timestamps={}",
            c.id, opts.follow as u8, opts.timestamps as u8
        );
        if let Some(n) = opts.tail_lines {
            path.push_str(&format!("&tail={n}"));
        }
        if let Some(t) = opts.since {
            path.push_str(&format!(
                "&since={}.{:09}",
                t.as_second(),
                t.subsec_nanosecond().max(0)
            ));
        }
        let mut budget = opts.limit_bytes.unwrap_or(u64::MAX);
        let (frames, mut rx) = tokio::sync::mpsc::channel::<(u8, bytes::Bytes)>(64);
        let forward = async move {
            while let Some((_, mut b)) = rx.recv().await {
                if (b.len() as u64) > budget {
                    b.truncate(budget as usize);
                }
                budget -= b.len() as u64;
                if tx.send(b).await.is_err() || budget == 0 {
                    break;
                }
            }
        };
        let (r, ()) = tokio::join!(
            self.docker.stream(Method::GET, &path, None, frames),
            forward
        );
        r.map_err(other)
    }
}

#[cfg(test)]
mod tests;
