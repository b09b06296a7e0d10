//! Deleting an owner's pods under expectations (kube's `PodControl.DeletePod` as its
//! replica and Job controllers use it): every deletion is expected before it is asked
//! for, each is guarded by the pod's uid (a pod recreated under the same name is not
//! touched), and one that fails or finds the pod gone or replaced is observed at once,
//! so the owner is not held back waiting for it.

use component_base::events::EventType;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Api, DeleteParams, Preconditions};

use crate::context::{controller_of, refers_to, Context, Key};
use crate::expectations::Expectations;
use crate::informer::Change;

/// The queue key of the `Owner` controlling the pod of `ch`, after telling `expectations`
/// of the pod's creation or deletion (kube's addPod/deletePod handlers); `None` for a pod
/// no `Owner` controls.
pub fn observe<Owner: kube::Resource<DynamicType = ()>>(
    expectations: &Expectations<Key>,
    ch: &Change<'_, Pod>,
) -> Option<Key> {
    let (p, created, deleted) = match ch {
        Change::Apply { old, new } => (
            *new,
            old.is_none(),
            new.metadata.deletion_timestamp.is_some(),
        ),
        Change::Delete(p) => (*p, false, true),
    };
    let r = controller_of(p).filter(|r| refers_to::<Owner>(r))?;
    let key = (
        p.metadata.namespace.clone().unwrap_or_default(),
        r.name.clone(),
    );
    if created {
        expectations.creation_observed(&key);
    }
    if deleted {
        expectations.deletion_observed(&key, p.metadata.uid.as_deref().unwrap_or(""));
    }
    Some(key)
}

/// A deletion the apiserver refused (other than the pod being gone or replaced).
#[derive(Debug)]
pub struct DeleteFailed {
    pub pod: String,
    pub source: kube::Error,
}

/// Deletes `victims` of `owner` (queue key `key`), recording a `SuccessfulDelete` Event
/// per pod; all are tried, and the last failure is returned.
pub async fn delete_pods(
    ctx: &Context,
    expectations: &Expectations<Key>,
    key: &Key,
    api: &Api<Pod>,
    owner: &ObjectReference,
    victims: &[&Pod],
) -> Result<(), DeleteFailed> {
    expectations.expect_deletions(
        key,
        victims
            .iter()
            .map(|p| p.metadata.uid.clone().unwrap_or_default()),
    );
    let mut failed = None;
    for p in victims {
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        let name = p.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &dp).await {
            Ok(_) => ctx.recorder.record(
                owner,
                EventType::Normal,
                "SuccessfulDelete",
                &format!("Deleted pod: {name}"),
            ),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                expectations.deletion_observed(key, &uid);
            }
            Err(source) => {
                expectations.deletion_observed(key, &uid);
                failed = Some(DeleteFailed { pod: name, source });
            }
        }
    }
    match failed {
        Some(f) => Err(f),
        None => Ok(()),
    }
}
