//! scheduling.k8s.io/v1 PriorityClass.

use k8s_openapi::api::scheduling::v1::PriorityClass;

use super::Kind;
use crate::error::FieldError;

pub struct PriorityClasses;

/// The highest value a user-defined class may have (Kubernetes' HighestUserDefinablePriority).
pub const HIGHEST_USER_DEFINABLE: i32 = 1_000_000_000;

/// The classes every cluster has, with their values.
pub const SYSTEM: &[(&str, i32, &str)] = &[
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

impl Kind for PriorityClasses {
    type Obj = PriorityClass;
    const SINGULAR: &'static str = "priorityclass";
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::other::PRIORITYCLASS);
    const SHORT_NAMES: &'static [&'static str] = &["pc"];

    fn default(pc: &mut PriorityClass) {
        pc.preemption_policy
            .get_or_insert_with(|| "PreemptLowerPriority".into());
    }

    fn validate(pc: &PriorityClass) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let name = pc.metadata.name.as_deref().unwrap_or("");
        let system = SYSTEM.iter().find(|(n, _, _)| *n == name);
        match system {
            Some((_, v, _)) if pc.value != *v => errs.push(FieldError::forbidden(
                "value",
                format!("value of {name} PriorityClass must be {v}"),
            )),
            Some(_) => {}
            None if name.starts_with("system-") => errs.push(FieldError::forbidden(
                "metadata.name",
                "priority class names with 'system-' prefix are reserved for system use only",
            )),
            None if pc.value > HIGHEST_USER_DEFINABLE => errs.push(FieldError::forbidden(
                "value",
                format!(
                    "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE}"
                ),
            )),
            None => {}
        }
        if let Some(p) = pc.preemption_policy.as_deref() {
            if !["PreemptLowerPriority", "Never"].contains(&p) {
                errs.push(FieldError::not_supported(
                    "preemptionPolicy",
                    p,
                    &["Never", "PreemptLowerPriority"],
                ));
            }
        }
        errs
    }

    fn validate_update(new: &PriorityClass, old: &PriorityClass) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if new.value != old.value {
            errs.push(FieldError::forbidden(
                "value",
                "may not be changed in an update.",
            ));
        }
        if new.preemption_policy != old.preemption_policy {
            errs.push(FieldError::invalid(
                "preemptionPolicy",
                new.preemption_policy.as_deref().unwrap_or(""),
                "field is immutable",
            ));
        }
        errs
    }
}
