//! The Endpoints and EndpointSlice controllers: for every Service with a selector, the
//! addresses of the matching pods that have an IP (ready ones as addresses, the others as
//! notReadyAddresses / ready=false), with each service port's targetPort resolved in the
//! pod (a named port by the container's port name).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::reflector::ObjectRef;

use crate::context::{controller_ref, key_of, ready_since, Context, Key};
use crate::informer::Change;
use crate::worker::{run_workers, Next};
use crate::workqueue::WorkQueue;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
const SLICE_SIZE: usize = 100;

fn selector(s: &Service) -> Option<&BTreeMap<String, String>> {
    s.spec.as_ref()?.selector.as_ref().filter(|m| !m.is_empty())
}

fn selects(s: &Service, p: &Pod) -> bool {
    selector(s).is_some_and(|sel| {
        let l = p.metadata.labels.clone().unwrap_or_default();
        sel.iter().all(|(k, v)| l.get(k) == Some(v))
    })
}

/// The port number `target` means in `pod`, if it has it.
pub fn resolve_port(target: Option<&IntOrString>, port: i32, pod: &Pod) -> Option<i32> {
    match target {
        None => Some(port),
        Some(IntOrString::Int(i)) => Some(*i),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port),
    }
}

/// One pod as an endpoint: its IP, readiness and ports resolved for the service.
struct PodEndpoint {
    ip: String,
    ready: bool,
    terminating: bool,
    node: Option<String>,
    target: ObjectReference,
    /// (name, port, protocol, appProtocol)
    ports: Vec<(Option<String>, i32, String, Option<String>)>,
}

fn pod_endpoints(svc: &Service, pods: &[Arc<Pod>]) -> Vec<PodEndpoint> {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let mut out = Vec::new();
    for p in pods {
        let Some(ip) = p
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .filter(|i| !i.is_empty())
        else {
            continue;
        };
        let finished = matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded") | Some("Failed")
        );
        if finished {
            continue;
        }
        let terminating = p.metadata.deletion_timestamp.is_some();
        let ports: Vec<_> = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|sp| {
                let port = resolve_port(sp.target_port.as_ref(), sp.port, p)?;
                Some((
                    sp.name.clone(),
                    port,
                    sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    sp.app_protocol.clone(),
                ))
            })
            .collect();
        out.push(PodEndpoint {
            ip,
            ready: publish_not_ready || (ready_since(p).is_some() && !terminating),
            terminating,
            node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
            target: ObjectReference {
                kind: Some("Pod".into()),
                namespace: p.metadata.namespace.clone(),
                name: p.metadata.name.clone(),
                uid: p.metadata.uid.clone(),
                ..Default::default()
            },
            ports,
        });
    }
    out.sort_by(|a, b| a.ip.cmp(&b.ip));
    out
}

/// Endpoints subsets: pods grouped by their resolved port sets.
fn subsets(eps: &[PodEndpoint]) -> Vec<EndpointSubset> {
    let mut groups: BTreeMap<Vec<(Option<String>, i32, String)>, EndpointSubset> = BTreeMap::new();
    for e in eps {
        if e.terminating {
            continue;
        }
        let key: Vec<_> = e
            .ports
            .iter()
            .map(|(n, p, proto, _)| (n.clone(), *p, proto.clone()))
            .collect();
        let sub = groups.entry(key).or_insert_with(|| EndpointSubset {
            ports: Some(
                e.ports
                    .iter()
                    .map(|(n, p, proto, app)| EndpointPort {
                        name: n.clone(),
                        port: *p,
                        protocol: Some(proto.clone()),
                        app_protocol: app.clone(),
                    })
                    .collect(),
            )
            .filter(|v: &Vec<EndpointPort>| !v.is_empty()),
            ..Default::default()
        });
        let addr = EndpointAddress {
            ip: e.ip.clone(),
            node_name: e.node.clone(),
            target_ref: Some(e.target.clone()),
            hostname: None,
        };
        if e.ready {
            sub.addresses.get_or_insert_with(Vec::new).push(addr);
        } else {
            sub.not_ready_addresses
                .get_or_insert_with(Vec::new)
                .push(addr);
        }
    }
    groups.into_values().collect()
}

/// Registers the handlers now; the returned future runs the workers.
pub fn run(ctx: Arc<Context>) -> impl std::future::Future<Output = ()> + Send {
    let queue = WorkQueue::<Key>::new();
    let q = queue.clone();
    ctx.informers.services.on_change(move |ch| match ch {
        Change::Apply { new, .. } => q.add(key_of(new)),
        Change::Delete(s) => q.add(key_of(s)),
    });
    let (q, c) = (queue.clone(), ctx.clone());
    ctx.informers.pods.on_change(move |ch| {
        let (old, new) = match ch {
            Change::Apply { old, new } => (old, new),
            Change::Delete(p) => (None, p),
        };
        for s in c.informers.services.store().state() {
            if s.metadata.namespace == new.metadata.namespace
                && (selects(&s, new) || old.as_deref().is_some_and(|o| selects(&s, o)))
            {
                q.add(key_of(s.as_ref()));
            }
        }
    });
    async move {
        ctx.informers.services.synced().await;
        ctx.informers.pods.synced().await;
        let c2 = ctx.clone();
        run_workers(
            "endpoints",
            queue,
            5,
            Duration::from_secs(300),
            move |key| sync(ctx.clone(), key),
            move || {
                c2.informers
                    .services
                    .store()
                    .state()
                    .iter()
                    .map(|s| key_of(s.as_ref()))
                    .collect()
            },
        )
        .await;
    }
}

async fn sync(ctx: Arc<Context>, key: Key) -> anyhow::Result<Next> {
    let (ns, name) = &key;
    let eps_api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), ns);
    let slice_api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let svc = ctx
        .informers
        .services
        .store()
        .get(&ObjectRef::new(name).within(ns));
    let exists = svc.is_some();
    let Some(svc) = svc.filter(|s| selector(s).is_some()) else {
        // No service (or no selector): Endpoints it managed go; slices follow the service
        // through the garbage collector.
        if !exists {
            match eps_api.delete(name, &DeleteParams::default()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        return Ok(Next::Done);
    };
    let pods: Vec<Arc<Pod>> = ctx
        .informers
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
    match eps_api.get_opt(name).await? {
        None => match eps_api.create(&PostParams::default(), &want).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {}
            Err(e) => return Err(e.into()),
        },
        Some(cur) if cur.subsets != want.subsets || cur.metadata.labels != want.metadata.labels => {
            let mut upd = cur.clone();
            upd.subsets = want.subsets.clone();
            upd.metadata.labels = want.metadata.labels.clone();
            match eps_api.replace(name, &PostParams::default(), &upd).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Some(_) => {}
    }

    // EndpointSlices: chunks of 100, reusing the existing slices in order.
    let ports: Vec<SlicePort> = eps
        .first()
        .map(|e| {
            e.ports
                .iter()
                .map(|(n, p, proto, app)| SlicePort {
                    name: n.clone(),
                    port: Some(*p),
                    protocol: Some(proto.clone()),
                    app_protocol: app.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let endpoints: Vec<Endpoint> = eps
        .iter()
        .map(|e| Endpoint {
            addresses: vec![e.ip.clone()],
            conditions: Some(EndpointConditions {
                ready: Some(e.ready),
                serving: Some(e.ready || e.terminating),
                terminating: Some(e.terminating),
            }),
            node_name: e.node.clone(),
            target_ref: Some(e.target.clone()),
            ..Default::default()
        })
        .collect();
    let mut existing = slice_api
        .list(&ListParams::default().labels(&format!(
            "{SERVICE_NAME_LABEL}={name},{MANAGED_BY_LABEL}={MANAGED_BY}"
        )))
        .await?
        .items;
    existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let chunks: Vec<Vec<Endpoint>> = if endpoints.is_empty() {
        vec![vec![]]
    } else {
        endpoints
            .chunks(SLICE_SIZE)
            .map(<[Endpoint]>::to_vec)
            .collect()
    };
    let mut labels_for = svc.metadata.labels.clone().unwrap_or_default();
    labels_for.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels_for.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
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
                    Err(e) => return Err(e.into()),
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
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    let used = endpoints.len().div_ceil(SLICE_SIZE).max(1);
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
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Next::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec};

    #[test]
    fn named_target_ports_resolve_in_the_pod() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: 8080,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            resolve_port(Some(&IntOrString::String("http".into())), 80, &pod),
            Some(8080)
        );
        assert_eq!(
            resolve_port(Some(&IntOrString::String("grpc".into())), 80, &pod),
            None
        );
        assert_eq!(
            resolve_port(Some(&IntOrString::Int(9000)), 80, &pod),
            Some(9000)
        );
        assert_eq!(resolve_port(None, 80, &pod), Some(80));
    }
}
