//! The agent's Node: what it registers (labels, taints, capacity, addresses, nodeInfo) and
//! the status it keeps current. Building the objects is pure; `register` and
//! `report_status` do the I/O. As the kubelet, the agent sends its status when something
//! changed and otherwise every 5 minutes; liveness travels in its Lease (`lease.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_core::backoff::Backoff;
use flotilla_core::quantity;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::machine::Machine;

/// The version this agent reports as `kubeletVersion` (the API level it implements).
pub const KUBELET_VERSION: &str = "v1.33.0-flotilla";

#[derive(Debug, Clone)]
pub struct NodeInputs {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub machine: Machine,
    pub max_pods: u32,
    pub ip: String,
    pub port: u16,
    /// `docker://28.2.2`, `process://0.1.0`, `fake://0.1.0`.
    pub runtime_version: String,
}

/// The Node as this agent registers it.
pub fn desired(i: &NodeInputs) -> Node {
    let mut labels = i.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), i.name.clone());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert("kubernetes.io/arch".into(), i.machine.arch.clone());
    labels.insert("beta.kubernetes.io/os".into(), "linux".into());
    labels.insert("beta.kubernetes.io/arch".into(), i.machine.arch.clone());
    Node {
        metadata: ObjectMeta {
            name: Some(i.name.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!i.taints.is_empty()).then(|| i.taints.clone()),
            ..Default::default()
        }),
        status: None,
    }
}

fn resources(i: &NodeInputs) -> BTreeMap<String, Quantity> {
    let q = |s: String| Quantity(s);
    [
        ("cpu".to_string(), q(i.machine.cpus.to_string())),
        (
            "memory".to_string(),
            q(quantity::format_kibi(i.machine.memory_bytes)),
        ),
        (
            "ephemeral-storage".to_string(),
            q(quantity::format_kibi(i.machine.ephemeral_bytes)),
        ),
        ("pods".to_string(), q(i.max_pods.to_string())),
    ]
    .into_iter()
    .collect()
}

/// The node's status; `prev` keeps transition times of conditions that did not change.
pub fn status(
    i: &NodeInputs,
    ready: Result<(), String>,
    prev: Option<&NodeStatus>,
    now: Timestamp,
) -> NodeStatus {
    let cond = |type_: &str, ok: bool, reason: &str, message: String| {
        let status = if ok { "True" } else { "False" };
        let since = prev
            .and_then(|p| p.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        NodeCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(since),
        }
    };
    let (ready_ok, ready_reason, ready_msg) = match &ready {
        Ok(()) => (
            true,
            "KubeletReady",
            "kubelet is posting ready status".to_string(),
        ),
        Err(m) => (false, "KubeletNotReady", m.clone()),
    };
    let m = &i.machine;
    NodeStatus {
        capacity: Some(resources(i)),
        allocatable: Some(resources(i)),
        conditions: Some(vec![
            cond(
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available".into(),
            ),
            cond(
                "DiskPressure",
                false,
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure".into(),
            ),
            cond(
                "PIDPressure",
                false,
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available".into(),
            ),
            cond("Ready", ready_ok, ready_reason, ready_msg),
        ]),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: i.ip.clone(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: i.name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(i.port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: m.arch.clone(),
            boot_id: m.boot_id.clone(),
            container_runtime_version: i.runtime_version.clone(),
            kernel_version: m.kernel.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: m.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: m.os_image.clone(),
            system_uuid: m.machine_id.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The status with heartbeat times left out: what decides whether a report is news.
fn without_heartbeats(s: &NodeStatus) -> NodeStatus {
    let mut s = s.clone();
    for c in s.conditions.iter_mut().flatten() {
        c.last_heartbeat_time = None;
    }
    s
}

/// Creates the Node, or takes over an existing one of the same name (adding this agent's
/// labels; taints are only set at first registration, as the kubelet does). Retries until
/// it succeeds.
pub async fn register(client: &kube::Client, i: &NodeInputs) -> Node {
    let api: Api<Node> = Api::all(client.clone());
    let want = desired(i);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(7));
    loop {
        let r = match api.create(&PostParams::default(), &want).await {
            Ok(n) => {
                info!(node = %i.name, "node registered");
                Ok(n)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => match api.get(&i.name).await {
                Ok(mut cur) => {
                    let labels = cur.metadata.labels.get_or_insert_with(Default::default);
                    let before = labels.clone();
                    labels.extend(want.metadata.labels.clone().unwrap_or_default());
                    if *labels == before {
                        info!(node = %i.name, "node already registered");
                        Ok(cur)
                    } else {
                        api.replace(&i.name, &PostParams::default(), &cur)
                            .await
                            .inspect(|_| info!(node = %i.name, "node re-registered"))
                    }
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match r {
            Ok(n) => return n,
            Err(e) => {
                warn!(node = %i.name, error = %e, "registering the node; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// Keeps the node's status current until the task is dropped: computed every `every`,
/// sent when it changed or every 5 minutes. `health` says whether the runtime answers.
pub async fn report_status<F, Fut>(client: kube::Client, i: NodeInputs, every: Duration, health: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    const REPORT_EVERY: Duration = Duration::from_secs(300);
    let api: Api<Node> = Api::all(client);
    let mut last: Option<(NodeStatus, Instant)> = None;
    loop {
        let prev = match &last {
            Some((s, _)) => Some(s.clone()),
            None => api
                .get_opt(&i.name)
                .await
                .ok()
                .flatten()
                .and_then(|n| n.status),
        };
        let st = status(&i, health().await, prev.as_ref(), Timestamp::now());
        let news = match &last {
            None => true,
            Some((s, at)) => {
                without_heartbeats(s) != without_heartbeats(&st) || at.elapsed() >= REPORT_EVERY
            }
        };
        if news {
            let patch = serde_json::json!({ "status": st });
            match api
                .patch_status(&i.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => last = Some((st, Instant::now())),
                Err(e) => warn!(node = %i.name, error = %e, "updating node status"),
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Parses `--register-with-taints` entries: `key=value:Effect` or `key:Effect`.
pub fn parse_taint(s: &str) -> Result<Taint, String> {
    let (kv, effect) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("invalid taint {s:?}: want key=value:Effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!(
            "invalid taint effect {effect:?} in {s:?}: want NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    if key.is_empty() {
        return Err(format!("invalid taint {s:?}: empty key"));
    }
    Ok(Taint {
        key: key.into(),
        value,
        effect: effect.into(),
        time_added: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> NodeInputs {
        NodeInputs {
            name: "n1".into(),
            labels: [("zone".to_string(), "a".to_string())].into(),
            taints: vec![parse_taint("dedicated=gpu:NoSchedule").unwrap()],
            machine: Machine {
                cpus: 2,
                memory_bytes: 4 << 30,
                ephemeral_bytes: 100 << 30,
                hostname: "h".into(),
                machine_id: "m".into(),
                boot_id: "b".into(),
                kernel: "6.1".into(),
                os_image: "Debian".into(),
                arch: "amd64".into(),
            },
            max_pods: 110,
            ip: "10.0.0.5".into(),
            port: 10250,
            runtime_version: "process://0.1.0".into(),
        }
    }

    #[test]
    fn node_carries_labels_taints_and_resources() {
        let n = desired(&inputs());
        let labels = n.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["kubernetes.io/arch"], "amd64");
        assert_eq!(labels["zone"], "a");
        assert_eq!(n.spec.unwrap().taints.unwrap()[0].key, "dedicated");
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let st = status(&inputs(), Ok(()), None, t0);
        let cap = st.capacity.as_ref().unwrap();
        assert_eq!(cap["cpu"].0, "2");
        assert_eq!(cap["memory"].0, "4194304Ki");
        assert_eq!(cap["pods"].0, "110");
        let ready = st
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        // A later report keeps the transition time and moves only the heartbeat.
        let t1 = Timestamp::from_second(1_700_000_010).unwrap();
        let st2 = status(&inputs(), Ok(()), Some(&st), t1);
        assert_eq!(without_heartbeats(&st), without_heartbeats(&st2));
        let st3 = status(&inputs(), Err("runtime down".into()), Some(&st2), t1);
        assert_ne!(without_heartbeats(&st2), without_heartbeats(&st3));
    }

    #[test]
    fn taints_parse_as_the_kubelet_flag() {
        let t = parse_taint("k:NoExecute").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value, t.effect.as_str()),
            ("k", None, "NoExecute")
        );
        assert!(parse_taint("k=v").is_err());
        assert!(parse_taint("k=v:Sometimes").is_err());
        assert!(parse_taint("=v:NoSchedule").is_err());
    }
}
