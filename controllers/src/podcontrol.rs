//! An owner's pods under expectations (kube's `PodControl` as its replica, Job and
//! DaemonSet controllers use it): `observe` turns a pod event into its owner's queue key
//! and tells the expectations of a creation or deletion; `delete_pods` expects every
//! deletion before it is asked for, guards each by the pod's uid (a pod recreated under
//! the same name is not touched), and observes at once one that fails or finds the pod
//! gone or replaced, so the owner is not held back waiting for it.

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

/// kube's slowStartBatch: runs `f` over `items` in batches of 1, 2, 4, … (concurrently
/// within a batch), stopping after the first batch in which a call failed, so a flood of
/// creations that the apiserver refuses costs one call, not all. Returns how many calls
/// were made and the first error.
pub async fn slow_start<T, E, F, Fut>(items: Vec<T>, f: F) -> (usize, Option<E>)
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    let mut batch = 1usize;
    let mut made = 0usize;
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let calls: Vec<Fut> = items.by_ref().take(batch).map(&f).collect();
        made += calls.len();
        let mut first = None;
        for r in futures::future::join_all(calls).await {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        }
        if first.is_some() {
            return (made, first);
        }
        batch = batch.saturating_mul(2);
    }
    (made, None)
}

/// Pod deletions in flight at once for one owner.
const DELETE_CONCURRENCY: usize = 16;

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
    // Concurrently, as kube's controllers delete, but at most DELETE_CONCURRENCY at once:
    // a rollout deleting hundreds of pods must not flood the store.
    let mut failed = None;
    for chunk in victims.chunks(DELETE_CONCURRENCY) {
        let deletions = chunk
            .iter()
            .map(|p| delete_one(ctx, expectations, key, api, owner, p));
        if let Some(f) = futures::future::join_all(deletions)
            .await
            .into_iter()
            .flatten()
            .last()
        {
            failed = Some(f);
        }
    }
    match failed {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

/// One uid-guarded deletion; a refusal other than gone/replaced is returned.
async fn delete_one(
    ctx: &Context,
    expectations: &Expectations<Key>,
    key: &Key,
    api: &Api<Pod>,
    owner: &ObjectReference,
    p: &Pod,
) -> Option<DeleteFailed> {
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
        Ok(_) => {
            let msg = format!("Deleted pod: {name}");
            ctx.recorder
                .record(owner, EventType::Normal, "SuccessfulDelete", &msg);
            None
        }
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
            expectations.deletion_observed(key, &uid);
            None
        }
        Err(source) => {
            expectations.deletion_observed(key, &uid);
            Some(DeleteFailed { pod: name, source })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn slow_start_doubles_and_stops_after_a_failed_batch() {
        let seen = Mutex::new(Vec::new());
        let (made, err) = slow_start((0..20).collect(), |i: u32| {
            seen.lock().unwrap().push(i);
            async move {
                if i == 5 {
                    Err(i)
                } else {
                    Ok(())
                }
            }
        })
        .await;
        // Batches 1, 2, 4: the third (3..=6) holds the failure; 7.. never start.
        assert_eq!((made, err), (7, Some(5)));
        assert_eq!(seen.lock().unwrap().len(), 7);
        let (made, err) = slow_start((0..10).collect(), |_: u32| async { Ok::<(), ()>(()) }).await;
        assert_eq!((made, err), (10, None));
    }
}
