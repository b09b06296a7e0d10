//! Shared informers: one watch per kind for the whole controller-manager, a cache every
//! controller reads (kube-runtime's reflector store), and handlers controllers register to
//! hear about changes (usually: enqueue a key).
//!
//! Contract: [`Informers`] is a factory as client-go's shared informer factory: an informer
//! exists once some controller that runs declared it (a [`Need`] in its registration), there
//! is one per kind (and namespace) however many declare it, and only those are started.
//! A controller reads only what it declared: [`Informers::get`] panics otherwise, at start.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
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

impl<K: Watched> Informer<K> {
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

/// What an informer can hold: a typed, cluster-wide listable kind.
pub trait Watched:
    kube::Resource<DynamicType = ()>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Watched for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// An informer with its kind erased: what starting and waiting need.
pub trait Shared: Send + Sync {
    fn run(self: Arc<Self>) -> BoxFuture<'static, ()>;
    fn synced(&self) -> BoxFuture<'_, ()>;
}

impl<K: Watched> Shared for Informer<K> {
    fn run(self: Arc<Self>) -> BoxFuture<'static, ()> {
        Box::pin(Informer::run(self))
    }
    fn synced(&self) -> BoxFuture<'_, ()> {
        Box::pin(Informer::synced(self))
    }
}

/// An informer a controller reads, as its registration declares it: a kind, in every
/// namespace or in one.
#[derive(Clone, Copy)]
pub struct Need {
    resource: fn() -> (Cow<'static, str>, Cow<'static, str>),
    register: Register,
}

#[derive(Clone, Copy)]
enum Register {
    All(fn(&Informers) -> Arc<dyn Shared>),
    Namespaced(
        &'static str,
        fn(&Informers, &'static str) -> Arc<dyn Shared>,
    ),
}

impl Need {
    /// `K` in every namespace.
    pub const fn all<K: Watched>() -> Self {
        Self {
            resource: resource_of::<K>,
            register: Register::All(register_all::<K>),
        }
    }

    /// `K` in namespace `ns` only.
    pub const fn namespaced<K>(ns: &'static str) -> Self
    where
        K: Watched + kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    {
        Self {
            resource: resource_of::<K>,
            register: Register::Namespaced(ns, register_namespaced::<K>),
        }
    }

    /// The apiVersion and plural resource name the apiserver must serve.
    pub fn resource(&self) -> (Cow<'static, str>, Cow<'static, str>) {
        (self.resource)()
    }

    /// The informer, created on first use.
    pub fn informer(&self, informers: &Informers) -> Arc<dyn Shared> {
        match self.register {
            Register::All(f) => f(informers),
            Register::Namespaced(ns, f) => f(informers, ns),
        }
    }
}

fn resource_of<K: Watched>() -> (Cow<'static, str>, Cow<'static, str>) {
    (K::api_version(&()), K::plural(&()))
}

fn register_all<K: Watched>(i: &Informers) -> Arc<dyn Shared> {
    i.register::<K>(None, || Api::all(i.client.clone())).1
}

fn register_namespaced<K>(i: &Informers, ns: &'static str) -> Arc<dyn Shared>
where
    K: Watched + kube::Resource<Scope = kube::core::NamespaceResourceScope>,
{
    i.register::<K>(Some(ns), || Api::namespaced(i.client.clone(), ns))
        .1
}

type Slot = (TypeId, Option<&'static str>);

/// The shared informers of one controller-manager run (see the module's contract).
pub struct Informers {
    client: kube::Client,
    map: Mutex<HashMap<Slot, (Arc<dyn Any + Send + Sync>, Arc<dyn Shared>)>>,
    started: Mutex<Vec<Slot>>,
}

impl Informers {
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            map: Mutex::default(),
            started: Mutex::default(),
        }
    }

    /// The informer of `K` in `ns` (all when `None`), made over `api()` if it is new.
    fn register<K: Watched>(
        &self,
        ns: Option<&'static str>,
        api: impl FnOnce() -> Api<K>,
    ) -> (Arc<Informer<K>>, Arc<dyn Shared>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let (typed, shared) = map.entry((TypeId::of::<K>(), ns)).or_insert_with(|| {
            let i = Informer::<K>::new(api());
            (i.clone(), i)
        });
        let typed = typed
            .clone()
            .downcast::<Informer<K>>()
            .unwrap_or_else(|_| unreachable!("slots are keyed by type"));
        (typed, shared.clone())
    }

    fn lookup<K: Watched>(&self, ns: Option<&'static str>) -> Arc<Informer<K>> {
        let found = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(TypeId::of::<K>(), ns))
            .map(|(typed, _)| typed.clone());
        match found.and_then(|t| t.downcast::<Informer<K>>().ok()) {
            Some(i) => i,
            None => panic!(
                "the informer of {} (namespace {ns:?}) was not declared in the controller's registration",
                K::plural(&())
            ),
        }
    }

    /// The informer of `K` in every namespace; declared by `Need::all::<K>()`.
    pub fn get<K: Watched>(&self) -> Arc<Informer<K>> {
        self.lookup(None)
    }

    /// The informer of `K` in `ns`; declared by `Need::namespaced::<K>(ns)`.
    pub fn get_in<K: Watched>(&self, ns: &'static str) -> Arc<Informer<K>> {
        self.lookup(Some(ns))
    }

    /// Starts, in `tasks`, every informer declared so far and not started yet.
    pub fn start(&self, tasks: &mut tokio::task::JoinSet<()>) {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        for (slot, (_, shared)) in map.iter() {
            if !started.contains(slot) {
                started.push(*slot);
                tasks.spawn(shared.clone().run());
            }
        }
    }

    /// How many informers exist (declared by the controllers that run).
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
