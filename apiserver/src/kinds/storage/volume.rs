//! core/v1 PersistentVolume: kube's defaults (reclaim Retain, volumeMode Filesystem, phase
//! Pending until the binder makes it Available), validation (one volume source, storage
//! capacity, access modes, node affinity for `local`) and update rules (the source and the
//! volume mode are fixed; node affinity may only be added).

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeStatus};

use super::super::Kind;
use crate::error::FieldError;

pub struct PersistentVolumes;

const RECLAIM: &[&str] = &["Delete", "Recycle", "Retain"];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];

/// The volume sources a spec sets, by their JSON names.
fn sources(pv: &PersistentVolume) -> Vec<String> {
    let Ok(serde_json::Value::Object(spec)) = serde_json::to_value(&pv.spec) else {
        return vec![];
    };
    const NOT_SOURCES: &[&str] = &[
        "accessModes",
        "capacity",
        "claimRef",
        "mountOptions",
        "nodeAffinity",
        "persistentVolumeReclaimPolicy",
        "storageClassName",
        "volumeAttributesClassName",
        "volumeMode",
    ];
    spec.keys()
        .filter(|k| !NOT_SOURCES.contains(&k.as_str()))
        .cloned()
        .collect()
}

fn no_dotdot(path: &str, field: &str, errs: &mut Vec<FieldError>) {
    if path.is_empty() {
        errs.push(FieldError::required(field, ""));
    } else if path.split('/').any(|p| p == "..") {
        errs.push(FieldError::invalid(field, path, "must not contain '..'"));
    }
}

impl Kind for PersistentVolumes {
    type Obj = PersistentVolume;
    const SINGULAR: &'static str = "persistentvolume";
    const SHORT_NAMES: &'static [&'static str] = &["pv"];
    const STATUS: bool = true;
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::storage::PERSISTENTVOLUME);

    fn default(pv: &mut PersistentVolume) {
        let spec = pv.spec.get_or_insert_with(Default::default);
        spec.persistent_volume_reclaim_policy
            .get_or_insert_with(|| "Retain".into());
        spec.volume_mode.get_or_insert_with(|| "Filesystem".into());
    }

    fn prepare_create(pv: &mut PersistentVolume) {
        pv.status = Some(PersistentVolumeStatus {
            phase: Some("Pending".into()),
            last_phase_transition_time: Some(crate::store::now()),
            ..Default::default()
        });
    }

    fn validate(pv: &PersistentVolume) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = pv.spec.clone().unwrap_or_default();
        super::validate_access_modes(spec.access_modes.as_ref(), false, &mut errs);
        match &spec.capacity {
            None => errs.push(FieldError::required("spec.capacity", "")),
            Some(c) if c.is_empty() => errs.push(FieldError::required("spec.capacity", "")),
            Some(c) => {
                for k in c.keys().filter(|k| *k != "storage") {
                    errs.push(FieldError::not_supported("spec.capacity", k, &["storage"]));
                }
                if c.contains_key("storage") {
                    super::validate_storage(Some(c), "spec.capacity[storage]", &mut errs);
                }
            }
        }
        if let Some(r) = spec
            .persistent_volume_reclaim_policy
            .as_deref()
            .filter(|r| !RECLAIM.contains(r))
        {
            errs.push(FieldError::not_supported(
                "spec.persistentVolumeReclaimPolicy",
                r,
                RECLAIM,
            ));
        }
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
        super::validate_class_name(spec.storage_class_name.as_deref(), &mut errs);
        let srcs = sources(pv);
        match srcs.as_slice() {
            [] => errs.push(FieldError::required("spec", "must specify a volume type")),
            [_] => {}
            [_, rest @ ..] => {
                for s in rest {
                    errs.push(FieldError::forbidden(
                        format!("spec.{s}"),
                        "may not specify more than 1 volume type",
                    ));
                }
            }
        }
        if let Some(h) = &spec.host_path {
            no_dotdot(&h.path, "spec.hostPath.path", &mut errs);
            if spec.persistent_volume_reclaim_policy.as_deref() == Some("Recycle") && h.path == "/"
            {
                errs.push(FieldError::forbidden(
                    "spec.persistentVolumeReclaimPolicy",
                    "may not be 'recycle' for a hostPath mount of '/'",
                ));
            }
        }
        if let Some(l) = &spec.local {
            no_dotdot(&l.path, "spec.local.path", &mut errs);
            if spec.node_affinity.is_none() {
                errs.push(FieldError::required(
                    "spec.nodeAffinity",
                    "Local volume requires node affinity",
                ));
            }
        }
        if let Some(a) = &spec.node_affinity {
            if a.required.is_none() {
                errs.push(FieldError::required(
                    "spec.nodeAffinity.required",
                    "must specify required node constraints",
                ));
            }
        }
        errs
    }

    fn validate_update(new: &PersistentVolume, old: &PersistentVolume) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let source = |pv: &PersistentVolume| {
            let v = serde_json::to_value(&pv.spec).unwrap_or_default();
            sources(pv)
                .into_iter()
                .map(|k| (k.clone(), v[&k].clone()))
                .collect::<Vec<_>>()
        };
        if source(new) != source(old) {
            errs.push(FieldError::forbidden(
                "spec.persistentvolumesource",
                "spec.persistentvolumesource is immutable after creation",
            ));
        }
        let mode = |pv: &PersistentVolume| pv.spec.as_ref().and_then(|s| s.volume_mode.clone());
        if mode(new) != mode(old) {
            errs.push(FieldError::invalid(
                "spec.volumeMode",
                mode(new).as_deref().unwrap_or(""),
                "field is immutable",
            ));
        }
        let affinity =
            |pv: &PersistentVolume| pv.spec.as_ref().and_then(|s| s.node_affinity.clone());
        if affinity(old).is_some() && affinity(new) != affinity(old) {
            errs.push(FieldError::invalid_raw(
                "spec.nodeAffinity",
                "(object)".into(),
                "field is immutable",
            ));
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(spec: serde_json::Value) -> PersistentVolume {
        let mut pv: PersistentVolume =
            serde_json::from_value(json!({"metadata": {"name": "v"}, "spec": spec})).unwrap();
        PersistentVolumes::default(&mut pv);
        pv
    }

    fn details(errs: &[FieldError]) -> Vec<String> {
        errs.iter()
            .map(|e| format!("{}: {}", e.field, e.detail))
            .collect()
    }

    #[test]
    fn a_local_volume_needs_node_affinity_and_one_source() {
        let ok = pv(
            json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/data/v"}}),
        );
        assert!(PersistentVolumes::validate(&ok).is_empty());
        assert_eq!(
            ok.spec
                .as_ref()
                .unwrap()
                .persistent_volume_reclaim_policy
                .as_deref(),
            Some("Retain")
        );
        let bad = pv(
            json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "local": {"path": "/data/../x"}, "hostPath": {"path": "/d"}}),
        );
        assert_eq!(
            details(&PersistentVolumes::validate(&bad)),
            [
                "spec.local: may not specify more than 1 volume type",
                "spec.local.path: must not contain '..'",
                "spec.nodeAffinity: Local volume requires node affinity"
            ]
        );
        let none = pv(json!({"accessModes": ["Sideways"]}));
        assert_eq!(
            details(&PersistentVolumes::validate(&none))
                .iter()
                .map(|d| d.split(':').next().unwrap().to_string())
                .collect::<Vec<_>>(),
            ["spec.accessModes", "spec.capacity", "spec"]
        );
    }

    #[test]
    fn the_source_is_fixed() {
        let old = pv(
            json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/data/v"}}),
        );
        let mut new = old.clone();
        new.spec.as_mut().unwrap().capacity = Some(
            [(
                "storage".to_string(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("2Gi".into()),
            )]
            .into(),
        );
        assert!(PersistentVolumes::validate_update(&new, &old).is_empty());
        new.spec.as_mut().unwrap().host_path.as_mut().unwrap().path = "/other".into();
        assert_eq!(PersistentVolumes::validate_update(&new, &old).len(), 1);
    }
}
