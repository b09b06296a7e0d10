//! The PV protection controller (kube's `pv-protection-controller`): a deleted volume
//! keeps its finalizer while it is bound to a claim; the binder releases it when the
//! claim goes, and then the finalizer goes too.

use std::sync::Arc;

use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;

use super::{decide, set_finalizer, volume_used, Decision, PV_PROTECTION};
use crate::context::{key_of, Context, Key};
use crate::informer::{Change, Informer};
use crate::reconciler::{Action, Controller, Reconciler, Run};
use crate::workqueue::WorkQueue;

#[derive(Debug, thiserror::Error)]
#[error("updating the finalizers of volume {name}")]
pub struct Error {
    name: String,
    #[source]
    source: kube::Error,
}

pub struct PvProtection {
    ctx: Arc<Context>,
    volumes: Arc<Informer<PersistentVolume>>,
}

pub fn new(ctx: &Arc<Context>) -> Box<dyn Run> {
    let queue = WorkQueue::new();
    let c = Arc::new(PvProtection {
        ctx: ctx.clone(),
        volumes: ctx.informers.get(),
    });
    let q = queue.clone();
    c.volumes.on_change(move |ch| {
        if let Change::Apply { new, .. } = ch {
            if decide(new, PV_PROTECTION) != Decision::Nothing {
                q.add(key_of(new));
            }
        }
    });
    Controller::new(c, queue).workers(1).into()
}

impl Reconciler for PvProtection {
    type Key = Key;
    type Error = Error;

    async fn reconcile(&self, key: &Key) -> Result<Action, Error> {
        let name = &key.1;
        let Some(pv) = self.volumes.store().get(&ObjectRef::new(name)) else {
            return Ok(Action::await_change());
        };
        let add = match decide(pv.as_ref(), PV_PROTECTION) {
            Decision::Nothing => return Ok(Action::await_change()),
            Decision::RemoveIfUnused if volume_used(&pv) => return Ok(Action::await_change()),
            Decision::RemoveIfUnused => false,
            Decision::Add => true,
        };
        let api: Api<PersistentVolume> = Api::all(self.ctx.client.clone());
        set_finalizer(&api, pv.as_ref(), PV_PROTECTION, add)
            .await
            .map_err(|source| Error {
                name: name.clone(),
                source,
            })?;
        Ok(Action::await_change())
    }

    fn all_keys(&self) -> Vec<Key> {
        self.volumes
            .store()
            .state()
            .iter()
            .map(|v| key_of(v.as_ref()))
            .collect()
    }
}
