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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use tokio::time::Instant;

use crate::context::Context;

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

#[derive(Debug, Clone)]
pub struct Config {
    pub monitor_period: Duration,
    pub grace_period: Duration,
    pub eviction_rate: f64,
    pub secondary_eviction_rate: f64,
}

/// What a node's health is, as this controller judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Ready,
    /// The node says it is not ready.
    NotReady,
    /// No heartbeat within the grace period.
    Unknown,
}

/// When each node's heartbeat was last seen to change.
#[derive(Default)]
struct Heartbeats {
    seen: HashMap<String, (String, Instant)>,
}

impl Heartbeats {
    /// Records the node's current heartbeat value; returns how long it has been unchanged.
    fn observe(&mut self, node: &str, value: String, now: Instant) -> Duration {
        match self.seen.get_mut(node) {
            Some((v, at)) if *v == value => now.saturating_duration_since(*at),
            _ => {
                self.seen.insert(node.to_string(), (value, now));
                Duration::ZERO
            }
        }
    }
}

fn ready_condition(n: &Node) -> Option<&NodeCondition> {
    n.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The taints a node of `health` should carry (of the two this controller manages).
pub fn wanted_taint(health: Health) -> Option<&'static str> {
    match health {
        Health::Ready => None,
        Health::NotReady => Some(NOT_READY),
        Health::Unknown => Some(UNREACHABLE),
    }
}

/// The pod with its Ready condition turned False, when it was True (else `None`).
pub fn marked_not_ready(pod: &Pod, now: jiff::Timestamp) -> Option<Pod> {
    let mut p = pod.clone();
    let c = p
        .status
        .as_mut()?
        .conditions
        .as_mut()?
        .iter_mut()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    c.status = "False".into();
    c.reason = Some("NodeNotReady".into());
    c.message = Some("The node the pod runs on is not ready.".into());
    c.last_transition_time = Some(Time(now));
    Some(p)
}

/// When `pod` must leave a node with `taints` (`None`: it may stay), given now.
pub fn eviction_time(pod: &Pod, taints: &[Taint], now: jiff::Timestamp) -> Option<jiff::Timestamp> {
    let tols = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    let mut at: Option<jiff::Timestamp> = None;
    for t in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<_> = tols
            .iter()
            .filter(|x| component_base::taints::tolerates(x, t))
            .collect();
        let when = if matching.is_empty() {
            now
        } else if matching.iter().any(|x| x.toleration_seconds.is_none()) {
            continue;
        } else {
            let secs = matching
                .iter()
                .filter_map(|x| x.toleration_seconds)
                .min()
                .unwrap_or(0)
                .max(0);
            let added = t.time_added.as_ref().map(|t| t.0).unwrap_or(now);
            added + jiff::SignedDuration::from_secs(secs)
        };
        at = Some(at.map_or(when, |a| a.min(when)));
    }
    at
}

/// A token bucket of nodes whose pods may be evicted.
struct Limiter {
    tokens: f64,
    last: Instant,
}

impl Limiter {
    fn take(&mut self, rate: f64, now: Instant) -> bool {
        self.tokens =
            (self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * rate).min(1.0);
        self.last = now;
        if rate > 0.0 && self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The eviction rate for the cluster's state (Kubernetes' zone states, over the whole
/// cluster as one zone).
pub fn eviction_rate(cfg: &Config, nodes: usize, unhealthy: usize) -> f64 {
    if nodes == 0 || unhealthy == nodes {
        return 0.0;
    }
    if unhealthy as f64 / nodes as f64 > 0.55 {
        return if nodes <= 50 {
            0.0
        } else {
            cfg.secondary_eviction_rate
        };
    }
    cfg.eviction_rate
}

pub async fn run(ctx: Arc<Context>, cfg: Config) {
    ctx.informers.nodes.synced().await;
    ctx.informers.node_leases.synced().await;
    ctx.informers.pods.synced().await;
    let beats = Mutex::new(Heartbeats::default());
    let mut limiter = Limiter {
        tokens: 1.0,
        last: Instant::now(),
    };
    // Nodes whose pods may be evicted (admitted by the limiter), until healthy again.
    let mut admitted: std::collections::HashSet<String> = Default::default();
    let mut missing_nodes: HashMap<String, Instant> = HashMap::new();
    loop {
        if let Err(e) = monitor(
            &ctx,
            &cfg,
            &beats,
            &mut limiter,
            &mut admitted,
            &mut missing_nodes,
        )
        .await
        {
            tracing::warn!(error = %e, "node monitoring failed; retrying next period");
        }
        tokio::time::sleep(cfg.monitor_period).await;
    }
}

async fn monitor(
    ctx: &Context,
    cfg: &Config,
    beats: &Mutex<Heartbeats>,
    limiter: &mut Limiter,
    admitted: &mut std::collections::HashSet<String>,
    missing_nodes: &mut HashMap<String, Instant>,
) -> anyhow::Result<()> {
    let now = Instant::now();
    let wall = jiff::Timestamp::now();
    let nodes = ctx.informers.nodes.store().state();
    let leases = ctx.informers.node_leases.store();
    let mut health: HashMap<String, Health> = HashMap::new();
    for n in &nodes {
        let name = n.metadata.name.clone().unwrap_or_default();
        let lease = leases
            .get(&kube::runtime::reflector::ObjectRef::new(&name).within("kube-node-lease"))
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
        let silent = beats.lock().unwrap_or_else(|e| e.into_inner()).observe(
            &name,
            format!("{lease}|{beat}"),
            now,
        );
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
    let pods = ctx.informers.pods.store().state();
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

/// Brings the node's Ready condition and NoExecute taints in line with `h`.
async fn reconcile_node(
    api: &Api<Node>,
    n: &Node,
    h: Health,
    now: jiff::Timestamp,
) -> anyhow::Result<()> {
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
                Err(e) => return Err(e.into()),
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
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Writes the pod's status (guarded by its resourceVersion: a newer status wins).
async fn mark_pod_not_ready(ctx: &Context, p: &Pod) -> anyhow::Result<()> {
    let ns = p.metadata.namespace.as_deref().unwrap_or("");
    let name = p.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    match api.replace_status(&name, &PostParams::default(), p).await {
        Ok(_) => {
            tracing::info!(pod = %format!("{ns}/{name}"), node = ?p.spec.as_ref().and_then(|s| s.node_name.clone()), "marked not ready: its node is not ready");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn delete_pod(ctx: &Context, p: &Pod, grace: Option<i64>) -> anyhow::Result<()> {
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
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, Toleration};

    fn pod(tols: Vec<Toleration>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                tolerations: Some(tols),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn tol(key: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: secs,
            value: None,
        }
    }

    #[test]
    fn only_a_ready_pod_is_marked_not_ready() {
        use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
        let now = jiff::Timestamp::now();
        let cond = |t: &str, s: &str| PodCondition {
            type_: t.into(),
            status: s.into(),
            ..Default::default()
        };
        let mut p = pod(vec![]);
        p.status = Some(PodStatus {
            conditions: Some(vec![cond("PodScheduled", "True"), cond("Ready", "True")]),
            ..Default::default()
        });
        let m = marked_not_ready(&p, now).expect("changed");
        let conds = m.status.unwrap().conditions.unwrap();
        assert_eq!(conds[0], cond("PodScheduled", "True"));
        assert_eq!(
            (conds[1].status.as_str(), conds[1].reason.as_deref()),
            ("False", Some("NodeNotReady"))
        );
        assert_eq!(conds[1].last_transition_time, Some(Time(now)));
        p.status.as_mut().unwrap().conditions = Some(vec![cond("Ready", "False")]);
        assert!(marked_not_ready(&p, now).is_none());
        assert!(marked_not_ready(&pod(vec![]), now).is_none());
    }

    #[test]
    fn pods_leave_when_their_toleration_runs_out() {
        let now = jiff::Timestamp::from_second(1_000_000).unwrap();
        let taint = Taint {
            key: UNREACHABLE.into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: Some(Time(now)),
        };
        assert_eq!(
            eviction_time(&pod(vec![]), &[taint.clone()], now),
            Some(now)
        );
        assert_eq!(
            eviction_time(
                &pod(vec![tol(UNREACHABLE, Some(300))]),
                &[taint.clone()],
                now
            ),
            Some(now + jiff::SignedDuration::from_secs(300))
        );
        assert_eq!(
            eviction_time(&pod(vec![tol(UNREACHABLE, None)]), &[taint.clone()], now),
            None
        );
        assert_eq!(
            eviction_time(&pod(vec![tol(NOT_READY, None)]), &[taint], now),
            Some(now)
        );
    }

    #[test]
    fn evictions_slow_down_when_most_nodes_are_unhealthy() {
        let cfg = Config {
            monitor_period: Duration::from_secs(5),
            grace_period: Duration::from_secs(40),
            eviction_rate: 0.1,
            secondary_eviction_rate: 0.01,
        };
        assert_eq!(eviction_rate(&cfg, 3, 1), 0.1);
        assert_eq!(
            eviction_rate(&cfg, 3, 2),
            0.0,
            "small cluster, mostly down: stop"
        );
        assert_eq!(eviction_rate(&cfg, 100, 60), 0.01);
        assert_eq!(
            eviction_rate(&cfg, 100, 100),
            0.0,
            "all down: the fault is likely ours"
        );
    }

    #[test]
    fn heartbeats_count_from_when_they_last_changed() {
        let mut h = Heartbeats::default();
        let t = Instant::now();
        assert_eq!(h.observe("n", "a".into(), t), Duration::ZERO);
        assert_eq!(
            h.observe("n", "a".into(), t + Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        assert_eq!(
            h.observe("n", "b".into(), t + Duration::from_secs(6)),
            Duration::ZERO
        );
    }
}
