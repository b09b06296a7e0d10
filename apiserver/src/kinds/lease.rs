//! coordination.k8s.io/v1 Lease.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

use super::{Companion, Kind};
use crate::error::FieldError;

/// The holder a Lease names ("" when none).
fn holder(l: &Lease) -> &str {
    l.spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .unwrap_or("")
}

/// What changes when a Lease is acquired: the holder, and the time it acquired (a
/// holder acquiring again, after a restart, keeps its name).
fn acquisition(l: &Lease) -> (&str, Option<&MicroTime>) {
    (
        holder(l),
        l.spec.as_ref().and_then(|s| s.acquire_time.as_ref()),
    )
}

pub struct Leases;

impl Kind for Leases {
    type Obj = Lease;
    const SINGULAR: &'static str = "lease";
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::other::LEASE);
    const COMPANIONS: bool = true;

    /// The fence (`crate::store::fence`): rewritten with every acquisition (a change of
    /// holder or acquireTime), so its mod_revision is the revision of the latest one;
    /// deleted with the Lease.
    fn companions(key: &str, old: Option<&Lease>, new: Option<&Lease>) -> Vec<Companion> {
        // key: /registry/leases/<namespace>/<name>
        let mut parts = key.rsplitn(3, '/');
        let (Some(name), Some(ns)) = (parts.next(), parts.next()) else {
            return vec![];
        };
        let fence = crate::store::fence::key(ns, name);
        match (old, new) {
            (_, None) => vec![Companion::Delete(fence)],
            (Some(o), Some(n)) if acquisition(o) == acquisition(n) => vec![],
            (_, Some(n)) => vec![Companion::Put(fence, holder(n).as_bytes().to_vec())],
        }
    }

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
