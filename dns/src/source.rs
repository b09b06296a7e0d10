//! The zone's data: kube-rs reflectors over Services and EndpointSlices in all namespaces,
//! and the task that rebuilds the [`Zone`] from them and publishes it.
//!
//! With `--pods verified` Pods are followed too.
//!
//! Contract: nothing is published before every followed kind is listed once (the handler
//! answers cluster names SERVFAIL until then); after that every change is reflected by a
//! rebuild of the whole zone from the stores (changes arriving during a rebuild coalesce
//! into one more), and readers switch from one complete zone to the next atomically.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, PodStatus, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use serde::de::DeserializeOwned;
use tokio::sync::{watch, Notify};

use crate::config::PodMode;
use crate::zone::{Params, Zone};

/// Follows one kind into `writer`, each object cut down by `trim` to what the zone reads
/// before it is stored, waking `changed` on every change and relist.
async fn follow<K>(api: Api<K>, writer: Writer<K>, changed: Arc<Notify>, trim: fn(&mut K))
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(trim);
    let mut stream = reflector::reflector(writer, stream).boxed();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init | Event::InitApply(_)) => {}
            Ok(Event::Apply(_) | Event::Delete(_) | Event::InitDone) => changed.notify_one(),
            Err(e) => {
                tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying")
            }
        }
    }
}

/// What every kind drops: the zone reads names, namespaces and (for slices) labels only,
/// and managed fields and annotations (a last-applied configuration) are most of an
/// object's size.
fn trim_meta<K: kube::Resource>(o: &mut K) {
    let meta = o.meta_mut();
    meta.managed_fields = None;
    meta.annotations = None;
    meta.owner_references = None;
}

fn trim_service(s: &mut Service) {
    trim_meta(s);
    s.metadata.labels = None;
    s.status = None;
}

fn trim_slice(s: &mut EndpointSlice) {
    trim_meta(s);
}

/// A pod keeps its addresses only (`--pods verified` checks an IP belongs to a pod).
fn trim_pod(p: &mut Pod) {
    trim_meta(p);
    p.metadata.labels = None;
    p.spec = None;
    p.status = p.status.take().map(|s| PodStatus {
        pod_ip: s.pod_ip,
        pod_ips: s.pod_ips,
        ..Default::default()
    });
}

/// Runs the reflectors and publishes a new zone into `tx` after every change, until the
/// task is dropped.
pub async fn run(client: kube::Client, params: Params, tx: watch::Sender<Option<Arc<Zone>>>) {
    let (services, sw) = reflector::store::<Service>();
    let (slices, ew) = reflector::store::<EndpointSlice>();
    let changed = Arc::new(Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(follow(
        Api::<Service>::all(client.clone()),
        sw,
        changed.clone(),
        trim_service,
    ));
    tasks.spawn(follow(
        Api::<EndpointSlice>::all(client.clone()),
        ew,
        changed.clone(),
        trim_slice,
    ));
    // Pods only for `--pods verified`: other modes never hold every pod in memory.
    let (pods, pw) = reflector::store::<Pod>();
    let verified = params.pods == PodMode::Verified;
    if verified {
        tasks.spawn(follow(
            Api::<Pod>::all(client),
            pw,
            changed.clone(),
            trim_pod,
        ));
    } else {
        drop(pw);
    }
    let ready = async {
        let (a, b) = tokio::join!(services.wait_until_ready(), slices.wait_until_ready());
        let c = !verified || pods.wait_until_ready().await.is_ok();
        a.is_ok() && b.is_ok() && c
    };
    if !ready.await {
        return;
    }
    tracing::info!(
        services = services.state().len(),
        slices = slices.state().len(),
        "listed Services and EndpointSlices; answering the cluster zone"
    );
    loop {
        let mut p = params.clone();
        p.serial = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u32::try_from(d.as_secs() % (1u64 << 32)).unwrap_or(0))
            .unwrap_or(0);
        let mut zone = Zone::build(&p, &services.state(), &slices.state());
        if verified {
            zone = zone.with_pods(&pods.state());
        }
        tracing::debug!(names = zone.len(), "zone rebuilt");
        tx.send_replace(Some(Arc::new(zone)));
        changed.notified().await;
    }
}
