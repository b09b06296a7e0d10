//! apps/v1 ControllerRevision: an immutable snapshot of a controller's template (DaemonSet
//! and StatefulSet history, `kubectl rollout history|undo`), as kube validates it.

use k8s_openapi::api::apps::v1::ControllerRevision;

use super::Kind;
use crate::error::FieldError;

pub struct ControllerRevisions;

impl Kind for ControllerRevisions {
    type Obj = ControllerRevision;
    const SINGULAR: &'static str = "controllerrevision";
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::apps::CONTROLLERREVISION);

    fn validate(cr: &ControllerRevision) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if cr.revision < 0 {
            errs.push(FieldError::invalid_raw(
                "revision",
                cr.revision.to_string(),
                "must be greater than or equal to 0",
            ));
        }
        errs
    }

    fn validate_update(new: &ControllerRevision, old: &ControllerRevision) -> Vec<FieldError> {
        if new.data != old.data {
            return vec![FieldError::invalid_raw(
                "data",
                "(object)".into(),
                "field is immutable",
            )];
        }
        Vec::new()
    }
}
