//! One HPA's proposal from its metrics (kube's `computeReplicasForMetrics`), pure: each
//! metric's replica count, its name for reasons and its `currentMetrics` entry, or why it
//! could not be computed (kube's condition reason and error chain); then the largest
//! proposal, unless the metrics that failed could have asked for more.
//!
//! Resource and ContainerResource metrics are read from the resource metrics API. Pods,
//! Object and External metrics need a custom or external metrics API, which Flotilla does
//! not serve: they fail as kube's do when that API is missing.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::{
    ContainerResourceMetricStatus, MetricSpec, MetricStatus, MetricTarget, MetricValueStatus,
    ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::replicas::{self, Metric};

/// A metric's proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct Computed {
    pub replicas: i32,
    /// kube's metric name (`cpu resource utilization (percentage of request)`).
    pub name: String,
    pub status: MetricStatus,
}

/// Why a metric gave no proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reason: &'static str,
    pub message: String,
}

/// What the resource metrics API answered for the target's pods: a `PodMetricsList`, or
/// kube's error text.
pub type Listed<'a> = Result<&'a serde_json::Value, String>;

fn quantity_of(resource: &str, v: i64) -> Quantity {
    Quantity(if resource == "cpu" {
        format!("{v}m")
    } else {
        v.to_string()
    })
}

/// The target in the metric's unit (millicores, bytes); `None` if it does not parse.
fn target_value(resource: &str, t: &MetricTarget) -> Option<i64> {
    let q = &t.average_value.as_ref()?.0;
    if resource == "cpu" {
        flotilla_core::quantity::milli(q)
    } else {
        flotilla_core::quantity::units(q)
    }
}

fn unsupported(reason: &'static str, what: &str) -> Failure {
    Failure {
        reason,
        message: format!(
            "failed to get {what} metric value: unable to fetch metrics from custom metrics API: no custom metrics API (custom.metrics.k8s.io) is served"
        ),
    }
}

/// One metric's proposal for `current` replicas over `pods`.
pub fn metric(
    spec: &MetricSpec,
    current: i32,
    pods: &[&Pod],
    listed: &Listed<'_>,
    now: jiff::Timestamp,
) -> Result<Computed, Failure> {
    let (resource, container, target) = match spec.type_.as_str() {
        "Resource" => match &spec.resource {
            Some(r) => (r.name.as_str(), None, &r.target),
            None => return Err(invalid_source(spec)),
        },
        "ContainerResource" => match &spec.container_resource {
            Some(r) => (r.name.as_str(), Some(r.container.as_str()), &r.target),
            None => return Err(invalid_source(spec)),
        },
        "Pods" => return Err(unsupported("FailedGetPodsMetric", "pods")),
        "Object" => return Err(unsupported("FailedGetObjectMetric", "object")),
        "External" => return Err(unsupported("FailedGetExternalMetric", "external")),
        _ => return Err(invalid_source(spec)),
    };
    let (reason, wrap) = match container {
        None => (
            "FailedGetResourceMetric",
            format!("failed to get {resource} resource metric value"),
        ),
        Some(c) => (
            "FailedGetContainerResourceMetric",
            format!("failed to get {c} container metric value"),
        ),
    };
    let utilization = target.average_utilization;
    let what = if utilization.is_some() {
        "utilization"
    } else {
        "usage"
    };
    let fail = |e: String| Failure {
        reason,
        message: format!("{wrap}: failed to get {resource} {what}: {e}"),
    };
    let list = listed.as_ref().map_err(|e| fail(e.clone()))?;
    let usage: BTreeMap<String, Metric> = super::metrics::usage(list, resource, container);
    if usage.is_empty() {
        return Err(fail(format!(
            "unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        )));
    }
    let kind = if container.is_some() {
        "container resource"
    } else {
        "resource"
    };
    let (outcome, name, current_value) = if let Some(u) = utilization {
        let o = replicas::resource_replicas(current, u, resource, container, pods, &usage, now)
            .map_err(|e| fail(e.to_string()))?;
        let v = MetricValueStatus {
            average_utilization: Some(o.utilization),
            average_value: Some(quantity_of(resource, o.raw)),
            ..Default::default()
        };
        (
            o,
            format!("{resource} {kind} utilization (percentage of request)"),
            v,
        )
    } else if let Some(t) = target_value(resource, target) {
        let o = replicas::average_value_replicas(current, t, resource, pods, &usage, now)
            .map_err(|e| fail(e.to_string()))?;
        let v = MetricValueStatus {
            average_value: Some(quantity_of(resource, o.raw)),
            ..Default::default()
        };
        (o, format!("{resource} {kind}"), v)
    } else {
        return Err(Failure {
            reason,
            message: format!("{wrap}: invalid resource metric source: neither an average utilization target nor an average value (usage) target was set"),
        });
    };
    let status = match container {
        None => MetricStatus {
            type_: "Resource".into(),
            resource: Some(ResourceMetricStatus {
                name: resource.to_string(),
                current: current_value,
            }),
            ..Default::default()
        },
        Some(c) => MetricStatus {
            type_: "ContainerResource".into(),
            container_resource: Some(ContainerResourceMetricStatus {
                name: resource.to_string(),
                container: c.to_string(),
                current: current_value,
            }),
            ..Default::default()
        },
    };
    Ok(Computed {
        replicas: outcome.replicas,
        name,
        status,
    })
}

fn invalid_source(spec: &MetricSpec) -> Failure {
    Failure {
        reason: "InvalidMetricSourceType",
        message: format!("unknown metric source type {:?}", spec.type_),
    }
}

/// Every metric's outcome combined, as kube combines them.
#[derive(Debug, Clone, PartialEq)]
pub enum Proposal {
    /// The largest proposal and the metric that made it; `partial`: some metrics failed
    /// (scaling goes on, the failure is reported).
    Scale {
        replicas: i32,
        metric: String,
        partial: Option<Failure>,
    },
    /// No proposal may be acted on: every metric failed, or those that worked ask for
    /// fewer replicas than there are while others failed.
    Invalid {
        first: Failure,
        invalid: usize,
        total: usize,
    },
}

pub fn combine(results: &[Result<Computed, Failure>], current: i32) -> Proposal {
    let mut best: Option<&Computed> = None;
    let mut first_failure: Option<&Failure> = None;
    let mut invalid = 0usize;
    for r in results {
        match r {
            Ok(c) => {
                if best.is_none_or(|b| c.replicas > b.replicas) {
                    best = Some(c);
                }
            }
            Err(f) => {
                invalid += 1;
                first_failure.get_or_insert(f);
            }
        }
    }
    match (best, first_failure) {
        (Some(b), f) if f.is_none() || b.replicas >= current => Proposal::Scale {
            replicas: b.replicas,
            metric: b.name.clone(),
            partial: f.cloned(),
        },
        (_, f) => Proposal::Invalid {
            first: f.cloned().unwrap_or(Failure {
                reason: "InvalidMetricSourceType",
                message: "no metrics".into(),
            }),
            invalid,
            total: results.len(),
        },
    }
}

#[cfg(test)]
#[path = "compute_tests.rs"]
mod tests;
