//! What every controller gets: its client, the shared informers, an event recorder, the
//! configuration, and helpers for the object relations controllers share (owner
//! references, pod readiness).

use std::sync::Arc;

use component_base::events::Recorder;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::config::ControllerManagerConfig;
use crate::informer::Informers;

/// One controller's view of the controller-manager.
pub struct Context {
    /// The controller's own client: its first account's credentials with
    /// `--use-service-account-credentials`, else the controller-manager's.
    pub client: kube::Client,
    /// A client per account of the controller's registration, in its order (the first
    /// is `client`).
    pub clients: Vec<(&'static str, kube::Client)>,
    /// Shared by every controller, over the controller-manager's own client; only the
    /// informers some running controller declared.
    pub informers: Arc<Informers>,
    /// Records as the controller's first account's name (`deployment-controller`), with
    /// its client.
    pub recorder: Recorder,
    pub config: ControllerManagerConfig,
    /// Who acts, under which lease term: pods the controllers create record it
    /// ([`CREATED_BY`]).
    pub term: component_base::leaderelection::Term,
}

/// The annotation on every pod a controller creates: `<replica identity>@<revision of its
/// lease acquisition>` (the identity alone without leader election), so whoever reads the
/// pods' history can tell which replica created each, under which term.
pub const CREATED_BY: &str = "controller.flotilla.io/created-by";

impl Context {
    /// The client acting as `account`, one of the controller's registration's accounts
    /// (the controller's own client for any other).
    pub fn client_as(&self, account: &str) -> &kube::Client {
        self.clients
            .iter()
            .find(|(a, _)| *a == account)
            .map_or(&self.client, |(_, c)| c)
    }
}

/// A namespaced object's queue key.
pub type Key = (String, String);

pub fn key_of<K: kube::Resource>(o: &K) -> Key {
    (
        o.meta().namespace.clone().unwrap_or_default(),
        o.meta().name.clone().unwrap_or_default(),
    )
}

/// Whether an owner reference names a `K` (its kind, and its group in any version).
pub fn refers_to<K: kube::Resource<DynamicType = ()>>(r: &OwnerReference) -> bool {
    let group = r.api_version.rsplit_once('/').map_or("", |(g, _)| g);
    r.kind == K::kind(&()) && group == K::group(&())
}

/// The owner reference with `controller: true`, if any.
pub fn controller_of<K: kube::Resource>(o: &K) -> Option<&OwnerReference> {
    o.meta()
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// An owner reference making `owner` the controller of what carries it.
pub fn controller_ref<K: kube::Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Now, as an API timestamp.
pub fn now_time() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now())
}

/// A pod counts towards its owner's replicas: not finished and not being deleted.
pub fn pod_active(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && !matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded") | Some("Failed")
        )
}

/// The time since which the pod has been Ready, if it is.
pub fn ready_since(p: &Pod) -> Option<jiff::Timestamp> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        })
}

/// Ready for at least `min_ready_seconds` at `now`. A pod whose readiness (any time a
/// client wrote, up to the year 9999) plus `minReadySeconds` is past the end of time never
/// is.
pub fn pod_available(p: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    ready_since(p).is_some_and(|since| {
        min_ready_seconds <= 0
            || since
                .checked_add(jiff::SignedDuration::from_secs(i64::from(
                    min_ready_seconds,
                )))
                .is_ok_and(|at| at <= now)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ready_at(t: jiff::Timestamp) -> Pod {
        Pod {
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(t)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_readiness_near_the_end_of_time_with_min_ready_seconds_does_not_overflow() {
        let now = jiff::Timestamp::from_second(1_000_000).unwrap();
        let last = ready_at(jiff::Timestamp::MAX);
        assert!(!pod_available(&last, i32::MAX, now));
        assert!(!pod_available(&last, 1, now));
        assert!(
            pod_available(&last, 0, now),
            "no minReadySeconds: ready is available"
        );
        let early = ready_at(jiff::Timestamp::MIN);
        assert!(pod_available(&early, i32::MAX, now));
        assert!(!pod_available(&ready_at(now), 10, now));
        assert!(pod_available(
            &ready_at(now),
            10,
            now + jiff::SignedDuration::from_secs(10)
        ));
    }
}
