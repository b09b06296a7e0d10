//! A Job's pod failure policy, success policy and per-index backoff, pure (kube's
//! `pod_failure_policy.go`, `success_policy.go` and the per-index parts of
//! `indexed_job_utils.go`).

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::{
    Job, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, SuccessPolicy,
};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::indexes;

/// How many failures of its index a pod's predecessors had (per-index backoff).
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// How many failures of its index the pod failure policy ignored.
pub const INDEX_IGNORED_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-ignored-failure-count";

/// What the pod failure policy makes of a failed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Counted towards the backoff limits (no rule matched, or a `Count` rule).
    Count,
    /// Not counted; the pod is replaced.
    Ignore,
    /// The Job fails, with this message.
    FailJob(String),
    /// The pod's index fails (backoffLimitPerIndex).
    FailIndex,
}

impl Verdict {
    pub fn counts(&self) -> bool {
        !matches!(self, Verdict::Ignore)
    }
}

/// The verdict of `policy` (rules in order, the first that matches) on the failed `pod`.
pub fn judge(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Verdict {
    let Some(policy) = policy else {
        return Verdict::Count;
    };
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let status = pod.status.as_ref();
    for (index, rule) in policy.rules.iter().enumerate() {
        let message = if let Some(req) = &rule.on_exit_codes {
            let containers = status
                .and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten()
                .chain(
                    status
                        .and_then(|s| s.init_container_statuses.as_ref())
                        .into_iter()
                        .flatten(),
                );
            let Some((c, code)) = containers
                .filter_map(|c| Some((c, exit_code(c)?)))
                .find(|(c, code)| exit_codes_match(req, c, *code))
            else {
                continue;
            };
            format!(
                "Container {} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {index}",
                c.name, rule.action
            )
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let Some(cond) = status
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .find(|c| {
                    patterns.iter().any(|p| {
                        let want = if p.status.is_empty() {
                            "True"
                        } else {
                            &p.status
                        };
                        p.type_ == c.type_ && want == c.status
                    })
                })
            else {
                continue;
            };
            format!(
                "Pod {ns}/{name} has condition {} matching {} rule at index {index}",
                cond.type_, rule.action
            )
        } else {
            continue;
        };
        return match rule.action.as_str() {
            "Ignore" => Verdict::Ignore,
            "FailJob" => Verdict::FailJob(message),
            "FailIndex" => Verdict::FailIndex,
            _ => Verdict::Count,
        };
    }
    Verdict::Count
}

fn exit_code(c: &ContainerStatus) -> Option<i32> {
    c.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code)
}

/// A non-zero exit code of the named (or any) container, in or not in the values.
fn exit_codes_match(
    req: &PodFailurePolicyOnExitCodesRequirement,
    c: &ContainerStatus,
    code: i32,
) -> bool {
    if code == 0 || req.container_name.as_deref().is_some_and(|n| n != c.name) {
        return false;
    }
    let listed = req.values.contains(&code);
    match req.operator.as_str() {
        "In" => listed,
        "NotIn" => !listed,
        _ => false,
    }
}

/// The index of the first rule of the success policy that the succeeded indexes meet.
pub fn success_rule_met(
    policy: Option<&SuccessPolicy>,
    succeeded: &BTreeSet<i32>,
    completions: i32,
) -> Option<usize> {
    policy?.rules.iter().position(|rule| {
        match (rule.succeeded_indexes.as_deref(), rule.succeeded_count) {
            (Some(set), count) => {
                let wanted = indexes::parse(set, completions);
                let have = wanted.intersection(succeeded).count();
                match count {
                    Some(n) => i64::try_from(have).unwrap_or(i64::MAX) >= i64::from(n),
                    None => have == wanted.len(),
                }
            }
            (None, Some(n)) => i64::try_from(succeeded.len()).unwrap_or(i64::MAX) >= i64::from(n),
            (None, None) => false,
        }
    })
}

fn annotation(p: &Pod, key: &str) -> i32 {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        .max(0)
}

/// The failures (counted, ignored) of its index that came before this pod.
pub fn failure_counts(p: &Pod) -> (i32, i32) {
    (
        annotation(p, INDEX_FAILURE_COUNT),
        annotation(p, INDEX_IGNORED_FAILURE_COUNT),
    )
}

/// Whether the failed `pod` fails its index: a `FailIndex` verdict, or a counted failure
/// when the index has used up `backoffLimitPerIndex` (kube's isIndexFailed).
pub fn index_fails(job: &Job, pod: &Pod, verdict: &Verdict) -> bool {
    let Some(limit) = job.spec.as_ref().and_then(|s| s.backoff_limit_per_index) else {
        return false;
    };
    match verdict {
        Verdict::FailIndex => true,
        Verdict::Ignore => false,
        _ => failure_counts(pod).0 >= limit,
    }
}

/// The failed pod of an index that the next one follows: the one with the most failures
/// behind it (counted and ignored), the latest to finish on a tie.
pub fn last_failed<'a>(failed: impl Iterator<Item = &'a Pod>) -> Option<&'a Pod> {
    failed.max_by_key(|p| {
        let (c, i) = failure_counts(p);
        (c.saturating_add(i), super::pods::finish_time(p))
    })
}

/// The annotations of the next pod of an index after `last` (see [`last_failed`]) with
/// its verdict: its counts plus its own failure, counted or ignored.
pub fn next_failure_counts(last: Option<(&Pod, Verdict)>) -> (i32, i32) {
    match last {
        None => (0, 0),
        Some((p, v)) => {
            let (c, i) = failure_counts(p);
            if v.counts() {
                (c.saturating_add(1), i)
            } else {
                (c, i.saturating_add(1))
            }
        }
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
