//! How clients find this server: the kube-system/kube-dns Service (created when missing),
//! one EndpointSlice per instance, `kube-dns-<identity>`, with this instance's address and
//! actual listen port, kept alive by a Lease of the same name; slices of instances whose
//! Lease stopped being renewed are deleted (`peers.rs` decides which).
//!
//! Contract: the slice is first written only once the zone is synced (an instance that
//! cannot answer cluster names is not published); every round (10 s) re-creates the
//! Service if missing, rewrites the slice if it was changed or deleted, and renews the
//! Lease (duration 40 s). On shutdown the instance deletes its own slice and Lease. Every
//! failure is logged and retried next round; none stops the server.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use tokio::sync::watch;

use crate::handler::ZoneRx;
use crate::peers::{LeaseMark, Peers, LEASE_SECONDS};

pub const NAMESPACE: &str = "kube-system";
pub const SERVICE: &str = "kube-dns";
pub const MANAGED_BY: &str = "flotilla-dns";
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const RENEW: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("{action} {kind} {NAMESPACE}/{name}: {source}")]
    Api {
        action: &'static str,
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
}

/// What this instance publishes.
#[derive(Debug, Clone)]
pub struct Registration {
    pub identity: String,
    pub address: IpAddr,
    pub port: u16,
    pub metrics_port: Option<u16>,
    pub cluster_dns_ip: IpAddr,
}

impl Registration {
    pub fn object_name(&self) -> String {
        format!("{SERVICE}-{}", self.identity)
    }
}

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// kube's kube-dns Service (the CoreDNS addon's), without a selector.
pub fn service(cluster_ip: IpAddr) -> Service {
    let port = |name: &str, number: i32, proto: &str| ServicePort {
        name: Some(name.into()),
        port: number,
        protocol: Some(proto.into()),
        target_port: Some(IntOrString::Int(number)),
        ..Default::default()
    };
    Service {
        metadata: ObjectMeta {
            name: Some(SERVICE.into()),
            namespace: Some(NAMESPACE.into()),
            labels: labels(&[
                ("k8s-app", "kube-dns"),
                ("kubernetes.io/name", "CoreDNS"),
                ("kubernetes.io/cluster-service", "true"),
            ]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(cluster_ip.to_string()),
            cluster_ips: Some(vec![cluster_ip.to_string()]),
            ports: Some(vec![
                port("dns", 53, "UDP"),
                port("dns-tcp", 53, "TCP"),
                port("metrics", 9153, "TCP"),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// This instance's EndpointSlice.
pub fn slice(r: &Registration) -> EndpointSlice {
    let port = |name: &str, number: u16, proto: &str| EndpointPort {
        name: Some(name.into()),
        port: Some(i32::from(number)),
        protocol: Some(proto.into()),
        ..Default::default()
    };
    let mut ports = vec![port("dns", r.port, "UDP"), port("dns-tcp", r.port, "TCP")];
    if let Some(m) = r.metrics_port {
        ports.push(port("metrics", m, "TCP"));
    }
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(r.object_name()),
            namespace: Some(NAMESPACE.into()),
            labels: labels(&[
                (SERVICE_NAME_LABEL, SERVICE),
                (MANAGED_BY_LABEL, MANAGED_BY),
            ]),
            ..Default::default()
        },
        address_type: if r.address.is_ipv4() { "IPv4" } else { "IPv6" }.into(),
        endpoints: vec![Endpoint {
            addresses: vec![r.address.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
            }),
            ..Default::default()
        }],
        ports: Some(ports),
    }
}

/// The parts of a slice this instance decides: addresses with readiness, and ports.
type Essentials = (
    String,
    Vec<(Vec<String>, Option<bool>)>,
    Vec<(Option<String>, Option<i32>, Option<String>)>,
);

fn essentials(s: &EndpointSlice) -> Essentials {
    let eps = s
        .endpoints
        .iter()
        .map(|e| {
            (
                e.addresses.clone(),
                e.conditions.as_ref().and_then(|c| c.ready),
            )
        })
        .collect();
    let ports = s
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone(), p.port, p.protocol.clone()))
        .collect();
    (s.address_type.clone(), eps, ports)
}

fn api_err(
    action: &'static str,
    kind: &'static str,
    name: &str,
) -> impl FnOnce(kube::Error) -> RegisterError {
    let name = name.to_string();
    move |source| RegisterError::Api {
        action,
        kind,
        name,
        source,
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// One instance's registration loop; see the module docs.
pub struct Registrar {
    reg: Registration,
    services: Api<Service>,
    slices: Api<EndpointSlice>,
    leases: Api<Lease>,
    peers: Peers,
}

impl Registrar {
    pub fn new(client: kube::Client, reg: Registration) -> Self {
        Registrar {
            reg,
            services: Api::namespaced(client.clone(), NAMESPACE),
            slices: Api::namespaced(client.clone(), NAMESPACE),
            leases: Api::namespaced(client, NAMESPACE),
            peers: Peers::default(),
        }
    }

    /// Waits for the zone, then registers every 10 s until `shutdown`, then unregisters.
    /// The caller runs it in a span naming the identity.
    pub async fn run(mut self, mut zone: ZoneRx, mut shutdown: watch::Receiver<bool>) {
        tokio::select! {
            r = zone.wait_for(|z| z.is_some()) => if r.is_err() { return },
            _ = shutdown.wait_for(|s| *s) => return,
        }
        loop {
            for (what, r) in [
                ("service", self.ensure_service().await),
                ("slice", self.put_slice().await),
                ("lease", self.renew_lease().await),
                ("collect", self.collect().await),
            ] {
                if let Err(e) = r {
                    tracing::warn!(step = what, error = %e, "registration step failed; retrying");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(RENEW) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        let name = self.reg.object_name();
        for r in [
            self.slices
                .delete(&name, &DeleteParams::default())
                .await
                .map(|_| ()),
            self.leases
                .delete(&name, &DeleteParams::default())
                .await
                .map(|_| ()),
        ] {
            if let Err(e) = r.or_else(|e| if is_status(&e, 404) { Ok(()) } else { Err(e) }) {
                tracing::warn!(error = %e, "unregistering failed");
            }
        }
        tracing::info!("unregistered");
    }

    async fn ensure_service(&self) -> Result<(), RegisterError> {
        let get = self.services.get_opt(SERVICE).await;
        if get.map_err(api_err("get", "Service", SERVICE))?.is_some() {
            return Ok(());
        }
        match self
            .services
            .create(&PostParams::default(), &service(self.reg.cluster_dns_ip))
            .await
        {
            Ok(_) => {
                tracing::info!(ip = %self.reg.cluster_dns_ip, "created Service kube-system/kube-dns");
                Ok(())
            }
            Err(e) if is_status(&e, 409) => Ok(()),
            Err(e) => Err(api_err("create", "Service", SERVICE)(e)),
        }
    }

    async fn put_slice(&self) -> Result<(), RegisterError> {
        let name = self.reg.object_name();
        let want = slice(&self.reg);
        let current =
            self.slices
                .get_opt(&name)
                .await
                .map_err(api_err("get", "EndpointSlice", &name))?;
        match current {
            None => match self.slices.create(&PostParams::default(), &want).await {
                Ok(_) => Ok(()),
                Err(e) if is_status(&e, 409) => Ok(()),
                Err(e) => Err(api_err("create", "EndpointSlice", &name)(e)),
            },
            Some(cur) => {
                // Compared on what this instance sets, so fields the apiserver defaults
                // do not cause an update every round.
                let same = essentials(&cur) == essentials(&want)
                    && cur.metadata.labels == want.metadata.labels;
                if same {
                    return Ok(());
                }
                let mut next = want;
                next.metadata.resource_version = cur.metadata.resource_version;
                self.slices
                    .replace(&name, &PostParams::default(), &next)
                    .await
                    .map(|_| ())
                    .map_err(api_err("update", "EndpointSlice", &name))
            }
        }
    }

    async fn renew_lease(&self) -> Result<(), RegisterError> {
        let name = self.reg.object_name();
        let now = MicroTime(jiff::Timestamp::now());
        let current = self
            .leases
            .get_opt(&name)
            .await
            .map_err(api_err("get", "Lease", &name))?;
        let spec = LeaseSpec {
            holder_identity: Some(self.reg.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(LEASE_SECONDS).unwrap_or(40)),
            renew_time: Some(now.clone()),
            acquire_time: current
                .as_ref()
                .and_then(|l| l.spec.as_ref())
                .and_then(|s| s.acquire_time.clone())
                .or(Some(now)),
            ..Default::default()
        };
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(NAMESPACE.into()),
                resource_version: current
                    .as_ref()
                    .and_then(|l| l.metadata.resource_version.clone()),
                labels: labels(&[(MANAGED_BY_LABEL, MANAGED_BY)]),
                ..Default::default()
            },
            spec: Some(spec),
        };
        let r = if current.is_some() {
            self.leases
                .replace(&name, &PostParams::default(), &lease)
                .await
        } else {
            self.leases.create(&PostParams::default(), &lease).await
        };
        r.map(|_| ()).map_err(api_err("renew", "Lease", &name))
    }

    /// Deletes the slices (and Leases) of instances whose Lease expired.
    async fn collect(&mut self) -> Result<(), RegisterError> {
        let own = self.reg.object_name();
        let lp = ListParams::default().labels(&format!(
            "{SERVICE_NAME_LABEL}={SERVICE},{MANAGED_BY_LABEL}={MANAGED_BY}"
        ));
        let list = self
            .slices
            .list(&lp)
            .await
            .map_err(api_err("list", "EndpointSlice", "*"))?;
        let mut instances: Vec<(String, LeaseMark)> = Vec::new();
        for s in list.items {
            let Some(name) = s.metadata.name else {
                continue;
            };
            if name == own {
                continue;
            }
            let lease = self
                .leases
                .get_opt(&name)
                .await
                .map_err(api_err("get", "Lease", &name))?;
            let mark = lease.and_then(|l| l.spec).map(|s| {
                let renew = s.renew_time.map(|t| t.0.to_string()).unwrap_or_default();
                let secs = s
                    .lease_duration_seconds
                    .and_then(|d| u64::try_from(d).ok())
                    .unwrap_or(u64::from(LEASE_SECONDS));
                (renew, Duration::from_secs(secs))
            });
            instances.push((name, mark));
        }
        for name in self.peers.expired(Instant::now(), &instances) {
            tracing::info!(slice = %name, "deleting the EndpointSlice of an expired instance");
            for r in [
                self.slices
                    .delete(&name, &DeleteParams::default())
                    .await
                    .map(|_| ()),
                self.leases
                    .delete(&name, &DeleteParams::default())
                    .await
                    .map(|_| ()),
            ] {
                match r {
                    Ok(()) => {}
                    Err(e) if is_status(&e, 404) => {}
                    Err(e) => return Err(api_err("delete", "EndpointSlice", &name)(e)),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> Registration {
        Registration {
            identity: "host-5353".into(),
            address: "192.168.1.5".parse().unwrap(),
            port: 5353,
            metrics_port: Some(9153),
            cluster_dns_ip: "10.96.0.10".parse().unwrap(),
        }
    }

    #[test]
    fn the_service_is_kubes_addon_without_a_selector() {
        let s = service("10.96.0.10".parse().unwrap());
        let spec = s.spec.unwrap();
        assert!(spec.selector.is_none());
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
        let ports: Vec<(String, i32, String)> = spec
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.port, p.protocol.unwrap()))
            .collect();
        assert_eq!(
            ports,
            vec![
                ("dns".into(), 53, "UDP".into()),
                ("dns-tcp".into(), 53, "TCP".into()),
                ("metrics".into(), 9153, "TCP".into()),
            ]
        );
        let labels = s.metadata.labels.unwrap();
        assert_eq!(labels["k8s-app"], "kube-dns");
        assert_eq!(labels["kubernetes.io/name"], "CoreDNS");
    }

    #[test]
    fn the_slice_carries_the_actual_port() {
        let s = slice(&reg());
        assert_eq!(s.metadata.name.as_deref(), Some("kube-dns-host-5353"));
        let labels = s.metadata.labels.clone().unwrap();
        assert_eq!(labels[SERVICE_NAME_LABEL], "kube-dns");
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(s.address_type, "IPv4");
        assert_eq!(s.endpoints[0].addresses, vec!["192.168.1.5".to_string()]);
        let ports = s.ports.clone().unwrap();
        assert_eq!(ports[0].port, Some(5353));
        assert_eq!(ports[0].protocol.as_deref(), Some("UDP"));
        assert_eq!(ports[1].name.as_deref(), Some("dns-tcp"));
        // Defaults the apiserver may add do not count as a change.
        let mut served = s.clone();
        served.endpoints[0].node_name = Some("n".into());
        assert_eq!(essentials(&served), essentials(&s));
    }
}
