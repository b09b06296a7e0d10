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
use crate::informer::Change;
use crate::worker::{run_workers, Next};
use crate::workqueue::WorkQueue;

/// Registers the handlers now; the returned future runs the workers.
pub fn run(ctx: Arc<Context>) -> impl std::future::Future<Output = ()> + Send {
    let queue = WorkQueue::<String>::new();
    let q = queue.clone();
    ctx.informers.namespaces.on_change(move |ch| {
        if let Change::Apply { new, .. } = ch {
            if new.metadata.deletion_timestamp.is_some() {
                q.add(new.metadata.name.clone().unwrap_or_default());
            }
        }
    });
    async move {
        ctx.informers.namespaces.synced().await;
        let c2 = ctx.clone();
        run_workers(
            "namespace",
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
                    .filter(|n| n.metadata.deletion_timestamp.is_some())
                    .filter_map(|n| n.metadata.name.clone())
                    .collect()
            },
        )
        .await;
    }
}

async fn sync(ctx: Arc<Context>, name: String) -> anyhow::Result<Next> {
    let Some(ns) = ctx.informers.namespaces.store().get(&ObjectRef::new(&name)) else {
        return Ok(Next::Done);
    };
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Next::Done);
    }
    let finalizers = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f == "kubernetes") {
        return Ok(Next::Done);
    }
    let discovery = Discovery::new(ctx.client.clone()).run().await?;
    let mut remaining = 0usize;
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced || !caps.supports_operation(verbs::LIST) {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &name, &ar);
            if caps.supports_operation(verbs::DELETE_COLLECTION) {
                match api
                    .delete_collection(&DeleteParams::background(), &ListParams::default())
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(anyhow::anyhow!("deleting {} in {name}: {e}", ar.plural)),
                }
            }
            let left = api.list(&ListParams::default()).await?;
            remaining += left.items.len();
        }
    }
    if remaining > 0 {
        tracing::debug!(namespace = %name, remaining, "waiting for the namespace to empty");
        return Ok(Next::After(Duration::from_secs(2)));
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
        .replace_subresource("finalize", &name, &PostParams::default(), &ns2)
        .await
    {
        Ok(_) => {
            tracing::info!(namespace = %name, "namespace emptied and finalized");
            Ok(Next::Done)
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Next::Done),
        Err(e) => Err(e.into()),
    }
}
