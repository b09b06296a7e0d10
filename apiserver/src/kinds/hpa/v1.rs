//! autoscaling/v1 HorizontalPodAutoscalers, served by conversion from the stored
//! autoscaling/v2 (kube's `pkg/apis/autoscaling/v1/conversion.go`). v1 has only a CPU
//! utilization target; whatever else a v2 object holds travels in annotations in v1's own
//! metric shapes (the fields named `targetAverageUtilization`, `currentAverageValue`, ...)
//! and comes back out of them when the object is converted up:
//! `autoscaling.alpha.kubernetes.io/{metrics,current-metrics,conditions,behavior}`.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::{v1, v2};
use serde_json::Value;

use super::{v1_metrics, HorizontalPodAutoscalers};
use crate::kinds::Conversion;

pub const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
pub const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
pub const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
pub const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";

pub struct V1;

impl Conversion for V1 {
    type Stored = HorizontalPodAutoscalers;
    type Obj = v1::HorizontalPodAutoscaler;

    fn default(hpa: &mut v1::HorizontalPodAutoscaler) {
        if let Some(spec) = hpa.spec.as_mut() {
            spec.min_replicas.get_or_insert(1);
        }
    }

    fn up(hpa: v1::HorizontalPodAutoscaler) -> v2::HorizontalPodAutoscaler {
        let mut metadata = hpa.metadata;
        let mut annotations = metadata.annotations.take().unwrap_or_default();
        let mut take = |key: &str| -> Option<Value> {
            annotations
                .remove(key)
                .and_then(|s| serde_json::from_str(&s).ok())
        };
        let other_metrics = take(METRICS);
        let current_metrics = take(CURRENT_METRICS);
        let conditions = take(CONDITIONS);
        let behavior = take(BEHAVIOR);
        metadata.annotations = (!annotations.is_empty()).then_some(annotations);

        let spec = hpa.spec.map(|s| {
            // The annotation's metrics, then v1's own CPU target (kube's order).
            let mut metrics: Vec<v2::MetricSpec> = other_metrics
                .as_ref()
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(metric_up)
                .collect();
            if let Some(p) = s.target_cpu_utilization_percentage {
                metrics.push(cpu_metric(p));
            }
            v2::HorizontalPodAutoscalerSpec {
                scale_target_ref: v2::CrossVersionObjectReference {
                    api_version: s.scale_target_ref.api_version,
                    kind: s.scale_target_ref.kind,
                    name: s.scale_target_ref.name,
                },
                min_replicas: s.min_replicas,
                max_replicas: s.max_replicas,
                metrics: (!metrics.is_empty()).then_some(metrics),
                behavior: behavior.and_then(|b| serde_json::from_value(go_names(b, false)).ok()),
            }
        });
        let status = hpa.status.map(|s| {
            // The annotation holds every current metric; without it, v1's own CPU figure.
            let annotated: Option<Vec<v2::MetricStatus>> = current_metrics
                .as_ref()
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(status_up).collect());
            let mut current: Vec<v2::MetricStatus> = Vec::new();
            if let Some(a) = annotated {
                current = a;
            } else if let Some(p) = s.current_cpu_utilization_percentage {
                current.push(v2::MetricStatus {
                    type_: "Resource".into(),
                    resource: Some(v2::ResourceMetricStatus {
                        name: "cpu".into(),
                        current: v2::MetricValueStatus {
                            average_utilization: Some(p),
                            ..Default::default()
                        },
                    }),
                    ..Default::default()
                });
            }
            v2::HorizontalPodAutoscalerStatus {
                observed_generation: s.observed_generation,
                last_scale_time: s.last_scale_time,
                current_replicas: Some(s.current_replicas),
                desired_replicas: s.desired_replicas,
                current_metrics: (!current.is_empty()).then_some(current),
                conditions: conditions.and_then(|c| serde_json::from_value(c).ok()),
            }
        });
        v2::HorizontalPodAutoscaler {
            metadata,
            spec,
            status,
        }
    }

    fn down(hpa: v2::HorizontalPodAutoscaler) -> v1::HorizontalPodAutoscaler {
        let mut metadata = hpa.metadata;
        let mut annotations: BTreeMap<String, String> =
            metadata.annotations.take().unwrap_or_default();
        let mut put = |key: &str, v: Value| {
            annotations.insert(key.to_string(), v.to_string());
        };
        let spec = hpa.spec.map(|s| {
            let metrics = s.metrics.unwrap_or_default();
            let cpu = metrics.iter().find_map(cpu_utilization);
            let others: Vec<Value> = metrics
                .iter()
                .filter(|m| cpu_utilization(m).is_none())
                .map(metric_down)
                .collect();
            if !others.is_empty() {
                put(METRICS, Value::Array(others));
            }
            if let Some(b) = &s.behavior {
                put(
                    BEHAVIOR,
                    go_names(serde_json::to_value(b).unwrap_or_default(), true),
                );
            }
            v1::HorizontalPodAutoscalerSpec {
                scale_target_ref: v1::CrossVersionObjectReference {
                    api_version: s.scale_target_ref.api_version,
                    kind: s.scale_target_ref.kind,
                    name: s.scale_target_ref.name,
                },
                min_replicas: s.min_replicas,
                max_replicas: s.max_replicas,
                target_cpu_utilization_percentage: cpu,
            }
        });
        let status = hpa.status.map(|s| {
            let current = s.current_metrics.unwrap_or_default();
            let cpu = current.iter().find_map(|m| {
                (m.type_ == "Resource")
                    .then_some(m.resource.as_ref())
                    .flatten()
                    .filter(|r| r.name == "cpu")
                    .and_then(|r| r.current.average_utilization)
            });
            // Every current metric, CPU's too (its raw value has no v1 field).
            if !current.is_empty() {
                put(
                    CURRENT_METRICS,
                    Value::Array(current.iter().map(status_down).collect()),
                );
            }
            if let Some(c) = s.conditions.filter(|c| !c.is_empty()) {
                put(CONDITIONS, serde_json::to_value(c).unwrap_or_default());
            }
            v1::HorizontalPodAutoscalerStatus {
                observed_generation: s.observed_generation,
                last_scale_time: s.last_scale_time,
                current_replicas: s.current_replicas.unwrap_or(0),
                desired_replicas: s.desired_replicas,
                current_cpu_utilization_percentage: cpu,
            }
        });
        metadata.annotations = (!annotations.is_empty()).then_some(annotations);
        v1::HorizontalPodAutoscaler {
            metadata,
            spec,
            status,
        }
    }
}

/// The behavior annotation holds kube's internal type, which has no JSON names: its keys
/// are Go's field names (`ScaleUp`, `StabilizationWindowSeconds`, `Policies`, `Type`).
fn go_names(v: Value, to_go: bool) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let mut c = k.chars();
                    let first = c.next().map(|f| {
                        if to_go {
                            f.to_ascii_uppercase()
                        } else {
                            f.to_ascii_lowercase()
                        }
                    });
                    (first.into_iter().chain(c).collect(), go_names(v, to_go))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(|v| go_names(v, to_go)).collect()),
        other => other,
    }
}

fn cpu_metric(percent: i32) -> v2::MetricSpec {
    v2::MetricSpec {
        type_: "Resource".into(),
        resource: Some(v2::ResourceMetricSource {
            name: "cpu".into(),
            target: v2::MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(percent),
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}

/// The v1 target of a metric that is v1's own field: CPU as a utilization.
fn cpu_utilization(m: &v2::MetricSpec) -> Option<i32> {
    let r = m.resource.as_ref().filter(|_| m.type_ == "Resource")?;
    (r.name == "cpu")
        .then_some(r.target.average_utilization)
        .flatten()
}

/// A v2 metric in v1's annotation shape (kube's v1 MetricSpec).
fn metric_down(m: &v2::MetricSpec) -> Value {
    v1_metrics::spec_down(&serde_json::to_value(m).unwrap_or_default())
}

/// A metric of v1's annotation shape as v2 holds it.
fn metric_up(m: &Value) -> Option<v2::MetricSpec> {
    serde_json::from_value(v1_metrics::spec_up(m)?).ok()
}

/// A v2 current metric in v1's annotation shape (kube's v1 MetricStatus).
fn status_down(m: &v2::MetricStatus) -> Value {
    v1_metrics::status_down(&serde_json::to_value(m).unwrap_or_default())
}

/// A current metric of v1's annotation shape as v2 holds it.
fn status_up(m: &Value) -> Option<v2::MetricStatus> {
    serde_json::from_value(v1_metrics::status_up(m)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v2(v: Value) -> v2::HorizontalPodAutoscaler {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn cpu_utilization_is_v1s_own_field_both_ways() {
        let h = v2(json!({
            "metadata": {"name": "web", "namespace": "d"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
                     "minReplicas": 1, "maxReplicas": 5,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]},
            "status": {"currentReplicas": 2, "desiredReplicas": 3,
                       "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 70, "averageValue": "140m"}}}]}
        }));
        let down = V1::down(h.clone());
        let spec = down.spec.clone().unwrap();
        assert_eq!(spec.target_cpu_utilization_percentage, Some(50));
        let status = down.status.clone().unwrap();
        assert_eq!(status.current_cpu_utilization_percentage, Some(70));
        assert_eq!((status.current_replicas, status.desired_replicas), (2, 3));
        let a = down.metadata.annotations.clone().unwrap();
        assert_eq!(a.keys().collect::<Vec<_>>(), [CURRENT_METRICS]);
        let current: Value = serde_json::from_str(&a[CURRENT_METRICS]).unwrap();
        assert_eq!(
            current,
            json!([{"type": "Resource", "resource": {"name": "cpu", "currentAverageUtilization": 70, "currentAverageValue": "140m"}}])
        );
        let up = V1::up(down);
        assert_eq!(up.spec, h.spec);
        assert_eq!(
            up.status.unwrap().current_metrics,
            h.status.unwrap().current_metrics
        );
        assert_eq!(up.metadata.annotations, None, "nothing left over");
    }

    #[test]
    fn what_v1_lacks_travels_in_annotations_and_comes_back() {
        let h = v2(json!({
            "metadata": {"name": "web", "namespace": "d", "annotations": {"keep": "me"}},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
                     "minReplicas": 2, "maxReplicas": 9,
                     "metrics": [
                        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                        {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app", "target": {"type": "Utilization", "averageUtilization": 60}}},
                        {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
                        {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "30"}}}
                     ],
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Min",
                                  "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]}}},
            "status": {"desiredReplicas": 2,
                       "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"}],
                       "currentMetrics": [{"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "50Mi"}}}]}
        }));
        let down = V1::down(h.clone());
        assert_eq!(
            down.spec
                .as_ref()
                .unwrap()
                .target_cpu_utilization_percentage,
            None
        );
        let a = down.metadata.annotations.clone().unwrap();
        let metrics: Value = serde_json::from_str(&a[METRICS]).unwrap();
        assert_eq!(
            metrics[0],
            json!({"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "100Mi"}})
        );
        assert_eq!(
            metrics[1],
            json!({"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app", "targetAverageUtilization": 60}})
        );
        assert!(a.contains_key(CONDITIONS));
        let behavior: Value = serde_json::from_str(&a[BEHAVIOR]).unwrap();
        assert_eq!(behavior["ScaleDown"]["Policies"][0]["PeriodSeconds"], 30);
        assert!(a.contains_key(CURRENT_METRICS));
        let up = V1::up(down);
        assert_eq!(up.spec, h.spec);
        let (s, t) = (up.status.unwrap(), h.status.unwrap());
        assert_eq!(s.conditions, t.conditions);
        assert_eq!(s.current_metrics, t.current_metrics);
        assert_eq!(
            up.metadata
                .annotations
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            [("keep".to_string(), "me".to_string())]
        );
    }
}
