//! The TTL-after-finished controller (kube's `ttlafterfinished`): a finished Job with
//! `ttlSecondsAfterFinished` is deleted, with its pods (foreground), that many seconds
//! after it finished. The expiry is checked again on a fresh read before deleting, so a
//! TTL raised meanwhile is honoured, and the delete is preconditioned on the Job's UID.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::reflector::ObjectRef;

use crate::context::{key_of, Context, Key};
use crate::informer::{Change, Informer};
use crate::reconciler::{Action, Controller, Reconciler, Run};
use crate::workqueue::WorkQueue;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading job {job}")]
    Get {
        job: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting job {job}")]
    Delete {
        job: String,
        #[source]
        source: kube::Error,
    },
}

pub struct TtlAfterFinished {
    ctx: Arc<Context>,
    jobs: Arc<Informer<Job>>,
}

pub fn new(ctx: &Arc<Context>) -> Box<dyn Run> {
    let queue = WorkQueue::new();
    let c = Arc::new(TtlAfterFinished {
        ctx: ctx.clone(),
        jobs: ctx.informers.get(),
    });
    let q = queue.clone();
    c.jobs.on_change(move |ch| {
        if let Change::Apply { new, .. } = ch {
            if expiry(new).is_some() {
                q.add(key_of(new));
            }
        }
    });
    Controller::new(c, queue).workers(2).into()
}

/// When a Job that is not being deleted expires: the last transition of its `Complete`
/// or `Failed` condition plus its TTL. `None` when it has no TTL or has not finished.
pub fn expiry(job: &Job) -> Option<jiff::Timestamp> {
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = job
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .filter(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .find_map(|c| c.last_transition_time.as_ref())?;
    finished
        .0
        .checked_add(jiff::SignedDuration::from_secs(i64::from(ttl.max(0))))
        .ok()
}

/// How long until `at`, if it is still ahead.
fn left(at: jiff::Timestamp) -> Option<Duration> {
    let d = at.duration_since(jiff::Timestamp::now());
    Duration::try_from(d).ok().filter(|d| !d.is_zero())
}

impl Reconciler for TtlAfterFinished {
    type Key = Key;
    type Error = Error;

    async fn reconcile(&self, key: &Key) -> Result<Action, Error> {
        let (ns, name) = key;
        let Some(cached) = self.jobs.store().get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Action::await_change());
        };
        let Some(at) = expiry(&cached) else {
            return Ok(Action::await_change());
        };
        if let Some(wait) = left(at) {
            return Ok(Action::requeue(wait));
        }
        // The cache may be behind: the TTL may have been raised or the Job replaced.
        let api: Api<Job> = Api::namespaced(self.ctx.client.clone(), ns);
        let fresh = match api.get_opt(name).await {
            Ok(Some(j)) => j,
            Ok(None) => return Ok(Action::await_change()),
            Err(source) => {
                return Err(Error::Get {
                    job: name.clone(),
                    source,
                })
            }
        };
        let Some(at) = expiry(&fresh) else {
            return Ok(Action::await_change());
        };
        if let Some(wait) = left(at) {
            return Ok(Action::requeue(wait));
        }
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions: Some(Preconditions {
                uid: fresh.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => {
                tracing::info!(job = %format!("{ns}/{name}"), "deleted a finished job after its TTL");
                Ok(Action::await_change())
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                Ok(Action::await_change())
            }
            Err(source) => Err(Error::Delete {
                job: name.clone(),
                source,
            }),
        }
    }

    fn all_keys(&self) -> Vec<Key> {
        self.jobs
            .store()
            .state()
            .iter()
            .filter(|j| expiry(j).is_some())
            .map(|j| key_of(j.as_ref()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_ttl_seconds_after_the_job_finished() {
        let job = |ttl: serde_json::Value, cond: &str| -> Job {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "j"},
                "spec": {"ttlSecondsAfterFinished": ttl, "template": {}},
                "status": {"conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True",
                     "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": cond, "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"}
                ]}
            }))
            .unwrap()
        };
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        assert_eq!(
            expiry(&job(serde_json::json!(100), "Complete")),
            Some(at("2026-01-01T00:01:45Z"))
        );
        assert_eq!(
            expiry(&job(serde_json::json!(0), "Failed")),
            Some(at("2026-01-01T00:00:05Z"))
        );
        // Not finished, or no TTL: never.
        assert_eq!(expiry(&job(serde_json::json!(10), "Suspended")), None);
        assert_eq!(expiry(&job(serde_json::Value::Null, "Complete")), None);
    }
}
