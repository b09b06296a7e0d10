//! The Service variables the kubelet puts in every container's environment: for the
//! `kubernetes` Service in `default` always, and for every Service of the pod's own
//! namespace unless the pod sets `enableServiceLinks: false`. Each Service with a
//! cluster IP gives `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT` (its first port),
//! `<NAME>_SERVICE_PORT_<PORTNAME>` per named port, and Docker's link variables
//! (`<NAME>_PORT`, `<NAME>_PORT_<port>_<PROTO>{,_PROTO,_PORT,_ADDR}`), names upper-cased
//! with `-` as `_`. Pure.
//!
//! A Service of the pod's namespace named `kubernetes` wins over the one in `default`, as
//! in the kubelet. Variables the container sets itself win over these (`env.rs`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

/// The Service whose variables every pod gets (the kubelet's master services).
const MASTER_SERVICE: &str = "kubernetes";
const MASTER_NAMESPACE: &str = "default";

/// The variables for a pod in `namespace` from `services` (any namespaces), sorted by
/// Service name.
pub fn vars<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    namespace: &str,
    enable_links: bool,
) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for s in services {
        if cluster_ip(s).is_none() {
            continue;
        }
        let name = s.metadata.name.as_deref().unwrap_or_default();
        let ns = s.metadata.namespace.as_deref().unwrap_or_default();
        if ns == MASTER_NAMESPACE && name == MASTER_SERVICE {
            chosen.entry(name).or_insert(s);
        } else if ns == namespace && enable_links {
            chosen.insert(name, s);
        }
    }
    let mut out = Vec::new();
    for s in chosen.values() {
        service_vars(s, &mut out);
    }
    out
}

/// The Service's cluster IP, when it has one (not headless, not ExternalName).
fn cluster_ip(s: &Service) -> Option<&str> {
    let ip = s.spec.as_ref()?.cluster_ip.as_deref()?;
    (!ip.is_empty() && ip != "None").then_some(ip)
}

/// `my-svc` → `MY_SVC`.
fn env_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

fn service_vars(s: &Service, out: &mut Vec<(String, String)>) {
    let (Some(ip), Some(spec)) = (cluster_ip(s), s.spec.as_ref()) else {
        return;
    };
    let prefix = env_name(s.metadata.name.as_deref().unwrap_or_default());
    out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
    let ports = spec.ports.as_deref().unwrap_or_default();
    let Some(first) = ports.first() else {
        return;
    };
    out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
    for p in ports {
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((
                format!("{prefix}_SERVICE_PORT_{}", env_name(name)),
                p.port.to_string(),
            ));
        }
    }
    // Docker's link variables; the first port also gives the bare `<NAME>_PORT`.
    let host = match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{ip}]"),
        _ => ip.to_string(),
    };
    for (i, p) in ports.iter().enumerate() {
        let proto = p.protocol.as_deref().unwrap_or("TCP").to_lowercase();
        let url = format!("{proto}://{host}:{}", p.port);
        if i == 0 {
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let pp = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
        out.push((pp.clone(), url));
        out.push((format!("{pp}_PROTO"), proto));
        out.push((format!("{pp}_PORT"), p.port.to_string()));
        out.push((format!("{pp}_ADDR"), ip.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn svc(ns: &str, name: &str, ip: &str, ports: &[(Option<&str>, i32, &str)]) -> Service {
        Service {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, port, proto)| ServicePort {
                            name: n.map(Into::into),
                            port: *port,
                            protocol: Some((*proto).into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn get<'a>(v: &'a [(String, String)], k: &str) -> Option<&'a str> {
        v.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn kubelet_variables() {
        let all = [
            svc(
                "default",
                "kubernetes",
                "10.96.0.1",
                &[(Some("https"), 443, "TCP")],
            ),
            svc(
                "app",
                "my-db",
                "10.96.0.20",
                &[
                    (Some("sql"), 5432, "TCP"),
                    (Some("metrics-http"), 9187, "TCP"),
                ],
            ),
            svc("app", "dns", "10.96.0.30", &[(None, 53, "UDP")]),
            svc("app", "headless", "None", &[(None, 80, "TCP")]),
            svc("other", "elsewhere", "10.96.0.40", &[(None, 80, "TCP")]),
        ];
        let v = vars(all.iter(), "app", true);
        assert_eq!(get(&v, "KUBERNETES_SERVICE_HOST"), Some("10.96.0.1"));
        assert_eq!(get(&v, "KUBERNETES_SERVICE_PORT"), Some("443"));
        assert_eq!(get(&v, "KUBERNETES_SERVICE_PORT_HTTPS"), Some("443"));
        assert_eq!(get(&v, "KUBERNETES_PORT"), Some("tcp://10.96.0.1:443"));
        assert_eq!(
            get(&v, "KUBERNETES_PORT_443_TCP"),
            Some("tcp://10.96.0.1:443")
        );
        assert_eq!(get(&v, "KUBERNETES_PORT_443_TCP_PROTO"), Some("tcp"));
        assert_eq!(get(&v, "KUBERNETES_PORT_443_TCP_PORT"), Some("443"));
        assert_eq!(get(&v, "KUBERNETES_PORT_443_TCP_ADDR"), Some("10.96.0.1"));
        assert_eq!(get(&v, "MY_DB_SERVICE_HOST"), Some("10.96.0.20"));
        assert_eq!(get(&v, "MY_DB_SERVICE_PORT"), Some("5432"));
        assert_eq!(get(&v, "MY_DB_SERVICE_PORT_METRICS_HTTP"), Some("9187"));
        assert_eq!(
            get(&v, "MY_DB_PORT_9187_TCP"),
            Some("tcp://10.96.0.20:9187")
        );
        assert_eq!(get(&v, "DNS_PORT"), Some("udp://10.96.0.30:53"));
        assert_eq!(get(&v, "DNS_PORT_53_UDP_PROTO"), Some("udp"));
        assert!(get(&v, "HEADLESS_SERVICE_HOST").is_none());
        assert!(get(&v, "ELSEWHERE_SERVICE_HOST").is_none());

        // enableServiceLinks: false keeps only the master Service's.
        let v = vars(all.iter(), "app", false);
        assert!(v.iter().all(|(k, _)| k.starts_with("KUBERNETES_")), "{v:?}");
        assert_eq!(v.len(), 8);

        // A `kubernetes` Service of the pod's own namespace wins.
        let mine = svc("app", "kubernetes", "10.96.0.99", &[(None, 80, "TCP")]);
        let v = vars(all.iter().chain([&mine]), "app", true);
        assert_eq!(get(&v, "KUBERNETES_SERVICE_HOST"), Some("10.96.0.99"));
        let v = vars([&mine].into_iter().chain(all.iter()), "app", true);
        assert_eq!(get(&v, "KUBERNETES_SERVICE_HOST"), Some("10.96.0.99"));

        let v6 = svc("app", "v6", "fd00::10", &[(None, 80, "TCP")]);
        let v = vars([&v6], "app", true);
        assert_eq!(get(&v, "V6_PORT"), Some("tcp://[fd00::10]:80"));
    }
}
