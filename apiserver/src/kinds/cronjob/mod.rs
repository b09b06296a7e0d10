//! batch/v1 CronJob: kube's defaults (`pkg/apis/batch/v1/defaults.go`), validation
//! (`pkg/apis/batch/validation`: the schedule through `flotilla_core::cron`, the time
//! zone, the policies, the job template as a Job's spec at `spec.jobTemplate.spec`) and
//! update rules (`pkg/registry/batch/cronjob/strategy.go`).

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, CronJobStatus};

use super::job::{json, validate_template_spec};
use super::{podspec, Kind};
use crate::error::FieldError;

pub struct CronJobs;

/// Names leave room for the 11 characters of a Job's `-<minutes>` suffix in 63.
const MAX_NAME: usize = 52;
const POLICIES: &[&str] = &["Allow", "Forbid", "Replace"];

impl Kind for CronJobs {
    type Obj = CronJob;
    const SINGULAR: &'static str = "cronjob";
    const SHORT_NAMES: &'static [&'static str] = &["cj"];
    const CATEGORIES: &'static [&'static str] = &["all"];
    const STATUS: bool = true;
    const GENERATION: bool = true;
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::batch::CRONJOB);

    fn default(cj: &mut CronJob) {
        let Some(spec) = cj.spec.as_mut() else {
            return;
        };
        spec.concurrency_policy
            .get_or_insert_with(|| "Allow".into());
        spec.suspend.get_or_insert(false);
        spec.successful_jobs_history_limit.get_or_insert(3);
        spec.failed_jobs_history_limit.get_or_insert(1);
        if let Some(job) = spec.job_template.spec.as_mut() {
            podspec::default_template(&mut job.template);
        }
    }

    fn prepare_create(cj: &mut CronJob) {
        cj.status = Some(CronJobStatus::default());
    }

    fn validate(cj: &CronJob) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let name = cj.metadata.name.as_deref().unwrap_or_default();
        if name.len() > MAX_NAME {
            errs.push(FieldError::invalid(
                "metadata.name",
                name,
                format!("must be no more than {MAX_NAME} characters"),
            ));
        }
        match &cj.spec {
            None => errs.push(FieldError::required("spec", "")),
            Some(spec) => validate_spec(spec, &mut errs),
        }
        errs
    }
}

fn non_negative<T: Into<i64> + Copy>(field: &str, v: Option<T>, errs: &mut Vec<FieldError>) {
    if let Some(v) = v.map(Into::into).filter(|v| *v < 0) {
        errs.push(FieldError::invalid_raw(
            field,
            v.to_string(),
            "must be greater than or equal to 0",
        ));
    }
}

fn validate_spec(spec: &CronJobSpec, errs: &mut Vec<FieldError>) {
    if spec.schedule.is_empty() {
        errs.push(FieldError::required("spec.schedule", ""));
    } else if spec.schedule.contains("TZ") {
        errs.push(FieldError::invalid(
            "spec.schedule",
            &spec.schedule,
            if spec.time_zone.is_some() {
                "cannot use both timeZone field and TZ or CRON_TZ in schedule"
            } else {
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
            },
        ));
    } else if let Err(e) = flotilla_core::cron::parse(&spec.schedule) {
        errs.push(FieldError::invalid("spec.schedule", &spec.schedule, e));
    }
    if let Some(tz) = spec.time_zone.as_deref() {
        if let Err(e) = flotilla_core::cron::time_zone(tz) {
            errs.push(FieldError::invalid("spec.timeZone", tz, e));
        }
    }
    match spec.concurrency_policy.as_deref() {
        None | Some("") => errs.push(FieldError::required("spec.concurrencyPolicy", "")),
        Some(p) if !POLICIES.contains(&p) => errs.push(FieldError::not_supported(
            "spec.concurrencyPolicy",
            p,
            POLICIES,
        )),
        Some(_) => {}
    }
    non_negative(
        "spec.startingDeadlineSeconds",
        spec.starting_deadline_seconds,
        errs,
    );
    non_negative(
        "spec.successfulJobsHistoryLimit",
        spec.successful_jobs_history_limit,
        errs,
    );
    non_negative(
        "spec.failedJobsHistoryLimit",
        spec.failed_jobs_history_limit,
        errs,
    );
    let Some(job) = &spec.job_template.spec else {
        errs.push(FieldError::required("spec.jobTemplate.spec", ""));
        return;
    };
    // kube's ValidateJobTemplateSpec: a Job's spec, whose selector is generated later.
    errs.extend(validate_template_spec(job, None).into_iter().map(|mut e| {
        if let Some(rest) = e.field.strip_prefix("spec.") {
            e.field = format!("spec.jobTemplate.spec.{rest}");
        }
        e
    }));
    if let Some(sel) = &job.selector {
        errs.push(FieldError::invalid_raw(
            "spec.jobTemplate.spec.selector",
            json(sel),
            "`selector` will be auto-generated",
        ));
    }
    if job.manual_selector == Some(true) {
        errs.push(FieldError::not_supported(
            "spec.jobTemplate.spec.manualSelector",
            "true",
            &["nil", "false"],
        ));
    }
}

#[cfg(test)]
mod tests;
