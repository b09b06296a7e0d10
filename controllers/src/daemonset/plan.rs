//! The DaemonSet controller's decisions, pure (kube's `manage`, `podsShouldBeOnNode`,
//! `rollingUpdate` and `updateDaemonSetStatus`): from the DaemonSet, the nodes, the pods
//! it controls and its current revision's hash, the nodes that need a pod, the pods to
//! delete, and the status.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::backoff::{key as backoff_key, FailedPods};
use super::nodes::{add_tolerations, fit, target_node, Fit};
use super::{GENERATION_LABEL, TEMPLATE_GENERATION};
use crate::context::{pod_available, ready_since};
use crate::history::HASH_LABEL;

/// At most this many pods are created or deleted per sync (kube's BurstReplicas).
pub const BURST: usize = 250;

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Nodes that get a new pod.
    pub create: Vec<String>,
    /// Pods to delete, by name, with the reason shown in an Event (if any).
    pub delete: Vec<(String, Option<(&'static str, &'static str, String)>)>,
    pub status: DaemonSetStatus,
    /// Look again after this long (a pod becoming available after minReadySeconds).
    pub requeue_after: Option<std::time::Duration>,
}

fn phase(p: &Pod) -> Option<&str> {
    p.status.as_ref()?.phase.as_deref()
}

fn hash_of(p: &Pod) -> Option<&str> {
    p.metadata
        .labels
        .as_ref()?
        .get(HASH_LABEL)
        .map(String::as_str)
}

/// Whether the pod runs the current template (its hash, or its template generation).
fn updated(p: &Pod, hash: &str, generation: Option<&str>) -> bool {
    hash_of(p) == Some(hash)
        || generation.is_some_and(|g| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(GENERATION_LABEL))
                .is_some_and(|v| v == g)
        })
}

/// Scheduled first, then oldest, then by name (kube's podByCreationTimestampAndPhase).
fn oldest_first(pods: &mut [&Pod]) {
    pods.sort_by_key(|p| {
        let unscheduled = p.spec.as_ref().is_none_or(|s| s.node_name.is_none());
        (
            unscheduled,
            p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            p.metadata.name.clone(),
        )
    });
}

/// `value` of `total`, a count or a percentage rounded up.
fn scaled(value: Option<&IntOrString>, total: usize) -> usize {
    match value {
        None => 0,
        Some(IntOrString::Int(i)) => usize::try_from(*i).unwrap_or(0),
        Some(IntOrString::String(s)) => {
            let pct = s
                .trim_end_matches('%')
                .parse::<usize>()
                .unwrap_or(0)
                .min(100);
            total.saturating_mul(pct).div_ceil(100)
        }
    }
}

/// The decisions for `ds` over `nodes`, owning `pods`, whose current revision has `hash`.
/// `act`: expectations are met, so creations, deletions and the rolling update may go.
/// A failed pod is deleted only as `failed` allows (then recorded there); otherwise the
/// plan asks to look again when it may.
pub fn plan(
    ds: &DaemonSet,
    nodes: &[&Node],
    pods: &[&Pod],
    hash: &str,
    act: bool,
    failed: &mut FailedPods,
    now: jiff::Timestamp,
) -> Plan {
    let mut out = Plan::default();
    let Some(spec) = ds.spec.as_ref() else {
        return out;
    };
    let mut template = spec.template.spec.clone().unwrap_or_default();
    add_tolerations(&mut template);
    let generation = ds
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TEMPLATE_GENERATION))
        .map(String::as_str);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let ru = strategy.rolling_update.unwrap_or_default();

    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for p in pods {
        if let Some(n) = target_node(p) {
            by_node.entry(n).or_default().push(p);
        }
    }
    let fits: BTreeMap<String, Fit> = nodes
        .iter()
        .filter_map(|n| Some((n.metadata.name.clone()?, fit(&template, n))))
        .collect();
    let desired = fits.values().filter(|f| f.should_run).count();
    let max_surge = if rolling {
        scaled(ru.max_surge.as_ref(), desired)
    } else {
        0
    };
    let surge = max_surge > 0;
    let uid = ds.metadata.uid.as_deref().unwrap_or("");
    let mut backoff_wait = None;
    let mut deleting: Vec<String> = Vec::new();
    let delete = |out: &mut Plan, deleting: &mut Vec<String>, p: &Pod, why| {
        if let Some(n) = p.metadata.name.clone() {
            if !deleting.contains(&n) {
                deleting.push(n.clone());
                out.delete.push((n, why));
            }
        }
    };

    // 1. Each node: a pod where one belongs, none where none does (kube's
    //    podsShouldBeOnNode).
    for (node, f) in &fits {
        let here = by_node.get(node).cloned().unwrap_or_default();
        if f.should_run && here.is_empty() {
            out.create.push(node.clone());
        } else if f.should_continue {
            let mut running: Vec<&Pod> = Vec::new();
            for p in &here {
                if p.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let name = p.metadata.name.clone().unwrap_or_default();
                let ns = p.metadata.namespace.clone().unwrap_or_default();
                match phase(p) {
                    Some("Failed") if act => {
                        let generation = ds.status.as_ref().and_then(|s| s.observed_generation);
                        let key = backoff_key(uid, generation.unwrap_or(0), node);
                        match failed.try_delete(&key, now) {
                            Ok(()) => delete(&mut out, &mut deleting, p, Some(("Warning", "FailedDaemonPod",
                                format!("Found failed daemon pod {ns}/{name} on node {node}, will try to kill it")))),
                            Err(wait) => backoff_wait = Some(backoff_wait.map_or(wait, |w: std::time::Duration| w.min(wait))),
                        }
                    }
                    Some("Failed") => {}
                    Some("Succeeded") => delete(&mut out, &mut deleting, p, Some(("Normal", "SucceededDaemonPod",
                        format!("Found succeeded daemon pod {ns}/{name} on node {node}, will try to delete it")))),
                    _ => running.push(p),
                }
            }
            oldest_first(&mut running);
            if !surge {
                for p in running.iter().skip(1) {
                    delete(&mut out, &mut deleting, p, None);
                }
            } else {
                // Keep the oldest new and the oldest old pod; the old one goes when it is not
                // ready or the new one is available.
                let new = running
                    .iter()
                    .find(|p| updated(p, hash, generation))
                    .copied();
                let old = running
                    .iter()
                    .find(|p| !updated(p, hash, generation))
                    .copied();
                for p in &running {
                    let keep = new.is_some_and(|n| std::ptr::eq(n, *p))
                        || old.is_some_and(|o| std::ptr::eq(o, *p));
                    if !keep {
                        delete(&mut out, &mut deleting, p, None);
                    }
                }
                if let (Some(n), Some(o)) = (new, old) {
                    if ready_since(o).is_none() || pod_available(n, min_ready, now) {
                        delete(&mut out, &mut deleting, o, None);
                    }
                }
            }
        } else {
            for p in here
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
            {
                delete(&mut out, &mut deleting, p, None);
            }
        }
    }
    // Pods for nodes that no longer exist.
    for (node, here) in &by_node {
        if !fits.contains_key(node) {
            for p in here
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
            {
                delete(&mut out, &mut deleting, p, None);
            }
        }
    }

    // 2. The rolling update, on the nodes that keep their pods.
    if rolling && act {
        let max_unavailable = scaled(ru.max_unavailable.as_ref(), desired).max(usize::from(!surge));
        let mut unavailable = 0usize;
        let mut candidates: Vec<&Pod> = Vec::new();
        let mut surged = 0usize;
        for (node, here) in &by_node {
            let Some(f) = fits.get(node).filter(|f| f.should_continue) else {
                continue;
            };
            let live: Vec<&Pod> = here
                .iter()
                .copied()
                .filter(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && !matches!(phase(p), Some("Failed" | "Succeeded"))
                })
                .collect();
            let new = live.iter().find(|p| updated(p, hash, generation)).copied();
            let old = live.iter().find(|p| !updated(p, hash, generation)).copied();
            match (new, old) {
                (_, None) if new.is_some_and(|n| !pod_available(n, min_ready, now)) => {
                    unavailable += 1
                }
                (_, None) => {}
                (Some(_), Some(_)) => {
                    unavailable += 1;
                    surged += 1;
                }
                (None, Some(o)) if surge => {
                    // A new pod beside the old one, at once when the old one is not ready.
                    if f.should_run && (ready_since(o).is_none() || surged < max_surge) {
                        surged += 1;
                        out.create.push(node.clone());
                    }
                }
                (None, Some(o)) if !pod_available(o, min_ready, now) => {
                    delete(&mut out, &mut deleting, o, None);
                }
                (None, Some(o)) => candidates.push(o),
            }
        }
        if !surge {
            let room = max_unavailable.saturating_sub(unavailable);
            for o in candidates.into_iter().take(room) {
                delete(&mut out, &mut deleting, o, None);
            }
        }
    }
    if !act {
        out.create.clear();
        out.delete.clear();
    }
    out.create.truncate(BURST);
    out.delete.truncate(BURST);

    // 3. The status, from the oldest pod of each node.
    let mut st = ds.status.clone().unwrap_or_default();
    let (mut current, mut misscheduled, mut ready, mut available, mut updated_n) = (0, 0, 0, 0, 0);
    let mut waiting = false;
    for (node, f) in &fits {
        let mut here: Vec<&Pod> = by_node
            .get(node)
            .map(|v| {
                v.iter()
                    .copied()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .collect()
            })
            .unwrap_or_default();
        if here.is_empty() {
            continue;
        }
        if !f.should_run {
            misscheduled += 1;
            continue;
        }
        current += 1;
        oldest_first(&mut here);
        let p = here[0];
        if ready_since(p).is_some() {
            ready += 1;
            if pod_available(p, min_ready, now) {
                available += 1;
            } else {
                waiting = true;
            }
        }
        if updated(p, hash, generation) {
            updated_n += 1;
        }
    }
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    st.desired_number_scheduled = count(desired);
    st.current_number_scheduled = count(current);
    st.number_misscheduled = count(misscheduled);
    st.number_ready = count(ready);
    st.number_available = Some(count(available));
    st.updated_number_scheduled = Some(count(updated_n));
    st.number_unavailable = Some(count(desired.saturating_sub(available)));
    if act {
        st.observed_generation = ds.metadata.generation;
    }
    out.status = st;
    if waiting && min_ready > 0 {
        out.requeue_after = Some(std::time::Duration::from_secs(
            u64::try_from(min_ready).unwrap_or(0),
        ));
    }
    if let Some(w) = backoff_wait {
        out.requeue_after = Some(out.requeue_after.map_or(w, |r| r.min(w)));
    }
    out
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
