//! kube-aggregator's AvailableConditionController, run by every apiserver: each
//! APIService's `Available` condition, from its Service, the Service's endpoints and its
//! backend's discovery answer (`/apis/<group>/<version>`, 2xx within `CHECK`), with
//! kube's reasons (Local, ServiceNotFound, MissingEndpoints, FailedDiscoveryCheck,
//! Passed). Looks every `RESYNC` and when an APIService changes; writes only a changed
//! condition, so replicas that agree do not write, and ones that race meet a conflict.

use std::sync::Arc;
use std::time::Duration;

use super::{Aggregator, PREFIX};
use crate::error::ApiError;
use crate::store::cache::follow::Follow;
use crate::store::{Store, Target, Write};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::{
    APIService, APIServiceCondition, APIServiceStatus,
};

const RESYNC: Duration = Duration::from_secs(10);
const CHECK: Duration = Duration::from_secs(5);
const MANAGER: &str = "kube-apiserver";

/// Keeps every APIService's condition until the task is dropped.
pub async fn run(store: Arc<Store>, agg: Arc<Aggregator>) {
    let mut follow = Follow::new(PREFIX);
    loop {
        follow.subscribe(&store.cache);
        if let Err(e) = reconcile_all(&store, &agg).await {
            tracing::debug!(error = %e, "apiservices: will retry");
        }
        // Its own status writes come back as events too: the pass after them writes nothing.
        follow.changed(RESYNC).await;
    }
}

async fn reconcile_all(store: &Store, agg: &Aggregator) -> Result<(), ApiError> {
    let Some((objs, _)) = store.cache.list(PREFIX) else {
        return Ok(());
    };
    for o in objs {
        let Ok(a) = serde_json::from_slice::<APIService>(&o.json) else {
            continue;
        };
        let (status, reason, message) = check(agg, &a).await;
        if let Err(e) = write(store, &a, status, reason, &message).await {
            tracing::debug!(apiservice = ?a.metadata.name, error = %e, "apiservice status: will retry");
        }
    }
    Ok(())
}

/// The condition `a` should have now.
pub async fn check(agg: &Aggregator, a: &APIService) -> (&'static str, &'static str, String) {
    let Some(s) = a.spec.as_ref().and_then(|s| s.service.as_ref()) else {
        return (
            "True",
            "Local",
            "Local APIServices are always available".into(),
        );
    };
    let (ns, name) = (
        s.namespace.as_deref().unwrap_or(""),
        s.name.as_deref().unwrap_or(""),
    );
    let key = crate::store::object_key("services", Some(ns), name);
    if agg.cache().get(&key).is_none() {
        return (
            "False",
            "ServiceNotFound",
            format!("service/{name} in \"{ns}\" is not present"),
        );
    }
    let spec = a.spec.as_ref();
    let Some(b) = agg.find(
        spec.and_then(|s| s.group.as_deref()).unwrap_or(""),
        spec.and_then(|s| s.version.as_deref()).unwrap_or(""),
    ) else {
        return (
            "False",
            "ServiceNotFound",
            "the APIService is not served yet".into(),
        );
    };
    let endpoint = crate::webhook::call::service_endpoint(agg.cache(), ns, name, b.port);
    let Ok((ip, port)) = endpoint else {
        return (
            "False",
            "MissingEndpoints",
            format!(
                "endpoints for service/{name} in \"{ns}\" have no addresses with port name \"\""
            ),
        );
    };
    let path = format!("/apis/{}/{}", b.group, b.version);
    let failed = |e: String| {
        (
            "False",
            "FailedDiscoveryCheck",
            format!("failing or missing response from https://{ip}:{port}{path}: {e}"),
        )
    };
    match tokio::time::timeout(CHECK, super::proxy::get(agg, &b, &path, 1 << 20)).await {
        Ok(Ok((st, _))) if st.is_success() => ("True", "Passed", "all checks passed".into()),
        Ok(Ok((st, _))) => failed(format!(
            "bad status from https://{ip}:{port}{path}: {}",
            st.as_u16()
        )),
        Ok(Err(e)) => failed(e),
        Err(_) => failed("Get: context deadline exceeded".into()),
    }
}

async fn write(
    store: &Store,
    a: &APIService,
    status: &str,
    reason: &str,
    message: &str,
) -> Result<(), ApiError> {
    let old = a
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Available"));
    if old.is_some_and(|c| {
        c.status == status
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
    }) {
        return Ok(());
    }
    let now = crate::store::now();
    let since = match old {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Some(now),
    };
    let mut next = a.clone();
    let mut conditions: Vec<APIServiceCondition> = a
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != "Available")
        .collect();
    conditions.push(APIServiceCondition {
        type_: "Available".into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: since,
    });
    next.status = Some(APIServiceStatus {
        conditions: Some(conditions),
    });
    let kind = store
        .kinds
        .find("apiregistration.k8s.io", "v1", "apiservices")
        .ok_or(ApiError::NoRoute)?;
    let t = Target {
        kind,
        namespace: None,
        name: a.metadata.name.clone(),
    };
    let body = serde_json::to_vec(&next).unwrap_or_default();
    store
        .update(&t, &body, Some("status"), &Write::new(MANAGER, false))
        .await?;
    if status == "True" || old.is_some_and(|c| c.status == "True") {
        tracing::info!(apiservice = ?a.metadata.name, status, reason, "apiservice availability");
    }
    Ok(())
}
