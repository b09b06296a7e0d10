//! A Deployment's status: replica counts summed over its ReplicaSets, and the Available and
//! Progressing conditions (with progressDeadlineSeconds), as `kubectl rollout status`
//! reads them.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};

use super::plan::{clamp_i32, total};
use crate::context::Context;
use crate::deployment::Error;
use crate::reconciler::Action;

fn set(
    conds: &mut Vec<DeploymentCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: jiff::Timestamp,
) {
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == status && c.reason.as_deref() == Some(reason) => {
            if c.message.as_deref() != Some(message.as_str()) {
                c.message = Some(message);
                c.last_update_time = Some(Time(now));
            }
        }
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Some(Time(now));
            }
            c.status = status.into();
            c.reason = Some(reason.into());
            c.message = Some(message);
            c.last_update_time = Some(Time(now));
        }
        None => conds.push(DeploymentCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_update_time: Some(Time(now)),
            last_transition_time: Some(Time(now)),
        }),
    }
}

/// When a rollout whose Progressing condition last moved at `since` times out, with
/// `progressDeadlineSeconds` of `deadline`; `None` when that is past the end of time
/// (a `since` someone wrote near the year 9999).
pub fn progress_end(since: jiff::Timestamp, deadline: i32) -> Option<jiff::Timestamp> {
    since
        .checked_add(jiff::SignedDuration::from_secs(i64::from(deadline)))
        .ok()
}

pub async fn sync(
    ctx: &Context,
    d: &Deployment,
    rss: &[Arc<ReplicaSet>],
    new: Option<&ReplicaSet>,
    created: bool,
    max_unavailable: i32,
) -> Result<Action, Error> {
    let spec = d.spec.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1).max(0);
    let st = |r: &ReplicaSet| r.status.clone().unwrap_or_default();
    // Statuses are what any client wrote: summed in i64, clamped back to i32.
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| clamp_i32(total(rss.iter().map(|r| f(r))));
    let replicas = sum(&|r| st(r).replicas);
    let ready = sum(&|r| st(r).ready_replicas.unwrap_or(0));
    let available = sum(&|r| st(r).available_replicas.unwrap_or(0));
    let updated = new.map(|n| st(n).replicas).unwrap_or(0);
    let old = d.status.clone().unwrap_or_default();
    let now = jiff::Timestamp::now();
    let mut conds = old.conditions.clone().unwrap_or_default();

    if i64::from(available) >= i64::from(desired) - i64::from(max_unavailable) {
        set(
            &mut conds,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            now,
        );
    } else {
        set(
            &mut conds,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            now,
        );
    }

    let new_name = new
        .and_then(|n| n.metadata.name.clone())
        .unwrap_or_default();
    let generation_seen = d.metadata.generation;
    let complete =
        new.is_some() && updated == desired && replicas == desired && available == desired;
    let deadline = spec.progress_deadline_seconds.unwrap_or(600);
    let mut requeue = None;
    if spec.paused == Some(true) {
        set(
            &mut conds,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused".into(),
            now,
        );
    } else if complete {
        set(
            &mut conds,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{new_name}\" has successfully progressed."),
            now,
        );
    } else if new.is_some() {
        let moved = created
            || updated > old.updated_replicas.unwrap_or(0)
            || replicas < old.replicas.unwrap_or(0)
            || ready > old.ready_replicas.unwrap_or(0)
            || available > old.available_replicas.unwrap_or(0)
            || conds
                .iter()
                .find(|c| c.type_ == "Progressing")
                .is_none_or(|c| c.reason.as_deref() == Some("DeploymentPaused"));
        if created {
            set(
                &mut conds,
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                format!("Created new replica set \"{new_name}\""),
                now,
            );
        } else if moved {
            let msg = format!("ReplicaSet \"{new_name}\" is progressing.");
            set(
                &mut conds,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                msg,
                now,
            );
            if let Some(c) = conds.iter_mut().find(|c| c.type_ == "Progressing") {
                c.last_update_time = Some(Time(now));
            }
        }
        // No progress for progressDeadlineSeconds: the rollout has timed out.
        if let Some(c) = conds
            .iter()
            .find(|c| c.type_ == "Progressing" && c.status == "True")
        {
            let since = c.last_update_time.as_ref().map(|t| t.0).unwrap_or(now);
            match progress_end(since, deadline) {
                Some(end) if end <= now => set(
                    &mut conds,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                    now,
                ),
                Some(end) => {
                    let left = end.duration_since(now).as_secs().max(0) as u64 + 1;
                    requeue = Some(Duration::from_secs(left));
                }
                // Past the end of time: it never times out.
                None => {}
            }
        }
    }
    conds.sort_by_key(|c| if c.type_ == "Available" { 0 } else { 1 });
    let status = DeploymentStatus {
        observed_generation: generation_seen,
        replicas: Some(replicas),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some(clamp_i32(i64::from(desired) - i64::from(available)).max(0)),
        conditions: Some(conds),
        collision_count: old.collision_count,
        terminating_replicas: None,
    };
    if status != old {
        let mut d2 = d.clone();
        d2.status = Some(status);
        let api: Api<Deployment> = Api::namespaced(
            ctx.client.clone(),
            d.metadata.namespace.as_deref().unwrap_or(""),
        );
        match api
            .replace_status(
                d.metadata.name.as_deref().unwrap_or(""),
                &PostParams::default(),
                &d2,
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
            Err(source) => return Err(Error::Status { source }),
        }
    }
    Ok(requeue.map_or(Action::await_change(), Action::requeue))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_progress_deadline_past_the_end_of_time_is_never() {
        let t = jiff::Timestamp::from_second(1_000_000).unwrap();
        assert_eq!(
            progress_end(t, 600),
            Some(t + jiff::SignedDuration::from_secs(600))
        );
        assert_eq!(progress_end(jiff::Timestamp::MAX, i32::MAX), None);
        assert_eq!(progress_end(jiff::Timestamp::MAX, 1), None);
        assert!(progress_end(jiff::Timestamp::MIN, i32::MIN).is_none());
        assert!(progress_end(t, i32::MIN).is_some_and(|e| e < t));
    }
}
