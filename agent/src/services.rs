//! The agent's view of every Service (the kubelet's service lister), for the Service
//! variables of containers' environments (`service_env.rs`): one watch per agent
//! process, shared by all its nodes, each Service cut down to its name, cluster IP and
//! ports.
//!
//! Contract: no container is given an environment before the first list is in (the
//! kubelet refuses too: "services have not yet been read at least once"); after that a
//! container gets the Services as the watch last saw them.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;

/// How long a container start waits for the first list before it fails (and is retried).
const FIRST_LIST_WAIT: Duration = Duration::from_secs(10);

/// Keeps only what the environment reads.
fn trim(s: &mut Service) {
    let meta = &mut s.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.labels = None;
    meta.owner_references = None;
    s.status = None;
    s.spec = s.spec.take().map(|spec| ServiceSpec {
        cluster_ip: spec.cluster_ip,
        ports: spec.ports,
        ..Default::default()
    });
}

/// The store, and the task that fills it (runs until dropped).
pub fn follow(client: kube::Client) -> (Store<Service>, impl std::future::Future<Output = ()>) {
    let (store, writer) = reflector::store::<Service>();
    let task = async move {
        let stream = watcher(Api::<Service>::all(client), watcher::Config::default())
            .default_backoff()
            .modify(trim);
        let mut stream = reflector::reflector(writer, stream).boxed();
        while let Some(ev) = stream.next().await {
            if let Err(e) = ev {
                tracing::warn!(error = %e, "watching Services for container environments");
            }
        }
    };
    (store, task)
}

/// Every Service, once the first list is in.
pub async fn all(store: &Store<Service>) -> Result<Vec<Arc<Service>>, String> {
    match tokio::time::timeout(FIRST_LIST_WAIT, store.wait_until_ready()).await {
        Ok(Ok(())) => Ok(store.state()),
        _ => Err("services have not yet been read at least once, cannot construct envvars".into()),
    }
}
