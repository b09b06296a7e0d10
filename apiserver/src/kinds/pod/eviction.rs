//! `pods/<name>/eviction`: a delete that honours the pod's PodDisruptionBudget, as kube's
//! `EvictionREST`. A pod that disrupts nothing (finished, pending, being deleted) is
//! deleted at once; otherwise the one budget that selects it must allow a disruption,
//! which is taken from it (its `disruptionsAllowed` decremented and the pod listed in
//! `disruptedPods`, both checked on a fresh read in one guarded write) before the pod
//! gets condition DisruptionTarget and its delete. A refusal is a 429 whose cause is
//! `DisruptionBudget`; `kubectl drain` retries it.
//!
//! Contract: an eviction never takes the last allowed disruption twice (the decrement is a
//! compare-and-swap on the budget), and never deletes a pod whose readiness changed since
//! it was judged unready (the delete is preconditioned on the resourceVersion judged).

use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::Value;

use crate::error::ApiError;
use crate::http::body::read_object;
use crate::http::ops::{success_status, Call};
use crate::http::{json_response, Body};
use crate::store::{DeleteOptions, ListOptions, Outcome, Preconditions, Store, Target};

/// How many pods a budget may list as disrupted but not yet deleted (kube's
/// `MaxDisruptedPodSize`).
const MAX_DISRUPTED_PODS: usize = 2000;
/// Attempts at the read-decide-write loop when the pod changes under it.
const ATTEMPTS: usize = 5;

/// The subresource's operation: an Eviction in, 201 and a success Status out.
pub(super) fn action<'a>(
    c: &'a Call<'_>,
    req: Request<Incoming>,
) -> BoxFuture<'a, Result<Response<Body>, ApiError>> {
    Box::pin(async move {
        let body = read_object(req).await?;
        let mut opts = eviction_options(&c.target, &body)?;
        if let Some(d) = c.query.get("dryRun") {
            if !opts.dry_run.contains(d) {
                opts.dry_run.push(d.clone());
            }
        }
        let budgets = c
            .shared
            .kinds
            .find("policy", "v1", "poddisruptionbudgets")
            .ok_or_else(|| ApiError::Internal("poddisruptionbudgets are not served".into()))?;
        let budgets = Target {
            kind: budgets,
            namespace: c.target.namespace.clone(),
            name: None,
        };
        evict(&c.shared.store, &c.target, &budgets, opts).await?;
        Ok(json_response(StatusCode::CREATED, success_status()))
    })
}

/// The Eviction's delete options, once its name and namespace are the URL's.
fn eviction_options(t: &Target, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("Eviction: {e}")))?;
    let api_version = v["apiVersion"].as_str().unwrap_or("");
    if !matches!(api_version, "policy/v1" | "policy/v1beta1" | "") {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({api_version}) does not match the expected API version (policy/v1)"
        )));
    }
    if v["kind"].as_str().is_some_and(|k| k != "Eviction") {
        return Err(ApiError::BadRequest(format!(
            "not a Eviction object: {}",
            v["kind"]
        )));
    }
    if v["metadata"]["name"].as_str() != Some(t.name()) {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Eviction object".into(),
        ));
    }
    if let Some(ns) = v["metadata"]["namespace"]
        .as_str()
        .filter(|ns| !ns.is_empty())
    {
        if Some(ns) != t.namespace.as_deref() {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
    }
    match &v["deleteOptions"] {
        Value::Null => Ok(DeleteOptions::default()),
        o => serde_json::from_value(o.clone())
            .map_err(|e| ApiError::BadRequest(format!("Eviction.deleteOptions: {e}"))),
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Evicting it disrupts nothing: it has finished, has not started, or is already going.
pub fn can_ignore_budget(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed" | "Pending")
        || pod.metadata.deletion_timestamp.is_some()
}

/// The delete must be of the pod as judged: it could become Ready meanwhile.
fn should_enforce_rv(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

pub fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The budgets that select the pod. In policy/v1 an empty selector selects every pod of
/// the namespace; no selector, or one that does not parse, selects none.
pub fn matching<'a>(budgets: &'a [PodDisruptionBudget], pod: &Pod) -> Vec<&'a PodDisruptionBudget> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    budgets
        .iter()
        .filter(|b| {
            let Some(sel) = b.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
                return false;
            };
            crate::selector::LabelSelector::from_api(sel).is_ok_and(|s| s.matches(&labels))
        })
        .collect()
}

/// An unready pod the budget lets go without taking a disruption: its policy is
/// AlwaysAllow, or (IfHealthyBudget, the default) the application is healthy enough.
pub fn unhealthy_may_go(budget: &PodDisruptionBudget) -> bool {
    let policy = budget
        .spec
        .as_ref()
        .and_then(|s| s.unhealthy_pod_eviction_policy.as_deref());
    if policy == Some("AlwaysAllow") {
        return true;
    }
    let s = budget.status.clone().unwrap_or_default();
    s.current_healthy >= s.desired_healthy && s.desired_healthy > 0
}

fn refusal(cause: String, retry_after_seconds: i32) -> ApiError {
    ApiError::TooManyRequestsBecause {
        message: "Cannot evict pod as it would violate the pod's disruption budget.".into(),
        cause_reason: "DisruptionBudget",
        cause,
        retry_after_seconds,
    }
}

/// kube's `createTooManyRequestsError`: come back in 10 s.
fn still_processing(name: &str) -> ApiError {
    refusal(
        format!("The disruption budget {name} is still being processed by the server."),
        10,
    )
}

/// kube's `checkAndDecrement`: takes one disruption from the budget for `pod`, or says
/// why not.
pub fn check_and_decrement(
    budget: &mut PodDisruptionBudget,
    pod: &str,
    now: Time,
    dry_run: bool,
) -> Result<(), ApiError> {
    let name = budget.metadata.name.clone().unwrap_or_default();
    let generation = budget.metadata.generation.unwrap_or(0);
    let status = budget.status.get_or_insert_with(Default::default);
    if status.observed_generation.unwrap_or(0) < generation {
        return Err(still_processing(&name));
    }
    let forbidden = |why: &str| {
        ApiError::Forbidden(format!(
            "poddisruptionbudget.policy \"{name}\" is forbidden: {why}"
        ))
    };
    if status.disruptions_allowed < 0 {
        return Err(forbidden("pdb disruptions allowed is negative"));
    }
    if status.disrupted_pods.as_ref().map_or(0, |d| d.len()) > MAX_DISRUPTED_PODS {
        return Err(forbidden(
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if status.disruptions_allowed == 0 {
        return Err(refusal(
            format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                status.desired_healthy, status.current_healthy
            ),
            0,
        ));
    }
    status.disruptions_allowed -= 1;
    if status.disruptions_allowed == 0 {
        set_disruption_allowed(budget);
    }
    if dry_run {
        return Ok(());
    }
    budget
        .status
        .get_or_insert_with(Default::default)
        .disrupted_pods
        .get_or_insert_with(Default::default)
        .insert(pod.to_string(), now);
    Ok(())
}

/// Condition DisruptionAllowed from `disruptionsAllowed`, as kube's
/// `UpdateDisruptionAllowedCondition` (the transition time moves only with the status).
pub fn set_disruption_allowed(budget: &mut PodDisruptionBudget) {
    let status = budget.status.get_or_insert_with(Default::default);
    let (st, reason) = if status.disruptions_allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    set_condition(
        status.conditions.get_or_insert_with(Vec::new),
        Condition {
            type_: "DisruptionAllowed".into(),
            status: st.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: status.observed_generation,
            last_transition_time: crate::store::now(),
        },
    );
}

/// `meta.SetStatusCondition`: replaces the condition of the same type, keeping its
/// transition time unless its status changed.
pub fn set_condition(conds: &mut Vec<Condition>, mut c: Condition) {
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

fn decode<T: serde::de::DeserializeOwned>(v: &Value, what: &str) -> Result<T, ApiError> {
    serde_json::from_value(v.clone())
        .map_err(|e| ApiError::Internal(format!("stored {what} does not decode: {e}")))
}

fn encode<T: serde::Serialize>(o: &T) -> Result<Value, ApiError> {
    serde_json::to_value(o).map_err(|e| ApiError::Internal(e.to_string()))
}

/// `EvictionREST.Create` over the store.
async fn evict(
    store: &Store,
    pods: &Target,
    budgets: &Target,
    opts: DeleteOptions,
) -> Result<(), ApiError> {
    let dry_run = opts.dry_run.iter().any(|d| d == "All");
    let rv_given = opts
        .preconditions
        .as_ref()
        .is_some_and(|p| p.resource_version.is_some());
    let mut attempt = 0;
    let (pod, rv) = loop {
        attempt += 1;
        let stored = store
            .read(&pods.key())
            .await?
            .ok_or_else(|| pods.not_found())?;
        let pod: Pod = decode(&stored.value, "pod")?;
        if !can_ignore_budget(&pod) {
            break (pod, stored.mod_revision);
        }
        let mut o = opts.clone();
        if should_enforce_rv(&pod) && !rv_given {
            with_rv(&mut o, stored.mod_revision);
        }
        match condition_and_delete(store, pods, o).await {
            Err(ApiError::Conflict { .. }) if !rv_given && attempt < ATTEMPTS => continue,
            r => return r,
        }
    };
    let listed = store.list(budgets, &ListOptions::default()).await?;
    let all: Vec<PodDisruptionBudget> = listed
        .items
        .iter()
        .filter_map(|b| serde_json::from_slice(b).ok())
        .collect();
    let guarding = matching(&all, &pod);
    let budget = match guarding.as_slice() {
        [] => return condition_and_delete(store, pods, opts).await,
        [one] => *one,
        _ => {
            return Err(ApiError::Internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
            ))
        }
    };
    let name = budget.metadata.name.clone().unwrap_or_default();
    if !ready(&pod) && unhealthy_may_go(budget) {
        // It counts for nothing in the budget, as long as it stays unready.
        let mut o = opts;
        with_rv(&mut o, rv);
        return match condition_and_delete(store, pods, o).await {
            Err(ApiError::Conflict { .. }) if !rv_given => Err(still_processing(&name)),
            r => r,
        };
    }
    let target = Target {
        name: budget.metadata.name.clone(),
        ..budgets.clone()
    };
    let pod_name = pods.name().to_string();
    store
        .guarded_update(&target, None, dry_run, |old| {
            let mut b: PodDisruptionBudget = decode(&old.value, "poddisruptionbudget")?;
            check_and_decrement(&mut b, &pod_name, crate::store::now(), dry_run)?;
            Ok(Outcome::Put(encode(&b)?))
        })
        .await?;
    condition_and_delete(store, pods, opts).await
}

/// The delete's preconditions, checked on the write that marks the pod, in kube's words.
fn preconditions_hold(
    t: &Target,
    p: &Preconditions,
    old: &crate::store::Stored,
) -> Result<(), ApiError> {
    let conflict = |message: String| ApiError::Conflict {
        gr: crate::error::GroupResource {
            group: "",
            resource: "Pod",
        },
        name: t.name().to_string(),
        message,
    };
    let uid = old.value["metadata"]["uid"].as_str().unwrap_or("");
    if let Some(want) = p.uid.as_deref().filter(|u| !u.is_empty() && *u != uid) {
        return Err(conflict(format!("the UID in the precondition ({want}) does not match the UID in record ({uid}). The object might have been deleted and then recreated")));
    }
    let rv = old.mod_revision.to_string();
    if let Some(want) = p
        .resource_version
        .as_deref()
        .filter(|r| !r.is_empty() && *r != rv)
    {
        return Err(conflict(format!("the ResourceVersion in the precondition ({want}) does not match the ResourceVersion in record ({rv}). The object might have been modified")));
    }
    Ok(())
}

fn with_rv(o: &mut DeleteOptions, rv: i64) {
    o.preconditions
        .get_or_insert_with(Preconditions::default)
        .resource_version = Some(rv.to_string());
}

/// kube's `addConditionAndDeletePod`: condition DisruptionTarget on the latest pod (under
/// the delete's preconditions), then the delete, its resourceVersion precondition moved
/// to the pod just written.
async fn condition_and_delete(
    store: &Store,
    t: &Target,
    mut opts: DeleteOptions,
) -> Result<(), ApiError> {
    let dry_run = opts.dry_run.iter().any(|d| d == "All");
    if !dry_run {
        let pre = opts.preconditions.clone();
        let written = store
            .guarded_update(t, None, false, |old| {
                if let Some(p) = &pre {
                    preconditions_hold(t, p, old)?;
                }
                let mut pod: Pod = decode(&old.value, "pod")?;
                let conds = pod
                    .status
                    .get_or_insert_with(Default::default)
                    .conditions
                    .get_or_insert_with(Vec::new);
                if conds.iter().any(|c| {
                    c.type_ == "DisruptionTarget"
                        && c.status == "True"
                        && c.reason.as_deref() == Some("EvictionByEvictionAPI")
                }) {
                    return Ok(Outcome::Unchanged);
                }
                conds.retain(|c| c.type_ != "DisruptionTarget");
                conds.push(PodCondition {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                    reason: Some("EvictionByEvictionAPI".into()),
                    message: Some("Eviction API: evicting".into()),
                    last_transition_time: Some(crate::store::now()),
                    ..Default::default()
                });
                Ok(Outcome::Put(encode(&pod)?))
            })
            .await?;
        if let Some(p) = opts
            .preconditions
            .as_mut()
            .filter(|p| p.resource_version.is_some())
        {
            p.resource_version = written["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_string);
        }
    }
    store.delete(t, &opts).await?;
    Ok(())
}

#[cfg(test)]
#[path = "eviction_tests.rs"]
mod tests;
