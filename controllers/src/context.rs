//! What every controller gets: the client, the shared informers, an event recorder, and
//! helpers for the object relations controllers share (owner references, pod readiness).

use std::sync::Arc;

use component_base::events::Recorder;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::Api;

use crate::informer::Informer;

/// One informer per kind, shared by all controllers.
pub struct Informers {
    pub pods: Arc<Informer<Pod>>,
    pub replicasets: Arc<Informer<ReplicaSet>>,
    pub deployments: Arc<Informer<Deployment>>,
    pub namespaces: Arc<Informer<Namespace>>,
    pub serviceaccounts: Arc<Informer<ServiceAccount>>,
    pub nodes: Arc<Informer<Node>>,
    pub services: Arc<Informer<Service>>,
    pub node_leases: Arc<Informer<Lease>>,
}

impl Informers {
    pub fn new(client: &kube::Client) -> Self {
        Self {
            pods: Informer::new(Api::all(client.clone())),
            replicasets: Informer::new(Api::all(client.clone())),
            deployments: Informer::new(Api::all(client.clone())),
            namespaces: Informer::new(Api::all(client.clone())),
            serviceaccounts: Informer::new(Api::all(client.clone())),
            nodes: Informer::new(Api::all(client.clone())),
            services: Informer::new(Api::all(client.clone())),
            node_leases: Informer::new(Api::namespaced(client.clone(), "kube-node-lease")),
        }
    }

    /// Starts every informer in `tasks`.
    pub fn start(&self, tasks: &mut tokio::task::JoinSet<()>) {
        tasks.spawn(self.pods.clone().run());
        tasks.spawn(self.replicasets.clone().run());
        tasks.spawn(self.deployments.clone().run());
        tasks.spawn(self.namespaces.clone().run());
        tasks.spawn(self.serviceaccounts.clone().run());
        tasks.spawn(self.nodes.clone().run());
        tasks.spawn(self.services.clone().run());
        tasks.spawn(self.node_leases.clone().run());
    }
}

pub struct Context {
    pub client: kube::Client,
    pub informers: Informers,
    pub recorder: Recorder,
}

/// A namespaced object's queue key.
pub type Key = (String, String);

pub fn key_of<K: kube::Resource>(o: &K) -> Key {
    (
        o.meta().namespace.clone().unwrap_or_default(),
        o.meta().name.clone().unwrap_or_default(),
    )
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

/// Ready for at least `min_ready_seconds` at `now`.
pub fn pod_available(p: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    ready_since(p).is_some_and(|since| {
        min_ready_seconds <= 0
            || since + jiff::SignedDuration::from_secs(i64::from(min_ready_seconds)) <= now
    })
}
