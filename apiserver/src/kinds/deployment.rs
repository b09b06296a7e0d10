//! apps/v1 Deployment.

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentStatus, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as ApiSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{podspec, Kind};
use crate::error::FieldError;

pub struct Deployments;

impl Kind for Deployments {
    type Obj = Deployment;
    const SINGULAR: &'static str = "deployment";
    const SCALE: Option<super::ScaleSpec> = Some(super::ScaleSpec {
        spec_replicas: "/spec/replicas",
        status_replicas: "/status/replicas",
        selector: super::SelectorAt::LabelSelector("/spec/selector"),
    });
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::apps::DEPLOYMENT);
    const SHORT_NAMES: &'static [&'static str] = &["deploy"];
    const CATEGORIES: &'static [&'static str] = &["all"];
    const STATUS: bool = true;
    const GENERATION: bool = true;

    fn default(d: &mut Deployment) {
        let Some(spec) = d.spec.as_mut() else { return };
        spec.replicas.get_or_insert(1);
        spec.revision_history_limit.get_or_insert(10);
        spec.progress_deadline_seconds.get_or_insert(600);
        let strategy = spec
            .strategy
            .get_or_insert_with(DeploymentStrategy::default);
        let ty = strategy
            .type_
            .get_or_insert_with(|| "RollingUpdate".into())
            .clone();
        if ty == "RollingUpdate" {
            let ru = strategy
                .rolling_update
                .get_or_insert_with(RollingUpdateDeployment::default);
            ru.max_surge
                .get_or_insert_with(|| IntOrString::String("25%".into()));
            ru.max_unavailable
                .get_or_insert_with(|| IntOrString::String("25%".into()));
        }
        podspec::default_template(&mut spec.template);
    }

    fn prepare_create(d: &mut Deployment) {
        d.status = Some(DeploymentStatus::default());
    }

    fn validate(d: &Deployment) -> Vec<FieldError> {
        let Some(spec) = &d.spec else {
            return vec![FieldError::required("spec", "")];
        };
        let mut errs = validate_workload(&spec.selector, spec.replicas, Some(&spec.template));
        if let Some(s) = &spec.strategy {
            const TYPES: &[&str] = &["Recreate", "RollingUpdate"];
            let ty = s.type_.as_deref().unwrap_or("RollingUpdate");
            if !TYPES.contains(&ty) {
                errs.push(FieldError::not_supported("spec.strategy.type", ty, TYPES));
            } else if ty == "Recreate" && s.rolling_update.is_some() {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        if let Some(r) = spec.revision_history_limit.filter(|r| *r < 0) {
            errs.push(FieldError::invalid_raw(
                "spec.revisionHistoryLimit",
                r.to_string(),
                "must be greater than or equal to 0",
            ));
        }
        errs
    }

    fn validate_update(new: &Deployment, old: &Deployment) -> Vec<FieldError> {
        selector_immutable(
            new.spec.as_ref().map(|s| &s.selector),
            old.spec.as_ref().map(|s| &s.selector),
        )
    }
}

pub(super) fn selector_immutable(
    new: Option<&ApiSelector>,
    old: Option<&ApiSelector>,
) -> Vec<FieldError> {
    if new != old {
        return vec![FieldError::invalid_raw(
            "spec.selector",
            format!("{:?}", new.cloned().unwrap_or_default()),
            "field is immutable",
        )];
    }
    vec![]
}

/// Checks shared by deployments and replicasets: a non-empty selector that the template's
/// labels satisfy, non-negative replicas, a pod template that restarts Always.
pub(super) fn validate_workload(
    selector: &ApiSelector,
    replicas: Option<i32>,
    template: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(r) = replicas.filter(|r| *r < 0) {
        errs.push(FieldError::invalid_raw(
            "spec.replicas",
            r.to_string(),
            "must be greater than or equal to 0",
        ));
    }
    let parsed = crate::selector::LabelSelector::from_api(selector);
    match &parsed {
        Err(e) => errs.push(FieldError::invalid_raw(
            "spec.selector",
            format!("{selector:?}"),
            e.clone(),
        )),
        Ok(s) if s.is_empty() => errs.push(FieldError::invalid_raw(
            "spec.selector",
            format!("{selector:?}"),
            "empty selector is invalid for deployment",
        )),
        Ok(_) => {}
    }
    let Some(t) = template else {
        errs.push(FieldError::required("spec.template", ""));
        return errs;
    };
    let labels = t
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    if let Ok(s) = &parsed {
        if !s.is_empty() && !s.matches(&labels) {
            errs.push(FieldError::invalid_raw(
                "spec.template.metadata.labels",
                format!("{labels:?}"),
                "`selector` does not match template `labels`",
            ));
        }
    }
    errs.extend(crate::validation::labels(
        "spec.template.metadata.labels",
        &labels,
    ));
    match &t.spec {
        None => errs.push(FieldError::required("spec.template.spec", "")),
        Some(spec) => {
            errs.extend(podspec::validate_pod_spec(spec, "spec.template.spec"));
            let rp = spec.restart_policy.as_deref().unwrap_or("Always");
            if rp != "Always" {
                errs.push(FieldError::not_supported(
                    "spec.template.spec.restartPolicy",
                    rp,
                    &["Always"],
                ));
            }
        }
    }
    errs
}
