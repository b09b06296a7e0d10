//! The spec's validation, as kube's `ValidateJobSpec`: counts, the completion mode and
//! what only Indexed Jobs may use, the restart policy, the pod failure and success
//! policies, and the selector against the template's labels.

use k8s_openapi::api::batch::v1::{Job, JobSpec, PodFailurePolicyRule};

use super::{json, template_labels};
use crate::error::FieldError;
use crate::kinds::podspec;

/// Indexed Jobs run at most this many pods at once.
const MAX_PARALLELISM_INDEXED: i32 = 100_000;
const MAX_FAILED_INDEXES: i32 = 100_000;
const MAX_POD_FAILURE_RULES: usize = 20;
const MAX_SUCCESS_RULES: usize = 20;
const MAX_EXIT_CODES: usize = 255;

fn non_negative(field: &str, v: Option<i32>, errs: &mut Vec<FieldError>) {
    if let Some(v) = v.filter(|v| *v < 0) {
        errs.push(FieldError::invalid_raw(
            field,
            v.to_string(),
            "must be greater than or equal to 0",
        ));
    }
}

/// A Job's spec: [`validate_template_spec`] and the selector against the template.
pub(super) fn validate_spec(job: &Job, spec: &JobSpec) -> Vec<FieldError> {
    let mut errs = validate_template_spec(spec, job.metadata.name.as_deref());
    validate_selector(spec, &mut errs);
    errs
}

/// What a Job's spec and a CronJob's job template share (kube's validateJobSpec), at
/// `spec.*`; with the Job's `name`, whether Indexed pods get valid hostnames.
pub(in crate::kinds) fn validate_template_spec(
    spec: &JobSpec,
    name: Option<&str>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    non_negative("spec.parallelism", spec.parallelism, &mut errs);
    non_negative("spec.completions", spec.completions, &mut errs);
    non_negative("spec.backoffLimit", spec.backoff_limit, &mut errs);
    non_negative(
        "spec.ttlSecondsAfterFinished",
        spec.ttl_seconds_after_finished,
        &mut errs,
    );
    non_negative(
        "spec.backoffLimitPerIndex",
        spec.backoff_limit_per_index,
        &mut errs,
    );
    non_negative("spec.maxFailedIndexes", spec.max_failed_indexes, &mut errs);
    if let Some(d) = spec.active_deadline_seconds.filter(|d| *d < 0) {
        errs.push(FieldError::invalid_raw(
            "spec.activeDeadlineSeconds",
            d.to_string(),
            "must be greater than or equal to 0",
        ));
    }
    if spec.max_failed_indexes.is_some() && spec.backoff_limit_per_index.is_none() {
        errs.push(FieldError::required(
            "spec.backoffLimitPerIndex",
            "when maxFailedIndexes is specified",
        ));
    }
    let mode = spec.completion_mode.as_deref().unwrap_or("NonIndexed");
    match mode {
        "Indexed" => validate_indexed(name, spec, &mut errs),
        "NonIndexed" => {
            for (field, set) in [
                ("spec.backoffLimitPerIndex", spec.backoff_limit_per_index),
                ("spec.maxFailedIndexes", spec.max_failed_indexes),
            ] {
                if let Some(v) = set {
                    errs.push(FieldError::invalid_raw(
                        field,
                        v.to_string(),
                        "requires indexed completion mode",
                    ));
                }
            }
        }
        other => errs.push(FieldError::not_supported(
            "spec.completionMode",
            other,
            &["NonIndexed", "Indexed"],
        )),
    }
    if spec.success_policy.is_some() && mode != "Indexed" {
        errs.push(FieldError::invalid_raw(
            "spec.successPolicy",
            json(&spec.success_policy),
            "requires indexed completion mode",
        ));
    }
    validate_success_policy(spec, &mut errs);
    let restart = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("");
    const RESTARTS: &[&str] = &["OnFailure", "Never"];
    match restart {
        "" | "Always" => errs.push(FieldError::required(
            "spec.template.spec.restartPolicy",
            "valid values: \"OnFailure\", \"Never\"",
        )),
        r if !RESTARTS.contains(&r) => errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            r,
            RESTARTS,
        )),
        r if spec.pod_failure_policy.is_some() && r != "Never" => errs.push(FieldError::invalid(
            "spec.template.spec.restartPolicy",
            r,
            "only \"Never\" is supported when podFailurePolicy is specified",
        )),
        _ => {}
    }
    if let Some(p) = spec.pod_replacement_policy.as_deref() {
        let valid: &[&'static str] = if spec.pod_failure_policy.is_some() {
            &["Failed"]
        } else {
            &["Failed", "TerminatingOrFailed"]
        };
        if !valid.contains(&p) {
            errs.push(FieldError::not_supported(
                "spec.podReplacementPolicy",
                p,
                valid,
            ));
        }
    }
    validate_pod_failure_policy(spec, &mut errs);
    match &spec.template.spec {
        None => errs.push(FieldError::required("spec.template.spec", "")),
        Some(s) => errs.extend(podspec::validate_pod_spec(s, "spec.template.spec")),
    }
    errs
}

/// A selector that parses, is not empty and selects the template's labels.
fn validate_selector(spec: &JobSpec, errs: &mut Vec<FieldError>) {
    let Some(selector) = &spec.selector else {
        errs.push(FieldError::required("spec.selector", ""));
        return;
    };
    let labels = template_labels(spec);
    errs.extend(crate::validation::labels(
        "spec.template.metadata.labels",
        &labels,
    ));
    match crate::selector::LabelSelector::from_api(selector) {
        Err(e) => errs.push(FieldError::invalid_raw(
            "spec.selector",
            format!("{selector:?}"),
            e,
        )),
        Ok(s) if !s.is_empty() && !s.matches(&labels) => errs.push(FieldError::invalid_raw(
            "spec.template.metadata.labels",
            format!("{labels:?}"),
            "`selector` does not match template `labels`",
        )),
        Ok(_) => {}
    }
}

fn validate_indexed(name: Option<&str>, spec: &JobSpec, errs: &mut Vec<FieldError>) {
    let Some(completions) = spec.completions else {
        errs.push(FieldError::required(
            "spec.completions",
            "when completion mode is Indexed",
        ));
        return;
    };
    if let Some(p) = spec.parallelism.filter(|p| *p > MAX_PARALLELISM_INDEXED) {
        errs.push(FieldError::invalid_raw(
            "spec.parallelism",
            p.to_string(),
            format!(
                "must be less than or equal to {MAX_PARALLELISM_INDEXED} when completion mode is Indexed"
            ),
        ));
    }
    if let Some(m) = spec.max_failed_indexes {
        if m > completions {
            errs.push(FieldError::invalid_raw(
                "spec.maxFailedIndexes",
                m.to_string(),
                "must be less than or equal to completions",
            ));
        }
        if m > MAX_FAILED_INDEXES {
            errs.push(FieldError::invalid_raw(
                "spec.maxFailedIndexes",
                m.to_string(),
                format!("must be less than or equal to {MAX_FAILED_INDEXES}"),
            ));
        }
    }
    // Pods are named and hostnamed `<job>-<index>`: the last must be a DNS label.
    if let (true, Some(name)) = (completions > 0, name) {
        let host = format!("{name}-{}", completions.saturating_sub(1));
        if !crate::validation::dns1123_label(&host).is_empty() {
            errs.push(FieldError::invalid(
                "metadata.name",
                name,
                format!("will not able to create pod with invalid DNS label: {host}"),
            ));
        }
    }
}

fn validate_success_policy(spec: &JobSpec, errs: &mut Vec<FieldError>) {
    let Some(policy) = &spec.success_policy else {
        return;
    };
    let rules = &policy.rules;
    if rules.is_empty() {
        errs.push(FieldError::required(
            "spec.successPolicy.rules",
            "at least one rules must be specified when the successPolicy is specified",
        ));
    }
    if rules.len() > MAX_SUCCESS_RULES {
        errs.push(FieldError::too_many(
            "spec.successPolicy.rules",
            rules.len(),
            MAX_SUCCESS_RULES,
        ));
    }
    for (i, r) in rules.iter().enumerate() {
        let path = format!("spec.successPolicy.rules[{i}]");
        if r.succeeded_count.is_none() && r.succeeded_indexes.is_none() {
            errs.push(FieldError::required(
                path.clone(),
                "at least one of succeededCount or succeededIndexes must be specified",
            ));
        }
        if let Some(c) = r.succeeded_count {
            let field = format!("{path}.succeededCount");
            if c < 0 {
                errs.push(FieldError::invalid_raw(
                    field,
                    c.to_string(),
                    "must be greater than or equal to 0",
                ));
            } else if let Some(total) = spec.completions.filter(|t| c > *t) {
                errs.push(FieldError::invalid_raw(
                    field,
                    c.to_string(),
                    format!(
                        "must be less than or equal to {total} (the number of specified completions)"
                    ),
                ));
            }
        }
        if let Some(ix) = &r.succeeded_indexes {
            if parse_indexes(ix).is_none() {
                errs.push(FieldError::invalid(
                    format!("{path}.succeededIndexes"),
                    ix,
                    "error parsing succeededIndexes",
                ));
            }
        }
    }
}

/// `"1,3-5,7"`: ascending, non-overlapping intervals of non-negative indexes.
pub fn parse_indexes(s: &str) -> Option<Vec<(i32, i32)>> {
    let mut out: Vec<(i32, i32)> = Vec::new();
    if s.is_empty() {
        return Some(out);
    }
    for part in s.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>().ok()?, b.parse::<i32>().ok()?),
            None => {
                let v = part.parse::<i32>().ok()?;
                (v, v)
            }
        };
        if a < 0 || b < a || out.last().is_some_and(|(_, last)| a <= *last) {
            return None;
        }
        out.push((a, b));
    }
    Some(out)
}

fn validate_pod_failure_policy(spec: &JobSpec, errs: &mut Vec<FieldError>) {
    let Some(policy) = &spec.pod_failure_policy else {
        return;
    };
    if policy.rules.len() > MAX_POD_FAILURE_RULES {
        errs.push(FieldError::too_many(
            "spec.podFailurePolicy.rules",
            policy.rules.len(),
            MAX_POD_FAILURE_RULES,
        ));
    }
    let containers: Vec<&str> = spec
        .template
        .spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .map(|c| c.name.as_str())
        .collect();
    for (i, rule) in policy.rules.iter().enumerate() {
        validate_rule(
            rule,
            &format!("spec.podFailurePolicy.rules[{i}]"),
            spec,
            &containers,
            errs,
        );
    }
}

fn validate_rule(
    rule: &PodFailurePolicyRule,
    path: &str,
    spec: &JobSpec,
    containers: &[&str],
    errs: &mut Vec<FieldError>,
) {
    const ACTIONS: &[&str] = &["Count", "FailIndex", "FailJob", "Ignore"];
    let action = rule.action.as_str();
    if action.is_empty() {
        errs.push(FieldError::required(format!("{path}.action"), ""));
    } else if !ACTIONS.contains(&action) {
        errs.push(FieldError::not_supported(
            format!("{path}.action"),
            action,
            ACTIONS,
        ));
    } else if action == "FailIndex" && spec.backoff_limit_per_index.is_none() {
        errs.push(FieldError::forbidden(
            format!("{path}.action"),
            "requires the backoffLimitPerIndex to be set",
        ));
    }
    match (&rule.on_exit_codes, &rule.on_pod_conditions) {
        (Some(_), Some(_)) => errs.push(FieldError::invalid_raw(
            path,
            json(rule),
            "specifying both OnExitCodes and OnPodConditions is not supported",
        )),
        (None, None) => errs.push(FieldError::invalid_raw(
            path,
            json(rule),
            "specifying one of OnExitCodes and OnPodConditions is required",
        )),
        (Some(req), None) => {
            let p = format!("{path}.onExitCodes");
            const OPERATORS: &[&str] = &["In", "NotIn"];
            if !OPERATORS.contains(&req.operator.as_str()) {
                errs.push(FieldError::not_supported(
                    format!("{p}.operator"),
                    &req.operator,
                    OPERATORS,
                ));
            }
            if let Some(c) = req
                .container_name
                .as_deref()
                .filter(|c| !containers.contains(c))
            {
                errs.push(FieldError::invalid(
                    format!("{p}.containerName"),
                    c,
                    "must be one of the container or initContainer names in the pod template",
                ));
            }
            let values = &req.values;
            if values.is_empty() {
                errs.push(FieldError::invalid_raw(
                    format!("{p}.values"),
                    "[]".into(),
                    "at least one value is required",
                ));
            }
            if values.len() > MAX_EXIT_CODES {
                errs.push(FieldError::too_many(
                    format!("{p}.values"),
                    values.len(),
                    MAX_EXIT_CODES,
                ));
            }
            for (j, v) in values.iter().enumerate() {
                let f = format!("{p}.values[{j}]");
                if req.operator == "In" && *v == 0 {
                    errs.push(FieldError::invalid_raw(
                        f.clone(),
                        "0".into(),
                        "must not be 0 for the In operator",
                    ));
                }
                if let Some(prev) = j.checked_sub(1).and_then(|k| values.get(k)) {
                    if prev == v {
                        errs.push(FieldError::duplicate(f, &v.to_string()));
                    } else if prev > v {
                        errs.push(FieldError::invalid_raw(f, v.to_string(), "must be ordered"));
                    }
                }
            }
        }
        (None, Some(conds)) => {
            if conds.len() > MAX_POD_FAILURE_RULES {
                errs.push(FieldError::too_many(
                    format!("{path}.onPodConditions"),
                    conds.len(),
                    MAX_POD_FAILURE_RULES,
                ));
            }
            const STATUSES: &[&str] = &["True", "False", "Unknown"];
            for (j, c) in conds.iter().enumerate() {
                let p = format!("{path}.onPodConditions[{j}]");
                if c.type_.is_empty() {
                    errs.push(FieldError::required(format!("{p}.type"), ""));
                }
                if !STATUSES.contains(&c.status.as_str()) {
                    errs.push(FieldError::not_supported(
                        format!("{p}.status"),
                        &c.status,
                        STATUSES,
                    ));
                }
            }
        }
    }
}
