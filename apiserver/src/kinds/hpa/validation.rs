//! kube's `ValidateHorizontalPodAutoscaler` (autoscaling/v2), with its paths and
//! messages: replica bounds, the target reference, each metric source (only the one its
//! type names may be set) and its target, and the scaling rules of `behavior`. Scale to
//! zero (the HPAScaleToZero alpha gate) is off, as in kube by default.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingRules, HorizontalPodAutoscalerSpec,
    HorizontalPodAutoscalerStatus, MetricIdentifier, MetricSpec, MetricTarget,
};

use crate::error::FieldError;
use crate::validation::{dns1123_label, path_segment};

const MAX_PERIOD_SECONDS: i32 = 1800;
const MAX_STABILIZATION_WINDOW_SECONDS: i32 = 3600;
const SOURCE_TYPES: &[&str] = &[
    "ContainerResource",
    "External",
    "Object",
    "Pods",
    "Resource",
];
const TARGET_TYPES: &str = "must be either Utilization, Value, or AverageValue";
const QUANTITY: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

pub fn spec(spec: Option<&HorizontalPodAutoscalerSpec>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(s) = spec else {
        errs.push(FieldError::required("spec", ""));
        return errs;
    };
    if let Some(min) = s.min_replicas.filter(|m| *m < 1) {
        errs.push(FieldError::invalid_raw(
            "spec.minReplicas",
            min.to_string(),
            "must be greater than or equal to 1",
        ));
    }
    if s.max_replicas < 1 {
        errs.push(FieldError::invalid_raw(
            "spec.maxReplicas",
            s.max_replicas.to_string(),
            "must be greater than 0",
        ));
    }
    if s.min_replicas.is_some_and(|min| s.max_replicas < min) {
        errs.push(FieldError::invalid_raw(
            "spec.maxReplicas",
            s.max_replicas.to_string(),
            "must be greater than or equal to `minReplicas`",
        ));
    }
    reference(&s.scale_target_ref, "spec.scaleTargetRef", &mut errs);
    for (i, m) in s.metrics.iter().flatten().enumerate() {
        metric(m, &format!("spec.metrics[{i}]"), &mut errs);
    }
    if let Some(b) = &s.behavior {
        for (r, path) in [
            (&b.scale_up, "spec.behavior.scaleUp"),
            (&b.scale_down, "spec.behavior.scaleDown"),
        ] {
            if let Some(r) = r {
                rules(r, path, &mut errs);
            }
        }
    }
    errs
}

/// `ValidateHorizontalPodAutoscalerStatusUpdate`: the counts are never negative.
pub fn status(status: Option<&HorizontalPodAutoscalerStatus>) -> Vec<FieldError> {
    let Some(s) = status else { return vec![] };
    [
        ("status.currentReplicas", s.current_replicas.unwrap_or(0)),
        ("status.desiredReplicas", s.desired_replicas),
    ]
    .into_iter()
    .filter(|(_, v)| *v < 0)
    .map(|(f, v)| FieldError::invalid_raw(f, v.to_string(), "must be greater than or equal to 0"))
    .collect()
}

/// `ValidateCrossVersionObjectReference`.
fn reference(r: &CrossVersionObjectReference, path: &str, errs: &mut Vec<FieldError>) {
    for (v, f) in [(&r.kind, "kind"), (&r.name, "name")] {
        let f = format!("{path}.{f}");
        if v.is_empty() {
            errs.push(FieldError::required(f, ""));
            continue;
        }
        for m in path_segment(v) {
            errs.push(FieldError::invalid(&f, v, m));
        }
    }
}

fn metric(m: &MetricSpec, path: &str, errs: &mut Vec<FieldError>) {
    if m.type_.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.type"),
            "must specify a metric source type",
        ));
    } else if !SOURCE_TYPES.contains(&m.type_.as_str()) {
        errs.push(FieldError::not_supported(
            format!("{path}.type"),
            &m.type_,
            SOURCE_TYPES,
        ));
    }
    let present: Vec<&str> = [
        ("object", m.object.is_some()),
        ("external", m.external.is_some()),
        ("pods", m.pods.is_some()),
        ("resource", m.resource.is_some()),
        ("containerResource", m.container_resource.is_some()),
    ]
    .into_iter()
    .filter_map(|(f, set)| set.then_some(f))
    .collect();
    // Only the first source present is checked further, as kube does.
    if let Some(o) = &m.object {
        let p = format!("{path}.object");
        reference(&o.described_object, &format!("{p}.describedObject"), errs);
        identifier(&o.metric, &format!("{p}.metric"), errs);
        target(&o.target, &format!("{p}.target"), errs);
        if o.target.value.is_none() && o.target.average_value.is_none() {
            errs.push(FieldError::required(
                format!("{p}.target.averageValue"),
                "must set either a target value or averageValue",
            ));
        }
    } else if let Some(e) = &m.external {
        let p = format!("{path}.external");
        identifier(&e.metric, &format!("{p}.metric"), errs);
        target(&e.target, &format!("{p}.target"), errs);
        match (&e.target.value, &e.target.average_value) {
            (None, None) => errs.push(FieldError::required(
                format!("{p}.target.averageValue"),
                "must set either a target value for metric or a per-pod target",
            )),
            (Some(_), Some(_)) => errs.push(FieldError::forbidden(
                format!("{p}.target.value"),
                "may not set both a target value for metric and a per-pod target",
            )),
            _ => {}
        }
    } else if let Some(s) = &m.pods {
        let p = format!("{path}.pods");
        identifier(&s.metric, &format!("{p}.metric"), errs);
        target(&s.target, &format!("{p}.target"), errs);
        if s.target.average_value.is_none() {
            errs.push(FieldError::required(
                format!("{p}.target.averageValue"),
                "must specify a positive target averageValue",
            ));
        }
    } else if let Some(r) = &m.resource {
        let p = format!("{path}.resource");
        if r.name.is_empty() {
            errs.push(FieldError::required(
                format!("{p}.name"),
                "must specify a resource name",
            ));
        }
        target(&r.target, &format!("{p}.target"), errs);
        utilization_or_value(&r.target, &p, errs);
    } else if let Some(r) = &m.container_resource {
        let p = format!("{path}.containerResource");
        if r.name.is_empty() {
            errs.push(FieldError::required(
                format!("{p}.name"),
                "must specify a resource name",
            ));
        } else if let Some(e) = container_resource_name(&r.name) {
            errs.push(FieldError::invalid(format!("{p}.name"), &r.name, e));
        }
        if r.container.is_empty() {
            errs.push(FieldError::required(
                format!("{p}.container"),
                "must specify a container",
            ));
        } else {
            for e in dns1123_label(&r.container) {
                errs.push(FieldError::invalid(
                    format!("{p}.container"),
                    &r.container,
                    e,
                ));
            }
        }
        target(&r.target, &format!("{p}.target"), errs);
        utilization_or_value(&r.target, &p, errs);
    }
    // The source the type names must be the one given, and the only one.
    let expected = match m.type_.as_str() {
        "Object" => "object",
        "Pods" => "pods",
        "Resource" => "resource",
        "External" => "external",
        "ContainerResource" => "containerResource",
        _ => return,
    };
    if !present.contains(&expected) {
        errs.push(FieldError::required(
            format!("{path}.{expected}"),
            "must populate information for the given metric source",
        ));
    }
    for other in present.iter().filter(|p| **p != expected) {
        errs.push(FieldError::forbidden(
            format!("{path}.{other}"),
            "must populate the given metric source only",
        ));
    }
}

fn identifier(m: &MetricIdentifier, path: &str, errs: &mut Vec<FieldError>) {
    let f = format!("{path}.name");
    if m.name.is_empty() {
        errs.push(FieldError::required(f, "must specify a metric name"));
        return;
    }
    for e in path_segment(&m.name) {
        errs.push(FieldError::invalid(&f, &m.name, e));
    }
}

/// `validateMetricTarget`.
fn target(t: &MetricTarget, path: &str, errs: &mut Vec<FieldError>) {
    let f = format!("{path}.type");
    if t.type_.is_empty() {
        errs.push(FieldError::required(
            &f,
            "must specify a metric target type",
        ));
    }
    if !["Utilization", "Value", "AverageValue"].contains(&t.type_.as_str()) {
        errs.push(FieldError::invalid(&f, &t.type_, TARGET_TYPES));
    }
    for (q, name) in [(&t.value, "value"), (&t.average_value, "averageValue")] {
        let Some(q) = q else { continue };
        let f = format!("{path}.{name}");
        match flotilla_core::quantity::parse(&q.0) {
            None => errs.push(FieldError::invalid(f, &q.0, QUANTITY)),
            Some(x) if x <= 0.0 => {
                errs.push(FieldError::invalid_raw(f, q.0.clone(), "must be positive"))
            }
            Some(_) => {}
        }
    }
    if let Some(u) = t.average_utilization.filter(|u| *u < 1) {
        errs.push(FieldError::invalid_raw(
            format!("{path}.averageUtilization"),
            u.to_string(),
            "must be greater than 0",
        ));
    }
}

/// Resource metrics target a utilization or an average value, not both.
fn utilization_or_value(t: &MetricTarget, path: &str, errs: &mut Vec<FieldError>) {
    match (t.average_utilization, &t.average_value) {
        (None, None) => errs.push(FieldError::required(
            format!("{path}.target.averageUtilization"),
            "must set either a target raw value or a target utilization",
        )),
        (Some(_), Some(_)) => errs.push(FieldError::forbidden(
            format!("{path}.target.averageValue"),
            "may not set both a target raw value and a target utilization",
        )),
        _ => {}
    }
}

/// `ValidateContainerResourceName`: a standard container resource, or a qualified
/// extended resource name.
fn container_resource_name(name: &str) -> Option<&'static str> {
    if !name.contains('/') {
        let standard = ["cpu", "memory", "ephemeral-storage"].contains(&name)
            || name.starts_with("hugepages-");
        return (!standard).then_some("must be a standard resource for containers");
    }
    let native = name.starts_with("kubernetes.io/") || name.contains(".kubernetes.io/");
    let (prefix, rest) = name.split_once('/').unwrap_or(("", name));
    let extended = !native
        && !prefix.is_empty()
        && !rest.is_empty()
        && !rest.contains('/')
        && !name.starts_with("requests.");
    (!native && !extended).then_some("doesn't follow extended resource name standard")
}

fn rules(r: &HPAScalingRules, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(w) = r.stabilization_window_seconds {
        let f = format!("{path}.stabilizationWindowSeconds");
        if w < 0 {
            errs.push(FieldError::invalid_raw(
                f,
                w.to_string(),
                "must be greater than or equal to zero",
            ));
        } else if w > MAX_STABILIZATION_WINDOW_SECONDS {
            errs.push(FieldError::invalid_raw(
                f,
                w.to_string(),
                format!("must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}"),
            ));
        }
    }
    if let Some(p) = r.select_policy.as_deref() {
        const POLICIES: &[&str] = &["Disabled", "Max", "Min"];
        if !POLICIES.contains(&p) {
            errs.push(FieldError::not_supported(
                format!("{path}.selectPolicy"),
                p,
                POLICIES,
            ));
        }
    }
    let policies = r.policies.as_deref().unwrap_or_default();
    if policies.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.policies"),
            "must specify at least one Policy",
        ));
    }
    for (i, p) in policies.iter().enumerate() {
        let at = format!("{path}.policies[{i}]");
        const TYPES: &[&str] = &["Percent", "Pods"];
        if !TYPES.contains(&p.type_.as_str()) {
            errs.push(FieldError::not_supported(
                format!("{at}.type"),
                &p.type_,
                TYPES,
            ));
        }
        if p.value <= 0 {
            errs.push(FieldError::invalid_raw(
                format!("{at}.value"),
                p.value.to_string(),
                "must be greater than zero",
            ));
        }
        let f = format!("{at}.periodSeconds");
        if p.period_seconds <= 0 {
            errs.push(FieldError::invalid_raw(
                f,
                p.period_seconds.to_string(),
                "must be greater than zero",
            ));
        } else if p.period_seconds > MAX_PERIOD_SECONDS {
            errs.push(FieldError::invalid_raw(
                f,
                p.period_seconds.to_string(),
                format!("must be less than or equal to {MAX_PERIOD_SECONDS}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(s: serde_json::Value) -> Vec<String> {
        let s: HorizontalPodAutoscalerSpec = serde_json::from_value(s).unwrap();
        spec(Some(&s))
            .iter()
            .map(|e| format!("{}: {}", e.field, e.detail))
            .collect()
    }

    fn with(extra: serde_json::Value) -> serde_json::Value {
        let mut base = json!({"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 3});
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    }

    #[test]
    fn good_specs_pass() {
        for s in [
            with(json!({})),
            with(json!({"metrics": [
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app", "target": {"type": "Utilization", "averageUtilization": 60}}},
                {"type": "External", "external": {"metric": {"name": "q"}, "target": {"type": "Value", "value": "3"}}}]})),
            with(
                json!({"behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}], "selectPolicy": "Min", "stabilizationWindowSeconds": 3600}}}),
            ),
        ] {
            assert_eq!(errors(s.clone()), Vec::<String>::new(), "{s}");
        }
    }

    #[test]
    fn bad_specs_get_kubes_errors() {
        assert_eq!(
            errors(
                json!({"scaleTargetRef": {"kind": "", "name": "a/b"}, "minReplicas": 0, "maxReplicas": 0})
            ),
            [
                "spec.minReplicas: must be greater than or equal to 1",
                "spec.maxReplicas: must be greater than 0",
                "spec.scaleTargetRef.kind: ",
                "spec.scaleTargetRef.name: may not contain '/'",
            ]
        );
        assert_eq!(
            errors(with(json!({"minReplicas": 5}))),
            ["spec.maxReplicas: must be greater than or equal to `minReplicas`"]
        );
        assert_eq!(
            errors(with(json!({"metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}}]}))),
            ["spec.metrics[0].resource.target.averageUtilization: must set either a target raw value or a target utilization"]
        );
        assert_eq!(
            errors(with(json!({"metrics": [{"type": "Pods", "resource": {"name": "cpu", "target": {"type": "Bogus", "averageUtilization": 0}}}]}))),
            [
                "spec.metrics[0].resource.target.type: must be either Utilization, Value, or AverageValue",
                "spec.metrics[0].resource.target.averageUtilization: must be greater than 0",
                "spec.metrics[0].pods: must populate information for the given metric source",
                "spec.metrics[0].resource: must populate the given metric source only",
            ]
        );
        assert_eq!(
            errors(with(
                json!({"metrics": [{"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "-1"}}}]})
            )),
            ["spec.metrics[0].resource.target.averageValue: must be positive"]
        );
        assert_eq!(
            errors(with(json!({"behavior": {"scaleDown": {"stabilizationWindowSeconds": 3601, "selectPolicy": "Most",
                "policies": [{"type": "Count", "value": 0, "periodSeconds": 1801}]}}}))),
            [
                "spec.behavior.scaleDown.stabilizationWindowSeconds: must be less than or equal to 3600",
                "spec.behavior.scaleDown.selectPolicy: ",
                "spec.behavior.scaleDown.policies[0].type: ",
                "spec.behavior.scaleDown.policies[0].value: must be greater than zero",
                "spec.behavior.scaleDown.policies[0].periodSeconds: must be less than or equal to 1800",
            ]
        );
        assert_eq!(
            errors(with(json!({"behavior": {"scaleUp": {"policies": []}}}))),
            ["spec.behavior.scaleUp.policies: must specify at least one Policy"]
        );
        assert_eq!(
            errors(with(json!({"metrics": [{"type": "ContainerResource", "containerResource": {"name": "gpu", "container": "", "target": {"type": "Utilization", "averageUtilization": 5}}}]}))),
            [
                "spec.metrics[0].containerResource.name: must be a standard resource for containers",
                "spec.metrics[0].containerResource.container: must specify a container",
            ]
        );
    }
}
