//! What the daemon says about this node's containers: the listing by label, the inspected
//! state cached per container (read again only when a listing shows the state changed),
//! and the runtime's view of pods built from it.

use std::collections::{BTreeMap, HashMap};

use hyper::Method;
use jiff::Timestamp;
use serde_json::{json, Value};

use super::client::enc;
use super::{
    other, DockerRuntime, L_ATTEMPT, L_CONTAINER, L_HASH, L_IMAGE, L_INIT, L_KIND, L_NAME, L_NODE,
    L_NS, L_OWNER, L_UID,
};
use crate::runtime::{ContainerState, ContainerStatus, PodRef, PodView, Result, SandboxStatus};

#[derive(Clone, Debug)]
pub(super) enum Inspected {
    Sandbox(SandboxStatus),
    Container(ContainerStatus),
}

fn label<'a>(labels: &'a Value, k: &str) -> &'a str {
    labels.get(k).and_then(|v| v.as_str()).unwrap_or("")
}

fn time(v: &Value) -> Option<Timestamp> {
    let t: Timestamp = v.as_str()?.parse().ok()?;
    (t.as_second() > 0).then_some(t)
}

/// The runtime's view of one inspected container. A sandbox's IP is its address on its
/// network (a sandbox joins exactly one: its node's pod network).
pub(super) fn from_inspect(v: &Value) -> Option<Inspected> {
    let id = v.get("Id")?.as_str()?.to_string();
    let labels = v.pointer("/Config/Labels")?;
    let st = v.get("State")?;
    let status = st.get("Status").and_then(|s| s.as_str()).unwrap_or("");
    if label(labels, L_KIND) == "sandbox" {
        let ip = v
            .pointer("/NetworkSettings/Networks")
            .and_then(|n| n.as_object())
            .and_then(|nets| {
                nets.values().find_map(|n| {
                    n.get("IPAddress")
                        .and_then(|i| i.as_str())
                        .filter(|i| !i.is_empty())
                })
            })
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
    pub(super) fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Inspected)>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists this node's containers (of one pod, or all) and inspects what changed.
    pub(super) async fn list(&self, uid: Option<&str>) -> Result<Vec<(Value, Inspected)>> {
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
                    let Some(i) = from_inspect(&v) else {
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

    pub(super) fn view(items: Vec<(Value, Inspected)>) -> BTreeMap<String, PodView> {
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
}
