//! A Job's status conditions, pure.

use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn find<'a>(status: &'a JobStatus, ty: &str) -> Option<&'a JobCondition> {
    status.conditions.iter().flatten().find(|c| c.type_ == ty)
}

pub fn is_true(status: &JobStatus, ty: &str) -> bool {
    find(status, ty).is_some_and(|c| c.status == "True")
}

/// The reason and message of condition `ty`, if it is true.
pub fn reason_of(status: &JobStatus, ty: &str) -> Option<(String, String)> {
    find(status, ty).filter(|c| c.status == "True").map(|c| {
        (
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        )
    })
}

/// Sets condition `ty` to `status` with the reason and message, keeping its transition
/// time when the status does not change.
pub fn set(st: &mut JobStatus, ty: &str, status: &str, reason: &str, msg: &str, now: &Time) {
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
