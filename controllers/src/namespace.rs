//! The Namespace controller: a namespace being deleted has everything in it deleted (every
//! namespaced resource the apiserver's discovery lists), and once nothing is left its
//! `kubernetes` finalizer is removed, which lets the apiserver delete it.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::reflector::ObjectRef;

use crate::context::Context;
use crate::informer::{Change, Informer};
use crate::reconciler::{Action, Controller, Reconciler, Run};
use crate::workqueue::WorkQueue;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("discovering the namespaced resources")]
    Discovery {
        #[source]
        source: kube::Error,
    },
    #[error("deleting {resource} in {namespace}")]
    DeleteCollection {
        namespace: String,
        resource: String,
        #[source]
        source: kube::Error,
    },
    #[error("listing {resource} in {namespace}")]
    List {
        namespace: String,
        resource: String,
        #[source]
        source: kube::Error,
    },
    #[error("finalizing namespace {namespace}")]
    Finalize {
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

pub struct NamespaceController {
    ctx: Arc<Context>,
    namespaces: Arc<Informer<Namespace>>,
}

/// Keyed by namespace name: namespaces being deleted.
pub fn new(ctx: &Arc<Context>) -> Box<dyn Run> {
    let queue = WorkQueue::<String>::new();
    let r = Arc::new(NamespaceController {
        ctx: ctx.clone(),
        namespaces: ctx.informers.get(),
    });
    let q = queue.clone();
    r.namespaces.on_change(move |ch| {
        if let Change::Apply { new, .. } = ch {
            if new.metadata.deletion_timestamp.is_some() {
                q.add(new.metadata.name.clone().unwrap_or_default());
            }
        }
    });
    Controller::new(r, queue).workers(2).into()
}

impl Reconciler for NamespaceController {
    type Key = String;
    type Error = Error;

    async fn reconcile(&self, name: &String) -> Result<Action, Error> {
        let ctx = &self.ctx;
        let Some(ns) = self.namespaces.store().get(&ObjectRef::new(name)) else {
            return Ok(Action::await_change());
        };
        if ns.metadata.deletion_timestamp.is_none() {
            return Ok(Action::await_change());
        }
        let finalizers = ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.clone())
            .unwrap_or_default();
        if !finalizers.iter().any(|f| f == "kubernetes") {
            return Ok(Action::await_change());
        }
        let discovery = Discovery::new(ctx.client.clone())
            .run()
            .await
            .map_err(|source| Error::Discovery { source })?;
        let mut remaining = 0usize;
        for group in discovery.groups() {
            for (ar, caps) in group.recommended_resources() {
                if caps.scope != Scope::Namespaced || !caps.supports_operation(verbs::LIST) {
                    continue;
                }
                let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), name, &ar);
                if caps.supports_operation(verbs::DELETE_COLLECTION) {
                    match api
                        .delete_collection(&DeleteParams::background(), &ListParams::default())
                        .await
                    {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(source) => {
                            return Err(Error::DeleteCollection {
                                namespace: name.clone(),
                                resource: ar.plural.clone(),
                                source,
                            })
                        }
                    }
                }
                let left =
                    api.list(&ListParams::default())
                        .await
                        .map_err(|source| Error::List {
                            namespace: name.clone(),
                            resource: ar.plural.clone(),
                            source,
                        })?;
                remaining += left.items.len();
            }
        }
        if remaining > 0 {
            tracing::debug!(remaining, "waiting for the namespace to empty");
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        let mut ns2 = (*ns).clone();
        if let Some(spec) = ns2.spec.as_mut() {
            spec.finalizers = Some(
                finalizers
                    .into_iter()
                    .filter(|f| f != "kubernetes")
                    .collect(),
            );
        }
        let api: Api<Namespace> = Api::all(ctx.client.clone());
        match api
            .replace_subresource("finalize", name, &PostParams::default(), &ns2)
            .await
        {
            Ok(_) => {
                tracing::info!("namespace emptied and finalized");
                Ok(Action::await_change())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
            Err(source) => Err(Error::Finalize {
                namespace: name.clone(),
                source,
            }),
        }
    }

    fn all_keys(&self) -> Vec<String> {
        self.namespaces
            .store()
            .state()
            .iter()
            .filter(|n| n.metadata.deletion_timestamp.is_some())
            .filter_map(|n| n.metadata.name.clone())
            .collect()
    }
}
