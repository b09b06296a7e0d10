//! The Job controller's decisions, pure: from a Job and the pods it owns, what to write
//! and what to do (kube's `syncJob`, in short).
//!
//! Finished pods are counted through kube's finalizer protocol, so no pod is counted twice
//! or missed across controller failover: every pod is created with the
//! `batch.kubernetes.io/job-tracking` finalizer; a finished pod that still has it is first
//! written into `status.uncountedTerminatedPods` (and, for Indexed Jobs, its index into
//! `completedIndexes` or `failedIndexes`), and only after that status write are finalizers
//! removed; a UID in `uncountedTerminatedPods` whose pod has lost its finalizer (or is
//! gone) moves into `succeeded`/`failed`. Success and failure are two-step as in kube 1.32:
//! `SuccessCriteriaMet`/`FailureTarget` first (remaining pods are deleted), then
//! `Complete`/`Failed` once no pod runs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::conditions;
use super::indexes;
use super::pods::{completion_index, has_finalizer, pod_state, restarts, PodState};
use super::policy::{self, Verdict};
use super::scale::{scale, Scaling};

pub use super::pods::{COMPLETION_INDEX, TRACKING_FINALIZER};

/// At most this many pods are created or deleted per sync (kube's burst).
pub const BURST: usize = 500;

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
    /// With `backoffLimitPerIndex`: the (counted, ignored) failures of each index a pod
    /// is created for, written on the new pod.
    pub index_failures: BTreeMap<i32, (i32, i32)>,
    /// Active pods to delete, by name.
    pub delete: Vec<String>,
    /// Sync again after this long (a backoff or a deadline), even without a change.
    pub requeue_after: Option<Duration>,
    /// Events to record: (type Normal/Warning, reason, message).
    pub events: Vec<(&'static str, &'static str, String)>,
}

/// How a Job ends: a reason and a message.
#[derive(Debug, Clone, PartialEq)]
enum End {
    Fail(String, String),
    Succeed(String, String),
}

fn fail(reason: &str, msg: &str) -> End {
    End::Fail(reason.into(), msg.into())
}

/// Whether the Job fails for its backoff limit or its deadline now.
fn limits_exceeded(
    job: &Job,
    failed: i64,
    active: &[&Pod],
    now: jiff::Timestamp,
    start: Option<jiff::Timestamp>,
) -> Option<End> {
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
    if failures > i64::from(spec.backoff_limit.unwrap_or(6)) {
        return Some(fail(
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ));
    }
    let end = deadline(job, start?)?;
    (end <= now).then(|| {
        fail(
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        )
    })
}

fn deadline(job: &Job, start: jiff::Timestamp) -> Option<jiff::Timestamp> {
    let secs = job.spec.as_ref()?.active_deadline_seconds?;
    start
        .checked_add(jiff::SignedDuration::from_secs(secs.max(0)))
        .ok()
}

/// What the finished pods that still carry the finalizer add to the counts.
#[derive(Default)]
struct Tracking {
    unc_ok: BTreeSet<String>,
    unc_failed: BTreeSet<String>,
    completed: BTreeSet<i32>,
    failed_indexes: BTreeSet<i32>,
    /// A pod failure policy rule that fails the Job (the first pod's message).
    fail_job: Option<String>,
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
    let per_index = indexed && spec.backoff_limit_per_index.is_some();
    let completions = spec.completions;
    let finished = conditions::is_true(&old, "Complete") || conditions::is_true(&old, "Failed");
    let suspended = spec.suspend == Some(true);
    // Replacement policy `Failed` (implied by a pod failure policy): a pod being deleted
    // is neither failed nor replaced until it reaches phase Failed.
    let only_failed = spec.pod_replacement_policy.as_deref() == Some("Failed")
        || spec.pod_failure_policy.is_some();
    let failure_policy = spec.pod_failure_policy.as_ref();
    let failure_target = conditions::reason_of(&old, "FailureTarget");
    let success_met = conditions::reason_of(&old, "SuccessCriteriaMet");

    // 1. Finalizer tracking: finished pods with our finalizer into uncounted; uncounted
    //    pods whose finalizer is gone into the counts.
    let uncounted = old.uncounted_terminated_pods.clone().unwrap_or_default();
    let limit = completions.unwrap_or(0);
    let mut t = Tracking {
        unc_ok: uncounted
            .succeeded
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        unc_failed: uncounted
            .failed
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        completed: indexes::parse(old.completed_indexes.as_deref().unwrap_or(""), limit),
        failed_indexes: indexes::parse(old.failed_indexes.as_deref().unwrap_or(""), limit),
        fail_job: None,
    };
    let by_uid: BTreeMap<&str, &Pod> = pods
        .iter()
        .filter_map(|p| Some((p.metadata.uid.as_deref()?, *p)))
        .collect();
    let gone = |uid: &String| by_uid.get(uid.as_str()).is_none_or(|p| !has_finalizer(p));
    let mut succeeded = i64::from(old.succeeded.unwrap_or(0));
    let mut failed = i64::from(old.failed.unwrap_or(0));
    let before = t.unc_ok.len();
    t.unc_ok.retain(|uid| !gone(uid));
    succeeded = succeeded.saturating_add(i64::try_from(before - t.unc_ok.len()).unwrap_or(0));
    let before = t.unc_failed.len();
    t.unc_failed.retain(|uid| !gone(uid));
    failed = failed.saturating_add(i64::try_from(before - t.unc_failed.len()).unwrap_or(0));
    let mut awaited: Vec<&Pod> = Vec::new();
    for p in pods {
        let (Some(uid), Some(name)) = (p.metadata.uid.as_deref(), p.metadata.name.as_deref())
        else {
            continue;
        };
        if !has_finalizer(p) {
            continue;
        }
        let index = completion_index(p).filter(|i| indexed && *i < limit);
        let state = pod_state(p);
        // A pod deleted before it finished failed (kube's isPodFailed: it may never reach
        // a terminal phase), unless suspension or success deleted it, or the replacement
        // policy waits for its phase (not once the Job is failing). One never scheduled
        // will not get a phase from any node.
        let unscheduled = p.spec.as_ref().is_none_or(|s| s.node_name.is_none());
        let failed_now = match state {
            PodState::Failed => true,
            PodState::Terminating if suspended || success_met.is_some() => false,
            PodState::Terminating => failure_target.is_some() || !only_failed || unscheduled,
            _ => false,
        };
        if state == PodState::Succeeded {
            t.unc_ok.insert(uid.to_string());
            if let Some(i) = index {
                t.completed.insert(i);
            }
        } else if failed_now {
            let verdict = policy::judge(failure_policy, p);
            if verdict.counts() {
                t.unc_failed.insert(uid.to_string());
            }
            if let (Verdict::FailJob(msg), false) = (&verdict, finished) {
                t.fail_job.get_or_insert_with(|| msg.clone());
            }
            if let (Some(i), true) = (index, per_index) {
                if policy::index_fails(job, p, &verdict) && !t.completed.contains(&i) {
                    t.failed_indexes.insert(i);
                }
            }
        } else if state == PodState::Terminating
            && !(finished || suspended || success_met.is_some())
        {
            // Waits for its phase (replacement policy `Failed`).
            awaited.push(p);
            continue;
        } else if state == PodState::Active && !finished {
            continue;
        }
        // Counted above, or let go of: a Job that is over keeps no pod, nor does a
        // suspended one keep those it deletes.
        out.remove_finalizers.push(name.to_string());
    }
    let succeeded_total = succeeded.saturating_add(i64::try_from(t.unc_ok.len()).unwrap_or(0));
    let failed_total = failed.saturating_add(i64::try_from(t.unc_failed.len()).unwrap_or(0));

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
            if !conditions::is_true(&old, "Suspended") {
                conditions::set(
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
            if conditions::is_true(&old, "Suspended") {
                conditions::set(
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

    // 3. How the Job ends, in kube's order: a target already set; a failure (pod failure
    //    policy, backoff limit, deadline, failed indexes); a success (success policy,
    //    completions).
    let completed_n = i64::try_from(t.completed.len()).unwrap_or(i64::MAX);
    let failed_n = i64::try_from(t.failed_indexes.len()).unwrap_or(i64::MAX);
    let end = if finished {
        None
    } else if let Some((r, m)) = failure_target.clone() {
        Some(End::Fail(r, m))
    } else if let Some((r, m)) = success_met.clone() {
        Some(End::Succeed(r, m))
    } else {
        t.fail_job
            .as_ref()
            .map(|m| fail("PodFailurePolicy", m))
            .or_else(|| {
                let start = start.filter(|_| !suspended);
                limits_exceeded(job, failed_total, &active, now, start)
            })
            .or_else(|| {
                let max = spec.max_failed_indexes.map(i64::from);
                let all = i64::from(limit);
                match per_index {
                    true if max.is_some_and(|m| failed_n > m) => Some(fail(
                        "MaxFailedIndexesExceeded",
                        "Job has exceeded the specified maximal number of failed indexes",
                    )),
                    true if failed_n > 0 && failed_n.saturating_add(completed_n) >= all => {
                        Some(fail("FailedIndexes", "Job has failed indexes"))
                    }
                    _ => None,
                }
            })
            .or_else(|| {
                let rule = policy::success_rule_met(
                    spec.success_policy.as_ref().filter(|_| indexed),
                    &t.completed,
                    limit,
                )?;
                Some(End::Succeed(
                    "SuccessPolicy".into(),
                    format!("Matched rules at index {rule}"),
                ))
            })
            .or_else(|| {
                let reached = match (indexed, completions) {
                    (true, Some(c)) => completed_n >= i64::from(c),
                    (false, Some(c)) => succeeded_total >= i64::from(c),
                    // A work queue: done once one pod succeeded and none runs.
                    (_, None) => succeeded_total > 0 && active.is_empty(),
                };
                reached.then(|| {
                    End::Succeed(
                        "CompletionsReached".into(),
                        "Reached expected number of succeeded pods".into(),
                    )
                })
            })
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
        active.is_empty() && terminating == 0 && t.unc_ok.is_empty() && t.unc_failed.is_empty();
    match &end {
        Some(End::Fail(reason, msg)) => {
            if failure_target.is_none() {
                conditions::set(&mut st, "FailureTarget", "True", reason, msg, &now_t);
            }
            out.delete = names(&active);
            if settled {
                conditions::set(&mut st, "Failed", "True", reason, msg, &now_t);
                out.events
                    .push(("Warning", event_reason(reason), msg.clone()));
            }
        }
        Some(End::Succeed(reason, msg)) => {
            if success_met.is_none() {
                conditions::set(&mut st, "SuccessCriteriaMet", "True", reason, msg, &now_t);
            }
            out.delete = names(&active);
            if settled {
                conditions::set(&mut st, "Complete", "True", reason, msg, &now_t);
                st.completion_time = Some(now_t.clone());
                out.events
                    .push(("Normal", "Completed", "Job completed".into()));
            }
        }
        None if finished => {}
        None if suspended => out.delete = names(&active),
        None => {
            scale(
                &Scaling {
                    job,
                    pods,
                    active: &active,
                    awaited: &awaited,
                    completed: &t.completed,
                    failed_indexes: &t.failed_indexes,
                    succeeded: succeeded_total,
                    now,
                },
                &mut out,
            );
            // Wake up for the deadline.
            if let Some(end) = start.and_then(|s| deadline(job, s)) {
                let left = Duration::try_from(end.duration_since(now)).unwrap_or(Duration::ZERO);
                out.requeue_after = Some(out.requeue_after.map_or(left, |r| r.min(left)));
            }
        }
    }

    // 4. The status.
    let count = |n: usize| Some(i32::try_from(n).unwrap_or(i32::MAX));
    st.active = count(active.len());
    st.ready = count(ready);
    st.terminating = count(terminating);
    st.succeeded = Some(i32::try_from(succeeded).unwrap_or(i32::MAX));
    st.failed = Some(i32::try_from(failed).unwrap_or(i32::MAX));
    let mut uncounted = uncounted;
    uncounted.succeeded = Some(t.unc_ok.into_iter().collect());
    uncounted.failed = Some(t.unc_failed.into_iter().collect());
    st.uncounted_terminated_pods = Some(uncounted);
    if indexed {
        st.completed_indexes = Some(indexes::format(&t.completed));
    }
    if per_index {
        st.failed_indexes = Some(indexes::format(&t.failed_indexes));
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
        "MaxFailedIndexesExceeded" => "MaxFailedIndexesExceeded",
        "FailedIndexes" => "FailedIndexes",
        _ => "BackoffLimitExceeded",
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
