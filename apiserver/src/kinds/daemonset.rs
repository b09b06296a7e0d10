//! apps/v1 DaemonSet: kube's defaults (`SetDefaults_DaemonSet`), validation
//! (`ValidateDaemonSetSpec`, `ValidateRollingUpdateDaemonSet`) and update rules (the
//! selector is immutable; the template generation, kept in the
//! `deprecated.daemonset.template.generation` annotation as apps/v1 does, counts template
//! changes).

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus, RollingUpdateDaemonSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::deployment::{selector_immutable, validate_workload};
use super::{podspec, Kind};
use crate::error::FieldError;

pub struct DaemonSets;

pub const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";
const STRATEGIES: &[&str] = &["RollingUpdate", "OnDelete"];

fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata
        .annotations
        .as_ref()?
        .get(TEMPLATE_GENERATION)?
        .parse()
        .ok()
}

fn set_template_generation(ds: &mut DaemonSet, g: i64) {
    ds.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(TEMPLATE_GENERATION.into(), g.to_string());
}

impl Kind for DaemonSets {
    type Obj = DaemonSet;
    const SINGULAR: &'static str = "daemonset";
    const SHORT_NAMES: &'static [&'static str] = &["ds"];
    const CATEGORIES: &'static [&'static str] = &["all"];
    const STATUS: bool = true;
    const GENERATION: bool = true;
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::apps::DAEMONSET);

    fn default(ds: &mut DaemonSet) {
        let Some(spec) = ds.spec.as_mut() else { return };
        let strategy = spec.update_strategy.get_or_insert_with(Default::default);
        let ty = strategy
            .type_
            .get_or_insert_with(|| "RollingUpdate".into())
            .clone();
        if ty == "RollingUpdate" {
            let ru = strategy
                .rolling_update
                .get_or_insert_with(RollingUpdateDaemonSet::default);
            ru.max_unavailable.get_or_insert(IntOrString::Int(1));
            ru.max_surge.get_or_insert(IntOrString::Int(0));
        }
        spec.revision_history_limit.get_or_insert(10);
        podspec::default_template(&mut spec.template);
    }

    fn prepare_create(ds: &mut DaemonSet) {
        ds.status = Some(DaemonSetStatus::default());
        if template_generation(ds).is_none_or(|g| g < 1) {
            set_template_generation(ds, 1);
        }
    }

    fn prepare_update(new: &mut DaemonSet, old: &DaemonSet) {
        let g = template_generation(old).unwrap_or(1);
        let changed =
            new.spec.as_ref().map(|s| &s.template) != old.spec.as_ref().map(|s| &s.template);
        set_template_generation(new, if changed { g.saturating_add(1) } else { g });
    }

    fn validate(ds: &DaemonSet) -> Vec<FieldError> {
        let Some(spec) = &ds.spec else {
            return vec![FieldError::required("spec", "")];
        };
        let mut errs: Vec<FieldError> =
            validate_workload(&spec.selector, None, Some(&spec.template))
                .into_iter()
                .map(|mut e| {
                    e.detail = e
                        .detail
                        .replace("invalid for deployment", "invalid for daemonset");
                    e
                })
                .collect();
        let pod = spec.template.spec.as_ref();
        if pod.and_then(|p| p.active_deadline_seconds).is_some() {
            errs.push(FieldError::forbidden(
                "spec.template.spec.activeDeadlineSeconds",
                "activeDeadlineSeconds in DaemonSet is not Supported",
            ));
        }
        for (field, v) in [
            ("spec.minReadySeconds", spec.min_ready_seconds),
            ("spec.revisionHistoryLimit", spec.revision_history_limit),
        ] {
            if let Some(v) = v.filter(|v| *v < 0) {
                errs.push(FieldError::invalid_raw(
                    field,
                    v.to_string(),
                    "must be greater than or equal to 0",
                ));
            }
        }
        let strategy = spec.update_strategy.clone().unwrap_or_default();
        match strategy.type_.as_deref().unwrap_or("RollingUpdate") {
            "RollingUpdate" => match &strategy.rolling_update {
                None => errs.push(FieldError::required(
                    "spec.updateStrategy.rollingUpdate",
                    "",
                )),
                Some(ru) => validate_rolling_update(ru, &mut errs),
            },
            "OnDelete" => {}
            other => errs.push(FieldError::not_supported(
                "spec.updateStrategy.type",
                other,
                STRATEGIES,
            )),
        }
        errs
    }

    fn validate_update(new: &DaemonSet, old: &DaemonSet) -> Vec<FieldError> {
        selector_immutable(
            new.spec.as_ref().map(|s| &s.selector),
            old.spec.as_ref().map(|s| &s.selector),
        )
    }
}

/// A count or percentage: its value, and whether it is a percentage.
pub(super) fn int_or_percent(
    field: &str,
    v: &IntOrString,
    errs: &mut Vec<FieldError>,
) -> Option<i64> {
    let bad = |errs: &mut Vec<FieldError>, raw: String, msg: &str| {
        errs.push(FieldError::invalid_raw(field, raw, msg));
        None
    };
    match v {
        IntOrString::Int(i) if *i < 0 => {
            bad(errs, i.to_string(), "must be greater than or equal to 0")
        }
        IntOrString::Int(i) => Some(i64::from(*i)),
        IntOrString::String(s) => {
            let Some(n) = s.strip_suffix('%').and_then(|n| n.parse::<i64>().ok()) else {
                return bad(errs, format!("{s:?}"), "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')");
            };
            if n > 100 {
                return bad(errs, format!("{s:?}"), "must not be greater than 100%");
            }
            Some(n)
        }
    }
}

fn validate_rolling_update(ru: &RollingUpdateDaemonSet, errs: &mut Vec<FieldError>) {
    let zero = IntOrString::Int(0);
    let unavailable = int_or_percent(
        "spec.updateStrategy.rollingUpdate.maxUnavailable",
        ru.max_unavailable.as_ref().unwrap_or(&zero),
        errs,
    );
    let surge = int_or_percent(
        "spec.updateStrategy.rollingUpdate.maxSurge",
        ru.max_surge.as_ref().unwrap_or(&zero),
        errs,
    );
    match (unavailable, surge) {
        (Some(0), Some(0)) => errs.push(FieldError::required(
            "spec.updateStrategy.rollingUpdate.maxUnavailable",
            "cannot be 0 when maxSurge is 0",
        )),
        (Some(u), Some(s)) if u != 0 && s != 0 => errs.push(FieldError::invalid_raw(
            "spec.updateStrategy.rollingUpdate.maxSurge",
            super::job::json(&ru.max_surge),
            "may not be set when maxUnavailable is non-zero",
        )),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(spec: serde_json::Value) -> DaemonSet {
        let mut v = json!({
            "metadata": {"name": "agent", "namespace": "kube-system"},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
                     "template": {"metadata": {"labels": {"app": "a"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
        });
        for (k, val) in spec.as_object().unwrap() {
            v["spec"][k] = val.clone();
        }
        let mut d: DaemonSet = serde_json::from_value(v).unwrap();
        DaemonSets::default(&mut d);
        d
    }

    fn messages(d: &DaemonSet) -> Vec<String> {
        DaemonSets::validate(d)
            .iter()
            .map(|e| format!("{}: {}", e.field, e.detail))
            .collect()
    }

    #[test]
    fn defaults_and_template_generation() {
        let mut d = ds(json!({}));
        let spec = d.spec.as_ref().unwrap();
        let ru = spec
            .update_strategy
            .as_ref()
            .unwrap()
            .rolling_update
            .as_ref()
            .unwrap();
        assert_eq!(ru.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(ru.max_surge, Some(IntOrString::Int(0)));
        assert_eq!(spec.revision_history_limit, Some(10));
        assert!(messages(&d).is_empty(), "{:?}", messages(&d));
        DaemonSets::prepare_create(&mut d);
        assert_eq!(template_generation(&d), Some(1));
        let mut same = d.clone();
        DaemonSets::prepare_update(&mut same, &d);
        assert_eq!(template_generation(&same), Some(1));
        let mut changed = d.clone();
        changed
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some("busybox:2".into());
        DaemonSets::prepare_update(&mut changed, &d);
        assert_eq!(template_generation(&changed), Some(2));
    }

    #[test]
    fn kubes_rules() {
        let d = ds(json!({"updateStrategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}}));
        assert_eq!(
            messages(&d),
            ["spec.updateStrategy.rollingUpdate.maxUnavailable: cannot be 0 when maxSurge is 0"]
        );
        let d = ds(json!({"updateStrategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "10%"}}}));
        assert_eq!(
            messages(&d),
            ["spec.updateStrategy.rollingUpdate.maxSurge: may not be set when maxUnavailable is non-zero"]
        );
        let d = ds(json!({"updateStrategy": {"type": "Sometimes"}}));
        assert!(messages(&d)[0].starts_with("spec.updateStrategy.type: "));
        let mut d = ds(json!({}));
        d.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .restart_policy = Some("OnFailure".into());
        assert!(
            messages(&d)[0].starts_with("spec.template.spec.restartPolicy"),
            "{:?}",
            messages(&d)
        );
        let d = ds(
            json!({"selector": {}, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}),
        );
        assert!(
            messages(&d)
                .contains(&"spec.selector: empty selector is invalid for daemonset".to_string()),
            "{:?}",
            messages(&d)
        );
    }
}
