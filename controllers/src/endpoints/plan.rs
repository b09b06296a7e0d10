//! What a Service's Endpoints and EndpointSlices should hold, pure: the selected pods as
//! endpoints (ready or not, terminating or not), their target ports resolved in each pod,
//! grouped into Endpoints subsets and into slices of 100.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, Pod, Service,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort as SlicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::context::ready_since;

/// Endpoints per EndpointSlice.
pub const SLICE_SIZE: usize = 100;

pub fn selector(s: &Service) -> Option<&BTreeMap<String, String>> {
    s.spec.as_ref()?.selector.as_ref().filter(|m| !m.is_empty())
}

pub fn selects(s: &Service, p: &Pod) -> bool {
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
pub struct PodEndpoint {
    pub ip: String,
    pub ready: bool,
    pub terminating: bool,
    pub node: Option<String>,
    pub target: ObjectReference,
    /// The pod's hostname when its subdomain is this Service (a StatefulSet's pods under
    /// its headless Service), which DNS publishes as `<hostname>.<service>`.
    pub hostname: Option<String>,
    /// (name, port, protocol, appProtocol)
    pub ports: Vec<(Option<String>, i32, String, Option<String>)>,
}

pub fn pod_endpoints(svc: &Service, pods: &[Arc<Pod>]) -> Vec<PodEndpoint> {
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
        // kube's endpoint hostname: set when the pod names this Service as its subdomain.
        let hostname = p.spec.as_ref().and_then(|s| {
            let h = s.hostname.clone().filter(|h| !h.is_empty())?;
            (s.subdomain.is_some()
                && s.subdomain == svc.metadata.name
                && p.metadata.namespace == svc.metadata.namespace)
                .then_some(h)
        });
        out.push(PodEndpoint {
            ip,
            ready: publish_not_ready || (ready_since(p).is_some() && !terminating),
            terminating,
            hostname,
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
pub fn subsets(eps: &[PodEndpoint]) -> Vec<EndpointSubset> {
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
            hostname: e.hostname.clone(),
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

/// The EndpointSlices' ports (those of the first endpoint) and endpoints, in chunks of
/// [`SLICE_SIZE`]; no endpoints make one empty slice.
pub fn slices(eps: &[PodEndpoint]) -> (Vec<SlicePort>, Vec<Vec<Endpoint>>) {
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
            hostname: e.hostname.clone(),
            ..Default::default()
        })
        .collect();
    let chunks = if endpoints.is_empty() {
        vec![vec![]]
    } else {
        endpoints
            .chunks(SLICE_SIZE)
            .map(<[Endpoint]>::to_vec)
            .collect()
    };
    (ports, chunks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec};

    fn endpoint(ip: &str) -> PodEndpoint {
        PodEndpoint {
            ip: ip.into(),
            ready: true,
            terminating: false,
            node: None,
            target: ObjectReference::default(),
            hostname: None,
            ports: vec![(Some("http".into()), 8080, "TCP".into(), None)],
        }
    }

    #[test]
    fn pods_under_a_headless_service_keep_their_hostnames() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db", "namespace": "d"},
            "spec": {"clusterIP": "None", "selector": {"app": "db"}}
        }))
        .unwrap();
        let pod = |name: &str, subdomain: &str| -> Arc<Pod> {
            Arc::new(
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name, "namespace": "d"},
                    "spec": {"hostname": name, "subdomain": subdomain, "containers": []},
                    "status": {"podIP": format!("10.0.0.{}", name.len())}
                }))
                .unwrap(),
            )
        };
        let eps = pod_endpoints(&svc, &[pod("db-0", "db"), pod("other", "elsewhere")]);
        let hosts: Vec<Option<&str>> = eps.iter().map(|e| e.hostname.as_deref()).collect();
        assert_eq!(hosts, [Some("db-0"), None]);
        let (_, chunks) = slices(&eps);
        assert_eq!(chunks[0][0].hostname.as_deref(), Some("db-0"));
        assert_eq!(
            subsets(&eps)[0].not_ready_addresses.as_ref().unwrap()[0]
                .hostname
                .as_deref(),
            Some("db-0")
        );
    }

    #[test]
    fn slices_hold_a_hundred_endpoints_and_there_is_always_one() {
        let (ports, chunks) = slices(&[]);
        assert!(ports.is_empty());
        assert_eq!(chunks, vec![vec![]]);
        let eps: Vec<PodEndpoint> = (0..250)
            .map(|i| endpoint(&format!("10.0.{}.{}", i / 200, i % 200)))
            .collect();
        let (ports, chunks) = slices(&eps);
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].port, Some(8080));
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            [100, 100, 50]
        );
    }

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
