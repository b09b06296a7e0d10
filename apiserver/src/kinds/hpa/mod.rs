//! autoscaling/v2 HorizontalPodAutoscaler, the stored version (`validation.rs`: kube's
//! `ValidateHorizontalPodAutoscaler`), and autoscaling/v1 served from it by conversion
//! (`v1.rs`). Defaults are kube's: one replica at least, 80% average CPU utilization when
//! no metric is given, and when `behavior` is set, each direction's rules filled in from
//! kube's (scale up by 4 pods or 100% per 15 s, scale down by 100% per 15 s, selecting the
//! largest change; the scale-down window stays unset: the controller's 5 minutes apply).

use k8s_openapi::api::autoscaling::v2::{
    HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler, HorizontalPodAutoscalerStatus,
    MetricSpec, MetricTarget, ResourceMetricSource,
};

use super::Kind;
use crate::error::FieldError;

pub mod v1;
mod v1_metrics;
mod validation;

pub struct HorizontalPodAutoscalers;

/// kube's `DefaultCPUUtilization`.
const DEFAULT_CPU_UTILIZATION: i32 = 80;

impl Kind for HorizontalPodAutoscalers {
    type Obj = HorizontalPodAutoscaler;
    const SINGULAR: &'static str = "horizontalpodautoscaler";
    const SHORT_NAMES: &'static [&'static str] = &["hpa"];
    const CATEGORIES: &'static [&'static str] = &["all"];
    const STATUS: bool = true;
    const GENERATION: bool = true;
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::hpa::HORIZONTALPODAUTOSCALER);

    fn default(hpa: &mut HorizontalPodAutoscaler) {
        // The v1 round-trip annotations are never stored, whichever version wrote them.
        if let Some(a) = hpa.metadata.annotations.as_mut() {
            for k in [
                v1::METRICS,
                v1::CURRENT_METRICS,
                v1::CONDITIONS,
                v1::BEHAVIOR,
            ] {
                a.remove(k);
            }
            if a.is_empty() {
                hpa.metadata.annotations = None;
            }
        }
        let Some(spec) = hpa.spec.as_mut() else {
            return;
        };
        spec.min_replicas.get_or_insert(1);
        if spec.metrics.as_ref().is_none_or(Vec::is_empty) {
            spec.metrics = Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(DEFAULT_CPU_UTILIZATION),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]);
        }
        if let Some(b) = spec.behavior.as_mut() {
            b.scale_up = Some(rules(b.scale_up.take(), scale_up_default()));
            b.scale_down = Some(rules(b.scale_down.take(), scale_down_default()));
        }
    }

    fn prepare_create(hpa: &mut HorizontalPodAutoscaler) {
        hpa.status = Some(HorizontalPodAutoscalerStatus::default());
    }

    fn validate(hpa: &HorizontalPodAutoscaler) -> Vec<FieldError> {
        validation::spec(hpa.spec.as_ref())
    }

    fn validate_update(
        new: &HorizontalPodAutoscaler,
        _old: &HorizontalPodAutoscaler,
    ) -> Vec<FieldError> {
        validation::status(new.status.as_ref())
    }
}

/// kube's `GenerateHPAScaleUpRules`/`GenerateHPAScaleDownRules`: the user's fields over
/// the defaults.
fn rules(user: Option<HPAScalingRules>, default: HPAScalingRules) -> HPAScalingRules {
    let Some(u) = user else { return default };
    HPAScalingRules {
        policies: u.policies.or(default.policies),
        select_policy: u.select_policy.or(default.select_policy),
        stabilization_window_seconds: u
            .stabilization_window_seconds
            .or(default.stabilization_window_seconds),
        ..u
    }
}

fn policy(type_: &str, value: i32, period_seconds: i32) -> HPAScalingPolicy {
    HPAScalingPolicy {
        type_: type_.into(),
        value,
        period_seconds,
    }
}

fn scale_up_default() -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: Some(0),
        select_policy: Some("Max".into()),
        policies: Some(vec![policy("Pods", 4, 15), policy("Percent", 100, 15)]),
        ..Default::default()
    }
}

fn scale_down_default() -> HPAScalingRules {
    HPAScalingRules {
        select_policy: Some("Max".into()),
        policies: Some(vec![policy("Percent", 100, 15)]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hpa(spec: serde_json::Value) -> HorizontalPodAutoscaler {
        serde_json::from_value(json!({"metadata": {"name": "h", "namespace": "d"}, "spec": spec}))
            .unwrap()
    }

    #[test]
    fn defaults_are_kubes() {
        let mut h =
            hpa(json!({"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3}));
        HorizontalPodAutoscalers::default(&mut h);
        let s = serde_json::to_value(h.spec.unwrap()).unwrap();
        assert_eq!(s["minReplicas"], 1);
        assert_eq!(
            s["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}])
        );
        assert!(s.get("behavior").is_none(), "no behavior unless asked");

        let mut h = hpa(
            json!({"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}),
        );
        HorizontalPodAutoscalers::default(&mut h);
        let b = serde_json::to_value(h.spec.unwrap().behavior.unwrap()).unwrap();
        assert_eq!(
            b,
            json!({
                "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                    {"type": "Pods", "value": 4, "periodSeconds": 15},
                    {"type": "Percent", "value": 100, "periodSeconds": 15}]},
                "scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max", "policies": [
                    {"type": "Percent", "value": 100, "periodSeconds": 15}]}
            })
        );
    }

    #[test]
    fn round_trip_annotations_are_not_stored() {
        let mut h: HorizontalPodAutoscaler = serde_json::from_value(json!({
            "metadata": {"name": "h", "annotations": {"autoscaling.alpha.kubernetes.io/metrics": "[]", "other": "x"}},
        }))
        .unwrap();
        HorizontalPodAutoscalers::default(&mut h);
        assert_eq!(h.metadata.annotations.unwrap().len(), 1);
    }
}
