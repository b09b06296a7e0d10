//! kube's scaling behavior (`normalizeDesiredReplicasWithBehaviors`), pure: a raw
//! recommendation is first stabilized (scale-up takes the lowest recommendation of its
//! window, scale-down the highest of its window: 0 s and 300 s by default), then limited
//! by the rate policies over the scale events of each policy's period (default up: the
//! larger of +4 pods and +100% per 15 s; down: −100% per 15 s) and by min/max replicas.
//! The reasons and messages are kube's, for the AbleToScale and ScalingLimited
//! conditions.

use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerBehavior};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    Max,
    Min,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    Pods,
    Percent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub kind: PolicyKind,
    pub value: i32,
    pub period: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub window: Duration,
    pub select: Select,
    pub policies: Vec<Policy>,
}

fn secs(s: i32) -> Duration {
    Duration::from_secs(u64::try_from(s.max(0)).unwrap_or(0))
}

fn rules(given: Option<&HPAScalingRules>, up: bool) -> Rules {
    let default_policies = if up {
        vec![
            Policy {
                kind: PolicyKind::Pods,
                value: 4,
                period: secs(15),
            },
            Policy {
                kind: PolicyKind::Percent,
                value: 100,
                period: secs(15),
            },
        ]
    } else {
        vec![Policy {
            kind: PolicyKind::Percent,
            value: 100,
            period: secs(15),
        }]
    };
    let select = match given.and_then(|g| g.select_policy.as_deref()) {
        Some("Min") => Select::Min,
        Some("Disabled") => Select::Disabled,
        _ => Select::Max,
    };
    let policies = match given.and_then(|g| g.policies.as_ref()) {
        Some(p) if !p.is_empty() => p
            .iter()
            .map(|p| Policy {
                kind: if p.type_ == "Pods" {
                    PolicyKind::Pods
                } else {
                    PolicyKind::Percent
                },
                value: p.value,
                period: secs(p.period_seconds),
            })
            .collect(),
        _ => default_policies,
    };
    Rules {
        window: secs(
            given
                .and_then(|g| g.stabilization_window_seconds)
                .unwrap_or(if up { 0 } else { 300 }),
        ),
        select,
        policies,
    }
}

/// The (scale-up, scale-down) rules of a behavior, with kube's defaults.
pub fn of(b: Option<&HorizontalPodAutoscalerBehavior>) -> (Rules, Rules) {
    (
        rules(b.and_then(|b| b.scale_up.as_ref()), true),
        rules(b.and_then(|b| b.scale_down.as_ref()), false),
    )
}

/// What one HPA remembers between syncs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Raw recommendations, newest last.
    pub recommendations: Vec<(i32, jiff::Timestamp)>,
    /// Replicas added and removed by the HPA's own scale writes.
    pub ups: Vec<(i32, jiff::Timestamp)>,
    pub downs: Vec<(i32, jiff::Timestamp)>,
}

fn since(now: jiff::Timestamp, t: jiff::Timestamp) -> Duration {
    Duration::try_from(now.duration_since(t)).unwrap_or(Duration::ZERO)
}

fn changed_within(
    events: &[(i32, jiff::Timestamp)],
    period: Duration,
    now: jiff::Timestamp,
) -> i32 {
    events
        .iter()
        .filter(|(_, t)| since(now, *t) < period)
        .fold(0i32, |a, (n, _)| a.saturating_add(*n))
}

impl History {
    /// Records a scale write from `from` to `to` replicas, and forgets events older than
    /// the longest policy period.
    pub fn record_scale(&mut self, from: i32, to: i32, now: jiff::Timestamp, keep: Duration) {
        if to > from {
            self.ups.push((to.saturating_sub(from), now));
        } else if to < from {
            self.downs.push((from.saturating_sub(to), now));
        }
        self.ups.retain(|(_, t)| since(now, *t) <= keep);
        self.downs.retain(|(_, t)| since(now, *t) <= keep);
    }
}

/// The outcome of normalization, with kube's condition reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    pub replicas: i32,
    pub able_reason: &'static str,
    pub able_message: &'static str,
    pub limited: bool,
    pub limited_reason: &'static str,
    pub limited_message: &'static str,
}

/// Stabilizes `desired` (recording it), then applies the rate and min/max limits.
pub fn normalize(
    h: &mut History,
    up: &Rules,
    down: &Rules,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    now: jiff::Timestamp,
) -> Normalized {
    // 1. Stabilization.
    let (mut up_rec, mut down_rec) = (desired, desired);
    for (r, t) in &h.recommendations {
        let age = since(now, *t);
        if age < up.window {
            up_rec = up_rec.min(*r);
        }
        if age < down.window {
            down_rec = down_rec.max(*r);
        }
    }
    let stabilized = current.max(up_rec).min(down_rec);
    let keep = up.window.max(down.window);
    h.recommendations.retain(|(_, t)| since(now, *t) <= keep);
    h.recommendations.push((desired, now));
    let (able_reason, able_message) = if stabilized == desired {
        ("ReadyForNewScale", "recommended size matches current size")
    } else if desired >= current {
        (
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        )
    } else {
        (
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )
    };
    // 2. Rates and bounds.
    let (replicas, reason, message) = limit(h, up, down, current, stabilized, min, max, now);
    Normalized {
        replicas,
        able_reason,
        able_message,
        limited: replicas != stabilized,
        limited_reason: reason,
        limited_message: message,
    }
}

fn period_start(h: &History, current: i32, period: Duration, now: jiff::Timestamp) -> i32 {
    current
        .saturating_sub(changed_within(&h.ups, period, now))
        .saturating_add(changed_within(&h.downs, period, now))
}

fn ceil_i32(x: f64) -> i32 {
    let c = x.ceil();
    if c.is_nan() {
        0
    } else {
        c.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
    }
}

fn floor_i32(x: f64) -> i32 {
    let f = x.trunc();
    if f.is_nan() {
        0
    } else {
        f.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
    }
}

#[allow(clippy::too_many_arguments)]
fn limit(
    h: &History,
    up: &Rules,
    down: &Rules,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    now: jiff::Timestamp,
) -> (i32, &'static str, &'static str) {
    let within = (
        desired,
        "DesiredWithinRange",
        "the desired count is within the acceptable range",
    );
    if desired > current {
        let mut limit = match up.select {
            Select::Disabled => current,
            s => {
                let proposals = up.policies.iter().map(|p| {
                    let start = period_start(h, current, p.period, now);
                    match p.kind {
                        PolicyKind::Pods => start.saturating_add(p.value),
                        PolicyKind::Percent => {
                            ceil_i32(f64::from(start) * (1.0 + f64::from(p.value) / 100.0))
                        }
                    }
                });
                if s == Select::Min {
                    proposals.min()
                } else {
                    proposals.max()
                }
                .unwrap_or(current)
            }
        };
        limit = limit.max(current);
        let (allowed, reason, message) = if max > limit {
            (
                limit,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            )
        } else {
            (
                max,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )
        };
        if desired > allowed {
            return (allowed, reason, message);
        }
    } else if desired < current {
        let mut limit = match down.select {
            Select::Disabled => current,
            s => {
                let proposals = down.policies.iter().map(|p| {
                    let start = period_start(h, current, p.period, now);
                    match p.kind {
                        PolicyKind::Pods => start.saturating_sub(p.value),
                        PolicyKind::Percent => {
                            floor_i32(f64::from(start) * (1.0 - f64::from(p.value) / 100.0))
                        }
                    }
                });
                if s == Select::Min {
                    proposals.max()
                } else {
                    proposals.min()
                }
                .unwrap_or(current)
            }
        };
        limit = limit.min(current);
        let (allowed, reason, message) = if min < limit {
            (
                limit,
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            )
        } else {
            (
                min,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )
        };
        if desired < allowed {
            return (allowed, reason, message);
        }
    }
    within
}

#[cfg(test)]
#[path = "behavior_tests.rs"]
mod tests;
