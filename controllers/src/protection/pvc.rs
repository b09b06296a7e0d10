//! The PVC protection controller (kube's `pvc-protection-controller`): a claim change
//! queues the claim, a pod's change queues the claims it names. A deleted claim loses its
//! finalizer only when no pod uses it in the cache *and* in a fresh list of its
//! namespace's pods, since a pod created just before the claim's deletion may not have
//! reached the cache.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams};
use kube::runtime::reflector::ObjectRef;

use super::{claims_of, decide, pod_uses, set_finalizer, Decision, PVC_PROTECTION};
use crate::context::{key_of, Context, Key};
use crate::informer::{Change, Informer};
use crate::reconciler::{Action, Controller, Reconciler, Run};
use crate::workqueue::WorkQueue;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listing the pods of namespace {ns}")]
    Pods {
        ns: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating the finalizers of claim {ns}/{name}")]
    Update {
        ns: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

pub struct PvcProtection {
    ctx: Arc<Context>,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    pods: Arc<Informer<Pod>>,
}

pub fn new(ctx: &Arc<Context>) -> Box<dyn Run> {
    let queue = WorkQueue::new();
    let c = Arc::new(PvcProtection {
        ctx: ctx.clone(),
        claims: ctx.informers.get(),
        pods: ctx.informers.get(),
    });
    let q = queue.clone();
    c.claims.on_change(move |ch| {
        if let Change::Apply { new, .. } = ch {
            if decide(new, PVC_PROTECTION) != Decision::Nothing {
                q.add(key_of(new));
            }
        }
    });
    // A pod's change matters only to the claims it names that are being deleted.
    let (q, weak) = (queue.clone(), Arc::downgrade(&c));
    c.pods.on_change(move |ch| {
        let Some(c) = weak.upgrade() else { return };
        let p = match ch {
            Change::Apply { new, .. } => new,
            Change::Delete(p) => p,
        };
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        for claim in claims_of(p) {
            let cached = c.claims.store().get(&ObjectRef::new(&claim).within(&ns));
            if cached
                .is_some_and(|cl| decide(cl.as_ref(), PVC_PROTECTION) == Decision::RemoveIfUnused)
            {
                q.add((ns.clone(), claim));
            }
        }
    });
    Controller::new(c, queue).workers(1).into()
}

impl Reconciler for PvcProtection {
    type Key = Key;
    type Error = Error;

    async fn reconcile(&self, key: &Key) -> Result<Action, Error> {
        let (ns, name) = key;
        let Some(claim) = self.claims.store().get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Action::await_change());
        };
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.ctx.client.clone(), ns);
        let update_error = |source| Error::Update {
            ns: ns.clone(),
            name: name.clone(),
            source,
        };
        match decide(claim.as_ref(), PVC_PROTECTION) {
            Decision::Nothing => {}
            Decision::Add => {
                set_finalizer(&api, claim.as_ref(), PVC_PROTECTION, true)
                    .await
                    .map_err(update_error)?;
            }
            Decision::RemoveIfUnused => {
                if self.in_use(&claim).await? {
                    tracing::debug!(namespace = %ns, claim = %name, "claim in use: kept");
                    return Ok(Action::await_change());
                }
                set_finalizer(&api, claim.as_ref(), PVC_PROTECTION, false)
                    .await
                    .map_err(update_error)?;
            }
        }
        Ok(Action::await_change())
    }

    fn all_keys(&self) -> Vec<Key> {
        self.claims
            .store()
            .state()
            .iter()
            .map(|c| key_of(c.as_ref()))
            .collect()
    }
}

impl PvcProtection {
    async fn in_use(&self, claim: &PersistentVolumeClaim) -> Result<bool, Error> {
        if self.pods.store().state().iter().any(|p| pod_uses(p, claim)) {
            return Ok(true);
        }
        let ns = claim.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        let pods = api
            .list(&ListParams::default())
            .await
            .map_err(|source| Error::Pods { ns, source })?;
        Ok(pods.items.iter().any(|p| pod_uses(p, claim)))
    }
}
