//! Shared informers: one watch per kind for the whole controller-manager, a cache every
//! controller reads (kube-runtime's reflector store), and handlers controllers register to
//! hear about changes (usually: enqueue a key).

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use serde::de::DeserializeOwned;

/// A change seen by an informer. `Update` carries the previous version when the cache had
/// one.
pub enum Change<'a, K> {
    Apply { old: Option<Arc<K>>, new: &'a K },
    Delete(&'a K),
}

type Handler<K> = Box<dyn Fn(Change<'_, K>) + Send + Sync>;

pub struct Informer<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    api: Api<K>,
    store: Store<K>,
    writer: Mutex<Option<reflector::store::Writer<K>>>,
    handlers: Mutex<Vec<Handler<K>>>,
    /// True once the first list is in the store. (kube-runtime's `wait_until_ready` wakes
    /// only the last of several waiters, so every controller waiting on one informer
    /// needs this instead.)
    listed: tokio::sync::watch::Sender<bool>,
}

impl<K> Informer<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    pub fn new(api: Api<K>) -> Arc<Self> {
        let (store, writer) = reflector::store();
        Arc::new(Self {
            api,
            store,
            writer: Mutex::new(Some(writer)),
            handlers: Mutex::new(Vec::new()),
            listed: tokio::sync::watch::channel(false).0,
        })
    }

    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// Registers a handler; all handlers must be registered before [`Informer::run`].
    pub fn on_change(&self, h: impl Fn(Change<'_, K>) + Send + Sync + 'static) {
        self.handlers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(h));
    }

    /// Lists and watches until the task is aborted, keeping the store current and calling
    /// the handlers for every change.
    pub async fn run(self: Arc<Self>) {
        let Some(mut writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let handlers =
            std::mem::take(&mut *self.handlers.lock().unwrap_or_else(|e| e.into_inner()));
        let mut stream = watcher(self.api.clone(), watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying");
                    continue;
                }
            };
            // The previous version, for handlers that compare.
            let old = match &ev {
                Event::Apply(o) | Event::InitApply(o) => {
                    self.store.get(&reflector::ObjectRef::from(o))
                }
                _ => None,
            };
            writer.apply_watcher_event(&ev);
            match &ev {
                Event::Apply(o) | Event::InitApply(o) => {
                    for h in &handlers {
                        h(Change::Apply {
                            old: old.clone(),
                            new: o,
                        });
                    }
                }
                Event::Delete(o) => {
                    for h in &handlers {
                        h(Change::Delete(o));
                    }
                }
                Event::Init => {}
                Event::InitDone => {
                    tracing::debug!(kind = %K::kind(&()), objects = self.store.state().len(), "listed");
                    self.listed.send_replace(true);
                }
            }
        }
    }

    /// Waits until the first list is in the store.
    pub async fn synced(&self) {
        let mut rx = self.listed.subscribe();
        let _ = rx.wait_for(|l| *l).await;
    }
}
