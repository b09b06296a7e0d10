//! One StatefulSet sync's decisions, pure (kube's `stateful_set_control.go`
//! `updateStatefulSet`): the pods in the ordinal range and those beyond it; under
//! OrderedReady one step at a time in ordinal order (create the first missing pod, wait
//! for each to be Running, Ready and available, then delete the highest condemned pod),
//! under Parallel all at once; a failed or succeeded pod deleted to be made again; then the
//! rolling update from the highest ordinal down to the partition, one pod at a time and
//! only over healthy pods; and the status.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;

use super::identity::{identity_fix, ordinal_of, replicas, revision_of, start};
use crate::context::{pod_available, ready_since};

/// What one sync does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Make the pod of this ordinal (its claims first) from the current revision (`false`)
    /// or the update revision (`true`).
    Create { ordinal: i32, update: bool },
    /// Make any claim of this pending pod that is missing.
    Claims { ordinal: i32 },
    /// Fix the pod's identity labels.
    Relabel { pod: String, ordinal: i32 },
    /// Delete a condemned pod: its claims first take the owners the retention policy
    /// gives scaled-away pods.
    Condemn { pod: String, ordinal: i32 },
    /// Delete a pod (failed or succeeded, or of an old revision) to make it again.
    Delete { pod: String },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub status: StatefulSetStatus,
}

/// The revisions a sync works with, by name.
#[derive(Debug, Clone, Copy)]
pub struct Revisions<'a> {
    pub current: &'a str,
    pub update: &'a str,
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

fn running_and_ready(p: &Pod) -> bool {
    phase(p) == "Running" && ready_since(p).is_some()
}

/// kube's `isHealthy`: Running, Ready and not being deleted.
fn healthy(p: &Pod) -> bool {
    running_and_ready(p) && !terminating(p)
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

/// kube's `computeReplicaStatus` over every pod of the set.
fn counts(
    pods: &[&Pod],
    revs: Revisions<'_>,
    min_ready: i32,
    now: jiff::Timestamp,
) -> StatefulSetStatus {
    let mut s = StatefulSetStatus::default();
    for p in pods.iter().filter(|p| !phase(p).is_empty()) {
        s.replicas += 1;
        if running_and_ready(p) {
            s.ready_replicas = Some(s.ready_replicas.unwrap_or(0) + 1);
            if pod_available(p, min_ready, now) {
                s.available_replicas = Some(s.available_replicas.unwrap_or(0) + 1);
            }
        }
        if terminating(p) {
            continue;
        }
        let rev = revision_of(p);
        if rev == Some(revs.current) {
            s.current_replicas = Some(s.current_replicas.unwrap_or(0) + 1);
        }
        if rev == Some(revs.update) {
            s.updated_replicas = Some(s.updated_replicas.unwrap_or(0) + 1);
        }
    }
    s
}

/// The sync of `sts` over its pods (those it controls), at `now`.
pub fn plan(sts: &StatefulSet, pods: &[&Pod], revs: Revisions<'_>, now: jiff::Timestamp) -> Plan {
    let spec = sts.spec.clone().unwrap_or_default();
    let (first, n) = (start(sts), replicas(sts));
    let end = first.saturating_add(n);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut slots: Vec<Option<&Pod>> = vec![None; usize::try_from(n).unwrap_or(0)];
    let mut condemned: Vec<(i32, &Pod)> = Vec::new();
    for p in pods {
        let Some(o) = ordinal_of(sts, p) else {
            continue;
        };
        if (first..end).contains(&o) {
            if let Some(slot) = usize::try_from(o - first)
                .ok()
                .and_then(|i| slots.get_mut(i))
            {
                *slot = Some(p);
            }
        } else {
            condemned.push((o, p));
        }
    }
    condemned.sort_by_key(|(o, _)| std::cmp::Reverse(*o));

    let mut status = counts(pods, revs, min_ready, now);
    status.observed_generation = sts.metadata.generation;
    status.current_revision = Some(revs.current.to_string());
    status.update_revision = Some(revs.update.to_string());
    status.collision_count = Some(
        sts.status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0),
    );
    let mut plan = Plan {
        steps: Vec::new(),
        status,
    };
    if sts.metadata.deletion_timestamp.is_some() {
        return finish(sts, plan);
    }
    let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let partition = strategy
        .rolling_update
        .as_ref()
        .and_then(|r| r.partition)
        .unwrap_or(0)
        .max(0);
    let prior_current = sts
        .status
        .as_ref()
        .and_then(|s| s.current_replicas)
        .unwrap_or(0);
    // New pods below the partition keep the current revision.
    let revision_for = |o: i32| -> bool {
        let below = match &strategy.rolling_update {
            Some(_) => o < first.saturating_add(partition),
            None => rolling && o < first.saturating_add(prior_current),
        };
        !below
    };
    let first_unhealthy = slots
        .iter()
        .flatten()
        .find(|p| !healthy(p))
        .map(|p| name(p))
        .or_else(|| {
            condemned
                .iter()
                .rev()
                .find(|(_, p)| !healthy(p))
                .map(|(_, p)| name(p))
        });

    for (i, slot) in slots.iter().enumerate() {
        let o = first.saturating_add(i32::try_from(i).unwrap_or(i32::MAX));
        let Some(p) = slot else {
            plan.steps.push(Step::Create {
                ordinal: o,
                update: revision_for(o),
            });
            if monotonic {
                return finish(sts, plan);
            }
            continue;
        };
        if matches!(phase(p), "Failed" | "Succeeded") {
            if !terminating(p) {
                plan.steps.push(Step::Delete { pod: name(p) });
            }
            if monotonic {
                return finish(sts, plan);
            }
            continue;
        }
        if phase(p) == "Pending" {
            plan.steps.push(Step::Claims { ordinal: o });
        }
        if monotonic
            && (terminating(p) || !running_and_ready(p) || !pod_available(p, min_ready, now))
        {
            return finish(sts, plan);
        }
        if identity_fix(sts, o, p).is_some() {
            plan.steps.push(Step::Relabel {
                pod: name(p),
                ordinal: o,
            });
        }
    }
    for (o, p) in &condemned {
        if terminating(p) {
            if monotonic {
                return finish(sts, plan);
            }
            continue;
        }
        if monotonic
            && (!running_and_ready(p) || !pod_available(p, min_ready, now))
            && first_unhealthy.as_deref() != Some(name(p).as_str())
        {
            return finish(sts, plan);
        }
        plan.steps.push(Step::Condemn {
            pod: name(p),
            ordinal: *o,
        });
        if monotonic {
            return finish(sts, plan);
        }
    }
    if !rolling {
        return finish(sts, plan);
    }
    let lowest = usize::try_from(partition).unwrap_or(0);
    for p in slots.iter().skip(lowest).rev() {
        let Some(p) = p else { break };
        if revision_of(p) != Some(revs.update) && !terminating(p) {
            plan.steps.push(Step::Delete { pod: name(p) });
            let c = plan.status.current_replicas.unwrap_or(0);
            plan.status.current_replicas = Some(c.saturating_sub(1));
            break;
        }
        if !healthy(p) {
            break;
        }
    }
    finish(sts, plan)
}

/// kube's `completeRollingUpdate`: once every pod is updated and ready, the update
/// revision becomes the current one.
fn finish(sts: &StatefulSet, mut plan: Plan) -> Plan {
    let spec = sts.spec.clone().unwrap_or_default();
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let want = replicas(sts);
    let s = &mut plan.status;
    if rolling
        && s.updated_replicas.unwrap_or(0) == want
        && s.ready_replicas.unwrap_or(0) == want
        && s.replicas == want
    {
        s.current_replicas = s.updated_replicas;
        s.current_revision = s.update_revision.clone();
    }
    plan
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
