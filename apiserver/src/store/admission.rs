//! Admission plugins that need stored state, as kube-apiserver's: each plugin names the
//! resources it handles, and the registry runs those that apply. Mutating plugins run on
//! create after defaulting and before validation; validating plugins run after the kind's
//! validation, on create and on update (of the object itself, not of a subresource).
//!
//! An update decides inside a guarded write that may be retried, so what a validating
//! plugin reads from storage is read once before it ([`UpdateAdmission`]), and what it
//! tells the client is kept from the decision that was written.
//!
//! Plugins, in the order they run: Priority (`admission/priority.rs`, mutating, pods:
//! priorityClassName → priority and preemptionPolicy, or the globalDefault class, or 0),
//! DefaultStorageClass (`admission/storageclass.rs`, mutating, claims without a class get
//! the default StorageClass), StorageObjectInUseProtection (`admission/inuse.rs`, mutating,
//! new claims and volumes get their protection finalizer),
//! PodSecurity (`admission/podsecurity.rs`, validating: the Pod Security Standards a
//! namespace's labels select, over pods and the pod templates of controllers; the labels
//! themselves on namespaces).

pub mod inuse;
mod podsecurity;
mod priority;
mod storageclass;

use std::sync::Mutex;

use serde_json::Value;

use super::{Store, Target, Write};
use crate::error::ApiError;

/// The admission plugins, in the order they run.
#[derive(Debug, Clone, Copy)]
enum Plugin {
    Priority,
    DefaultStorageClass,
    StorageObjectInUseProtection,
    PodSecurity,
}

const PLUGINS: &[Plugin] = &[
    Plugin::Priority,
    Plugin::DefaultStorageClass,
    Plugin::StorageObjectInUseProtection,
    Plugin::PodSecurity,
];

impl Plugin {
    /// The (group, resource) pairs the plugin handles.
    fn handles(self, t: &Target) -> bool {
        let info = t.kind.info();
        let gr = (info.group, info.plural);
        match self {
            Plugin::Priority => gr == ("", "pods"),
            Plugin::DefaultStorageClass => gr == ("", "persistentvolumeclaims"),
            Plugin::StorageObjectInUseProtection => {
                gr == ("", "persistentvolumeclaims") || gr == ("", "persistentvolumes")
            }
            Plugin::PodSecurity => podsecurity::handles(gr),
        }
    }
}

/// What validating admission of one update read before the write, and what it found on
/// the decision last taken.
pub(super) struct UpdateAdmission {
    pod_security: podsecurity::Update,
    /// Warnings of the latest decision (a retried decision replaces them).
    warnings: Mutex<Vec<String>>,
}

impl UpdateAdmission {
    /// No validating admission (subresources, and writes that are not a client's update).
    pub(super) fn none() -> Self {
        UpdateAdmission {
            pod_security: podsecurity::Update::None,
            warnings: Mutex::new(Vec::new()),
        }
    }

    /// Validating admission of `new` replacing `old` (both whole objects).
    pub(super) fn validate(&self, t: &Target, new: &Value, old: &Value) -> Result<(), ApiError> {
        let mut warnings = Vec::new();
        let r = self.pod_security.validate(t, new, old, &mut warnings);
        if let Ok(mut w) = self.warnings.lock() {
            *w = warnings;
        }
        r
    }
}

impl Store {
    /// Mutating admission of a create.
    pub(super) async fn admit_create(&self, t: &Target, obj: &mut Value) -> Result<(), ApiError> {
        for p in PLUGINS {
            if !p.handles(t) {
                continue;
            }
            match p {
                Plugin::Priority => self.admit_priority(obj).await?,
                Plugin::DefaultStorageClass => self.admit_storage_class(obj).await?,
                Plugin::StorageObjectInUseProtection => match t.kind.info().plural {
                    "persistentvolumes" => inuse::protect(obj, inuse::PV_PROTECTION),
                    _ => inuse::protect(obj, inuse::PVC_PROTECTION),
                },
                Plugin::PodSecurity => {}
            }
        }
        Ok(())
    }

    /// Validating admission of a create, of the object as it will be stored.
    pub(super) async fn validate_create(
        &self,
        t: &Target,
        obj: &Value,
        w: &Write,
    ) -> Result<(), ApiError> {
        for p in PLUGINS {
            if !p.handles(t) {
                continue;
            }
            match p {
                Plugin::Priority
                | Plugin::DefaultStorageClass
                | Plugin::StorageObjectInUseProtection => {}
                Plugin::PodSecurity => self.pod_security_create(t, obj, w).await?,
            }
        }
        Ok(())
    }

    /// What validating admission of an update of `t` (through subresource `sub`) needs,
    /// read now.
    pub(super) async fn update_admission(
        &self,
        t: &Target,
        sub: Option<&str>,
    ) -> Result<UpdateAdmission, ApiError> {
        let mut adm = UpdateAdmission::none();
        if sub.is_some() {
            return Ok(adm);
        }
        for p in PLUGINS {
            if !p.handles(t) {
                continue;
            }
            match p {
                Plugin::Priority
                | Plugin::DefaultStorageClass
                | Plugin::StorageObjectInUseProtection => {}
                Plugin::PodSecurity => adm.pod_security = self.pod_security_update(t).await?,
            }
        }
        Ok(adm)
    }

    /// After an update was written: its warnings to the client, and what plugins do
    /// about the new state (PodSecurity checks a namespace's pods against a stricter
    /// enforce level).
    pub(super) async fn after_update(&self, t: &Target, adm: &UpdateAdmission, w: &Write) {
        if let Ok(mut warnings) = adm.warnings.lock() {
            for x in warnings.drain(..) {
                w.warnings.push(x);
            }
        }
        self.pod_security_after_update(t, &adm.pod_security, w)
            .await;
    }
}

#[cfg(test)]
mod tests;
