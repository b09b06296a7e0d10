//! The ServiceAccount controller: every active namespace has a `default` ServiceAccount.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::ObjectRef;

use crate::context::Context;
use crate::informer::{Change, Informer};
use crate::reconciler::{Action, Controller, Reconciler, Run};
use crate::workqueue::WorkQueue;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating the default service account in {namespace}")]
    Create {
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

pub struct ServiceAccountController {
    ctx: Arc<Context>,
    namespaces: Arc<Informer<Namespace>>,
    serviceaccounts: Arc<Informer<ServiceAccount>>,
}

/// Keyed by namespace: a namespace that appears or changes, or whose `default` account
/// is deleted.
pub fn new(ctx: &Arc<Context>) -> Box<dyn Run> {
    let queue = WorkQueue::<String>::new();
    let r = Arc::new(ServiceAccountController {
        ctx: ctx.clone(),
        namespaces: ctx.informers.get(),
        serviceaccounts: ctx.informers.get(),
    });
    let q = queue.clone();
    r.namespaces.on_change(move |ch| {
        if let Change::Apply { new, .. } = ch {
            q.add(new.metadata.name.clone().unwrap_or_default());
        }
    });
    let q = queue.clone();
    r.serviceaccounts.on_change(move |ch| {
        if let Change::Delete(sa) = ch {
            if sa.metadata.name.as_deref() == Some("default") {
                q.add(sa.metadata.namespace.clone().unwrap_or_default());
            }
        }
    });
    Controller::new(r, queue).workers(2).into()
}

impl Reconciler for ServiceAccountController {
    type Key = String;
    type Error = Error;

    async fn reconcile(&self, ns: &String) -> Result<Action, Error> {
        let Some(n) = self.namespaces.store().get(&ObjectRef::new(ns)) else {
            return Ok(Action::await_change());
        };
        if n.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        if self
            .serviceaccounts
            .store()
            .get(&ObjectRef::new("default").within(ns))
            .is_some()
        {
            return Ok(Action::await_change());
        }
        let api: Api<ServiceAccount> = Api::namespaced(self.ctx.client.clone(), ns);
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some("default".into()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => Ok(Action::await_change()),
            // 409: it exists; 403/404: the namespace is going away.
            Err(kube::Error::Api(e)) if [409, 403, 404].contains(&e.code) => {
                Ok(Action::await_change())
            }
            Err(source) => Err(Error::Create {
                namespace: ns.clone(),
                source,
            }),
        }
    }

    fn all_keys(&self) -> Vec<String> {
        self.namespaces
            .store()
            .state()
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect()
    }
}
