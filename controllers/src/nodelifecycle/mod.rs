//! The node lifecycle controller: a node whose heartbeat (its Lease in kube-node-lease, or
//! its Ready condition's heartbeat) has not changed for `--node-monitor-grace-period` gets
//! Ready=Unknown and the `node.kubernetes.io/unreachable:NoExecute` taint; a node whose
//! Ready condition is False gets `not-ready:NoExecute`; both also get the NoSchedule
//! variant, so replacements are not placed back; healthy again, it loses them.
//! Pods on a NoExecute-tainted node that do not tolerate the taint are deleted when their
//! `tolerationSeconds` (from the taint's timeAdded) run out, and pods bound to nodes that
//! no longer exist are removed. Pods of a node that is not Ready are marked Ready=False at
//! once (they may still run, but nothing vouches for them; Endpoints drop them), as
//! Kubernetes' MarkPodsNotReady; the agent sets them right when it reports again.
//!
//! Evictions are rate limited per node (`--node-eviction-rate`, nodes per second), and
//! slowed (`--secondary-node-eviction-rate`, or stopped in clusters of 50 nodes or fewer)
//! when more than 55% of the nodes are unhealthy, and stopped when all are: then the fault
//! is more likely on this side of the network than on every node.
//!
//! Heartbeats are judged by when this replica saw them change (its own clock), never by
//! comparing the node's timestamps with ours.
//!
//! One key, [`Nodes`], reconciled every `--node-monitor-period` (after a failure too): the
//! monitor judges every node at once, since the eviction rate depends on how many are
//! unhealthy; the limiter and heartbeat memory live across reconciles. The judgement is pure,
//! in `health.rs`.

mod health;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use tokio::time::Instant;

use crate::context::Context;
use crate::informer::Informer;
use crate::reconciler::{Action, Controller, ObjectKey, Reconciler, Run};
use crate::workqueue::WorkQueue;

pub use health::{
    eviction_rate, eviction_time, marked_not_ready, wanted_taint, Health, NOT_READY, UNREACHABLE,
};
use health::{ready_condition, Heartbeats, Limiter};
const LEASE_NAMESPACE: &str = "kube-node-lease";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("marking node {node} Ready=Unknown")]
    NodeStatus {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating the taints of node {node}")]
    NodeTaints {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("marking pod {namespace}/{pod} not ready")]
    PodStatus {
        namespace: String,
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting pod {namespace}/{pod}")]
    DeletePod {
        namespace: String,
        pod: String,
        #[source]
        source: kube::Error,
    },
}

/// The one key: every node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nodes;

impl ObjectKey for Nodes {
    fn name(&self) -> Option<&str> {
        None
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub monitor_period: Duration,
    pub grace_period: Duration,
    pub eviction_rate: f64,
    pub secondary_eviction_rate: f64,
}

/// What the monitor remembers from one period to the next.
struct State {
    beats: Heartbeats,
    limiter: Limiter,
    /// Nodes whose pods may be evicted (admitted by the limiter), until healthy again.
    admitted: HashSet<String>,
    /// Nodes pods are bound to that do not exist, since when.
    missing_nodes: HashMap<String, Instant>,
}

pub struct NodeLifecycleController {
    ctx: Arc<Context>,
    cfg: Config,
    nodes: Arc<Informer<Node>>,
    leases: Arc<Informer<Lease>>,
    pods: Arc<Informer<Pod>>,
    /// Held by the one reconcile of the one key at a time.
    state: tokio::sync::Mutex<State>,
}

/// No handlers: the monitor runs every period whatever changes.
pub fn new(ctx: &Arc<Context>) -> Box<dyn Run> {
    let queue = WorkQueue::new();
    queue.add(Nodes);
    let r = Arc::new(NodeLifecycleController {
        ctx: ctx.clone(),
        cfg: ctx.config.node_lifecycle.clone(),
        nodes: ctx.informers.get(),
        leases: ctx.informers.get_in(LEASE_NAMESPACE),
        pods: ctx.informers.get(),
        state: tokio::sync::Mutex::new(State {
            beats: Heartbeats::default(),
            limiter: Limiter {
                tokens: 1.0,
                last: Instant::now(),
            },
            admitted: HashSet::new(),
            missing_nodes: HashMap::new(),
        }),
    });
    Controller::new(r, queue).into()
}

impl Reconciler for NodeLifecycleController {
    type Key = Nodes;
    type Error = Error;

    async fn reconcile(&self, _: &Nodes) -> Result<Action, Error> {
        let mut state = self.state.lock().await;
        self.monitor(&mut state).await?;
        Ok(Action::requeue(self.cfg.monitor_period))
    }

    /// A failed pass is retried the next period, as a successful one.
    fn error_policy(&self, _: &Nodes, _: &Error) -> Action {
        Action::requeue(self.cfg.monitor_period)
    }

    fn all_keys(&self) -> Vec<Nodes> {
        vec![Nodes]
    }
}

impl NodeLifecycleController {
    async fn monitor(&self, state: &mut State) -> Result<(), Error> {
        let (ctx, cfg) = (&self.ctx, &self.cfg);
        let State {
            beats,
            limiter,
            admitted,
            missing_nodes,
        } = state;
        let now = Instant::now();
        let wall = jiff::Timestamp::now();
        let nodes = self.nodes.store().state();
        let leases = self.leases.store();
        let mut health: HashMap<String, Health> = HashMap::new();
        for n in &nodes {
            let name = n.metadata.name.clone().unwrap_or_default();
            let lease = leases
                .get(&kube::runtime::reflector::ObjectRef::new(&name).within(LEASE_NAMESPACE))
                .and_then(|l| {
                    l.spec
                        .as_ref()
                        .and_then(|s| s.renew_time.as_ref())
                        .map(|t| t.0.to_string())
                })
                .unwrap_or_default();
            let cond = ready_condition(n);
            let beat = cond
                .and_then(|c| c.last_heartbeat_time.as_ref())
                .map(|t| t.0.to_string())
                .unwrap_or_default();
            let silent = beats.observe(&name, format!("{lease}|{beat}"), now);
            let h = if silent >= cfg.grace_period {
                Health::Unknown
            } else if cond.is_some_and(|c| c.status == "False") {
                Health::NotReady
            } else {
                Health::Ready
            };
            health.insert(name, h);
        }
        let unhealthy = health.values().filter(|h| **h != Health::Ready).count();
        let rate = eviction_rate(cfg, health.len(), unhealthy);
        let api: Api<Node> = Api::all(ctx.client.clone());
        for n in &nodes {
            let name = n.metadata.name.clone().unwrap_or_default();
            let h = health[&name];
            if h == Health::Ready {
                admitted.remove(&name);
            }
            reconcile_node(&api, n, h, wall).await?;
        }
        let pods = self.pods.store().state();
        // Pods of nodes that are not Ready are not ready either.
        for p in &pods {
            let node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
            if node.is_none_or(|n| health.get(n).is_none_or(|h| *h == Health::Ready)) {
                continue;
            }
            if let Some(changed) = marked_not_ready(p, wall) {
                mark_pod_not_ready(ctx, &changed).await?;
            }
        }
        // Evict from tainted nodes, a node at a time as the limiter admits them.
        for n in &nodes {
            let name = n.metadata.name.clone().unwrap_or_default();
            let taints: Vec<Taint> = n
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t.effect == "NoExecute")
                .collect();
            if taints.is_empty() {
                continue;
            }
            if !admitted.contains(&name) {
                if !limiter.take(rate, now) {
                    continue;
                }
                tracing::info!(node = %name, "evicting pods that do not tolerate the node's taints");
                admitted.insert(name.clone());
            }
            for p in pods.iter().filter(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str())
                    && p.metadata.deletion_timestamp.is_none()
            }) {
                if eviction_time(p, &taints, wall).is_some_and(|t| t <= wall) {
                    delete_pod(ctx, p, None).await?;
                }
            }
        }
        // Pods bound to nodes that do not exist (seen so for a grace period) are removed.
        for p in &pods {
            let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
                continue;
            };
            if health.contains_key(node) {
                missing_nodes.remove(node);
                continue;
            }
            let since = *missing_nodes.entry(node.to_string()).or_insert(now);
            if now.saturating_duration_since(since) >= cfg.grace_period {
                delete_pod(ctx, p, Some(0)).await?;
            }
        }
        missing_nodes.retain(|n, _| !health.contains_key(n));
        Ok(())
    }
}

/// Brings the node's Ready condition and NoExecute taints in line with `h`.
async fn reconcile_node(
    api: &Api<Node>,
    n: &Node,
    h: Health,
    now: jiff::Timestamp,
) -> Result<(), Error> {
    let name = n.metadata.name.clone().unwrap_or_default();
    let mut node = n.clone();
    if h == Health::Unknown {
        let status = node.status.get_or_insert_with(Default::default);
        let conds = status.conditions.get_or_insert_with(Vec::new);
        let changed = match conds.iter_mut().find(|c| c.type_ == "Ready") {
            Some(c) if c.status == "Unknown" => false,
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
                true
            }
            None => {
                conds.push(NodeCondition {
                    type_: "Ready".into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_transition_time: Some(Time(now)),
                    last_heartbeat_time: None,
                });
                true
            }
        };
        if changed {
            tracing::warn!(node = %name, "no heartbeat within the grace period: Ready=Unknown");
            node = match api
                .replace_status(&name, &PostParams::default(), &node)
                .await
            {
                Ok(n) => n,
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => return Ok(()),
                Err(source) => return Err(Error::NodeStatus { node: name, source }),
            };
        }
    }
    // NoExecute evicts; NoSchedule (Kubernetes' taint-by-condition) keeps replacements,
    // which tolerate NoExecute for a while, from being placed right back.
    let want = wanted_taint(h);
    let spec = node.spec.get_or_insert_with(Default::default);
    let taints = spec.taints.get_or_insert_with(Vec::new);
    let before = taints.clone();
    taints.retain(|t| {
        !((t.key == UNREACHABLE || t.key == NOT_READY) && Some(t.key.as_str()) != want)
    });
    if let Some(key) = want {
        for effect in ["NoSchedule", "NoExecute"] {
            if !taints.iter().any(|t| t.key == key && t.effect == effect) {
                taints.push(Taint {
                    key: key.into(),
                    value: None,
                    effect: effect.into(),
                    time_added: (effect == "NoExecute").then(|| Time(now)),
                });
            }
        }
    }
    if *taints != before {
        tracing::info!(node = %name, taint = ?want, "node taints updated");
        if taints.is_empty() {
            spec.taints = None;
        }
        match api.replace(&name, &PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
            Err(source) => return Err(Error::NodeTaints { node: name, source }),
        }
    }
    Ok(())
}

/// Writes the pod's status (guarded by its resourceVersion: a newer status wins).
async fn mark_pod_not_ready(ctx: &Context, p: &Pod) -> Result<(), Error> {
    let ns = p.metadata.namespace.as_deref().unwrap_or("");
    let name = p.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    match api.replace_status(&name, &PostParams::default(), p).await {
        Ok(_) => {
            tracing::info!(pod = %format!("{ns}/{name}"), node = ?p.spec.as_ref().and_then(|s| s.node_name.clone()), "marked not ready: its node is not ready");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(source) => Err(Error::PodStatus {
            namespace: ns.to_string(),
            pod: name,
            source,
        }),
    }
}

async fn delete_pod(ctx: &Context, p: &Pod, grace: Option<i64>) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(
        ctx.client.clone(),
        p.metadata.namespace.as_deref().unwrap_or(""),
    );
    let dp = DeleteParams {
        grace_period_seconds: grace.map(|g| g as u32),
        preconditions: Some(Preconditions {
            uid: p.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    let name = p.metadata.name.clone().unwrap_or_default();
    match api.delete(&name, &dp).await {
        Ok(_) => {
            tracing::info!(pod = %format!("{}/{name}", p.metadata.namespace.as_deref().unwrap_or("")), node = ?p.spec.as_ref().and_then(|s| s.node_name.clone()), "evicted");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(source) => Err(Error::DeletePod {
            namespace: p.metadata.namespace.clone().unwrap_or_default(),
            pod: name,
            source,
        }),
    }
}
