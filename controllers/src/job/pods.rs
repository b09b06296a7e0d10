//! What the Job controller reads off a pod, pure.

use k8s_openapi::api::core::v1::Pod;

pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

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

/// When the pod finished: its last container's end, else its creation.
pub fn finish_time(p: &Pod) -> Option<jiff::Timestamp> {
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
pub fn restarts(p: &Pod) -> i64 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|c| i64::from(c.restart_count.max(0)))
        .sum()
}
