//! core/v1 PersistentVolumeClaim: kube's defaults (volumeMode Filesystem, phase Pending),
//! validation (access modes, a positive storage request, class name, selector) and update
//! rules (the spec is fixed once created, except that `volumeName` and
//! `storageClassName` may be set once, and a bound claim's request may grow).

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus,
};

use super::super::Kind;
use crate::error::FieldError;

pub struct PersistentVolumeClaims;

const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];

impl Kind for PersistentVolumeClaims {
    type Obj = PersistentVolumeClaim;
    const SINGULAR: &'static str = "persistentvolumeclaim";
    const SHORT_NAMES: &'static [&'static str] = &["pvc"];
    const STATUS: bool = true;
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::storage::PERSISTENTVOLUMECLAIM);

    fn default(pvc: &mut PersistentVolumeClaim) {
        let spec = pvc.spec.get_or_insert_with(Default::default);
        spec.volume_mode.get_or_insert_with(|| "Filesystem".into());
    }

    fn prepare_create(pvc: &mut PersistentVolumeClaim) {
        pvc.status = Some(PersistentVolumeClaimStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        });
    }

    fn validate(pvc: &PersistentVolumeClaim) -> Vec<FieldError> {
        validate_spec(pvc.spec.as_ref().unwrap_or(&Default::default()), "spec")
    }

    fn validate_update(
        new: &PersistentVolumeClaim,
        old: &PersistentVolumeClaim,
    ) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let (Some(n), Some(o)) = (&new.spec, &old.spec) else {
            return errs;
        };
        // What may change: volumeName and storageClassName once, a bound claim's request.
        let mut allowed = o.clone();
        if o.volume_name.as_deref().unwrap_or("").is_empty() {
            allowed.volume_name = n.volume_name.clone();
        }
        if o.storage_class_name.is_none() {
            allowed.storage_class_name = n.storage_class_name.clone();
        }
        let bound = new.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
            || old.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        if bound {
            allowed.resources = n.resources.clone();
            allowed.volume_attributes_class_name = n.volume_attributes_class_name.clone();
        }
        if n.volume_mode != o.volume_mode {
            errs.push(FieldError::invalid(
                "spec.volumeMode",
                n.volume_mode.as_deref().unwrap_or(""),
                "field is immutable",
            ));
            allowed.volume_mode = n.volume_mode.clone();
        }
        if &allowed != n {
            errs.push(FieldError::forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
        let req = |s: &PersistentVolumeClaimSpec| {
            super::storage_bytes(s.resources.as_ref().and_then(|r| r.requests.as_ref()))
        };
        if bound && req(n).zip(req(o)).is_some_and(|(n, o)| n < o) {
            errs.push(FieldError::forbidden(
                "spec.resources.requests.storage",
                "field can not be less than previous value",
            ));
        }
        errs
    }
}

/// `ValidatePersistentVolumeClaimSpec` at `path` (also a StatefulSet's claim templates).
pub fn validate_spec(spec: &PersistentVolumeClaimSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    super::validate_access_modes(spec.access_modes.as_ref(), true, &mut errs);
    super::validate_storage(
        spec.resources.as_ref().and_then(|r| r.requests.as_ref()),
        "spec.resources[storage]",
        &mut errs,
    );
    super::validate_class_name(spec.storage_class_name.as_deref(), &mut errs);
    if let Some(m) = spec
        .volume_mode
        .as_deref()
        .filter(|m| !VOLUME_MODES.contains(m))
    {
        errs.push(FieldError::not_supported(
            "spec.volumeMode",
            m,
            VOLUME_MODES,
        ));
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
    if path != "spec" {
        for e in &mut errs {
            e.field = e.field.replacen("spec", path, 1);
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pvc(spec: serde_json::Value) -> PersistentVolumeClaim {
        let mut c: PersistentVolumeClaim = serde_json::from_value(
            json!({"metadata": {"name": "c", "namespace": "d"}, "spec": spec}),
        )
        .unwrap();
        PersistentVolumeClaims::default(&mut c);
        c
    }

    #[test]
    fn kubes_messages() {
        let ok = pvc(json!({"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}));
        assert!(PersistentVolumeClaims::validate(&ok).is_empty());
        assert_eq!(
            ok.spec.as_ref().unwrap().volume_mode.as_deref(),
            Some("Filesystem")
        );
        let bad = pvc(json!({"resources": {"requests": {"storage": "0"}}}));
        let e: Vec<String> = PersistentVolumeClaims::validate(&bad)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            e,
            [
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Invalid value: \"0\": must be greater than zero"
            ]
        );
        let none = pvc(json!({"accessModes": ["ReadWriteOnce"]}));
        assert_eq!(
            PersistentVolumeClaims::validate(&none)[0].to_string(),
            "spec.resources[storage]: Required value"
        );
    }

    #[test]
    fn the_spec_is_fixed_but_binding_and_growth() {
        let old = pvc(json!({"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}));
        let mut bind = old.clone();
        bind.spec.as_mut().unwrap().volume_name = Some("pv-1".into());
        bind.spec.as_mut().unwrap().storage_class_name = Some("local-path".into());
        assert!(PersistentVolumeClaims::validate_update(&bind, &old).is_empty());
        let mut again = bind.clone();
        again.spec.as_mut().unwrap().volume_name = Some("pv-2".into());
        assert_eq!(
            PersistentVolumeClaims::validate_update(&again, &bind).len(),
            1
        );
        // Growing: only when bound; shrinking never.
        let mut grow = bind.clone();
        grow.spec.as_mut().unwrap().resources =
            Some(serde_json::from_value(json!({"requests": {"storage": "2Gi"}})).unwrap());
        assert_eq!(
            PersistentVolumeClaims::validate_update(&grow, &bind).len(),
            1
        );
        let mut bound = bind.clone();
        bound.status = Some(serde_json::from_value(json!({"phase": "Bound"})).unwrap());
        grow.status = bound.status.clone();
        assert!(PersistentVolumeClaims::validate_update(&grow, &bound).is_empty());
        let e = PersistentVolumeClaims::validate_update(&bound, &grow);
        assert_eq!(e[0].detail, "field can not be less than previous value");
    }
}
