//! apps/v1 StatefulSet: kube's defaults (`SetDefaults_StatefulSet`, with the claim
//! templates' PVC defaults), validation (`ValidateStatefulSetSpec`) and update rules (only
//! replicas, ordinals, template, updateStrategy, the claim retention policy and
//! minReadySeconds may change). `maxUnavailable` is dropped as kube 1.32 does with its
//! MaxUnavailableStatefulSet gate off.

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec, StatefulSetStatus,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::daemonset::int_or_percent;
use super::deployment::validate_workload;
use super::{podspec, Kind};
use crate::error::FieldError;
use crate::validation::NameRule;

pub struct StatefulSets;

const RETENTION: &[&str] = &["Retain", "Delete"];

fn nonnegative(field: &str, v: Option<i32>, errs: &mut Vec<FieldError>) {
    if let Some(v) = v.filter(|v| *v < 0) {
        errs.push(FieldError::invalid_raw(
            field,
            v.to_string(),
            "must be greater than or equal to 0",
        ));
    }
}

/// kube 1.32 drops `maxUnavailable` (gate off) unless the stored object already had it.
fn drop_max_unavailable(sts: &mut StatefulSet, old: Option<&StatefulSet>) {
    let had = |s: &StatefulSet| {
        s.spec
            .as_ref()
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|u| u.rolling_update.as_ref())
            .is_some_and(|r| r.max_unavailable.is_some())
    };
    if old.is_some_and(had) {
        return;
    }
    if let Some(r) = sts
        .spec
        .as_mut()
        .and_then(|s| s.update_strategy.as_mut())
        .and_then(|u| u.rolling_update.as_mut())
    {
        r.max_unavailable = None;
    }
}

impl Kind for StatefulSets {
    type Obj = StatefulSet;
    const SINGULAR: &'static str = "statefulset";
    const SHORT_NAMES: &'static [&'static str] = &["sts"];
    const CATEGORIES: &'static [&'static str] = &["all"];
    const STATUS: bool = true;
    const GENERATION: bool = true;
    const NAME_RULE: NameRule = NameRule::Label;
    const SCALE: Option<super::ScaleSpec> = Some(super::ScaleSpec {
        spec_replicas: "/spec/replicas",
        status_replicas: "/status/replicas",
        selector: super::SelectorAt::LabelSelector("/spec/selector"),
    });
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::apps::STATEFULSET);

    fn default(sts: &mut StatefulSet) {
        let Some(spec) = sts.spec.as_mut() else {
            return;
        };
        spec.pod_management_policy
            .get_or_insert_with(|| "OrderedReady".into());
        let strategy = spec.update_strategy.get_or_insert_with(Default::default);
        if strategy.type_.as_deref().unwrap_or("").is_empty() {
            strategy.type_ = Some("RollingUpdate".into());
            strategy
                .rolling_update
                .get_or_insert_with(RollingUpdateStatefulSetStrategy::default);
        }
        if strategy.type_.as_deref() == Some("RollingUpdate") {
            if let Some(r) = strategy.rolling_update.as_mut() {
                r.partition.get_or_insert(0);
            }
        }
        let retention = spec
            .persistent_volume_claim_retention_policy
            .get_or_insert_with(StatefulSetPersistentVolumeClaimRetentionPolicy::default);
        for p in [&mut retention.when_deleted, &mut retention.when_scaled] {
            if p.as_deref().unwrap_or("").is_empty() {
                *p = Some("Retain".into());
            }
        }
        spec.replicas.get_or_insert(1);
        spec.revision_history_limit.get_or_insert(10);
        podspec::default_template(&mut spec.template);
        for t in spec.volume_claim_templates.iter_mut().flatten() {
            t.spec
                .get_or_insert_with(Default::default)
                .volume_mode
                .get_or_insert_with(|| "Filesystem".into());
            t.status
                .get_or_insert_with(Default::default)
                .phase
                .get_or_insert_with(|| "Pending".into());
        }
    }

    fn prepare_create(sts: &mut StatefulSet) {
        sts.status = Some(StatefulSetStatus::default());
        drop_max_unavailable(sts, None);
    }

    fn prepare_update(new: &mut StatefulSet, old: &StatefulSet) {
        drop_max_unavailable(new, Some(old));
    }

    fn validate(sts: &StatefulSet) -> Vec<FieldError> {
        let Some(spec) = &sts.spec else {
            return vec![FieldError::required("spec", "")];
        };
        validate_spec(spec)
    }

    fn validate_update(new: &StatefulSet, old: &StatefulSet) -> Vec<FieldError> {
        let (Some(n), Some(o)) = (&new.spec, &old.spec) else {
            return vec![];
        };
        let mut allowed = o.clone();
        allowed.replicas = n.replicas;
        allowed.template = n.template.clone();
        allowed.update_strategy = n.update_strategy.clone();
        allowed.min_ready_seconds = n.min_ready_seconds;
        allowed.ordinals = n.ordinals.clone();
        allowed.persistent_volume_claim_retention_policy =
            n.persistent_volume_claim_retention_policy.clone();
        if &allowed != n {
            return vec![FieldError::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            )];
        }
        vec![]
    }
}

fn validate_spec(spec: &StatefulSetSpec) -> Vec<FieldError> {
    let mut errs: Vec<FieldError> =
        validate_workload(&spec.selector, spec.replicas, Some(&spec.template))
            .into_iter()
            .map(|mut e| {
                e.detail = e
                    .detail
                    .replace("invalid for deployment", "invalid for statefulset");
                e
            })
            .collect();
    match spec.pod_management_policy.as_deref().unwrap_or("") {
        "" => errs.push(FieldError::required("spec.podManagementPolicy", "")),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(FieldError::invalid(
            "spec.podManagementPolicy",
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    match strategy.type_.as_deref().unwrap_or("") {
        "" => errs.push(FieldError::required("spec.updateStrategy", "")),
        "OnDelete" if strategy.rolling_update.is_some() => errs.push(FieldError::invalid_raw(
            "spec.updateStrategy.rollingUpdate",
            format!("{:?}", strategy.rolling_update),
            "only allowed for updateStrategy 'RollingUpdate'",
        )),
        "OnDelete" => {}
        "RollingUpdate" => {
            if let Some(r) = &strategy.rolling_update {
                nonnegative(
                    "spec.updateStrategy.rollingUpdate.partition",
                    r.partition,
                    &mut errs,
                );
                if let Some(m) = &r.max_unavailable {
                    let f = "spec.updateStrategy.rollingUpdate.maxUnavailable";
                    if int_or_percent(f, m, &mut errs) == Some(0) {
                        errs.push(FieldError::invalid_raw(
                            f,
                            match m {
                                IntOrString::Int(i) => i.to_string(),
                                IntOrString::String(s) => format!("{s:?}"),
                            },
                            "cannot be 0",
                        ));
                    }
                }
            }
        }
        other => errs.push(FieldError::invalid(
            "spec.updateStrategy",
            other,
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    if let Some(p) = &spec.persistent_volume_claim_retention_policy {
        for (f, v) in [
            (
                "spec.persistentVolumeClaimRetentionPolicy.whenDeleted",
                &p.when_deleted,
            ),
            (
                "spec.persistentVolumeClaimRetentionPolicy.whenScaled",
                &p.when_scaled,
            ),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !RETENTION.contains(v)) {
                errs.push(FieldError::not_supported(f, v, RETENTION));
            }
        }
    }
    nonnegative("spec.minReadySeconds", spec.min_ready_seconds, &mut errs);
    nonnegative(
        "spec.ordinals.start",
        spec.ordinals.as_ref().and_then(|o| o.start),
        &mut errs,
    );
    if spec
        .template
        .spec
        .as_ref()
        .and_then(|p| p.active_deadline_seconds)
        .is_some()
    {
        errs.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in StatefulSet is not Supported",
        ));
    }
    errs
}

#[cfg(test)]
#[path = "statefulset_tests.rs"]
mod tests;
