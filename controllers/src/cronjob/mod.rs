//! The CronJob controller (batch/v1), as kube's `cronjob_controllerv2`: a CronJob is
//! queued when it or a Job it controls changes, and again just after its next schedule
//! time; `reconcile` runs the pure decisions of `plan.rs` over the caches and carries
//! them out in kube's order: history and replaced Jobs deleted, the Job of the schedule
//! time created (or adopted, when a crash left it behind), then one status write.

pub mod plan;

use std::collections::BTreeSet;
use std::sync::Arc;

use component_base::events::{object_ref, EventType};
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use kube::api::{Api, DeleteParams, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::reflector::ObjectRef;

use crate::context::{controller_of, key_of, refers_to, Context, Key};
use crate::informer::{Change, Informer};
use crate::reconciler::{Action, Controller, Reconciler, Run};
use crate::workqueue::WorkQueue;
use plan::{Deletion, Plan};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {what}")]
    Get {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting job {job}")]
    Delete {
        job: String,
        #[source]
        source: kube::Error,
    },
    #[error("creating job {job}")]
    Create {
        job: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the status of cronjob {cronjob}")]
    Status {
        cronjob: String,
        #[source]
        source: kube::Error,
    },
}

pub struct CronJobController {
    ctx: Arc<Context>,
    cronjobs: Arc<Informer<CronJob>>,
    jobs: Arc<Informer<Job>>,
    /// The zone of schedules without a `timeZone` (kube: the controller-manager's).
    local: TimeZone,
}

pub fn new(ctx: &Arc<Context>) -> Box<dyn Run> {
    let queue = WorkQueue::new();
    let c = Arc::new(CronJobController {
        ctx: ctx.clone(),
        cronjobs: ctx.informers.get(),
        jobs: ctx.informers.get(),
        local: TimeZone::system(),
    });
    let q = queue.clone();
    c.cronjobs.on_change(move |ch| {
        if let Change::Apply { new, .. } = ch {
            q.add(key_of(new));
        }
    });
    let q = queue.clone();
    c.jobs.on_change(move |ch| {
        let j = match ch {
            Change::Apply { new, .. } => new,
            Change::Delete(j) => j,
        };
        if let Some(r) = controller_of(j).filter(|r| refers_to::<CronJob>(r)) {
            q.add((
                j.metadata.namespace.clone().unwrap_or_default(),
                r.name.clone(),
            ));
        }
    });
    Controller::new(c, queue).workers(2).into()
}

impl Reconciler for CronJobController {
    type Key = Key;
    type Error = Error;

    async fn reconcile(&self, key: &Key) -> Result<Action, Error> {
        let (ns, name) = key;
        let Some(cached) = self.cronjobs.store().get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Action::await_change());
        };
        let mut cj = (*cached).clone();
        let uid = cj.metadata.uid.clone().unwrap_or_default();
        let owned: Vec<Arc<Job>> = self
            .jobs
            .store()
            .state()
            .into_iter()
            .filter(|j| j.metadata.namespace.as_deref() == Some(ns.as_str()))
            .filter(|j| controller_of(j.as_ref()).is_some_and(|r| r.uid == uid))
            .collect();
        let jobs: Vec<&Job> = owned.iter().map(|j| j.as_ref()).collect();
        let api: Api<CronJob> = Api::namespaced(self.ctx.client.clone(), ns);
        let jobs_api: Api<Job> = Api::namespaced(self.ctx.client.clone(), ns);
        let now = jiff::Timestamp::now();
        let mut gone = BTreeSet::new();
        let mut plan = plan::plan(&cj, &jobs, &gone, now, &self.local);
        // The cache may lag behind this controller's own writes: an unlisted Job may be
        // listed by now, an active one missing from the cache may exist. Read to know.
        if !plan.unexpected.is_empty() {
            cj = match api.get_opt(name).await {
                Ok(Some(fresh)) => fresh,
                Ok(None) => return Ok(Action::await_change()),
                Err(source) => {
                    return Err(Error::Get {
                        what: format!("cronjob {name}"),
                        source,
                    })
                }
            };
        }
        for r in &plan.unknown_active {
            let job = r.name.clone().unwrap_or_default();
            match jobs_api.get_opt(&job).await {
                Ok(Some(j)) if j.metadata.uid == r.uid => {}
                Ok(_) => {
                    gone.insert(r.uid.clone().unwrap_or_default());
                }
                Err(source) => {
                    return Err(Error::Get {
                        what: format!("job {job}"),
                        source,
                    })
                }
            }
        }
        if !plan.unexpected.is_empty() || !gone.is_empty() {
            plan = plan::plan(&cj, &jobs, &gone, now, &self.local);
        }
        self.carry_out(&cj, &jobs_api, &api, plan).await
    }

    fn all_keys(&self) -> Vec<Key> {
        self.cronjobs
            .store()
            .state()
            .iter()
            .map(|c| key_of(c.as_ref()))
            .collect()
    }
}

impl CronJobController {
    fn event(&self, cj: &CronJob, ty: &str, reason: &str, msg: &str) {
        let ty = if ty == "Warning" {
            EventType::Warning
        } else {
            EventType::Normal
        };
        self.ctx.recorder.record(&object_ref(cj), ty, reason, msg);
    }

    async fn carry_out(
        &self,
        cj: &CronJob,
        jobs_api: &Api<Job>,
        api: &Api<CronJob>,
        plan: Plan,
    ) -> Result<Action, Error> {
        let name = cj.metadata.name.clone().unwrap_or_default();
        for job in &plan.unexpected {
            self.event(
                cj,
                "Warning",
                "UnexpectedJob",
                &format!("Saw a job that the controller did not create or forgot: {job}"),
            );
        }
        for (ty, reason, msg) in &plan.events {
            self.event(cj, ty, reason, msg);
        }
        // 1. Deletions: the history beyond its limits, the Jobs a new one replaces (with
        //    their pods, in the background).
        for (job, uid, why) in &plan.delete {
            let dp = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match jobs_api.delete(job, &dp).await {
                Ok(_) => self.event(
                    cj,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("Deleted job {job}"),
                ),
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(source) => {
                    if *why == Deletion::Replaced {
                        self.event(
                            cj,
                            "Warning",
                            "FailedDelete",
                            &format!("Deleted job: {source}"),
                        );
                    }
                    return Err(Error::Delete {
                        job: job.clone(),
                        source,
                    });
                }
            }
        }
        // 2. The Job of the schedule time; one a crash left behind is adopted.
        let mut status = plan.status;
        if let Some((job, scheduled)) = plan.create {
            let job_name = job.metadata.name.clone().unwrap_or_default();
            let made = match jobs_api.create(&PostParams::default(), &job).await {
                Ok(made) => {
                    self.event(
                        cj,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created job {job_name}"),
                    );
                    made
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    let existing =
                        jobs_api
                            .get_opt(&job_name)
                            .await
                            .map_err(|source| Error::Get {
                                what: format!("job {job_name}"),
                                source,
                            })?;
                    match existing {
                        Some(j)
                            if controller_of(&j)
                                .is_some_and(|r| Some(&r.uid) == cj.metadata.uid.as_ref()) =>
                        {
                            j
                        }
                        _ => {
                            self.event(
                                cj,
                                "Warning",
                                "FailedCreate",
                                &format!("Error creating job: {}", e.message),
                            );
                            return Ok(Action::requeue(std::time::Duration::from_secs(10)));
                        }
                    }
                }
                Err(source) => {
                    self.event(
                        cj,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating job: {source}"),
                    );
                    return Err(Error::Create {
                        job: job_name,
                        source,
                    });
                }
            };
            status = plan::with_created(status, &made, scheduled);
        }
        // 3. One status write, when it changed.
        self.write_status(cj, api, &name, status).await?;
        Ok(match plan.requeue_after {
            Some(d) => Action::requeue(d),
            None => Action::await_change(),
        })
    }

    async fn write_status(
        &self,
        cj: &CronJob,
        api: &Api<CronJob>,
        name: &str,
        status: CronJobStatus,
    ) -> Result<(), Error> {
        if cj.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut updated = cj.clone();
        updated.status = Some(status);
        match api
            .replace_status(name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(()),
            // A newer CronJob is on its way through the watch; it is synced again.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
            Err(source) => Err(Error::Status {
                cronjob: name.to_string(),
                source,
            }),
        }
    }
}
