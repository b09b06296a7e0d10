//! Records core/v1 Events about objects, as client-go's event recorder does: what
//! `kubectl describe` and `kubectl get events` show.
//!
//! Recording never blocks the caller: events go through a bounded queue to one sender
//! task, and are dropped (and counted) when the queue is full, so a flood of events cannot
//! slow down the work that produces them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, PostParams};
use tokio::sync::mpsc;

const QUEUE: usize = 1000;
/// One sender: events are best effort and yield to the work that produces them.
const SENDERS: usize = 1;

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Event>,
    component: String,
    dropped: Arc<AtomicU64>,
}

#[derive(Debug, Clone, Copy)]
pub enum EventType {
    Normal,
    Warning,
}

impl Recorder {
    /// Starts the sender task; `component` is the reporting component (`default-scheduler`).
    pub fn new(client: kube::Client, component: &str) -> Self {
        let (tx, mut rx) = mpsc::channel::<Event>(QUEUE);
        tokio::spawn(async move {
            let sem = Arc::new(tokio::sync::Semaphore::new(SENDERS));
            while let Some(ev) = rx.recv().await {
                let Ok(permit) = sem.clone().acquire_owned().await else {
                    break;
                };
                let ns = ev
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                let api: Api<Event> = Api::namespaced(client.clone(), &ns);
                tokio::spawn(async move {
                    if let Err(e) = api.create(&PostParams::default(), &ev).await {
                        tracing::debug!(error = %e, reason = ?ev.reason, "recording an event failed");
                    }
                    drop(permit);
                });
            }
        });
        Self {
            tx,
            component: component.to_string(),
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records an event about `obj`.
    pub fn record(&self, obj: &ObjectReference, kind: EventType, reason: &str, message: &str) {
        let now = jiff::Timestamp::now();
        let ns = obj
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let name = format!(
            "{}.{:x}",
            obj.name.as_deref().unwrap_or("object"),
            now.as_nanosecond()
        );
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(ns),
                ..Default::default()
            },
            involved_object: obj.clone(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(format!("{kind:?}")),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            action: Some(reason.to_string()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            ..Default::default()
        };
        if self.tx.try_send(ev).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A reference to `obj` for an Event's involvedObject.
pub fn object_ref<K>(obj: &K) -> ObjectReference
where
    K: kube::Resource<DynamicType = ()>,
{
    let m = obj.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        uid: m.uid.clone(),
        resource_version: m.resource_version.clone(),
        field_path: None,
    }
}
