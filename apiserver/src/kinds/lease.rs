//! coordination.k8s.io/v1 Lease.

use k8s_openapi::api::coordination::v1::Lease;

use super::Kind;
use crate::error::FieldError;

pub struct Leases;

impl Kind for Leases {
    type Obj = Lease;
    const SINGULAR: &'static str = "lease";
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::other::LEASE);

    fn validate(l: &Lease) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let Some(spec) = &l.spec else { return errs };
        if let Some(d) = spec.lease_duration_seconds.filter(|d| *d <= 0) {
            errs.push(FieldError::invalid_raw(
                "spec.leaseDurationSeconds",
                d.to_string(),
                "must be greater than 0",
            ));
        }
        if let Some(t) = spec.lease_transitions.filter(|t| *t < 0) {
            errs.push(FieldError::invalid_raw(
                "spec.leaseTransitions",
                t.to_string(),
                "must be greater than or equal to 0",
            ));
        }
        errs
    }
}
