//! StorageClasses, PersistentVolumes and PersistentVolumeClaims, as kube-apiserver's
//! printStorageClass, printPersistentVolume and printPersistentVolumeClaim.

use serde_json::Value;

use super::{age, arr_at, name, str_at};
use crate::kinds::storage::{access_modes_short, is_default};
use crate::table::{Column, Printer, AGE, NAME};

fn or_unset(o: &Value, at: &str) -> Value {
    str_at(o, at).unwrap_or("<unset>").into()
}

/// The phase, or Terminating once deleted.
fn phase(o: &Value) -> Value {
    if o.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    str_at(o, "/status/phase").unwrap_or("").into()
}

/// The class: the beta annotation first, as kube.
fn class(o: &Value) -> Value {
    str_at(
        o,
        "/metadata/annotations/volume.beta.kubernetes.io~1storage-class",
    )
    .or_else(|| str_at(o, "/spec/storageClassName"))
    .unwrap_or("")
    .into()
}

pub static STORAGECLASS: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        NAME,
        Column::new("Provisioner", "Indicates the type of the provisioner."),
        Column::new("ReclaimPolicy", "Indicates the type of the reclaim policy."),
        Column::new(
            "VolumeBindingMode",
            "Indicates when volume binding and dynamic provisioning should occur.",
        ),
        Column::new(
            "AllowVolumeExpansion",
            "Indicates whether the storage class allow volume expand.",
        )
        .of("boolean"),
        AGE,
    ],
    cells: |o, now| {
        let annotations = o
            .pointer("/metadata/annotations")
            .and_then(|a| serde_json::from_value(a.clone()).ok());
        let mut n = str_at(o, "/metadata/name").unwrap_or("").to_string();
        if is_default(annotations.as_ref()) {
            n.push_str(" (default)");
        }
        vec![
            n.into(),
            str_at(o, "/provisioner").unwrap_or("").into(),
            str_at(o, "/reclaimPolicy").unwrap_or("Delete").into(),
            str_at(o, "/volumeBindingMode")
                .unwrap_or("Immediate")
                .into(),
            o.get("allowVolumeExpansion")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .into(),
            age(o, now),
        ]
    },
};

pub static PERSISTENTVOLUME: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        NAME,
        Column::new("Capacity", "The storage capacity of the volume."),
        Column::new("Access Modes", "The ways the volume can be mounted."),
        Column::new(
            "Reclaim Policy",
            "What happens to the volume when its claim is released.",
        ),
        Column::new("Status", "The phase of the volume."),
        Column::new("Claim", "The claim bound to the volume."),
        Column::new("StorageClass", "The class of the volume."),
        Column::new(
            "VolumeAttributesClass",
            "The attributes class of the volume.",
        ),
        Column::new("Reason", "Why the volume is in its phase."),
        AGE,
        Column::new("VolumeMode", "Filesystem or Block.").wide(),
    ],
    cells: |o, now| {
        let claim = match (
            str_at(o, "/spec/claimRef/namespace"),
            str_at(o, "/spec/claimRef/name"),
        ) {
            (Some(ns), Some(n)) => format!("{ns}/{n}"),
            _ => String::new(),
        };
        vec![
            name(o),
            str_at(o, "/spec/capacity/storage").unwrap_or("").into(),
            access_modes_short(arr_at(o, "/spec/accessModes")).into(),
            str_at(o, "/spec/persistentVolumeReclaimPolicy")
                .unwrap_or("")
                .into(),
            phase(o),
            claim.into(),
            class(o),
            or_unset(o, "/spec/volumeAttributesClassName"),
            str_at(o, "/status/reason").unwrap_or("").into(),
            age(o, now),
            or_unset(o, "/spec/volumeMode"),
        ]
    },
};

pub static PERSISTENTVOLUMECLAIM: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        NAME,
        Column::new("Status", "The phase of the claim."),
        Column::new("Volume", "The volume bound to the claim."),
        Column::new("Capacity", "The storage capacity of the bound volume."),
        Column::new("Access Modes", "The ways the bound volume can be mounted."),
        Column::new("StorageClass", "The class of the claim."),
        Column::new(
            "VolumeAttributesClass",
            "The attributes class of the claim.",
        ),
        AGE,
        Column::new("VolumeMode", "Filesystem or Block.").wide(),
    ],
    cells: |o, now| {
        let volume = str_at(o, "/spec/volumeName").unwrap_or("");
        // Capacity and modes only once bound to a volume, as kube.
        let (capacity, modes) = if volume.is_empty() {
            (String::new(), String::new())
        } else {
            (
                str_at(o, "/status/capacity/storage")
                    .unwrap_or("")
                    .to_string(),
                access_modes_short(arr_at(o, "/status/accessModes")),
            )
        };
        vec![
            name(o),
            phase(o),
            volume.into(),
            capacity.into(),
            modes.into(),
            class(o),
            or_unset(o, "/spec/volumeAttributesClassName"),
            age(o, now),
            or_unset(o, "/spec/volumeMode"),
        ]
    },
};
