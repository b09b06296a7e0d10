//! The CustomResourceDefinition controllers of apiextensions-apiserver, run by every
//! apiserver (as kube-apiserver runs them in each replica):
//! - naming and establishing: each CRD's accepted names, `NamesAccepted` and
//!   `Established` (`kinds::crd::status` decides them);
//! - cleanup: a deleted CRD holding the `customresourcecleanup.apiextensions.k8s.io`
//!   finalizer has its objects deleted (each through the registry, so their own
//!   finalizers hold them), then loses the finalizer and is gone.
//!
//! It follows CRD events of the watch cache, and looks again every `RESYNC` (sooner after
//! a failure). Replicas that write the same status concurrently meet a conflict and read
//! again; what they write is decided from the same stored CRDs.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

use crate::error::ApiError;
use crate::kinds::crd::status::{self, CLEANUP_FINALIZER};
use crate::kinds::CRD_PREFIX;
use crate::store::cache::follow::Follow;
use crate::store::{DeleteOptions, ListOptions, Store, Target, Write};

const RESYNC: Duration = Duration::from_secs(30);
const RETRY: Duration = Duration::from_secs(1);
const MANAGER: &str = "kube-apiserver";

/// Keeps every CRD's status until the task is dropped.
pub async fn run(store: Arc<Store>) {
    let mut follow = Follow::new(CRD_PREFIX);
    loop {
        // Events from now on; what came before, the pass below reads from the cache.
        follow.subscribe(&store.cache);
        let wait = match reconcile_all(&store).await {
            Ok(false) => RESYNC,
            Ok(true) => RETRY,
            Err(e) => {
                tracing::debug!(error = %e, "custom resource definitions: will retry");
                RETRY
            }
        };
        follow.changed(wait).await;
    }
}

fn crd_target(store: &Store, name: Option<&str>) -> Result<Target, ApiError> {
    Ok(Target {
        kind: store
            .kinds
            .find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .ok_or(ApiError::NoRoute)?,
        namespace: None,
        name: name.map(String::from),
    })
}

/// One pass over every CRD; true when one wants another pass soon.
async fn reconcile_all(store: &Store) -> Result<bool, ApiError> {
    let Some((objs, _)) = store.cache.list(CRD_PREFIX) else {
        return Ok(true);
    };
    let all: Vec<CustomResourceDefinition> = objs
        .iter()
        .filter_map(|o| serde_json::from_slice(&o.json).ok())
        .collect();
    let mut again = false;
    for crd in &all {
        let name = crd.metadata.name.as_deref().unwrap_or("");
        let r = if crd.metadata.deletion_timestamp.is_some() {
            cleanup(store, crd).await
        } else {
            name_and_establish(store, crd, &all).await.map(|()| false)
        };
        match r {
            Ok(a) => again |= a,
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => {
                tracing::debug!(crd = name, error = %e, "custom resource definition: will retry");
                again = true;
            }
        }
    }
    Ok(again)
}

/// Writes `crd` with `status` through the status subresource, if it changes; the CRD as
/// stored after.
async fn write_status(
    store: &Store,
    crd: &CustomResourceDefinition,
    status: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionStatus,
) -> Result<CustomResourceDefinition, ApiError> {
    if !status::differs(&crd.status.clone().unwrap_or_default(), &status) {
        return Ok(crd.clone());
    }
    let mut next = crd.clone();
    next.status = Some(status);
    let body = serde_json::to_vec(&next).unwrap_or_default();
    let t = crd_target(store, next.metadata.name.as_deref())?;
    let out = store
        .update(&t, &body, Some("status"), &Write::new(MANAGER, false))
        .await?;
    serde_json::from_slice(&out).map_err(|e| ApiError::Internal(format!("stored CRD: {e}")))
}

async fn name_and_establish(
    store: &Store,
    crd: &CustomResourceDefinition,
    all: &[CustomResourceDefinition],
) -> Result<(), ApiError> {
    let want = status::desired(crd, all, &crate::store::now());
    let before = status::is_true(crd, "Established");
    let after = write_status(store, crd, want).await?;
    if !before && status::is_true(&after, "Established") {
        tracing::info!(
            crd = crd.metadata.name.as_deref().unwrap_or(""),
            "custom resource definition established"
        );
    }
    Ok(())
}

/// Deletes a deleted CRD's objects, then releases it; true while objects remain.
async fn cleanup(store: &Store, crd: &CustomResourceDefinition) -> Result<bool, ApiError> {
    let ours = crd
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == CLEANUP_FINALIZER);
    if !ours {
        return Ok(false);
    }
    let now = crate::store::now();
    let mut s = crd.status.clone().unwrap_or_default();
    let accepted = s.accepted_names.clone().unwrap_or_default();
    let kind = store
        .kinds
        .by_storage(&format!("{}/{}", crd.spec.group, accepted.plural));
    let (value, reason, message, remaining) = match kind {
        Some(kind) if status::is_true(crd, "Established") && !accepted.plural.is_empty() => {
            // Said once, when the deletion starts (later passes keep what they found).
            let pending = status::condition(crd, "Terminating")
                .is_none_or(|c| c.reason.as_deref() == Some("InstanceDeletionPending"));
            if pending {
                status::set_condition(
                    &mut s,
                    "Terminating",
                    "True",
                    "InstanceDeletionInProgress",
                    "CustomResource deletion is in progress",
                    &now,
                );
            }
            let crd = write_status(store, crd, s.clone()).await?;
            let all = Target {
                kind,
                namespace: None,
                name: None,
            };
            let done = delete_all(store, &all).await;
            s = crd.status.clone().unwrap_or_default();
            match done {
                Err(e) => (
                    "True",
                    "InstanceDeletionFailed",
                    format!("could not issue all deletes: {e}"),
                    true,
                ),
                Ok(0) => (
                    "False",
                    "InstanceDeletionCompleted",
                    "removed all instances".to_string(),
                    false,
                ),
                Ok(n) => (
                    "True",
                    "InstanceDeletionCheck",
                    format!("could not confirm zero CustomResources remaining: {n} remaining"),
                    true,
                ),
            }
        }
        _ => (
            "False",
            "NeverEstablished",
            "resource was never established".to_string(),
            false,
        ),
    };
    status::set_condition(&mut s, "Terminating", value, reason, &message, &now);
    let name = crd.metadata.name.clone().unwrap_or_default();
    let fresh = store_crd(store, &name).await?;
    let crd = write_status(store, &fresh, s).await?;
    if remaining {
        return Ok(true);
    }
    let mut released = crd.clone();
    if let Some(f) = released.metadata.finalizers.as_mut() {
        f.retain(|x| x != CLEANUP_FINALIZER);
    }
    let body = serde_json::to_vec(&released).unwrap_or_default();
    store
        .update(
            &crd_target(store, Some(&name))?,
            &body,
            None,
            &Write::new(MANAGER, false),
        )
        .await?;
    tracing::info!(crd = name, "custom resource definition cleaned up");
    Ok(false)
}

/// The CRD as stored now.
async fn store_crd(store: &Store, name: &str) -> Result<CustomResourceDefinition, ApiError> {
    let b = store.get(&crd_target(store, Some(name))?, None).await?;
    serde_json::from_slice(&b).map_err(|e| ApiError::Internal(format!("stored CRD: {e}")))
}

/// Deletes every object of the kind; how many remain after (held by finalizers).
async fn delete_all(store: &Store, all: &Target) -> Result<usize, ApiError> {
    let opts = ListOptions::default();
    store
        .delete_collection(
            all,
            &opts,
            &DeleteOptions::default(),
            None,
            &Default::default(),
        )
        .await?;
    let left: Vec<Value> = store.list_values(all, &opts).await?;
    Ok(left.len())
}
