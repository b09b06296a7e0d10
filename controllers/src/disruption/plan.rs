//! The disruption controller's arithmetic, as kube's `pkg/controller/disruption`: which
//! pods a budget covers, how many it expects and needs healthy, which evictions it still
//! waits for, and the status that follows. Pure over the budget, its pods, the scales of
//! their controllers and the time.

use std::collections::{BTreeMap, HashMap};

use flotilla_core::labels;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// How long an evicted pod may take to be marked deleted before the budget counts it
/// again (kube's `DeletionTimeout`).
pub const DELETION_TIMEOUT: jiff::SignedDuration = jiff::SignedDuration::from_secs(120);

/// The scale of a pod's controller, found by the controller's UID in the pod's
/// controller reference: the UID of the object whose replicas count (a Deployment for
/// the pods of its ReplicaSets) and those replicas.
pub type Scales = HashMap<String, (String, i32)>;

/// What a budget expects: how many pods there should be, how many must be healthy, and
/// the pods no controller owns (they make percentages meaningless).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expected {
    pub expected: i32,
    pub desired_healthy: i32,
    pub unmanaged: Vec<String>,
}

/// Whether the budget's arithmetic needs the scales of the pods' controllers (anything
/// but an integer minAvailable).
pub fn needs_scales(pdb: &PodDisruptionBudget) -> bool {
    let Some(spec) = &pdb.spec else { return false };
    spec.max_unavailable.is_some() || matches!(spec.min_available, Some(IntOrString::String(_)))
}

/// The pods the budget covers: its selector over the namespace's pods (an empty selector
/// covers all, none covers none).
pub fn covered<'a>(
    pdb: &PodDisruptionBudget,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> Vec<&'a Pod> {
    let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return vec![];
    };
    let ns = pdb.metadata.namespace.as_deref();
    let none = BTreeMap::new();
    pods.into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == ns)
        .filter(|p| labels::matches(sel, p.metadata.labels.as_ref().unwrap_or(&none)))
        .collect()
}

/// `intstr.GetScaledValueFromIntOrPercent(v, total, roundUp=true)`.
pub fn scaled(v: &IntOrString, total: i32) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let v = pct
                .saturating_mul(i64::from(total))
                .saturating_add(99)
                .div_euclid(100);
            Ok(i32::try_from(v).unwrap_or(i32::MAX))
        }
    }
}

/// The sum of the distinct controllers' scales over the pods (kube's `getExpectedScale`).
fn expected_scale(pods: &[&Pod], scales: &Scales) -> Result<(i32, Vec<String>), String> {
    let mut seen: HashMap<&str, i32> = HashMap::new();
    let mut unmanaged = Vec::new();
    for p in pods {
        let name = p.metadata.name.clone().unwrap_or_default();
        let Some(r) = p
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
        else {
            unmanaged.push(name);
            continue;
        };
        match scales.get(&r.uid) {
            Some((uid, n)) => {
                seen.insert(uid, *n);
            }
            None => return Err(format!("found no controllers for pod {name:?}")),
        }
    }
    let total = seen.values().fold(0i32, |a, n| a.saturating_add(*n));
    Ok((total, unmanaged))
}

/// kube's `getExpectedPodCount`.
pub fn expected(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    scales: &Scales,
) -> Result<Expected, String> {
    let spec = pdb.spec.clone().unwrap_or_default();
    if let Some(max) = &spec.max_unavailable {
        let (expected, unmanaged) = expected_scale(pods, scales)?;
        let max = scaled(max, expected)?;
        return Ok(Expected {
            expected,
            desired_healthy: expected.saturating_sub(max).max(0),
            unmanaged,
        });
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok(Expected {
            expected: i32::try_from(pods.len()).unwrap_or(i32::MAX),
            desired_healthy: *n,
            unmanaged: vec![],
        }),
        Some(min @ IntOrString::String(_)) => {
            let (expected, unmanaged) = expected_scale(pods, scales)?;
            Ok(Expected {
                expected,
                desired_healthy: scaled(min, expected)?,
                unmanaged,
            })
        }
        None => Ok(Expected::default()),
    }
}

/// When an eviction listed at `at` stops being awaited.
fn expires(at: &Time) -> jiff::Timestamp {
    at.0.saturating_add(DELETION_TIMEOUT)
        .unwrap_or(jiff::Timestamp::MAX)
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The evictions still awaited (kube's `buildDisruptedPodMap`): entries for pods that
/// still exist, are not yet being deleted and were evicted less than
/// [`DELETION_TIMEOUT`] ago; when the earliest of them expires; and the pods whose
/// eviction expired without a delete (each gets a NotDeleted Warning).
pub fn awaited(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    now: jiff::Timestamp,
) -> (BTreeMap<String, Time>, Option<jiff::Timestamp>, Vec<String>) {
    let mut kept = BTreeMap::new();
    let mut recheck: Option<jiff::Timestamp> = None;
    let mut expired = Vec::new();
    let Some(listed) = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref()) else {
        return (kept, recheck, expired);
    };
    for p in pods {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = p.metadata.name.clone().unwrap_or_default();
        let Some(at) = listed.get(&name) else {
            continue;
        };
        let due = expires(at);
        if due < now {
            expired.push(name);
        } else {
            recheck = Some(recheck.map_or(due, |r| r.min(due)));
            kept.insert(name, at.clone());
        }
    }
    (kept, recheck, expired)
}

/// kube's `countHealthyPods`: Ready, not being deleted, not awaiting an eviction.
pub fn healthy(pods: &[&Pod], awaited: &BTreeMap<String, Time>, now: jiff::Timestamp) -> i32 {
    let n = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let name = p.metadata.name.as_deref().unwrap_or("");
            !awaited.get(name).is_some_and(|at| expires(at) > now)
        })
        .filter(|p| ready(p))
        .count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// `meta.SetStatusCondition`: the transition time moves only when the status does.
fn set_condition(conds: &mut Vec<Condition>, mut c: Condition) {
    match conds.iter_mut().find(|o| o.type_ == c.type_) {
        Some(o) => {
            if o.status == c.status {
                c.last_transition_time = o.last_transition_time.clone();
            }
            *o = c;
        }
        None => conds.push(c),
    }
}

fn allowed_condition(status: &PodDisruptionBudgetStatus, now: jiff::Timestamp) -> Condition {
    let (st, reason) = if status.disruptions_allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    Condition {
        type_: "DisruptionAllowed".into(),
        status: st.into(),
        reason: reason.into(),
        message: String::new(),
        observed_generation: status.observed_generation,
        last_transition_time: Time(now),
    }
}

/// kube's `ConditionsAreUpToDate`.
fn conditions_up_to_date(pdb: &PodDisruptionBudget) -> bool {
    let Some(s) = &pdb.status else { return false };
    let Some(c) = s
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionAllowed")
    else {
        return false;
    };
    if s.observed_generation != pdb.metadata.generation {
        return false;
    }
    let (st, reason) = if s.disruptions_allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    c.status == st && c.reason == reason
}

/// kube's `updatePdbStatus`: the status to write, or `None` when the stored one holds.
/// No disruption is allowed while the budget expects no pods, so a budget whose pods
/// just appeared is safe before its first sync.
pub fn status(
    pdb: &PodDisruptionBudget,
    current_healthy: i32,
    e: &Expected,
    awaited: BTreeMap<String, Time>,
    now: jiff::Timestamp,
) -> Option<PodDisruptionBudgetStatus> {
    let mut allowed = current_healthy.saturating_sub(e.desired_healthy);
    if e.expected <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let old = pdb.status.clone().unwrap_or_default();
    let awaited = (!awaited.is_empty()).then_some(awaited);
    let old_awaited = old.disrupted_pods.clone().filter(|m| !m.is_empty());
    if old.current_healthy == current_healthy
        && old.desired_healthy == e.desired_healthy
        && old.expected_pods == e.expected
        && old.disruptions_allowed == allowed
        && old_awaited == awaited
        && old.observed_generation == pdb.metadata.generation
        && conditions_up_to_date(pdb)
    {
        return None;
    }
    let mut s = PodDisruptionBudgetStatus {
        current_healthy,
        desired_healthy: e.desired_healthy,
        expected_pods: e.expected,
        disruptions_allowed: allowed,
        disrupted_pods: awaited,
        observed_generation: pdb.metadata.generation,
        conditions: old.conditions,
    };
    let c = allowed_condition(&s, now);
    set_condition(s.conditions.get_or_insert_with(Vec::new), c);
    Some(s)
}

/// kube's `failSafe`: nothing may be disrupted while the budget cannot be computed; the
/// rest of the status, and its observedGeneration, stay.
pub fn fail_safe(
    pdb: &PodDisruptionBudget,
    err: &str,
    now: jiff::Timestamp,
) -> PodDisruptionBudgetStatus {
    let mut s = pdb.status.clone().unwrap_or_default();
    s.disruptions_allowed = 0;
    let c = Condition {
        type_: "DisruptionAllowed".into(),
        status: "False".into(),
        reason: "SyncFailed".into(),
        message: err.to_string(),
        observed_generation: s.observed_generation,
        last_transition_time: Time(now),
    };
    set_condition(s.conditions.get_or_insert_with(Vec::new), c);
    s
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
