//! core/v1 Service: defaults, validation, the rules for its allocated cluster IP, and the
//! allocation of its cluster IP and node ports (`alloc.rs`) as claims of its create.

pub mod alloc;

use k8s_openapi::api::core::v1::{Service, ServiceStatus};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Claim, Env, Kind};
use crate::error::FieldError;
use crate::validation::NameRule;

pub struct Services;

const TYPES: &[&str] = &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
const AFFINITY: &[&str] = &["ClientIP", "None"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// Whether the service gets a cluster IP allocated (not headless, not ExternalName).
pub fn wants_cluster_ip(svc: &Service) -> bool {
    let spec = svc.spec.clone().unwrap_or_default();
    spec.type_.as_deref() != Some("ExternalName") && spec.cluster_ip.as_deref() != Some("None")
}

impl Kind for Services {
    type Obj = Service;
    const SINGULAR: &'static str = "service";
    const OBJECT_HOOKS: bool = true;
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::core::SERVICE);
    const SHORT_NAMES: &'static [&'static str] = &["svc"];
    const CATEGORIES: &'static [&'static str] = &["all"];
    const STATUS: bool = true;
    const NAME_RULE: NameRule = NameRule::Dns1035;
    const FIELDS: &'static [&'static str] = &["spec.clusterIP", "spec.type"];

    fn default(svc: &mut Service) {
        let spec = svc.spec.get_or_insert_with(Default::default);
        let ty = spec.type_.get_or_insert_with(|| "ClusterIP".into()).clone();
        spec.session_affinity.get_or_insert_with(|| "None".into());
        for p in spec.ports.iter_mut().flatten() {
            p.protocol.get_or_insert_with(|| "TCP".into());
            if p.target_port.is_none() {
                p.target_port = Some(IntOrString::Int(p.port));
            }
        }
        if ty != "ExternalName" {
            spec.internal_traffic_policy
                .get_or_insert_with(|| "Cluster".into());
            spec.ip_families.get_or_insert_with(|| vec!["IPv4".into()]);
            spec.ip_family_policy
                .get_or_insert_with(|| "SingleStack".into());
        }
        if ty == "NodePort" || ty == "LoadBalancer" {
            spec.external_traffic_policy
                .get_or_insert_with(|| "Cluster".into());
        }
        if let Some(ip) = spec.cluster_ip.clone().filter(|ip| !ip.is_empty()) {
            spec.cluster_ips.get_or_insert_with(|| vec![ip]);
        }
    }

    fn prepare_create(svc: &mut Service) {
        svc.status = Some(ServiceStatus {
            load_balancer: Some(Default::default()),
            ..Default::default()
        });
    }

    fn prepare_update(new: &mut Service, old: &Service) {
        // An update that leaves the allocated IP out keeps it, as Kubernetes does.
        let (Some(n), Some(o)) = (new.spec.as_mut(), old.spec.as_ref()) else {
            return;
        };
        if n.cluster_ip.as_deref().unwrap_or("").is_empty() && n.type_ == o.type_ {
            n.cluster_ip = o.cluster_ip.clone();
            n.cluster_ips = o.cluster_ips.clone();
        }
        for p in n.ports.iter_mut().flatten() {
            if p.node_port.unwrap_or(0) == 0 {
                if let Some(op) = o
                    .ports
                    .iter()
                    .flatten()
                    .find(|op| op.port == p.port && op.protocol == p.protocol)
                {
                    p.node_port = op.node_port;
                }
            }
        }
    }

    fn validate(svc: &Service) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let Some(spec) = &svc.spec else {
            return vec![FieldError::required("spec", "")];
        };
        let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
        if !TYPES.contains(&ty) {
            errs.push(FieldError::not_supported("spec.type", ty, TYPES));
        }
        if let Some(a) = spec.session_affinity.as_deref() {
            if !AFFINITY.contains(&a) {
                errs.push(FieldError::not_supported(
                    "spec.sessionAffinity",
                    a,
                    AFFINITY,
                ));
            }
        }
        let ports = spec.ports.clone().unwrap_or_default();
        let headless = spec.cluster_ip.as_deref() == Some("None");
        if ty == "ExternalName" {
            if spec.external_name.as_deref().unwrap_or("").is_empty() {
                errs.push(FieldError::required("spec.externalName", ""));
            }
        } else if ports.is_empty() && !headless {
            errs.push(FieldError::required("spec.ports", ""));
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in ports.iter().enumerate() {
            let f = format!("spec.ports[{i}]");
            let name = p.name.as_deref().unwrap_or("");
            if ports.len() > 1 && name.is_empty() {
                errs.push(FieldError::required(format!("{f}.name"), ""));
            }
            if !name.is_empty() {
                for m in crate::validation::dns1123_label(name) {
                    errs.push(FieldError::invalid(format!("{f}.name"), name, m));
                }
                if !names.insert(name) {
                    errs.push(FieldError::duplicate(format!("{f}.name"), name));
                }
            }
            if !(1..=65535).contains(&p.port) {
                errs.push(FieldError::invalid_raw(
                    format!("{f}.port"),
                    p.port.to_string(),
                    "must be between 1 and 65535, inclusive",
                ));
            }
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            if !PROTOCOLS.contains(&proto) {
                errs.push(FieldError::not_supported(
                    format!("{f}.protocol"),
                    proto,
                    PROTOCOLS,
                ));
            }
            if let Some(IntOrString::Int(t)) = &p.target_port {
                if !(1..=65535).contains(t) {
                    errs.push(FieldError::invalid_raw(
                        format!("{f}.targetPort"),
                        t.to_string(),
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
            if let Some(np) = p.node_port.filter(|np| *np != 0) {
                if ty == "ClusterIP" {
                    errs.push(FieldError::forbidden(
                        format!("{f}.nodePort"),
                        "may not be used when `type` is 'ClusterIP'",
                    ));
                } else if !(1..=65535).contains(&np) {
                    errs.push(FieldError::invalid_raw(
                        format!("{f}.nodePort"),
                        np.to_string(),
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
        }
        if let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .filter(|ip| !ip.is_empty() && *ip != "None")
        {
            if ip.parse::<std::net::Ipv4Addr>().is_err() {
                errs.push(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    ip,
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                ));
            }
        }
        if let Some(sel) = &spec.selector {
            errs.extend(crate::validation::labels("spec.selector", sel));
        }
        errs
    }

    fn validate_update(new: &Service, old: &Service) -> Vec<FieldError> {
        let n = new.spec.clone().unwrap_or_default();
        let o = old.spec.clone().unwrap_or_default();
        let was = o.cluster_ip.unwrap_or_default();
        let now = n.cluster_ip.unwrap_or_default();
        if !was.is_empty() && was != now && n.type_ == o.type_ {
            return vec![FieldError::invalid_raw(
                "spec.clusterIPs[0]",
                format!("[]string{{{now:?}}}"),
                "may not change once set",
            )];
        }
        vec![]
    }

    fn claims(svc: &mut Service, env: &Env) -> Result<Vec<Claim>, Vec<FieldError>> {
        let Some(spec) = svc.spec.as_mut() else {
            return Ok(vec![]);
        };
        let ty = spec.type_.clone().unwrap_or_else(|| "ClusterIP".into());
        let requested_ip = spec.cluster_ip.clone().unwrap_or_default();
        let mut claims = Vec::new();
        if ty != "ExternalName" && requested_ip != "None" {
            let ip = if requested_ip.is_empty() {
                env.service_ips.random()
            } else {
                env.service_ips.check(&requested_ip).map_err(|e| vec![e])?
            };
            let taken = (!requested_ip.is_empty()).then(|| {
                FieldError::invalid_raw(
                    "spec.clusterIPs",
                    format!("[]string{{{requested_ip:?}}}"),
                    format!(
                        "failed to allocate IP {requested_ip}: provided IP is already allocated"
                    ),
                )
            });
            claims.push(Claim {
                key: alloc::key(ip),
                taken,
            });
            spec.cluster_ip = Some(ip.to_string());
            spec.cluster_ips = Some(vec![ip.to_string()]);
        }
        if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
            let requested: Vec<i64> = spec
                .ports
                .iter()
                .flatten()
                .map(|p| i64::from(p.node_port.unwrap_or(0)))
                .collect();
            alloc::check_node_ports(&requested)?;
            let mut used: Vec<i64> = requested.iter().copied().filter(|p| *p != 0).collect();
            for (i, (p, req)) in spec.ports.iter_mut().flatten().zip(&requested).enumerate() {
                let field = format!("spec.ports[{i}].nodePort");
                let port = match *req {
                    0 => alloc::random_node_port(&mut used).ok_or_else(|| {
                        vec![FieldError::invalid_raw(
                            field.clone(),
                            "0".into(),
                            "no node port is left in the range",
                        )]
                    })?,
                    r => r,
                };
                let taken = (*req != 0).then(|| {
                    FieldError::invalid_raw(
                        field,
                        port.to_string(),
                        "provided port is already allocated",
                    )
                });
                claims.push(Claim {
                    key: alloc::node_port_key(port),
                    taken,
                });
                p.node_port = i32::try_from(port).ok();
            }
        }
        Ok(claims)
    }

    fn released(svc: &Service) -> Vec<String> {
        let Some(spec) = &svc.spec else {
            return vec![];
        };
        let ip = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse().ok())
            .map(alloc::key);
        let ports = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.node_port.map(i64::from))
            .filter(|n| alloc::NODE_PORTS.contains(n))
            .map(alloc::node_port_key);
        ip.into_iter().chain(ports).collect()
    }

    fn fields(svc: &Service) -> Vec<(&'static str, String)> {
        let spec = svc.spec.clone().unwrap_or_default();
        vec![
            ("spec.clusterIP", spec.cluster_ip.unwrap_or_default()),
            ("spec.type", spec.type_.unwrap_or_default()),
        ]
    }
}
