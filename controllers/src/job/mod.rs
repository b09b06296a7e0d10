//! The Job controller (batch/v1), as kube's `pkg/controller/job`: every change of a Job or
//! of a pod it controls queues the Job; `reconcile` runs the pure decisions of `plan.rs`
//! (finalizer-tracked counting, two-step success and failure, suspension, pod failure
//! backoff, Indexed completions) over the caches and carries them out in kube's order:
//! the status first (with `uncountedTerminatedPods`), then the finalizers of the pods it
//! names, then creations and deletions under expectations, so a failover between any two
//! steps neither loses nor double-counts a finished pod.

mod conditions;
pub mod indexes;
pub mod plan;
pub mod pods;
pub mod policy;
mod scale;

use std::sync::Arc;

use component_base::events::{object_ref, EventType};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;

use crate::claims;
use crate::context::{controller_ref, key_of, Context, Key};
use crate::expectations::Expectations;
use crate::informer::{Change, Informer};
use crate::reconciler::{Action, Controller, Reconciler, Run};
use crate::workqueue::WorkQueue;
use plan::{Plan, COMPLETION_INDEX, TRACKING_FINALIZER};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Claim(#[from] claims::Error),
    #[error("writing the status of job {job}")]
    Status {
        job: String,
        #[source]
        source: kube::Error,
    },
    #[error("removing the tracking finalizer of pod {pod}")]
    Finalizer {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("creating pods for job {job}")]
    Create {
        job: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting pod {pod}")]
    Delete {
        pod: String,
        #[source]
        source: kube::Error,
    },
}

pub struct JobController {
    ctx: Arc<Context>,
    jobs: Arc<Informer<Job>>,
    pods: Arc<Informer<Pod>>,
    expectations: Expectations<Key>,
}

pub fn new(ctx: &Arc<Context>) -> Box<dyn Run> {
    let queue = WorkQueue::new();
    let c = Arc::new(JobController {
        ctx: ctx.clone(),
        jobs: ctx.informers.get(),
        pods: ctx.informers.get(),
        expectations: Expectations::default(),
    });
    let q = queue.clone();
    c.jobs.on_change(move |ch| match ch {
        Change::Apply { new, .. } => q.add(key_of(new)),
        Change::Delete(j) => q.add(key_of(j)),
    });
    let q = queue.clone();
    let weak = Arc::downgrade(&c);
    c.pods.on_change(move |ch| {
        let Some(c) = weak.upgrade() else { return };
        if let Some(key) = crate::podcontrol::observe::<Job>(&c.expectations, &ch) {
            q.add(key);
        } else if let Change::Apply { new, .. } = ch {
            // An orphan: every Job that could adopt it.
            for key in claims::adopters(&c.jobs.store().state(), new, |j| selects(j, new)) {
                q.add(key);
            }
        }
    });
    let workers = ctx.config.job_workers;
    Controller::new(c, queue).workers(workers).into()
}

impl Reconciler for JobController {
    type Key = Key;
    type Error = Error;

    async fn reconcile(&self, key: &Key) -> Result<Action, Error> {
        let (ns, name) = key;
        let Some(job) = self.jobs.store().get(&ObjectRef::new(name).within(ns)) else {
            self.expectations.forget(key);
            return Ok(Action::await_change());
        };
        // Its pods: those it controls, and orphans its selector picks, adopted with the
        // tracking finalizer so they are counted once.
        let candidates: Vec<Arc<Pod>> = self
            .pods
            .store()
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
            .collect();
        let pods_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
        let owned = claims::claim_all(
            &pods_api,
            candidates,
            &controller_ref(job.as_ref()),
            job.metadata.deletion_timestamp.is_some(),
            |p| selects(&job, p),
            &[TRACKING_FINALIZER],
        )
        .await?;
        let pods: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
        let mut plan = plan::plan(&job, &pods, jiff::Timestamp::now());
        if !self.expectations.satisfied(key) {
            // The cache does not show our last creations or deletions yet: count and
            // write, act again once it does.
            plan.create.clear();
            plan.delete.clear();
        }
        self.carry_out(&job, key, &pods, plan).await
    }

    fn all_keys(&self) -> Vec<Key> {
        self.jobs
            .store()
            .state()
            .iter()
            .map(|j| key_of(j.as_ref()))
            .collect()
    }
}

/// Whether the Job's selector picks the pod (an empty or missing selector picks nothing).
fn selects(job: &Job, p: &Pod) -> bool {
    claims::selected_by(
        job.spec.as_ref().and_then(|s| s.selector.as_ref()),
        &p.metadata,
    )
}

impl JobController {
    async fn carry_out(
        &self,
        job: &Job,
        key: &Key,
        pods: &[&Pod],
        plan: Plan,
    ) -> Result<Action, Error> {
        let (ns, name) = key;
        let jobs: Api<Job> = Api::namespaced(self.ctx.client.clone(), ns);
        let pods_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
        let r = object_ref(job);
        // 1. The status, guarded by the Job's resourceVersion (a conflict: the watch
        //    brings the newer Job and another sync).
        if let Some(status) = plan.status {
            let mut updated = job.clone();
            updated.status = Some(status);
            match jobs
                .replace_status(name, &PostParams::default(), &updated)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
                    return Ok(Action::await_change())
                }
                Err(source) => {
                    return Err(Error::Status {
                        job: name.clone(),
                        source,
                    })
                }
            }
        }
        // 2. Finalizers of the pods the written status accounts for.
        for pod_name in &plan.remove_finalizers {
            let Some(p) = pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(pod_name))
            else {
                continue;
            };
            remove_finalizer(&pods_api, p).await?;
        }
        for (ty, reason, msg) in &plan.events {
            let ty = if *ty == "Warning" {
                EventType::Warning
            } else {
                EventType::Normal
            };
            self.ctx.recorder.record(&r, ty, reason, msg);
        }
        // 3. Deletions and creations, expected before they are made.
        if !plan.delete.is_empty() {
            let victims: Vec<&Pod> = pods
                .iter()
                .copied()
                .filter(|p| {
                    p.metadata
                        .name
                        .as_ref()
                        .is_some_and(|n| plan.delete.contains(n))
                })
                .collect();
            crate::podcontrol::delete_pods(
                &self.ctx,
                &self.expectations,
                key,
                &pods_api,
                &r,
                &victims,
            )
            .await
            .map_err(|f| Error::Delete {
                pod: f.pod,
                source: f.source,
            })?;
        }
        if !plan.create.is_empty() {
            self.expectations.expect_creations(key, plan.create.len());
            let mut left = plan.create.len();
            for index in &plan.create {
                left -= 1;
                let mut pod = pod_for(job, *index);
                if let Some((counted, ignored)) = index.and_then(|i| plan.index_failures.get(&i)) {
                    let a = pod
                        .metadata
                        .annotations
                        .get_or_insert_with(Default::default);
                    a.insert(policy::INDEX_FAILURE_COUNT.into(), counted.to_string());
                    if *ignored > 0 {
                        a.insert(
                            policy::INDEX_IGNORED_FAILURE_COUNT.into(),
                            ignored.to_string(),
                        );
                    }
                }
                match pods_api.create(&PostParams::default(), &pod).await {
                    Ok(p) => self.ctx.recorder.record(
                        &r,
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!("Created pod: {}", p.metadata.name.unwrap_or_default()),
                    ),
                    Err(source) => {
                        for _ in 0..=left {
                            self.expectations.creation_observed(key);
                        }
                        self.ctx.recorder.record(
                            &r,
                            EventType::Warning,
                            "FailedCreate",
                            &format!("Error creating: {source}"),
                        );
                        return Err(Error::Create {
                            job: name.clone(),
                            source,
                        });
                    }
                }
            }
        }
        Ok(match plan.requeue_after {
            Some(d) => Action::requeue(d),
            None => Action::await_change(),
        })
    }
}

/// Drops the tracking finalizer, guarded by the pod's resourceVersion (a merge patch, as
/// the controller's role may patch pods but not update them).
async fn remove_finalizer(api: &Api<Pod>, p: &Pod) -> Result<(), Error> {
    let left: Vec<String> = p
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != TRACKING_FINALIZER)
        .cloned()
        .collect();
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": p.metadata.resource_version, "finalizers": left}
    });
    let name = p.metadata.name.clone().unwrap_or_default();
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
        Err(source) => Err(Error::Finalizer { pod: name, source }),
    }
}

/// A pod of `job` from its template: the tracking finalizer, the controller reference,
/// and for an Indexed Job its index (annotation and label), hostname `<job>-<index>` and
/// `JOB_COMPLETION_INDEX` in every container.
pub fn pod_for(job: &Job, index: Option<i32>) -> Pod {
    let name = job.metadata.name.clone().unwrap_or_default();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    let mut finalizers = tmeta.finalizers.unwrap_or_default();
    finalizers.push(TRACKING_FINALIZER.into());
    let mut spec = template.spec;
    let generate_name = match index {
        Some(i) => {
            labels.insert(COMPLETION_INDEX.into(), i.to_string());
            annotations.insert(COMPLETION_INDEX.into(), i.to_string());
            if let Some(s) = spec.as_mut() {
                s.hostname = Some(format!("{name}-{i}"));
                let env = EnvVar {
                    name: "JOB_COMPLETION_INDEX".into(),
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: format!("metadata.labels['{COMPLETION_INDEX}']"),
                            api_version: None,
                        }),
                        ..Default::default()
                    }),
                    value: None,
                };
                for c in s
                    .containers
                    .iter_mut()
                    .chain(s.init_containers.iter_mut().flatten())
                {
                    let vars = c.env.get_or_insert_with(Vec::new);
                    if !vars.iter().any(|v| v.name == env.name) {
                        vars.push(env.clone());
                    }
                }
            }
            format!("{name}-{i}-")
        }
        None => format!("{name}-"),
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![controller_ref(job)]),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::pods::completion_index;
    use super::*;

    #[test]
    fn indexed_pods_carry_their_index() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pi", "namespace": "default", "uid": "u"},
            "spec": {"template": {
                "metadata": {"labels": {"batch.kubernetes.io/job-name": "pi"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c"}]}}}
        }))
        .unwrap();
        let p = pod_for(&job, Some(3));
        assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-3-"));
        assert_eq!(completion_index(&p), Some(3));
        assert_eq!(p.metadata.labels.as_ref().unwrap()[COMPLETION_INDEX], "3");
        assert_eq!(
            p.metadata.finalizers.as_deref(),
            Some(&[TRACKING_FINALIZER.to_string()][..])
        );
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-3"));
        let env = spec.containers[0].env.as_ref().unwrap();
        assert_eq!(env[0].name, "JOB_COMPLETION_INDEX");
        let r = &p.metadata.owner_references.unwrap()[0];
        assert_eq!((r.kind.as_str(), r.uid.as_str()), ("Job", "u"));
        let plain = pod_for(&job, None);
        assert_eq!(plain.metadata.generate_name.as_deref(), Some("pi-"));
        assert!(plain.spec.unwrap().hostname.is_none());
    }
}
