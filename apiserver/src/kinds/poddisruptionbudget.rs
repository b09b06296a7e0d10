//! policy/v1 PodDisruptionBudget: kube's validation (`ValidatePodDisruptionBudgetSpec`,
//! and of the status the disruption controller writes). The spec is mutable, as in
//! policy/v1; an empty selector selects every pod of the namespace.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};

use super::daemonset::int_or_percent;
use super::Kind;
use crate::error::FieldError;

pub struct PodDisruptionBudgets;

const UNHEALTHY_POLICIES: &[&str] = &["AlwaysAllow", "IfHealthyBudget"];

impl Kind for PodDisruptionBudgets {
    type Obj = PodDisruptionBudget;
    const SINGULAR: &'static str = "poddisruptionbudget";
    const SHORT_NAMES: &'static [&'static str] = &["pdb"];
    const STATUS: bool = true;
    const GENERATION: bool = true;
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::other::PODDISRUPTIONBUDGET);

    fn prepare_create(pdb: &mut PodDisruptionBudget) {
        pdb.status = Some(PodDisruptionBudgetStatus::default());
    }

    fn validate(pdb: &PodDisruptionBudget) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = pdb.spec.clone().unwrap_or_default();
        if spec.min_available.is_some() && spec.max_unavailable.is_some() {
            errs.push(FieldError::invalid_raw(
                "spec",
                format!("{spec:?}"),
                "minAvailable and maxUnavailable cannot be both set",
            ));
        }
        if let Some(v) = &spec.min_available {
            int_or_percent("spec.minAvailable", v, &mut errs);
        }
        if let Some(v) = &spec.max_unavailable {
            int_or_percent("spec.maxUnavailable", v, &mut errs);
        }
        if let Some(sel) = &spec.selector {
            if let Err(e) = crate::selector::LabelSelector::from_api(sel) {
                errs.push(FieldError::invalid_raw(
                    "spec.selector",
                    format!("{sel:?}"),
                    e,
                ));
            }
        }
        if let Some(p) = spec.unhealthy_pod_eviction_policy.as_deref() {
            if !UNHEALTHY_POLICIES.contains(&p) {
                errs.push(FieldError::not_supported(
                    "spec.unhealthyPodEvictionPolicy",
                    p,
                    UNHEALTHY_POLICIES,
                ));
            }
        }
        errs.extend(validate_status(pdb.status.as_ref()));
        errs
    }

    fn validate_update(new: &PodDisruptionBudget, _old: &PodDisruptionBudget) -> Vec<FieldError> {
        validate_status(new.status.as_ref())
    }
}

/// `ValidatePodDisruptionBudgetStatusUpdate`: the counts are never negative.
fn validate_status(status: Option<&PodDisruptionBudgetStatus>) -> Vec<FieldError> {
    let Some(s) = status else { return vec![] };
    [
        ("status.disruptionsAllowed", s.disruptions_allowed),
        ("status.currentHealthy", s.current_healthy),
        ("status.desiredHealthy", s.desired_healthy),
        ("status.expectedPods", s.expected_pods),
    ]
    .into_iter()
    .filter(|(_, v)| *v < 0)
    .map(|(f, v)| FieldError::invalid_raw(f, v.to_string(), "must be greater than or equal to 0"))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pdb(spec: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(json!({"metadata": {"name": "b", "namespace": "d"}, "spec": spec}))
            .unwrap()
    }

    fn fields(errs: &[FieldError]) -> Vec<String> {
        errs.iter()
            .map(|e| format!("{}: {}", e.field, e.detail))
            .collect()
    }

    #[test]
    fn valid_budgets() {
        for spec in [
            json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "a"}}}),
            json!({"maxUnavailable": "50%"}),
            json!({"minAvailable": "100%", "unhealthyPodEvictionPolicy": "AlwaysAllow"}),
            json!({}),
        ] {
            assert!(
                PodDisruptionBudgets::validate(&pdb(spec.clone())).is_empty(),
                "{spec}"
            );
        }
    }

    #[test]
    fn bad_budgets_are_kubes_errors() {
        let e =
            PodDisruptionBudgets::validate(&pdb(json!({"minAvailable": 1, "maxUnavailable": 1})));
        assert_eq!(
            fields(&e),
            ["spec: minAvailable and maxUnavailable cannot be both set"]
        );
        let e = PodDisruptionBudgets::validate(&pdb(json!({"minAvailable": -1})));
        assert_eq!(
            fields(&e),
            ["spec.minAvailable: must be greater than or equal to 0"]
        );
        let e = PodDisruptionBudgets::validate(&pdb(json!({"maxUnavailable": "150%"})));
        assert_eq!(
            fields(&e),
            ["spec.maxUnavailable: must not be greater than 100%"]
        );
        let e =
            PodDisruptionBudgets::validate(&pdb(json!({"unhealthyPodEvictionPolicy": "Never"})));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].field, "spec.unhealthyPodEvictionPolicy");
        let e = PodDisruptionBudgets::validate(&pdb(
            json!({"selector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}}),
        ));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].field, "spec.selector");
    }
}
