//! How many pods a running Job wants and which, after the failure backoff, pure (kube's
//! `manageJob`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;

use super::plan::{Plan, BURST};
use super::pods::{completion_index, finish_time, pod_state, PodState};
use super::policy;

/// Pod failure backoff: 10 s doubling per failure since the last success, at most 10 min
/// (kube's DefaultJobPodFailureBackOff and MaxJobPodFailureBackOff).
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(600);

/// The delay after the `n`th failure in a row.
fn delay(n: u32) -> Duration {
    BACKOFF_BASE
        .checked_mul(2u32.saturating_pow(n.saturating_sub(1).min(16)))
        .unwrap_or(BACKOFF_MAX)
        .min(BACKOFF_MAX)
}

/// What is left of `wait` counted from `since`.
fn left(wait: Duration, since: jiff::Timestamp, now: jiff::Timestamp) -> Option<Duration> {
    let passed = Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO);
    wait.checked_sub(passed).filter(|d| !d.is_zero())
}

/// The pods of a running Job, sorted by what the controller does with them.
pub struct Scaling<'a> {
    pub job: &'a Job,
    pub pods: &'a [&'a Pod],
    pub active: &'a [&'a Pod],
    /// Pods being deleted that hold their place until they fail (replacement policy
    /// `Failed`); empty under `TerminatingOrFailed`.
    pub awaited: &'a [&'a Pod],
    pub completed: &'a BTreeSet<i32>,
    pub failed_indexes: &'a BTreeSet<i32>,
    pub succeeded: i64,
    pub now: jiff::Timestamp,
}

/// The pod failure backoff still to wait after the failures among `pods` since their last
/// success, if any (failures a pod failure policy ignores count here too, as in kube).
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
    left(
        delay(u32::try_from(failures.len()).unwrap_or(u32::MAX)),
        *last,
        now,
    )
}

/// The backoff of one index (backoffLimitPerIndex): from its last failed pod's failures,
/// counted and ignored, plus that pod's own.
fn index_backoff_left(last: &Pod, now: jiff::Timestamp) -> Option<Duration> {
    let (c, i) = policy::failure_counts(last);
    let n = u32::try_from(c.saturating_add(i).saturating_add(1)).unwrap_or(u32::MAX);
    left(delay(n), finish_time(last)?, now)
}

fn min_wait(out: &mut Plan, wait: Duration) {
    out.requeue_after = Some(out.requeue_after.map_or(wait, |r| r.min(wait)));
}

/// Pods to create or delete to run `parallelism` pods towards the completions.
pub fn scale(s: &Scaling, out: &mut Plan) {
    let Some(spec) = s.job.spec.as_ref() else {
        return;
    };
    let parallelism = usize::try_from(spec.parallelism.unwrap_or(1).max(0)).unwrap_or(0);
    if spec.completion_mode.as_deref() == Some("Indexed") {
        return scale_indexed(s, parallelism, out);
    }
    let name = |p: &&Pod| p.metadata.name.clone();
    let want = match spec.completions {
        Some(c) => usize::try_from(i64::from(c).saturating_sub(s.succeeded).max(0))
            .unwrap_or(0)
            .min(parallelism),
        // A work queue: once a pod succeeded, no new ones.
        None if s.succeeded > 0 => s.active.len().min(parallelism),
        None => parallelism,
    };
    let running = s.active.len().saturating_add(s.awaited.len());
    if s.active.len() > want {
        let mut victims = s.active.to_vec();
        victims.sort_by_key(|p| crate::replicaset::plan::deletion_rank(p));
        out.delete.extend(
            victims
                .iter()
                .take((s.active.len() - want).min(BURST))
                .filter_map(name),
        );
    } else if running < want {
        if let Some(wait) = backoff_left(s.pods, s.now) {
            return min_wait(out, wait);
        }
        out.create = vec![None; (want - running).min(BURST)];
    }
}

/// One pod per index not yet completed or failed, `parallelism` at a time; with
/// `backoffLimitPerIndex`, each index backs off on its own failures and new pods carry
/// the failure counts of their index.
fn scale_indexed(s: &Scaling, parallelism: usize, out: &mut Plan) {
    let Some(spec) = s.job.spec.as_ref() else {
        return;
    };
    let name = |p: &&Pod| p.metadata.name.clone();
    let total = spec.completions.unwrap_or(0).max(0);
    let per_index = spec.backoff_limit_per_index.is_some();
    let done = |i: &i32| s.completed.contains(i) || s.failed_indexes.contains(i);
    // One pod per index: extra pods of an index, and pods of finished indexes, go.
    let mut running: BTreeSet<i32> = s
        .awaited
        .iter()
        .filter_map(|p| completion_index(p))
        .collect();
    let mut keep: Vec<&Pod> = Vec::new();
    for p in s.active {
        match completion_index(p) {
            Some(i) if i < total && !done(&i) && running.insert(i) => keep.push(p),
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
    let mut room = parallelism
        .saturating_sub(keep.len().saturating_add(s.awaited.len()))
        .min(BURST);
    if room == 0 {
        return;
    }
    if !per_index {
        if let Some(wait) = backoff_left(s.pods, s.now) {
            return min_wait(out, wait);
        }
    }
    let mut of_index: BTreeMap<i32, Vec<&Pod>> = BTreeMap::new();
    if per_index {
        for p in s.pods {
            if let Some(i) = completion_index(p) {
                of_index.entry(i).or_default().push(p);
            }
        }
    }
    let failure_policy = spec.pod_failure_policy.as_ref();
    for i in (0..total).filter(|i| !done(i) && !running.contains(i)) {
        if room == 0 {
            break;
        }
        if per_index {
            let pods = of_index.get(&i).map(Vec::as_slice).unwrap_or(&[]);
            let last = policy::last_failed(
                pods.iter()
                    .copied()
                    .filter(|p| pod_state(p) == PodState::Failed),
            );
            if let Some(wait) = last.and_then(|p| index_backoff_left(p, s.now)) {
                min_wait(out, wait);
                continue;
            }
            let verdict = last.map(|p| (p, policy::judge(failure_policy, p)));
            out.index_failures
                .insert(i, policy::next_failure_counts(verdict));
        }
        out.create.push(Some(i));
        room -= 1;
    }
}
