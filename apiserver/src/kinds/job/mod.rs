//! batch/v1 Job: kube's defaulting (`pkg/apis/batch/v1/defaults.go`), the generated
//! selector and update rules (`pkg/registry/batch/job/strategy.go`); the spec's validation
//! (`pkg/apis/batch/validation`) is in `validate.rs`, with kube's field paths and
//! messages.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{podspec, Kind};
use crate::error::FieldError;

mod validate;

use validate::validate_spec;
pub(in crate::kinds) use validate::validate_template_spec;

pub struct Jobs;

/// The labels the generated selector relies on (the legacy ones too, as kube sets both).
pub const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
pub const LEGACY_CONTROLLER_UID: &str = "controller-uid";
pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";
pub const LEGACY_JOB_NAME: &str = "job-name";

impl Kind for Jobs {
    type Obj = Job;
    const SINGULAR: &'static str = "job";
    const CATEGORIES: &'static [&'static str] = &["all"];
    const STATUS: bool = true;
    const GENERATION: bool = true;
    // kube keeps batch/v1's old default: a Job deleted without a policy leaves its pods
    // (kubectl asks for Background).
    const ORPHAN_BY_DEFAULT: bool = true;
    const FIELDS: &'static [&'static str] = &["status.successful"];
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::batch::JOB);

    fn default(job: &mut Job) {
        let Some(spec) = job.spec.as_mut() else {
            return;
        };
        default_spec(spec);
        // A Job without labels takes its template's (before the generated ones exist).
        let template_labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone());
        if job.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
            if let Some(l) = template_labels {
                job.metadata.labels = Some(l);
            }
        }
    }

    fn prepare_create(job: &mut Job) {
        job.status = Some(JobStatus::default());
        let name = job.metadata.name.clone().unwrap_or_default();
        let uid = job.metadata.uid.clone().unwrap_or_default();
        if let Some(spec) = job.spec.as_mut() {
            if spec.manual_selector != Some(true) {
                generate_selector(spec, &name, &uid);
            }
        }
    }

    fn validate(job: &Job) -> Vec<FieldError> {
        let Some(spec) = &job.spec else {
            return vec![FieldError::required("spec", "")];
        };
        let mut errs = Vec::new();
        if spec.manual_selector != Some(true) {
            errs.extend(generated_selector_errors(job, spec));
        }
        errs.extend(validate_spec(job, spec));
        errs
    }

    fn validate_update(new: &Job, old: &Job) -> Vec<FieldError> {
        let (Some(n), Some(o)) = (&new.spec, &old.spec) else {
            return vec![];
        };
        let mut errs = Vec::new();
        let immutable = |field: &str, changed: bool, value: String, errs: &mut Vec<FieldError>| {
            if changed {
                errs.push(FieldError::invalid_raw(field, value, "field is immutable"));
            }
        };
        immutable(
            "spec.selector",
            n.selector != o.selector,
            format!("{:?}", n.selector.clone().unwrap_or_default()),
            &mut errs,
        );
        immutable(
            "spec.completionMode",
            n.completion_mode != o.completion_mode,
            format!("{:?}", n.completion_mode.as_deref().unwrap_or("")),
            &mut errs,
        );
        immutable(
            "spec.podFailurePolicy",
            n.pod_failure_policy != o.pod_failure_policy,
            json(&n.pod_failure_policy),
            &mut errs,
        );
        immutable(
            "spec.backoffLimitPerIndex",
            n.backoff_limit_per_index != o.backoff_limit_per_index,
            json(&n.backoff_limit_per_index),
            &mut errs,
        );
        immutable(
            "spec.managedBy",
            n.managed_by != o.managed_by,
            json(&n.managed_by),
            &mut errs,
        );
        immutable(
            "spec.successPolicy",
            n.success_policy != o.success_policy,
            json(&n.success_policy),
            &mut errs,
        );
        if n.completions != o.completions {
            if indexed(o) {
                // Elastic Indexed Jobs: completions follow parallelism.
                if n.completions != n.parallelism {
                    errs.push(FieldError::invalid_raw(
                        "spec.completions",
                        json(&n.completions),
                        "can only be modified in tandem with spec.parallelism",
                    ));
                }
            } else {
                immutable("spec.completions", true, json(&n.completions), &mut errs);
            }
        }
        if n.template != o.template {
            // A suspended Job that never started may change where its pods go.
            let never_started = o.suspend == Some(true)
                && old
                    .status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .is_none();
            if !never_started || placement_free(&n.template) != placement_free(&o.template) {
                immutable("spec.template", true, json(&n.template), &mut errs);
            }
        }
        errs
    }

    fn fields(job: &Job) -> Vec<(&'static str, String)> {
        let n = job.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0);
        vec![("status.successful", n.to_string())]
    }
}

pub(super) fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The pod template's labels (none: empty).
pub(super) fn template_labels(spec: &JobSpec) -> BTreeMap<String, String> {
    spec.template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

pub(super) fn indexed(spec: &JobSpec) -> bool {
    spec.completion_mode.as_deref() == Some("Indexed")
}

fn default_spec(spec: &mut JobSpec) {
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
        spec.parallelism = Some(1);
    }
    spec.parallelism.get_or_insert(1);
    if spec.backoff_limit.is_none() {
        spec.backoff_limit = Some(if spec.backoff_limit_per_index.is_some() {
            i32::MAX
        } else {
            6
        });
    }
    spec.completion_mode
        .get_or_insert_with(|| "NonIndexed".into());
    spec.suspend.get_or_insert(false);
    spec.manual_selector.get_or_insert(false);
    if spec.pod_replacement_policy.is_none() {
        spec.pod_replacement_policy = Some(if spec.pod_failure_policy.is_some() {
            "Failed".into()
        } else {
            "TerminatingOrFailed".into()
        });
    }
    for rule in spec
        .pod_failure_policy
        .iter_mut()
        .flat_map(|p| p.rules.iter_mut())
    {
        for c in rule.on_pod_conditions.iter_mut().flatten() {
            if c.status.is_empty() {
                c.status = "True".into();
            }
        }
    }
    podspec::default_template(&mut spec.template);
}

/// kube's generateSelector: the job-name and controller-uid labels (both spellings) on
/// the template where absent, and `batch.kubernetes.io/controller-uid` in the selector.
fn generate_selector(spec: &mut JobSpec, name: &str, uid: &str) {
    let labels = spec
        .template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new);
    for key in [LEGACY_JOB_NAME, JOB_NAME] {
        labels.entry(key.into()).or_insert_with(|| name.into());
    }
    for key in [LEGACY_CONTROLLER_UID, CONTROLLER_UID] {
        labels.entry(key.into()).or_insert_with(|| uid.into());
    }
    let selector = spec.selector.get_or_insert_with(LabelSelector::default);
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .entry(CONTROLLER_UID.into())
        .or_insert_with(|| uid.into());
}

/// With a generated selector the labels must be the generated ones.
fn generated_selector_errors(job: &Job, spec: &JobSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    let name = job.metadata.name.as_deref().unwrap_or_default();
    if uid.is_empty() {
        errs.push(FieldError::required("metadata.uid", ""));
    }
    let labels = template_labels(spec);
    for (key, want) in [
        (LEGACY_CONTROLLER_UID, uid),
        (LEGACY_JOB_NAME, name),
        (CONTROLLER_UID, uid),
        (JOB_NAME, name),
    ] {
        let field = format!("spec.template.metadata.labels[{key}]");
        match labels.get(key) {
            None => errs.push(FieldError::required(field, format!("must be '{want}'"))),
            Some(v) if v != want => {
                errs.push(FieldError::invalid(field, v, format!("must be '{want}'")))
            }
            Some(_) => {}
        }
    }
    errs
}

/// The template without what a suspended, never-started Job may change (where its pods
/// run, their scheduling gates, labels and annotations).
fn placement_free(t: &k8s_openapi::api::core::v1::PodTemplateSpec) -> serde_json::Value {
    let mut t = t.clone();
    if let Some(m) = t.metadata.as_mut() {
        m.labels = None;
        m.annotations = None;
    }
    if let Some(s) = t.spec.as_mut() {
        s.node_selector = None;
        s.tolerations = None;
        s.scheduling_gates = None;
        if let Some(a) = s.affinity.as_mut() {
            a.node_affinity = None;
        }
    }
    serde_json::to_value(t).unwrap_or_default()
}

#[cfg(test)]
mod tests;
