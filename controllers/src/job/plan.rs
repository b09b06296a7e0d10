//! The Job controller's decisions, pure: from a Job and the pods it owns, what to write
//! and what to do (kube's `syncJob`, in short).
//!
//! Finished pods are counted through kube's finalizer protocol, so no pod is counted twice
//! or missed across controller failover: every pod is created with the
//! `batch.kubernetes.io/job-tracking` finalizer; a finished pod that still has it is first
//! written into `status.uncountedTerminatedPods` (and, for Indexed Jobs, its index into
//! `completedIndexes`), and only after that status write are finalizers removed; a UID in
//! `uncountedTerminatedPods` whose pod has lost its finalizer (or is gone) moves into
//! `succeeded`/`failed`. Success and failure are two-step as in kube 1.32:
//! `SuccessCriteriaMet`/`FailureTarget` first (remaining pods are deleted), then
//! `Complete`/`Failed` once no pod runs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::indexes;

pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// Pod failure backoff: 10 s doubling per failure since the last success, at most 6 min.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);
/// At most this many pods are created or deleted per sync (kube's burst).
pub const BURST: usize = 500;

/// Where a pod stands for its Job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    /// Running or about to (not finished, not being deleted).
    Active,
    /// Being deleted and not finished yet.
    Terminating,
    Succeeded,
    Failed,
}

pub fn pod_state(p: &Pod) -> PodState {
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Succeeded") => PodState::Succeeded,
        Some("Failed") => PodState::Failed,
        _ if p.metadata.deletion_timestamp.is_some() => PodState::Terminating,
        _ => PodState::Active,
    }
}

pub fn has_finalizer(p: &Pod) -> bool {
    p.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

/// The completion index of a pod of an Indexed Job (annotation, else label).
pub fn completion_index(p: &Pod) -> Option<i32> {
    let m = &p.metadata;
    m.annotations
        .as_ref()
        .and_then(|a| a.get(COMPLETION_INDEX))
        .or_else(|| m.labels.as_ref().and_then(|l| l.get(COMPLETION_INDEX)))
        .and_then(|v| v.parse().ok())
        .filter(|i: &i32| *i >= 0)
}

/// What one sync does.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// The status to write, when it differs from the current one. Written before any
    /// finalizer is removed.
    pub status: Option<JobStatus>,
    /// Pods (by name) whose tracking finalizer goes, after the status write.
    pub remove_finalizers: Vec<String>,
    /// Pods to create: their completion index (Indexed) or `None`.
    pub create: Vec<Option<i32>>,
    /// Active pods to delete, by name.
    pub delete: Vec<String>,
    /// Sync again after this long (a backoff or a deadline), even without a change.
    pub requeue_after: Option<Duration>,
    /// Events to record: (type Normal/Warning, reason, message).
    pub events: Vec<(&'static str, &'static str, String)>,
}

fn condition_true(status: &JobStatus, ty: &str) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == ty && c.status == "True")
}

/// Sets condition `ty` to `status` with the reason and message, keeping its transition
/// time when the status does not change.
fn set_condition(st: &mut JobStatus, ty: &str, status: &str, reason: &str, msg: &str, now: &Time) {
    let conds = st.conditions.get_or_insert_with(Vec::new);
    match conds.iter_mut().find(|c| c.type_ == ty) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Some(now.clone());
            }
            c.status = status.into();
            c.reason = Some(reason.into());
            c.message = Some(msg.into());
            c.last_probe_time = Some(now.clone());
        }
        None => conds.push(JobCondition {
            type_: ty.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(msg.into()),
            last_probe_time: Some(now.clone()),
            last_transition_time: Some(now.clone()),
        }),
    }
}

fn finish_time(p: &Pod) -> Option<jiff::Timestamp> {
    p.status
        .as_ref()?
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max()
        .or_else(|| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Restarts of the containers of an active pod (counted against backoffLimit under
/// `restartPolicy: OnFailure`, as kube does).
fn restarts(p: &Pod) -> i64 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|c| i64::from(c.restart_count.max(0)))
        .sum()
}

/// The reason a Job fails, if it does now.
fn failure(
    job: &Job,
    failed: i64,
    active: &[&Pod],
    now: jiff::Timestamp,
    start: Option<jiff::Timestamp>,
) -> Option<(&'static str, &'static str)> {
    let spec = job.spec.as_ref()?;
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    let mut failures = failed;
    if on_failure {
        failures = failures.saturating_add(active.iter().map(|p| restarts(p)).sum::<i64>());
    }
    let limit = i64::from(spec.backoff_limit.unwrap_or(6));
    if failures > limit {
        return Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ));
    }
    if let (Some(deadline), Some(start)) = (spec.active_deadline_seconds, start) {
        let end = start.checked_add(jiff::SignedDuration::from_secs(deadline.max(0)));
        if end.is_ok_and(|end| end <= now) {
            return Some((
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ));
        }
    }
    None
}

/// The pod failure backoff still to wait before creating pods, if any.
fn backoff_left(pods: &[&Pod], now: jiff::Timestamp) -> Option<Duration> {
    let last_success = pods
        .iter()
        .filter(|p| pod_state(p) == PodState::Succeeded)
        .filter_map(|p| finish_time(p))
        .max();
    let failures: Vec<jiff::Timestamp> = pods
        .iter()
        .filter(|p| pod_state(p) == PodState::Failed)
        .filter_map(|p| finish_time(p))
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    let last = failures.iter().max()?;
    let n = u32::try_from(failures.len()).unwrap_or(u32::MAX);
    let wait = BACKOFF_BASE
        .checked_mul(2u32.saturating_pow(n.saturating_sub(1).min(16)))
        .unwrap_or(BACKOFF_MAX)
        .min(BACKOFF_MAX);
    let since = now.duration_since(*last);
    let since = Duration::try_from(since).unwrap_or(Duration::ZERO);
    wait.checked_sub(since).filter(|d| !d.is_zero())
}

/// The decisions for `job` owning `pods` at `now`.
pub fn plan(job: &Job, pods: &[&Pod], now: jiff::Timestamp) -> Plan {
    let mut out = Plan::default();
    let Some(spec) = job.spec.as_ref() else {
        return out;
    };
    let now_t = Time(now);
    let old = job.status.clone().unwrap_or_default();
    let mut st = old.clone();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let finished = condition_true(&old, "Complete") || condition_true(&old, "Failed");
    let suspended = spec.suspend == Some(true);

    // 1. Finalizer tracking: finished pods with our finalizer into uncounted; uncounted
    //    pods whose finalizer is gone into the counts.
    let mut uncounted = old.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut unc_ok: BTreeSet<String> = uncounted
        .succeeded
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut unc_failed: BTreeSet<String> = uncounted
        .failed
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut completed = indexes::parse(
        old.completed_indexes.as_deref().unwrap_or(""),
        completions.unwrap_or(0),
    );
    let by_uid: BTreeMap<&str, &Pod> = pods
        .iter()
        .filter_map(|p| Some((p.metadata.uid.as_deref()?, *p)))
        .collect();
    let mut succeeded = i64::from(old.succeeded.unwrap_or(0));
    let mut failed = i64::from(old.failed.unwrap_or(0));
    for uid in unc_ok.clone() {
        if by_uid.get(uid.as_str()).is_none_or(|p| !has_finalizer(p)) {
            unc_ok.remove(&uid);
            succeeded = succeeded.saturating_add(1);
        }
    }
    for uid in unc_failed.clone() {
        if by_uid.get(uid.as_str()).is_none_or(|p| !has_finalizer(p)) {
            unc_failed.remove(&uid);
            failed = failed.saturating_add(1);
        }
    }
    for p in pods {
        let (Some(uid), Some(name)) = (p.metadata.uid.as_deref(), p.metadata.name.as_deref())
        else {
            continue;
        };
        if !has_finalizer(p) {
            continue;
        }
        match pod_state(p) {
            PodState::Succeeded => {
                unc_ok.insert(uid.to_string());
                if let (true, Some(i), Some(c)) = (indexed, completion_index(p), completions) {
                    if i < c {
                        completed.insert(i);
                    }
                }
            }
            PodState::Failed => {
                unc_failed.insert(uid.to_string());
            }
            // A pod deleted before it finished failed (kube's isPodFailed: it may never
            // reach a terminal phase), unless suspension deleted it.
            PodState::Terminating if !suspended => {
                unc_failed.insert(uid.to_string());
            }
            PodState::Terminating => {}
            // A Job that is over lets go of whatever is left (a pod of a suspended Job
            // being deleted, above, too).
            PodState::Active if finished => {}
            PodState::Active => continue,
        }
        out.remove_finalizers.push(name.to_string());
    }
    uncounted.succeeded = Some(unc_ok.iter().cloned().collect());
    uncounted.failed = Some(unc_failed.iter().cloned().collect());
    let succeeded_total = succeeded.saturating_add(i64::try_from(unc_ok.len()).unwrap_or(0));
    let failed_total = failed.saturating_add(i64::try_from(unc_failed.len()).unwrap_or(0));

    let active: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| pod_state(p) == PodState::Active)
        .collect();
    let terminating = pods
        .iter()
        .filter(|p| pod_state(p) == PodState::Terminating)
        .count();
    let ready = active
        .iter()
        .filter(|p| crate::context::ready_since(p).is_some())
        .count();

    // 2. Suspension and the start time.
    if !finished {
        if suspended {
            if !condition_true(&old, "Suspended") {
                set_condition(
                    &mut st,
                    "Suspended",
                    "True",
                    "JobSuspended",
                    "Job suspended",
                    &now_t,
                );
                out.events
                    .push(("Normal", "Suspended", "Job suspended".into()));
            }
        } else {
            if condition_true(&old, "Suspended") {
                set_condition(
                    &mut st,
                    "Suspended",
                    "False",
                    "JobResumed",
                    "Job resumed",
                    &now_t,
                );
                out.events.push(("Normal", "Resumed", "Job resumed".into()));
                st.start_time = Some(now_t.clone());
            }
            if st.start_time.is_none() {
                st.start_time = Some(now_t.clone());
            }
        }
    }
    let start = st.start_time.as_ref().map(|t| t.0);

    // 3. Success or failure, two-step.
    let failure_target = condition_true(&old, "FailureTarget");
    let success_met = condition_true(&old, "SuccessCriteriaMet");
    let complete_now = !failure_target
        && match (indexed, completions) {
            (true, Some(c)) => i64::try_from(completed.len()).unwrap_or(0) >= i64::from(c),
            (false, Some(c)) => succeeded_total >= i64::from(c),
            // A work queue: done once one pod succeeded and none runs.
            (_, None) => succeeded_total > 0 && active.is_empty(),
        };
    let failing = if finished || success_met || complete_now {
        None
    } else if failure_target {
        let c = old
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "FailureTarget");
        Some((
            c.and_then(|c| c.reason.clone()).unwrap_or_default(),
            c.and_then(|c| c.message.clone()).unwrap_or_default(),
        ))
    } else {
        failure(
            job,
            failed_total,
            &active,
            now,
            start.filter(|_| !suspended),
        )
        .map(|(r, m)| (r.to_string(), m.to_string()))
    };

    // What ends or pauses the Job deletes every active pod (a burst at a time).
    let names = |pods: &[&Pod]| -> Vec<String> {
        pods.iter()
            .filter_map(|p| p.metadata.name.clone())
            .take(BURST)
            .collect()
    };
    // The terminal condition waits until no pod runs and every finished pod is counted
    // (kube's enactJobFinished), so `Complete` comes with the final counts.
    let settled =
        active.is_empty() && terminating == 0 && unc_ok.is_empty() && unc_failed.is_empty();
    if !finished {
        if let Some((reason, msg)) = &failing {
            if !failure_target {
                set_condition(&mut st, "FailureTarget", "True", reason, msg, &now_t);
                out.events
                    .push(("Warning", event_reason(reason), msg.clone()));
            }
            out.delete = names(&active);
            if settled {
                set_condition(&mut st, "Failed", "True", reason, msg, &now_t);
            }
        } else if success_met || complete_now {
            const REASON: &str = "CompletionsReached";
            const MSG: &str = "Reached expected number of succeeded pods";
            if !success_met {
                set_condition(&mut st, "SuccessCriteriaMet", "True", REASON, MSG, &now_t);
            }
            out.delete = names(&active);
            if settled {
                set_condition(&mut st, "Complete", "True", REASON, MSG, &now_t);
                st.completion_time = Some(now_t.clone());
                out.events
                    .push(("Normal", "Completed", "Job completed".into()));
            }
        } else if suspended {
            out.delete = names(&active);
        } else {
            scale(
                job,
                &active,
                &completed,
                succeeded_total,
                parallelism,
                pods,
                now,
                &mut out,
            );
            // Wake up for the deadline.
            if let (Some(deadline), Some(start)) = (spec.active_deadline_seconds, start) {
                if let Ok(end) = start.checked_add(jiff::SignedDuration::from_secs(deadline.max(0)))
                {
                    let left =
                        Duration::try_from(end.duration_since(now)).unwrap_or(Duration::ZERO);
                    out.requeue_after = Some(out.requeue_after.map_or(left, |r| r.min(left)));
                }
            }
        }
    }

    // 4. The status.
    st.active = Some(i32::try_from(active.len()).unwrap_or(i32::MAX));
    st.ready = Some(i32::try_from(ready).unwrap_or(i32::MAX));
    st.terminating = Some(i32::try_from(terminating).unwrap_or(i32::MAX));
    st.succeeded = Some(i32::try_from(succeeded).unwrap_or(i32::MAX));
    st.failed = Some(i32::try_from(failed).unwrap_or(i32::MAX));
    st.uncounted_terminated_pods = Some(uncounted);
    if indexed {
        st.completed_indexes = Some(indexes::format(&completed));
    }
    if st != old {
        out.status = Some(st);
    }
    out
}

/// The event reason of a failure (the condition's reason, as kube records it).
fn event_reason(reason: &str) -> &'static str {
    match reason {
        "DeadlineExceeded" => "DeadlineExceeded",
        "PodFailurePolicy" => "PodFailurePolicy",
        _ => "BackoffLimitExceeded",
    }
}

/// Pods to create or delete to run `parallelism` pods towards the completions, after the
/// failure backoff.
#[allow(clippy::too_many_arguments)]
fn scale(
    job: &Job,
    active: &[&Pod],
    completed: &BTreeSet<i32>,
    succeeded: i64,
    parallelism: i32,
    pods: &[&Pod],
    now: jiff::Timestamp,
    out: &mut Plan,
) {
    let Some(spec) = job.spec.as_ref() else {
        return;
    };
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let parallelism = usize::try_from(parallelism).unwrap_or(0);
    let name = |p: &&Pod| p.metadata.name.clone();
    if indexed {
        let total = spec.completions.unwrap_or(0).max(0);
        // One pod per index: extra pods of an index, and pods of completed indexes, go.
        let mut running: BTreeSet<i32> = BTreeSet::new();
        let mut keep: Vec<&Pod> = Vec::new();
        for p in active {
            match completion_index(p) {
                Some(i) if i < total && !completed.contains(&i) && running.insert(i) => {
                    keep.push(p)
                }
                _ => out.delete.extend(name(p)),
            }
        }
        if keep.len() > parallelism {
            // Highest indexes first, as kube.
            keep.sort_by_key(|p| std::cmp::Reverse(completion_index(p)));
            let excess = keep.len() - parallelism;
            out.delete.extend(keep.iter().take(excess).filter_map(name));
            return;
        }
        let room = parallelism.saturating_sub(keep.len()).min(BURST);
        if room == 0 {
            return;
        }
        if let Some(wait) = backoff_left(pods, now) {
            out.requeue_after = Some(wait);
            return;
        }
        out.create = (0..total)
            .filter(|i| !completed.contains(i) && !running.contains(i))
            .take(room)
            .map(Some)
            .collect();
        return;
    }
    let want = match spec.completions {
        Some(c) => usize::try_from(i64::from(c).saturating_sub(succeeded).max(0))
            .unwrap_or(0)
            .min(parallelism),
        // A work queue: once a pod succeeded, no new ones.
        None if succeeded > 0 => active.len().min(parallelism),
        None => parallelism,
    };
    if active.len() > want {
        let mut victims = active.to_vec();
        victims.sort_by_key(|p| crate::replicaset::plan::deletion_rank(p));
        out.delete.extend(
            victims
                .iter()
                .take((active.len() - want).min(BURST))
                .filter_map(name),
        );
    } else if active.len() < want {
        if let Some(wait) = backoff_left(pods, now) {
            out.requeue_after = Some(wait);
            return;
        }
        out.create = vec![None; (want - active.len()).min(BURST)];
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
