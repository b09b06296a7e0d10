//! Storage kinds: storage.k8s.io/v1 StorageClass (`class.rs`), core/v1 PersistentVolume
//! (`volume.rs`) and PersistentVolumeClaim (`claim.rs`), with kube's defaults,
//! validation, update rules and columns. What they share: access modes and their
//! abbreviations, and the storage quantity of a capacity or request.

pub mod claim;
pub mod class;
pub mod volume;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::error::FieldError;

/// The annotations that make a StorageClass the default (and their beta form).
pub const DEFAULT_ANNOTATIONS: &[&str] = &[
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];

/// Whether a StorageClass is marked default.
pub fn is_default(annotations: Option<&BTreeMap<String, String>>) -> bool {
    annotations.is_some_and(|a| {
        DEFAULT_ANNOTATIONS
            .iter()
            .any(|k| a.get(*k).map(String::as_str) == Some("true"))
    })
}

pub const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

/// `validateAccessModes` of PVs and PVCs: at least one (PVCs say why), each supported,
/// ReadWriteOncePod alone.
fn validate_access_modes(modes: Option<&Vec<String>>, claim: bool, errs: &mut Vec<FieldError>) {
    let modes = modes.map(Vec::as_slice).unwrap_or(&[]);
    if modes.is_empty() {
        let why = if claim {
            "at least 1 access mode is required"
        } else {
            ""
        };
        errs.push(FieldError::required("spec.accessModes", why));
    }
    for m in modes {
        if !ACCESS_MODES.contains(&m.as_str()) {
            errs.push(FieldError::not_supported(
                "spec.accessModes",
                m,
                ACCESS_MODES,
            ));
        }
    }
    if modes.iter().any(|m| m == "ReadWriteOncePod") && modes.len() > 1 {
        errs.push(FieldError::forbidden(
            "spec.accessModes",
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

/// `GetAccessModesAsString`: RWO, ROX, RWX, RWOP in that order, once each.
pub fn access_modes_short(modes: &[serde_json::Value]) -> String {
    let has = |m: &str| modes.iter().any(|x| x == m);
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| has(m))
    .map(|(_, s)| *s)
    .collect::<Vec<_>>()
    .join(",")
}

/// The bytes of `storage` in a capacity or request map, if it parses.
pub fn storage_bytes(m: Option<&BTreeMap<String, Quantity>>) -> Option<f64> {
    flotilla_core::quantity::parse(&m?.get("storage")?.0)
}

/// A storage quantity that must be there and positive.
fn validate_storage(
    m: Option<&BTreeMap<String, Quantity>>,
    field: &str,
    errs: &mut Vec<FieldError>,
) {
    match m.and_then(|m| m.get("storage")) {
        None => errs.push(FieldError::required(field, "")),
        Some(q) => match flotilla_core::quantity::parse(&q.0) {
            Some(b) if b > 0.0 => {}
            Some(_) => errs.push(FieldError::invalid(field, &q.0, "must be greater than zero")),
            None => errs.push(FieldError::invalid(
                field,
                &q.0,
                "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            )),
        },
    }
}

/// A class name, when given, is a DNS subdomain.
fn validate_class_name(name: Option<&str>, errs: &mut Vec<FieldError>) {
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        for m in crate::validation::name(crate::validation::NameRule::Subdomain, n) {
            errs.push(FieldError::invalid("spec.storageClassName", n, m));
        }
    }
}
