//! The local-path provisioner (`local-path-provisioner` in `--controllers`), as k3s ships
//! rancher's: the `local-path` StorageClass (the default, WaitForFirstConsumer, reclaim
//! Delete) made at start; for every claim the binder annotated for it, a hostPath volume
//! under `--local-path-root` on the node the scheduler chose, pre-bound to the claim
//! (the binder then binds it, the agent makes the directory when it mounts it); and for
//! every such volume Released under reclaim Delete, a helper pod on its node that
//! removes the directory, then the volume object. Decisions are `plan.rs`.
//!
//! Keys as the binder's: a claim `(namespace, name)`, a volume `("", name)`.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use component_base::events::{object_ref, EventType};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use tokio::task::JoinSet;

use crate::context::{key_of, Context, Key};
use crate::informer::{Change, Informer};
use crate::reconciler::{Action, Controller, Reconciler, Run};
use crate::workqueue::WorkQueue;

pub const ACCOUNT: &str = "local-path-provisioner-service-account";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating persistentvolume {name}")]
    Create {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting persistentvolume {name}")]
    Delete {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("helper pod {name}")]
    Helper {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("helper pod {0} failed to remove the volume's directory")]
    HelperFailed(String),
}

pub struct LocalPath {
    ctx: Arc<Context>,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    volumes: Arc<Informer<PersistentVolume>>,
    classes: Arc<Informer<StorageClass>>,
    nodes: Arc<Informer<Node>>,
}

pub fn new(ctx: &Arc<Context>) -> Box<dyn Run> {
    let queue = WorkQueue::new();
    let c = Arc::new(LocalPath {
        ctx: ctx.clone(),
        claims: ctx.informers.get(),
        volumes: ctx.informers.get(),
        classes: ctx.informers.get(),
        nodes: ctx.informers.get(),
    });
    let q = queue.clone();
    c.claims.on_change(move |ch| {
        if let Change::Apply { new, .. } = ch {
            if plan::wants(new) {
                q.add(key_of(new));
            }
        }
    });
    let q = queue.clone();
    c.volumes.on_change(move |ch| {
        if let Change::Apply { new, .. } = ch {
            if plan::to_delete(new).is_some() {
                q.add((String::new(), new.metadata.name.clone().unwrap_or_default()));
            }
        }
    });
    Controller::new(c, queue).workers(2).into()
}

impl LocalPath {
    async fn provision(&self, claim: &PersistentVolumeClaim) -> Result<Action, Error> {
        let name = plan::volume_name(claim);
        if self.volumes.store().get(&ObjectRef::new(&name)).is_some() {
            return Ok(Action::await_change());
        }
        let class_name = claim
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.clone())
            .unwrap_or_default();
        let Some(class) = self.classes.store().get(&ObjectRef::new(&class_name)) else {
            return Ok(Action::await_change());
        };
        let node = plan::selected_node(claim);
        let hostname = node.as_deref().map(|n| {
            self.nodes
                .store()
                .get(&ObjectRef::new(n))
                .and_then(|o| {
                    o.metadata
                        .labels
                        .as_ref()?
                        .get(plan::HOSTNAME_LABEL)
                        .cloned()
                })
                .unwrap_or_else(|| n.to_string())
        });
        let r = object_ref(claim);
        let pv = match plan::provision(
            claim,
            &class,
            node.as_deref().zip(hostname.as_deref()),
            &self.ctx.config.local_path.root,
        ) {
            Ok(pv) => pv,
            Err(why) => {
                self.ctx
                    .recorder
                    .record(&r, EventType::Warning, "ProvisioningFailed", &why);
                return Ok(Action::await_change());
            }
        };
        let (ns, cname) = key_of(claim);
        self.ctx.recorder.record(
            &r,
            EventType::Normal,
            "Provisioning",
            &format!("External provisioner is provisioning volume for claim \"{ns}/{cname}\""),
        );
        let api: Api<PersistentVolume> = Api::all(self.ctx.client.clone());
        match api.create(&PostParams::default(), &pv).await {
            Ok(_) => {
                self.ctx.recorder.record(
                    &r,
                    EventType::Normal,
                    "ProvisioningSucceeded",
                    &format!("Successfully provisioned volume {name}"),
                );
                Ok(Action::await_change())
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Action::await_change()),
            Err(source) => Err(Error::Create { name, source }),
        }
    }

    /// Removes a Released volume's directory through a helper pod on its node, then the
    /// volume; a node that is gone has nothing left to clean.
    async fn delete(&self, name: &str) -> Result<Action, Error> {
        let Some(v) = self.volumes.store().get(&ObjectRef::new(name)) else {
            return Ok(Action::await_change());
        };
        let Some((dir, node)) = plan::to_delete(&v) else {
            return Ok(Action::await_change());
        };
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), plan::HELPER_NAMESPACE);
        let helper = plan::helper_name(name);
        let herr = |source| Error::Helper {
            name: helper.clone(),
            source,
        };
        if self.nodes.store().get(&ObjectRef::new(&node)).is_some() {
            let phase = match pods.get_opt(&helper).await.map_err(herr)? {
                None => {
                    let pod = plan::helper_pod(
                        name,
                        &dir,
                        &node,
                        &self.ctx.config.local_path.helper_image,
                    );
                    match pods.create(&PostParams::default(), &pod).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 409 => {}
                        Err(source) => return Err(herr(source)),
                    }
                    return Ok(Action::requeue(Duration::from_secs(1)));
                }
                Some(p) => p.status.and_then(|s| s.phase).unwrap_or_default(),
            };
            match phase.as_str() {
                "Succeeded" => {}
                "Failed" => {
                    let _ = pods.delete(&helper, &DeleteParams::default()).await;
                    self.ctx.recorder.record(
                        &object_ref(v.as_ref()),
                        EventType::Warning,
                        "VolumeFailedDelete",
                        &format!("helper pod {helper} failed to remove {}", dir.display()),
                    );
                    return Err(Error::HelperFailed(helper));
                }
                _ => return Ok(Action::requeue(Duration::from_secs(1))),
            }
        }
        let api: Api<PersistentVolume> = Api::all(self.ctx.client.clone());
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => {
                return Err(Error::Delete {
                    name: name.to_string(),
                    source,
                })
            }
        }
        match pods.delete(&helper, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => return Err(herr(source)),
        }
        Ok(Action::await_change())
    }
}

impl Reconciler for LocalPath {
    type Key = Key;
    type Error = Error;

    async fn reconcile(&self, key: &Key) -> Result<Action, Error> {
        let (ns, name) = key;
        if ns.is_empty() {
            return self.delete(name).await;
        }
        match self.claims.store().get(&ObjectRef::new(name).within(ns)) {
            Some(c) if plan::wants(&c) => self.provision(&c).await,
            _ => Ok(Action::await_change()),
        }
    }

    fn all_keys(&self) -> Vec<Key> {
        let mut keys: Vec<Key> = self
            .claims
            .store()
            .state()
            .iter()
            .filter(|c| plan::wants(c))
            .map(|c| key_of(c.as_ref()))
            .collect();
        keys.extend(
            self.volumes
                .store()
                .state()
                .iter()
                .filter(|v| plan::to_delete(v).is_some())
                .map(|v| (String::new(), v.metadata.name.clone().unwrap_or_default())),
        );
        keys
    }

    /// The `local-path` class, made once if missing (as k3s's manifest installs it).
    async fn prepare(self: Arc<Self>, _tasks: &mut JoinSet<()>) {
        if self
            .classes
            .store()
            .get(&ObjectRef::new(plan::CLASS))
            .is_some()
        {
            return;
        }
        let api: Api<StorageClass> = Api::all(self.ctx.client.clone());
        match api
            .create(&PostParams::default(), &plan::default_class())
            .await
        {
            Ok(_) => tracing::info!(class = plan::CLASS, "made the default StorageClass"),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => tracing::warn!(error = %e, "could not make the local-path StorageClass"),
        }
    }
}
