//! Defaulting and validation of a pod spec, shared by pods and the pod templates of
//! deployments and replicasets.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::error::FieldError;
use crate::kinds::check_names;
use crate::validation;

pub const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];

/// `Always` for an image without a tag or with `:latest`, else `IfNotPresent`.
pub fn default_pull_policy(image: &str) -> &'static str {
    let name = image.split('@').next().unwrap_or(image);
    let last = name.rsplit('/').next().unwrap_or(name);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn default_container(c: &mut Container) {
    if c.image_pull_policy.is_none() {
        c.image_pull_policy = Some(default_pull_policy(c.image.as_deref().unwrap_or("")).into());
    }
    c.termination_message_path
        .get_or_insert_with(|| "/dev/termination-log".into());
    c.termination_message_policy
        .get_or_insert_with(|| "File".into());
    for p in c.ports.iter_mut().flatten() {
        p.protocol.get_or_insert_with(|| "TCP".into());
    }
    // Limits without requests: the request is the limit.
    if let Some(r) = c.resources.as_mut() {
        if let Some(limits) = r.limits.clone() {
            let req = r.requests.get_or_insert_with(BTreeMap::new);
            for (k, v) in limits {
                req.entry(k).or_insert(v);
            }
        }
    }
}

pub fn default_pod_spec(spec: &mut PodSpec) {
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".into());
    spec.security_context.get_or_insert_with(Default::default);
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        default_container(c);
    }
}

pub fn default_template(t: &mut PodTemplateSpec) {
    if let Some(spec) = t.spec.as_mut() {
        default_pod_spec(spec);
    }
}

/// A Kubernetes quantity ("100m", "1.5Gi", "2e3") as a float, or None if malformed.
pub use flotilla_core::quantity::parse as parse_quantity;

fn validate_resources(r: &ResourceRequirements, path: &str, errs: &mut Vec<FieldError>) {
    let check = |m: &Option<BTreeMap<String, Quantity>>,
                 which: &str,
                 errs: &mut Vec<FieldError>| {
        for (k, v) in m.iter().flatten() {
            let f = format!("{path}.{which}[{k}]");
            match parse_quantity(&v.0) {
                None => errs.push(FieldError::invalid(
                    f,
                    &v.0,
                    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                )),
                Some(x) if x < 0.0 => errs.push(FieldError::invalid(f, &v.0, "must be greater than or equal to 0")),
                _ => {}
            }
        }
    };
    check(&r.limits, "limits", errs);
    check(&r.requests, "requests", errs);
    for (k, req) in r.requests.iter().flatten() {
        let lim = r.limits.as_ref().and_then(|l| l.get(k));
        if let (Some(lim), Some(rq), Some(lm)) = (
            lim,
            parse_quantity(&req.0),
            lim.and_then(|l| parse_quantity(&l.0)),
        ) {
            if rq > lm {
                errs.push(FieldError::invalid(
                    format!("{path}.requests"),
                    &req.0,
                    format!("must be less than or equal to {k} limit of {}", lim.0),
                ));
            }
        }
    }
}

fn validate_container(c: &Container, path: &str, errs: &mut Vec<FieldError>) {
    if c.image.as_deref().unwrap_or("").trim().is_empty() {
        errs.push(FieldError::required(format!("{path}.image"), ""));
    }
    if let Some(p) = c.image_pull_policy.as_deref() {
        if !PULL_POLICIES.contains(&p) {
            errs.push(FieldError::not_supported(
                format!("{path}.imagePullPolicy"),
                p,
                PULL_POLICIES,
            ));
        }
    }
    let mut seen = HashSet::new();
    for (i, p) in c.ports.iter().flatten().enumerate() {
        let f = format!("{path}.ports[{i}]");
        if !(1..=65535).contains(&p.container_port) {
            errs.push(FieldError::invalid_raw(
                format!("{f}.containerPort"),
                p.container_port.to_string(),
                "must be between 1 and 65535, inclusive",
            ));
        }
        if let Some(hp) = p.host_port.filter(|hp| *hp != 0) {
            if !(1..=65535).contains(&hp) {
                errs.push(FieldError::invalid_raw(
                    format!("{f}.hostPort"),
                    hp.to_string(),
                    "must be between 1 and 65535, inclusive",
                ));
            }
        }
        let proto = p.protocol.as_deref().unwrap_or("TCP");
        if !PROTOCOLS.contains(&proto) {
            errs.push(FieldError::not_supported(
                format!("{f}.protocol"),
                proto,
                PROTOCOLS,
            ));
        }
        if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
            if n.len() > 15
                || !n.chars().any(|c| c.is_ascii_lowercase())
                || !validation::dns1123_label(n).is_empty()
            {
                errs.push(FieldError::invalid(
                    format!("{f}.name"),
                    n,
                    "must be no more than 15 characters, contain only lowercase alphanumerics or '-', and contain at least one letter",
                ));
            }
            if !seen.insert(n) {
                errs.push(FieldError::duplicate(format!("{f}.name"), n));
            }
        }
    }
    for (i, e) in c.env.iter().flatten().enumerate() {
        if e.name.is_empty() {
            errs.push(FieldError::required(format!("{path}.env[{i}].name"), ""));
        }
    }
    if let Some(r) = &c.resources {
        validate_resources(r, &format!("{path}.resources"), errs);
    }
}

/// Every problem with a pod spec found at `path` ("spec", "spec.template.spec").
pub fn validate_pod_spec(spec: &PodSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if spec.containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let all_names = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c| c.name.as_str());
    check_names(&format!("{path}.containers"), all_names, &mut errs);
    for (i, c) in spec.containers.iter().enumerate() {
        validate_container(c, &format!("{path}.containers[{i}]"), &mut errs);
    }
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        validate_container(c, &format!("{path}.initContainers[{i}]"), &mut errs);
    }
    check_names(
        &format!("{path}.volumes"),
        spec.volumes.iter().flatten().map(|v| v.name.as_str()),
        &mut errs,
    );
    if let Some(p) = spec.restart_policy.as_deref() {
        if !RESTART_POLICIES.contains(&p) {
            errs.push(FieldError::not_supported(
                format!("{path}.restartPolicy"),
                p,
                RESTART_POLICIES,
            ));
        }
    }
    if let Some(p) = spec.dns_policy.as_deref() {
        if !DNS_POLICIES.contains(&p) {
            errs.push(FieldError::not_supported(
                format!("{path}.dnsPolicy"),
                p,
                DNS_POLICIES,
            ));
        }
    }
    if let Some(g) = spec.termination_grace_period_seconds.filter(|g| *g < 0) {
        errs.push(FieldError::invalid_raw(
            format!("{path}.terminationGracePeriodSeconds"),
            g.to_string(),
            "must be greater than or equal to 0",
        ));
    }
    if let Some(d) = spec.active_deadline_seconds.filter(|d| *d <= 0) {
        errs.push(FieldError::invalid_raw(
            format!("{path}.activeDeadlineSeconds"),
            d.to_string(),
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        for m in validation::dns1123_subdomain(n) {
            errs.push(FieldError::invalid(format!("{path}.nodeName"), n, m));
        }
    }
    if let Some(sel) = &spec.node_selector {
        errs.extend(validation::labels(&format!("{path}.nodeSelector"), sel));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, image: Option<&str>) -> Container {
        Container {
            name: name.into(),
            image: image.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(default_pull_policy("busybox"), "Always");
        assert_eq!(default_pull_policy("busybox:latest"), "Always");
        assert_eq!(default_pull_policy("busybox:1.36"), "IfNotPresent");
        assert_eq!(default_pull_policy("localhost:5000/busybox"), "Always");
        assert_eq!(
            default_pull_policy("localhost:5000/busybox:1"),
            "IfNotPresent"
        );
        assert_eq!(default_pull_policy("busybox@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn defaults_fill_what_kubernetes_fills() {
        let mut spec = PodSpec {
            containers: vec![container("a", Some("nginx:1.27"))],
            ..Default::default()
        };
        default_pod_spec(&mut spec);
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(
            spec.containers[0].image_pull_policy.as_deref(),
            Some("IfNotPresent")
        );
        assert_eq!(
            spec.containers[0].termination_message_policy.as_deref(),
            Some("File")
        );
    }

    #[test]
    fn validation_names_each_bad_field() {
        let mut spec = PodSpec {
            containers: vec![
                container("a", None),
                container("a", Some("x")),
                container("B", Some("x")),
            ],
            restart_policy: Some("Sometimes".into()),
            ..Default::default()
        };
        spec.containers[1].resources = Some(ResourceRequirements {
            limits: Some([("cpu".to_string(), Quantity("1".into()))].into()),
            requests: Some([("cpu".to_string(), Quantity("2".into()))].into()),
            ..Default::default()
        });
        let errs = validate_pod_spec(&spec, "spec");
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.containers[1].name",
                "spec.containers[2].name",
                "spec.containers[0].image",
                "spec.containers[1].resources.requests",
                "spec.restartPolicy"
            ],
            "{errs:?}"
        );
        let empty = PodSpec::default();
        assert_eq!(
            validate_pod_spec(&empty, "spec")[0].field,
            "spec.containers"
        );
    }
}
