//! kube's replica calculator for Resource and ContainerResource metrics
//! (`GetResourceReplicas`), pure: from the target's pods, their usage and their requests,
//! how many replicas bring the average utilization to its target.
//!
//! Pods are grouped as kube groups them: deleted and Failed pods are ignored; Pending pods
//! are unready; pods without a metric are missing; for CPU, a pod is also unready while
//! not Ready, within its first 5 min when its sample predates a full window since its
//! last readiness change, or when it never became Ready within 30 s of starting. Unready
//! pods' and missing pods' metrics are left out of the first ratio; if the result is
//! within the tolerance (0.1) of 1 nothing changes; otherwise missing pods count as 0 on a
//! scale-up and as their full request (or the target, above 100%) on a scale-down,
//! unready pods as 0 on a scale-up, and a recomputed ratio that crosses 1 or lands in the
//! tolerance keeps the current count.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use flotilla_core::quantity;
use k8s_openapi::api::core::v1::Pod;

pub const TOLERANCE: f64 = 0.1;
pub const CPU_INITIALIZATION_PERIOD: Duration = Duration::from_secs(300);
pub const INITIAL_READINESS_DELAY: Duration = Duration::from_secs(30);

/// A pod's usage sample: millicores for `cpu`, bytes for `memory`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric {
    pub value: i64,
    pub timestamp: jiff::Timestamp,
    pub window: Duration,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoMetrics,
    #[error("missing request for {resource} in container {container} of Pod {pod}")]
    MissingRequest {
        resource: String,
        container: String,
        pod: String,
    },
    #[error("no metrics returned matched known pods")]
    NoMatchingMetrics,
}

/// What the calculator found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub replicas: i32,
    /// The average utilization in percent of the request (before filling in missing and
    /// unready pods).
    pub utilization: i32,
    /// The average raw usage per pod.
    pub raw: i64,
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

/// The pod's request for `resource` (in the metric's unit): the sum over its containers
/// (or only `container`) and its restartable init containers, as kube's
/// `calculatePodRequests`; a container without the request is an error.
fn request(p: &Pod, resource: &str, container: Option<&str>) -> Result<i64, Error> {
    let Some(spec) = p.spec.as_ref() else {
        return Ok(0);
    };
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    let mut total = 0i64;
    for c in spec.containers.iter().chain(sidecars) {
        if container.is_some_and(|n| n != c.name) {
            continue;
        }
        let q = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(resource));
        let v = q.and_then(|q| {
            if resource == "cpu" {
                quantity::saturating_milli(&q.0)
            } else {
                quantity::saturating_units(&q.0)
            }
        });
        match v {
            Some(v) => total = total.saturating_add(v),
            None => {
                return Err(Error::MissingRequest {
                    resource: resource.to_string(),
                    container: c.name.clone(),
                    pod: name(p),
                })
            }
        }
    }
    Ok(total)
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

struct Groups {
    ready: usize,
    unready: BTreeSet<String>,
    missing: BTreeSet<String>,
    ignored: BTreeSet<String>,
}

fn after(t: jiff::Timestamp, d: Duration) -> jiff::Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(jiff::Timestamp::MAX)
}

fn group(
    pods: &[&Pod],
    metrics: &BTreeMap<String, Metric>,
    cpu: bool,
    now: jiff::Timestamp,
) -> Groups {
    let mut g = Groups {
        ready: 0,
        unready: BTreeSet::new(),
        missing: BTreeSet::new(),
        ignored: BTreeSet::new(),
    };
    for p in pods {
        let n = name(p);
        if p.metadata.deletion_timestamp.is_some() || phase(p) == "Failed" {
            g.ignored.insert(n);
            continue;
        }
        if phase(p) == "Pending" {
            g.unready.insert(n);
            continue;
        }
        let Some(m) = metrics.get(&n) else {
            g.missing.insert(n);
            continue;
        };
        if cpu {
            let st = p.status.as_ref();
            let cond = st
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
            let start = st.and_then(|s| s.start_time.as_ref()).map(|t| t.0);
            let unready = match (cond, start) {
                (Some(c), Some(start)) => {
                    let changed = c
                        .last_transition_time
                        .as_ref()
                        .map(|t| t.0)
                        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                    if after(start, CPU_INITIALIZATION_PERIOD) > now {
                        c.status == "False" || m.timestamp < after(changed, m.window)
                    } else {
                        c.status == "False" && after(start, INITIAL_READINESS_DELAY) > changed
                    }
                }
                _ => true,
            };
            if unready {
                g.unready.insert(n);
                continue;
            }
        }
        g.ready += 1;
    }
    g
}

/// kube's GetResourceUtilizationRatio: (ratio, utilization %, raw average).
fn ratio(
    metrics: &BTreeMap<String, i64>,
    requests: &BTreeMap<String, i64>,
    target: i32,
) -> Result<(f64, i32, i64), Error> {
    let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
    for (pod, v) in metrics {
        let Some(r) = requests.get(pod) else { continue };
        used = used.saturating_add(*v);
        requested = requested.saturating_add(*r);
        n += 1;
    }
    if requested == 0 || n == 0 {
        return Err(Error::NoMatchingMetrics);
    }
    let utilization = i32::try_from(used.saturating_mul(100) / requested).unwrap_or(i32::MAX);
    Ok((
        f64::from(utilization) / f64::from(target.max(1)),
        utilization,
        used / n,
    ))
}

fn ceil_replicas(x: f64) -> i32 {
    let c = x.ceil();
    if c.is_nan() || c < 0.0 {
        0
    } else if c > f64::from(i32::MAX) {
        i32::MAX
    } else {
        c as i32
    }
}

/// The replicas for a Resource (or, with `container`, ContainerResource) metric of
/// `resource` (`cpu`, `memory`) with a target average utilization in percent.
pub fn resource_replicas(
    current: i32,
    target_utilization: i32,
    resource: &str,
    container: Option<&str>,
    pods: &[&Pod],
    metrics: &BTreeMap<String, Metric>,
    now: jiff::Timestamp,
) -> Result<Outcome, Error> {
    if pods.is_empty() {
        return Err(Error::NoPods);
    }
    let mut requests = BTreeMap::new();
    for p in pods {
        requests.insert(name(p), request(p, resource, container)?);
    }
    calc(
        current,
        target_utilization,
        resource == "cpu",
        pods,
        metrics,
        &requests,
        now,
    )
}

/// The replicas for a Resource or ContainerResource metric with a target average value
/// (kube's `GetRawResourceReplicas`): the same grouping and filling in, with the ratio of
/// the average usage to the target, which is a utilization of a request equal to the
/// target. `target` is in the metric's unit (millicores, bytes).
pub fn average_value_replicas(
    current: i32,
    target: i64,
    resource: &str,
    pods: &[&Pod],
    metrics: &BTreeMap<String, Metric>,
    now: jiff::Timestamp,
) -> Result<Outcome, Error> {
    if pods.is_empty() {
        return Err(Error::NoPods);
    }
    let requests = pods.iter().map(|p| (name(p), target.max(1))).collect();
    calc(
        current,
        100,
        resource == "cpu",
        pods,
        metrics,
        &requests,
        now,
    )
}

fn calc(
    current: i32,
    target_utilization: i32,
    cpu: bool,
    pods: &[&Pod],
    metrics: &BTreeMap<String, Metric>,
    requests: &BTreeMap<String, i64>,
    now: jiff::Timestamp,
) -> Result<Outcome, Error> {
    let g = group(pods, metrics, cpu, now);
    let mut usage: BTreeMap<String, i64> = metrics
        .iter()
        .filter(|(n, _)| !g.ignored.contains(*n) && !g.unready.contains(*n))
        .map(|(n, m)| (n.clone(), m.value))
        .collect();
    if usage.is_empty() {
        return Err(Error::NoMetrics);
    }
    let (r, utilization, raw) = ratio(&usage, requests, target_utilization)?;
    let keep = Outcome {
        replicas: current,
        utilization,
        raw,
    };
    let up_with_unready = !g.unready.is_empty() && r > 1.0;
    if !up_with_unready && g.missing.is_empty() {
        if (1.0 - r).abs() <= TOLERANCE {
            return Ok(keep);
        }
        return Ok(Outcome {
            replicas: ceil_replicas(r * g.ready as f64),
            ..keep
        });
    }
    if r < 1.0 {
        let fallback = i64::from(target_utilization.max(100));
        for p in &g.missing {
            let req = requests.get(p).copied().unwrap_or(0);
            usage.insert(p.clone(), req.saturating_mul(fallback) / 100);
        }
    } else if r > 1.0 {
        for p in &g.missing {
            usage.insert(p.clone(), 0);
        }
    }
    if up_with_unready {
        for p in &g.unready {
            usage.insert(p.clone(), 0);
        }
    }
    let (nr, _, _) = ratio(&usage, requests, target_utilization)?;
    if (1.0 - nr).abs() <= TOLERANCE || (r < 1.0 && nr > 1.0) || (r > 1.0 && nr < 1.0) {
        return Ok(keep);
    }
    let replicas = ceil_replicas(nr * usage.len() as f64);
    if (nr < 1.0 && replicas > current) || (nr > 1.0 && replicas < current) {
        return Ok(keep);
    }
    Ok(Outcome { replicas, ..keep })
}

#[cfg(test)]
#[path = "replicas_tests.rs"]
mod tests;
