//! The PersistentVolume binder's decisions, pure (kube's `pv_controller.go`): which volume
//! an unbound claim gets (the smallest Available one that satisfies it, or the one
//! pre-bound to it), when a claim waits for a provisioner, and each volume's phase.
//!
//! A bind is four writes in kube's order, each guarded by its object's resourceVersion:
//! the volume's `claimRef`, the volume's phase Bound, the claim's `volumeName`, the
//! claim's phase Bound. A crash between any two leaves a volume whose `claimRef` names the
//! claim (with its UID), which [`matching`] returns first, so the next sync finishes the
//! same bind and no volume is ever bound to two claims.

use std::collections::BTreeMap;

use flotilla_core::labels;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// A class whose volumes are made by hand.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

fn class_of_claim(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

fn class_of_volume(v: &PersistentVolume) -> &str {
    v.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

fn requested(c: &PersistentVolumeClaim) -> f64 {
    c.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| flotilla_core::quantity::parse(&q.0))
        .unwrap_or(0.0)
}

fn capacity(v: &PersistentVolume) -> f64 {
    v.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| flotilla_core::quantity::parse(&q.0))
        .unwrap_or(0.0)
}

fn volume_mode(m: Option<&String>) -> &str {
    m.map_or("Filesystem", String::as_str)
}

/// Whether the volume's `claimRef` names this claim (by namespace and name, and UID when
/// the ref has one).
pub fn refers_to(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.namespace == c.metadata.namespace
        && r.name == c.metadata.name
        && r.uid
            .as_deref()
            .filter(|u| !u.is_empty())
            .is_none_or(|u| Some(u) == c.metadata.uid.as_deref())
}

/// kube's `checkVolumeSatisfyClaim`: why the volume cannot serve the claim, if it cannot.
pub fn unsatisfied(v: &PersistentVolume, c: &PersistentVolumeClaim) -> Option<&'static str> {
    if capacity(v) < requested(c) {
        return Some("requested PV is too small");
    }
    if class_of_volume(v) != class_of_claim(c) {
        return Some("storageClassName does not match");
    }
    let (vs, cs) = (
        v.spec.clone().unwrap_or_default(),
        c.spec.clone().unwrap_or_default(),
    );
    if volume_mode(vs.volume_mode.as_ref()) != volume_mode(cs.volume_mode.as_ref()) {
        return Some("incompatible volumeMode");
    }
    let have = vs.access_modes.unwrap_or_default();
    if !cs
        .access_modes
        .unwrap_or_default()
        .iter()
        .all(|m| have.contains(m))
    {
        return Some("incompatible accessMode");
    }
    None
}

/// The volume for an unbound claim (kube's `FindMatchingVolume` as the controller runs
/// it): one pre-bound to it if it satisfies it; otherwise the smallest Available volume
/// with no `claimRef` that satisfies it and its selector. `delayed`: the class binds at
/// the first consumer, so unclaimed volumes are left to the scheduler's choice.
pub fn matching<'a>(
    c: &PersistentVolumeClaim,
    volumes: &[&'a PersistentVolume],
    delayed: bool,
) -> Option<&'a PersistentVolume> {
    let usable = |v: &&&PersistentVolume| {
        v.metadata.deletion_timestamp.is_none() && unsatisfied(v, c).is_none()
    };
    if let Some(v) = volumes.iter().filter(usable).find(|v| refers_to(v, c)) {
        return Some(v);
    }
    if delayed {
        return None;
    }
    let empty = BTreeMap::new();
    let selector = c.spec.as_ref().and_then(|s| s.selector.as_ref());
    volumes
        .iter()
        .filter(usable)
        .filter(|v| v.spec.as_ref().is_some_and(|s| s.claim_ref.is_none()))
        .filter(|v| v.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Available"))
        .filter(|v| {
            selector.is_none_or(|sel| {
                labels::matches(sel, v.metadata.labels.as_ref().unwrap_or(&empty))
            })
        })
        .min_by(|a, b| capacity(a).total_cmp(&capacity(b)))
        .copied()
}

/// What an unbound claim waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// Bind it to this volume.
    Bind(String),
    /// Ask this (external) provisioner for a volume: annotate the claim.
    Provision(String),
    /// An event for the claim, which stays Pending.
    Event {
        reason: &'static str,
        message: String,
    },
    /// Already asked; nothing to do.
    Nothing,
}

/// The decision for a claim with no `volumeName` (kube's `syncUnboundClaim`).
pub fn unbound(
    c: &PersistentVolumeClaim,
    volumes: &[&PersistentVolume],
    classes: &[&StorageClass],
) -> Waiting {
    let class_name = class_of_claim(c);
    let class = classes
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some(class_name));
    let delayed =
        class.is_some_and(|s| s.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
    let annotations = c.metadata.annotations.clone().unwrap_or_default();
    let selected = annotations
        .get(SELECTED_NODE)
        .is_some_and(|n| !n.is_empty());
    if let Some(v) = matching(c, volumes, delayed && !selected) {
        return Waiting::Bind(v.metadata.name.clone().unwrap_or_default());
    }
    if delayed && !selected {
        return Waiting::Event {
            reason: "WaitForFirstConsumer",
            message: "waiting for first consumer to be created before binding".into(),
        };
    }
    match class {
        Some(s) if s.provisioner != NO_PROVISIONER => {
            if annotations.get(STORAGE_PROVISIONER) == Some(&s.provisioner) {
                Waiting::Nothing
            } else {
                Waiting::Provision(s.provisioner.clone())
            }
        }
        Some(_) => Waiting::Event {
            reason: "FailedBinding",
            message: "no persistent volumes available for this claim and no storage class is set"
                .into(),
        },
        None if class_name.is_empty() => Waiting::Event {
            reason: "FailedBinding",
            message: "no persistent volumes available for this claim and no storage class is set"
                .into(),
        },
        None => Waiting::Event {
            reason: "ProvisioningFailed",
            message: format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
        },
    }
}

/// The message of kube's ExternalProvisioning event.
pub fn external_provisioning(provisioner: &str) -> String {
    format!("Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.")
}

/// The phase a volume should show (kube's `syncVolume`): Available without a claim,
/// Bound while its claim is bound to it, Released once its claim is gone (or replaced),
/// and left alone while a bind is under way or it has Failed.
pub fn volume_phase(
    v: &PersistentVolume,
    claims: &[&PersistentVolumeClaim],
) -> Option<&'static str> {
    let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return Some("Available");
    };
    let claim = claims
        .iter()
        .find(|c| c.metadata.namespace == r.namespace && c.metadata.name == r.name);
    let uid = r.uid.as_deref().filter(|u| !u.is_empty());
    match claim {
        None if uid.is_none() => Some("Available"),
        None => Some("Released"),
        Some(c) if uid.is_some() && uid != c.metadata.uid.as_deref() => Some("Released"),
        Some(c) => {
            let bound_here = c.spec.as_ref().and_then(|s| s.volume_name.as_deref())
                == v.metadata.name.as_deref();
            if bound_here {
                Some("Bound")
            } else {
                // Pre-bound by an administrator, or half-way through a bind: the claim's
                // sync finishes it.
                None
            }
        }
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
