//! The Endpoints and EndpointSlice controllers: for every Service with a selector, the
//! addresses of the matching pods that have an IP (ready ones as addresses, the others as
//! notReadyAddresses / ready=false), with each service port's targetPort resolved in the
//! pod (a named port by the container's port name). What they should hold is computed
//! purely in `plan.rs`; this file reads the caches and writes the difference. As in kube,
//! they act as two accounts: Endpoints as the controller's own (`endpoint-controller`),
//! EndpointSlices as [`SLICE_ACCOUNT`].

mod plan;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::reflector::ObjectRef;

use crate::context::{controller_ref, key_of, Context, Key};
use crate::informer::{Change, Informer};
use crate::reconciler::{Action, Controller, Reconciler, Run};
use crate::workqueue::WorkQueue;
pub use plan::resolve_port;
use plan::{pod_endpoints, selector, selects, subsets};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// The ServiceAccount the EndpointSlices are written as (kube's EndpointSlice controller).
pub const SLICE_ACCOUNT: &str = "endpointslice-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{verb} the Endpoints")]
    Endpoints {
        verb: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("{verb} an EndpointSlice")]
    Slices {
        verb: &'static str,
        #[source]
        source: kube::Error,
    },
}

pub struct EndpointsController {
    ctx: Arc<Context>,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
}

/// Keyed by Service: its own changes, and those of the pods it selects (or selected).
pub fn new(ctx: &Arc<Context>) -> Box<dyn Run> {
    let queue = WorkQueue::<Key>::new();
    let r = Arc::new(EndpointsController {
        ctx: ctx.clone(),
        services: ctx.informers.get(),
        pods: ctx.informers.get(),
    });
    let q = queue.clone();
    r.services.on_change(move |ch| match ch {
        Change::Apply { new, .. } => q.add(key_of(new)),
        Change::Delete(s) => q.add(key_of(s)),
    });
    let (q, services) = (queue.clone(), r.services.clone());
    r.pods.on_change(move |ch| {
        let (old, new) = match ch {
            Change::Apply { old, new } => (old, new),
            Change::Delete(p) => (None, p),
        };
        for s in services.store().state() {
            if s.metadata.namespace == new.metadata.namespace
                && (selects(&s, new) || old.as_deref().is_some_and(|o| selects(&s, o)))
            {
                q.add(key_of(s.as_ref()));
            }
        }
    });
    Controller::new(r, queue).workers(5).into()
}

impl Reconciler for EndpointsController {
    type Key = Key;
    type Error = Error;

    async fn reconcile(&self, key: &Key) -> Result<Action, Error> {
        let (ns, name) = key;
        let ctx = &self.ctx;
        let eps_api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), ns);
        let slice_api: Api<EndpointSlice> =
            Api::namespaced(ctx.client_as(SLICE_ACCOUNT).clone(), ns);
        let svc = self.services.store().get(&ObjectRef::new(name).within(ns));
        let exists = svc.is_some();
        let Some(svc) = svc.filter(|s| selector(s).is_some()) else {
            // No service (or no selector): Endpoints it managed go; slices follow the service
            // through the garbage collector.
            if !exists {
                match eps_api.delete(name, &DeleteParams::default()).await {
                    Ok(_) | Err(kube::Error::Api(_)) => {}
                    Err(source) => {
                        return Err(Error::Endpoints {
                            verb: "deleting",
                            source,
                        })
                    }
                }
            }
            return Ok(Action::await_change());
        };
        let pods: Vec<Arc<Pod>> = self
            .pods
            .store()
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()) && selects(&svc, p))
            .collect();
        let eps = pod_endpoints(&svc, &pods);

        // Endpoints.
        let want = Endpoints {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                labels: svc.metadata.labels.clone(),
                ..Default::default()
            },
            subsets: Some(subsets(&eps)).filter(|s| !s.is_empty()),
        };
        let current = eps_api
            .get_opt(name)
            .await
            .map_err(|source| Error::Endpoints {
                verb: "reading",
                source,
            })?;
        match current {
            None => match eps_api.create(&PostParams::default(), &want).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {}
                Err(source) => {
                    return Err(Error::Endpoints {
                        verb: "creating",
                        source,
                    })
                }
            },
            Some(cur)
                if cur.subsets != want.subsets || cur.metadata.labels != want.metadata.labels =>
            {
                let mut upd = cur.clone();
                upd.subsets = want.subsets.clone();
                upd.metadata.labels = want.metadata.labels.clone();
                match eps_api.replace(name, &PostParams::default(), &upd).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
                    Err(source) => {
                        return Err(Error::Endpoints {
                            verb: "updating",
                            source,
                        })
                    }
                }
            }
            Some(_) => {}
        }

        // EndpointSlices: chunks of 100, reusing the existing slices in order.
        let (ports, chunks) = plan::slices(&eps);
        let mut existing = slice_api
            .list(&ListParams::default().labels(&format!(
                "{SERVICE_NAME_LABEL}={name},{MANAGED_BY_LABEL}={MANAGED_BY}"
            )))
            .await
            .map_err(|source| Error::Slices {
                verb: "listing",
                source,
            })?
            .items;
        existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut labels_for = svc.metadata.labels.clone().unwrap_or_default();
        labels_for.insert(SERVICE_NAME_LABEL.into(), name.clone());
        labels_for.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
        let used = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let port_list = Some(ports.clone()).filter(|p| !p.is_empty());
            match existing.get(i) {
                Some(cur)
                    if cur.endpoints == chunk
                        && cur.ports == port_list
                        && cur.metadata.labels.as_ref() == Some(&labels_for) => {}
                Some(cur) => {
                    let mut upd = cur.clone();
                    upd.endpoints = chunk;
                    upd.ports = port_list;
                    upd.metadata.labels = Some(labels_for.clone());
                    match slice_api
                        .replace(
                            cur.metadata.name.as_deref().unwrap_or(""),
                            &PostParams::default(),
                            &upd,
                        )
                        .await
                    {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
                        Err(source) => {
                            return Err(Error::Slices {
                                verb: "updating",
                                source,
                            })
                        }
                    }
                }
                None => {
                    let slice = EndpointSlice {
                        metadata: ObjectMeta {
                            generate_name: Some(format!("{name}-")),
                            namespace: Some(ns.clone()),
                            labels: Some(labels_for.clone()),
                            owner_references: Some(vec![controller_ref(svc.as_ref())]),
                            ..Default::default()
                        },
                        address_type: "IPv4".into(),
                        endpoints: chunk,
                        ports: port_list,
                    };
                    match slice_api.create(&PostParams::default(), &slice).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 403 => {}
                        Err(source) => {
                            return Err(Error::Slices {
                                verb: "creating",
                                source,
                            })
                        }
                    }
                }
            }
        }
        for extra in existing.iter().skip(used) {
            match slice_api
                .delete(
                    extra.metadata.name.as_deref().unwrap_or(""),
                    &DeleteParams::default(),
                )
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => {
                    return Err(Error::Slices {
                        verb: "deleting",
                        source,
                    })
                }
            }
        }
        Ok(Action::await_change())
    }

    fn all_keys(&self) -> Vec<Key> {
        self.services
            .store()
            .state()
            .iter()
            .map(|s| key_of(s.as_ref()))
            .collect()
    }
}
