//! The PersistentVolume binder (kube's `persistentvolume-binder` controller,
//! `pkg/controller/volume/persistentvolume`): binds each unbound claim to the smallest
//! volume that satisfies it, asks the class's provisioner for one when none does
//! (annotating the claim, which an external provisioner such as local-path watches),
//! waits for the first consumer under `WaitForFirstConsumer`, and keeps every volume's
//! phase (Available, Bound, Released). Decisions are `plan.rs`.
//!
//! Keys: a claim is `(namespace, name)`; a volume, which has no namespace, is
//! `("", name)`. Every write replaces the cached object with its resourceVersion, so a
//! write based on an old view fails and the sync is retried on a fresh one.

pub mod plan;

use std::sync::Arc;

use component_base::events::{object_ref, EventType};
use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::ObjectRef;

use crate::context::{key_of, Context, Key};
use crate::informer::{Change, Informer};
use crate::reconciler::{Action, Controller, Reconciler, Run};
use crate::workqueue::WorkQueue;
use plan::{
    Waiting, BETA_STORAGE_PROVISIONER, BIND_COMPLETED, BOUND_BY_CONTROLLER, STORAGE_PROVISIONER,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing persistentvolume {name}")]
    Volume {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing persistentvolumeclaim {name}")]
    Claim {
        name: String,
        #[source]
        source: kube::Error,
    },
}

pub struct VolumeBinder {
    ctx: Arc<Context>,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    volumes: Arc<Informer<PersistentVolume>>,
    classes: Arc<Informer<StorageClass>>,
}

fn volume_key(name: &str) -> Key {
    (String::new(), name.to_string())
}

pub fn new(ctx: &Arc<Context>) -> Box<dyn Run> {
    let queue = WorkQueue::new();
    let c = Arc::new(VolumeBinder {
        ctx: ctx.clone(),
        claims: ctx.informers.get(),
        volumes: ctx.informers.get(),
        classes: ctx.informers.get(),
    });
    let q = queue.clone();
    c.claims.on_change(move |ch| {
        let c = match ch {
            Change::Apply { new, .. } => new,
            Change::Delete(c) => c,
        };
        q.add(key_of(c));
        if let Some(v) = c.spec.as_ref().and_then(|s| s.volume_name.as_deref()) {
            q.add(volume_key(v));
        }
    });
    let (q, weak) = (queue.clone(), Arc::downgrade(&c));
    c.claims.on_change(move |ch| {
        // A claim that went away releases the volumes that named it.
        let Change::Delete(gone) = ch else { return };
        let Some(c) = weak.upgrade() else { return };
        for v in c.volumes.store().state() {
            if plan::refers_to(&v, gone) {
                q.add(volume_key(v.metadata.name.as_deref().unwrap_or("")));
            }
        }
    });
    let q = queue.clone();
    c.volumes.on_change(move |ch| {
        let v = match ch {
            Change::Apply { new, .. } => new,
            Change::Delete(v) => v,
        };
        q.add(volume_key(v.metadata.name.as_deref().unwrap_or("")));
        if let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
            q.add((
                r.namespace.clone().unwrap_or_default(),
                r.name.clone().unwrap_or_default(),
            ));
        }
    });
    let (q, weak) = (queue.clone(), Arc::downgrade(&c));
    c.classes.on_change(move |_| {
        let Some(c) = weak.upgrade() else { return };
        for claim in c.claims.store().state() {
            if claim
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .is_none()
            {
                q.add(key_of(claim.as_ref()));
            }
        }
    });
    Controller::new(c, queue).workers(2).into()
}

impl VolumeBinder {
    fn claim_api(&self, ns: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    fn volume_api(&self) -> Api<PersistentVolume> {
        Api::all(self.ctx.client.clone())
    }

    /// kube's `bind`: the volume's claimRef, its phase, the claim's volumeName, its
    /// phase; each step skipped when already done.
    async fn bind(
        &self,
        claim: &PersistentVolumeClaim,
        volume: &PersistentVolume,
    ) -> Result<(), Error> {
        let vname = volume.metadata.name.clone().unwrap_or_default();
        let (ns, cname) = key_of(claim);
        let verr = |source| Error::Volume {
            name: vname.clone(),
            source,
        };
        let cerr = |source| Error::Claim {
            name: format!("{ns}/{cname}"),
            source,
        };
        let mut v = volume.clone();
        if !plan::refers_to(&v, claim)
            || v.spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .and_then(|r| r.uid.as_deref())
                .is_none()
        {
            let spec = v.spec.get_or_insert_with(Default::default);
            spec.claim_ref = Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(ns.clone()),
                name: Some(cname.clone()),
                uid: claim.metadata.uid.clone(),
                resource_version: claim.metadata.resource_version.clone(),
                ..Default::default()
            });
            v.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
            v = self
                .volume_api()
                .replace(&vname, &PostParams::default(), &v)
                .await
                .map_err(verr)?;
        }
        if v.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
            let status = v.status.get_or_insert_with(Default::default);
            status.phase = Some("Bound".into());
            status.last_phase_transition_time = Some(crate::context::now_time());
            v = self
                .volume_api()
                .replace_status(&vname, &PostParams::default(), &v)
                .await
                .map_err(verr)?;
        }
        let mut c = claim.clone();
        if c.spec.as_ref().and_then(|s| s.volume_name.as_deref()) != Some(vname.as_str()) {
            c.spec.get_or_insert_with(Default::default).volume_name = Some(vname.clone());
            let a = c.metadata.annotations.get_or_insert_with(Default::default);
            a.insert(BIND_COMPLETED.into(), "yes".into());
            a.insert(BOUND_BY_CONTROLLER.into(), "yes".into());
            c = self
                .claim_api(&ns)
                .replace(&cname, &PostParams::default(), &c)
                .await
                .map_err(cerr)?;
        }
        let want = PersistentVolumeClaimStatus {
            phase: Some("Bound".into()),
            access_modes: v.spec.as_ref().and_then(|s| s.access_modes.clone()),
            capacity: v.spec.as_ref().and_then(|s| s.capacity.clone()),
            ..c.status.clone().unwrap_or_default()
        };
        if c.status.as_ref() != Some(&want) {
            c.status = Some(want);
            self.claim_api(&ns)
                .replace_status(&cname, &PostParams::default(), &c)
                .await
                .map_err(cerr)?;
            self.ctx.recorder.record(
                &object_ref(claim),
                EventType::Normal,
                "Bound",
                &format!("bound to volume {vname}"),
            );
        }
        Ok(())
    }

    async fn sync_claim(&self, claim: &PersistentVolumeClaim) -> Result<(), Error> {
        if claim.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let r = object_ref(claim);
        let volumes = self.volumes.store().state();
        let vols: Vec<&PersistentVolume> = volumes.iter().map(|v| v.as_ref()).collect();
        let bound_to = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|v| !v.is_empty());
        let Some(vname) = bound_to else {
            let classes = self.classes.store().state();
            let cls: Vec<&StorageClass> = classes.iter().map(|c| c.as_ref()).collect();
            return match plan::unbound(claim, &vols, &cls) {
                Waiting::Bind(v) => match vols
                    .iter()
                    .find(|x| x.metadata.name.as_deref() == Some(v.as_str()))
                {
                    Some(volume) => self.bind(claim, volume).await,
                    None => Ok(()),
                },
                Waiting::Provision(p) => {
                    // An update, as kube's binder writes (its role has no patch).
                    let (ns, name) = key_of(claim);
                    let mut c = claim.clone();
                    let a = c.metadata.annotations.get_or_insert_with(Default::default);
                    a.insert(STORAGE_PROVISIONER.into(), p.clone());
                    a.insert(BETA_STORAGE_PROVISIONER.into(), p.clone());
                    self.claim_api(&ns)
                        .replace(&name, &PostParams::default(), &c)
                        .await
                        .map_err(|source| Error::Claim {
                            name: format!("{ns}/{name}"),
                            source,
                        })?;
                    self.ctx.recorder.record(
                        &r,
                        EventType::Normal,
                        "ExternalProvisioning",
                        &plan::external_provisioning(&p),
                    );
                    Ok(())
                }
                Waiting::Event { reason, message } => {
                    let ty = if reason == "WaitForFirstConsumer" {
                        EventType::Normal
                    } else {
                        EventType::Warning
                    };
                    self.ctx.recorder.record(&r, ty, reason, &message);
                    Ok(())
                }
                Waiting::Nothing => Ok(()),
            };
        };
        let Some(volume) = vols
            .iter()
            .find(|v| v.metadata.name.as_deref() == Some(vname.as_str()))
        else {
            return Ok(());
        };
        let claimed_elsewhere = volume
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some()
            && !plan::refers_to(volume, claim);
        if claimed_elsewhere {
            self.ctx.recorder.record(
                &r,
                EventType::Warning,
                "ClaimMisbound",
                "Two claims are bound to the same volume, this one is bound incorrectly",
            );
            return Ok(());
        }
        if let Some(why) = plan::unsatisfied(volume, claim) {
            self.ctx.recorder.record(
                &r,
                EventType::Warning,
                "VolumeMismatch",
                &format!("Cannot bind to requested volume {vname:?}: {why}"),
            );
            return Ok(());
        }
        self.bind(claim, volume).await
    }

    async fn sync_volume(&self, name: &str) -> Result<(), Error> {
        let Some(v) = self.volumes.store().get(&ObjectRef::new(name)) else {
            return Ok(());
        };
        let claims = self.claims.store().state();
        let cl: Vec<&PersistentVolumeClaim> = claims.iter().map(|c| c.as_ref()).collect();
        let Some(phase) = plan::volume_phase(&v, &cl) else {
            return Ok(());
        };
        let have = v.status.as_ref().and_then(|s| s.phase.as_deref());
        if have == Some(phase) || have == Some("Failed") {
            return Ok(());
        }
        let mut next = (*v).clone();
        let status = next.status.get_or_insert_with(Default::default);
        status.phase = Some(phase.into());
        status.last_phase_transition_time = Some(crate::context::now_time());
        match self
            .volume_api()
            .replace_status(name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(source) => Err(Error::Volume {
                name: name.to_string(),
                source,
            }),
        }
    }
}

impl Reconciler for VolumeBinder {
    type Key = Key;
    type Error = Error;

    async fn reconcile(&self, key: &Key) -> Result<Action, Error> {
        let (ns, name) = key;
        if ns.is_empty() {
            self.sync_volume(name).await?;
            return Ok(Action::await_change());
        }
        if let Some(c) = self.claims.store().get(&ObjectRef::new(name).within(ns)) {
            self.sync_claim(&c).await?;
        }
        Ok(Action::await_change())
    }

    fn all_keys(&self) -> Vec<Key> {
        let mut keys: Vec<Key> = self
            .claims
            .store()
            .state()
            .iter()
            .map(|c| key_of(c.as_ref()))
            .collect();
        keys.extend(
            self.volumes
                .store()
                .state()
                .iter()
                .map(|v| volume_key(v.metadata.name.as_deref().unwrap_or(""))),
        );
        keys
    }
}
