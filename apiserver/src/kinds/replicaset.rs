//! apps/v1 ReplicaSet.

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};

use super::deployment::{selector_immutable, validate_workload};
use super::{podspec, Kind};
use crate::error::FieldError;

pub struct ReplicaSets;

impl Kind for ReplicaSets {
    type Obj = ReplicaSet;
    const SINGULAR: &'static str = "replicaset";
    const SCALE: Option<super::ScaleSpec> = Some(super::ScaleSpec {
        spec_replicas: "/spec/replicas",
        status_replicas: "/status/replicas",
        selector: super::SelectorAt::LabelSelector("/spec/selector"),
    });
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::apps::REPLICASET);
    const SHORT_NAMES: &'static [&'static str] = &["rs"];
    const CATEGORIES: &'static [&'static str] = &["all"];
    const STATUS: bool = true;
    const GENERATION: bool = true;
    const FIELDS: &'static [&'static str] = &["status.replicas"];

    fn default(rs: &mut ReplicaSet) {
        let Some(spec) = rs.spec.as_mut() else { return };
        spec.replicas.get_or_insert(1);
        if let Some(t) = spec.template.as_mut() {
            podspec::default_template(t);
        }
    }

    fn prepare_create(rs: &mut ReplicaSet) {
        rs.status = Some(ReplicaSetStatus::default());
    }

    fn validate(rs: &ReplicaSet) -> Vec<FieldError> {
        let Some(spec) = &rs.spec else {
            return vec![FieldError::required("spec", "")];
        };
        validate_workload(&spec.selector, spec.replicas, spec.template.as_ref())
    }

    fn validate_update(new: &ReplicaSet, old: &ReplicaSet) -> Vec<FieldError> {
        selector_immutable(
            new.spec.as_ref().map(|s| &s.selector),
            old.spec.as_ref().map(|s| &s.selector),
        )
    }

    fn fields(rs: &ReplicaSet) -> Vec<(&'static str, String)> {
        let n = rs.status.as_ref().map(|s| s.replicas).unwrap_or(0);
        vec![("status.replicas", n.to_string())]
    }
}
