//! The ServiceAccount controller: every active namespace has a `default` ServiceAccount.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::ObjectRef;

use crate::context::Context;
use crate::informer::Change;
use crate::worker::{run_workers, Next};
use crate::workqueue::WorkQueue;

/// Registers the handlers now; the returned future runs the workers.
pub fn run(ctx: Arc<Context>) -> impl std::future::Future<Output = ()> + Send {
    let queue = WorkQueue::<String>::new();
    let q = queue.clone();
    ctx.informers.namespaces.on_change(move |ch| {
        if let Change::Apply { new, .. } = ch {
            q.add(new.metadata.name.clone().unwrap_or_default());
        }
    });
    let q = queue.clone();
    ctx.informers.serviceaccounts.on_change(move |ch| {
        if let Change::Delete(sa) = ch {
            if sa.metadata.name.as_deref() == Some("default") {
                q.add(sa.metadata.namespace.clone().unwrap_or_default());
            }
        }
    });
    async move {
        ctx.informers.namespaces.synced().await;
        ctx.informers.serviceaccounts.synced().await;
        let c2 = ctx.clone();
        run_workers(
            "serviceaccount",
            queue,
            2,
            Duration::from_secs(300),
            move |ns| sync(ctx.clone(), ns),
            move || {
                c2.informers
                    .namespaces
                    .store()
                    .state()
                    .iter()
                    .filter_map(|n| n.metadata.name.clone())
                    .collect()
            },
        )
        .await;
    }
}

async fn sync(ctx: Arc<Context>, ns: String) -> anyhow::Result<Next> {
    let Some(n) = ctx.informers.namespaces.store().get(&ObjectRef::new(&ns)) else {
        return Ok(Next::Done);
    };
    if n.metadata.deletion_timestamp.is_some() {
        return Ok(Next::Done);
    }
    if ctx
        .informers
        .serviceaccounts
        .store()
        .get(&ObjectRef::new("default").within(&ns))
        .is_some()
    {
        return Ok(Next::Done);
    }
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("default".into()),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => Ok(Next::Done),
        // 409: it exists; 403/404: the namespace is going away.
        Err(kube::Error::Api(e)) if [409, 403, 404].contains(&e.code) => Ok(Next::Done),
        Err(e) => Err(e.into()),
    }
}
