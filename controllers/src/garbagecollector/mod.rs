//! The garbage collector: objects whose owners are all gone are deleted (background
//! cascading deletion); an owner deleted with `propagationPolicy=Foreground` keeps its
//! `foregroundDeletion` finalizer until its blocking dependents are gone; one deleted with
//! `Orphan` keeps its `orphan` finalizer until its dependents no longer reference it.
//!
//! It watches every resource discovery lists that can be listed, watched and deleted (but
//! Events), discovering again every `REDISCOVER` (custom resources come and go with their
//! definitions), and keeps a graph of owner references (metadata only). An owner of a kind
//! not discovered yet is looked up by its own discovery before it counts as absent. An owner missing from
//! the graph is looked up in the apiserver before anything is deleted (its watch may just
//! lag), and deletions carry a uid precondition, so a recreated object is never hit.
//! The graph itself is in `graph.rs`.

mod graph;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, PostParams, Preconditions, PropagationPolicy,
};
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;

use crate::context::Context;
use crate::reconciler::{Action, Controller, ObjectKey, Reconciler, Run};
use crate::workqueue::WorkQueue;
use graph::{Graph, Node};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("looking up owner {kind} {name}")]
    Owner {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting {kind} {name}")]
    Delete {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading {kind} {name}")]
    Read {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating {kind} {name}")]
    Update {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating {kind} {name}: conflicts on every one of 5 attempts")]
    Conflicts { kind: String, name: String },
    #[error("comparing the metadata of {kind} {name}")]
    Metadata {
        kind: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A queue key: an object of any kind, by uid (the graph's key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Uid(String);

impl ObjectKey for Uid {
    fn name(&self) -> Option<&str> {
        None
    }
    fn uid(&self) -> Option<&str> {
        Some(&self.0)
    }
}

pub struct GarbageCollector {
    ctx: Arc<Context>,
    graph: Mutex<Graph>,
    queue: Arc<WorkQueue<Uid>>,
    /// (apiVersion, kind) → resource, for looking owners up; from the last discovery.
    resources: RwLock<HashMap<(String, String), (ApiResource, bool)>>,
    /// The watches running, by (group, version, plural).
    watching: Mutex<HashMap<(String, String, String), tokio::task::AbortHandle>>,
}

/// How often the resources are discovered again.
const REDISCOVER: Duration = Duration::from_secs(30);

type Resources = HashMap<(String, String), (ApiResource, bool)>;

/// The resources discovery lists, and those of them to watch.
async fn discover(
    client: &kube::Client,
) -> Result<(Resources, Vec<(ApiResource, bool)>), kube::Error> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut resources = HashMap::new();
    let mut watched = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            let namespaced = caps.scope == Scope::Namespaced;
            resources.insert(
                (ar.api_version.clone(), ar.kind.clone()),
                (ar.clone(), namespaced),
            );
            let usable = [verbs::LIST, verbs::WATCH, verbs::DELETE]
                .iter()
                .all(|v| caps.supports_operation(v));
            if usable && ar.kind != "Event" {
                watched.push((ar, namespaced));
            }
        }
    }
    Ok((resources, watched))
}

fn watch_key(ar: &ApiResource) -> (String, String, String) {
    (ar.group.clone(), ar.version.clone(), ar.plural.clone())
}

fn lock(g: &Mutex<Graph>) -> std::sync::MutexGuard<'_, Graph> {
    g.lock().unwrap_or_else(|e| e.into_inner())
}

/// No informers: it keeps its own graph, over every resource discovery lists, which
/// [`Reconciler::prepare`] fills before the first reconcile.
pub fn new(ctx: &Arc<Context>) -> Box<dyn Run> {
    let queue = WorkQueue::new();
    let gc = Arc::new(GarbageCollector {
        ctx: ctx.clone(),
        graph: Mutex::new(Graph::default()),
        queue: queue.clone(),
        resources: RwLock::new(HashMap::new()),
        watching: Mutex::new(HashMap::new()),
    });
    Controller::new(gc, queue).workers(4).into()
}

impl Reconciler for GarbageCollector {
    type Key = Uid;
    type Error = Error;

    async fn reconcile(&self, uid: &Uid) -> Result<Action, Error> {
        self.process(&uid.0).await
    }

    fn all_keys(&self) -> Vec<Uid> {
        lock(&self.graph).nodes.keys().cloned().map(Uid).collect()
    }

    /// Discovers the resources and watches them all; returns once every one has listed
    /// (an owner not seen yet must not look absent).
    async fn prepare(self: Arc<Self>, tasks: &mut tokio::task::JoinSet<()>) {
        let (resources, watched) = loop {
            match discover(&self.ctx.client).await {
                Ok(d) => break d,
                Err(e) => {
                    tracing::warn!(error = %e, "discovery failed; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        };
        *self.resources.write().unwrap_or_else(|e| e.into_inner()) = resources;
        let (synced_tx, mut synced_rx) = tokio::sync::watch::channel(0usize);
        let synced_tx = Arc::new(synced_tx);
        let total = watched.len();
        for (ar, namespaced) in watched {
            let key = watch_key(&ar);
            let h = tasks.spawn(self.clone().watch(ar, namespaced, synced_tx.clone()));
            lock_map(&self.watching).insert(key, h);
        }
        let _ = synced_rx.wait_for(|n| *n >= total).await;
        tracing::info!(resources = total, "garbage collector graph synced");
        tasks.spawn(self.clone().rediscover());
    }
}

fn lock_map<K, V>(m: &Mutex<HashMap<K, V>>) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl GarbageCollector {
    /// Every `REDISCOVER`: watches resources that appeared, stops watching those gone.
    async fn rediscover(self: Arc<Self>) {
        // Watches started here live as long as this task.
        let mut tasks = tokio::task::JoinSet::new();
        let (synced, _) = tokio::sync::watch::channel(0usize);
        let synced = Arc::new(synced);
        loop {
            tokio::time::sleep(REDISCOVER).await;
            let (resources, watched) = match discover(&self.ctx.client).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::debug!(error = %e, "rediscovery failed");
                    continue;
                }
            };
            *self.resources.write().unwrap_or_else(|e| e.into_inner()) = resources;
            let keys: HashSet<_> = watched.iter().map(|(ar, _)| watch_key(ar)).collect();
            let mut watching = lock_map(&self.watching);
            watching.retain(|k, h| {
                let keep = keys.contains(k);
                if !keep {
                    tracing::info!(resource = %k.2, group = %k.0, "garbage collector: resource gone");
                    h.abort();
                }
                keep
            });
            for (ar, namespaced) in watched {
                let key = watch_key(&ar);
                if watching.contains_key(&key) {
                    continue;
                }
                tracing::info!(resource = %ar.plural, group = %ar.group, "garbage collector: new resource");
                let h = tasks.spawn(self.clone().watch(ar, namespaced, synced.clone()));
                watching.insert(key, h);
            }
            drop(watching);
            // Reap finished watch tasks.
            while tasks.try_join_next().is_some() {}
        }
    }

    async fn watch(
        self: Arc<Self>,
        ar: ApiResource,
        namespaced: bool,
        synced: Arc<tokio::sync::watch::Sender<usize>>,
    ) {
        let api: Api<DynamicObject> = Api::all_with(self.ctx.client.clone(), &ar);
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut listed: Option<HashSet<String>> = None;
        let mut first = true;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(Event::Init) => listed = Some(HashSet::new()),
                Ok(Event::InitApply(o)) | Ok(Event::Apply(o)) => {
                    let uid = o.metadata.uid.clone().unwrap_or_default();
                    if let Some(l) = listed.as_mut() {
                        l.insert(uid.clone());
                    }
                    self.applied(uid, &ar, namespaced, o);
                }
                Ok(Event::Delete(o)) => self.deleted(o.metadata.uid.as_deref().unwrap_or("")),
                Ok(Event::InitDone) => {
                    // What the relist did not return was deleted meanwhile.
                    if let Some(l) = listed.take() {
                        let gone: Vec<String> = lock(&self.graph)
                            .nodes
                            .iter()
                            .filter(|(u, n)| {
                                n.ar.kind == ar.kind && n.ar.group == ar.group && !l.contains(*u)
                            })
                            .map(|(u, _)| u.clone())
                            .collect();
                        for u in gone {
                            self.deleted(&u);
                        }
                    }
                    if std::mem::take(&mut first) {
                        synced.send_modify(|n| *n += 1);
                    }
                }
                Err(e) => {
                    tracing::debug!(resource = %ar.plural, error = %e, "watch failed; retrying")
                }
            }
        }
    }

    fn applied(&self, uid: String, ar: &ApiResource, namespaced: bool, o: DynamicObject) {
        let m = o.metadata;
        let node = Node {
            ar: ar.clone(),
            namespaced,
            namespace: m.namespace,
            name: m.name.unwrap_or_default(),
            owners: m.owner_references.unwrap_or_default(),
            deleting: m.deletion_timestamp.is_some(),
            finalizers: m.finalizers.unwrap_or_default(),
        };
        let interesting = !node.owners.is_empty()
            || (node.deleting
                && node
                    .finalizers
                    .iter()
                    .any(|f| f == "orphan" || f == "foregroundDeletion"));
        let owners: Vec<String> = node.owners.iter().map(|o| o.uid.clone()).collect();
        lock(&self.graph).upsert(uid.clone(), node);
        if interesting {
            self.queue.add(Uid(uid));
        }
        // A foreground-deleting owner waits for its dependents' changes.
        for o in owners {
            self.queue.add(Uid(o));
        }
    }

    fn deleted(&self, uid: &str) {
        let (owners, dependents) = {
            let mut g = lock(&self.graph);
            let owners: Vec<String> = g
                .remove(uid)
                .map(|n| n.owners.into_iter().map(|o| o.uid).collect())
                .unwrap_or_default();
            let deps: Vec<String> = g
                .dependents
                .get(uid)
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            (owners, deps)
        };
        for u in owners.into_iter().chain(dependents) {
            self.queue.add(Uid(u));
        }
    }

    fn api_for(&self, ar: &ApiResource, namespaced: bool, ns: Option<&str>) -> Api<DynamicObject> {
        match (namespaced, ns) {
            (true, Some(ns)) => Api::namespaced_with(self.ctx.client.clone(), ns, ar),
            _ => Api::all_with(self.ctx.client.clone(), ar),
        }
    }

    async fn process(&self, uid: &str) -> Result<Action, Error> {
        let Some(node) = lock(&self.graph).nodes.get(uid).cloned() else {
            return Ok(Action::await_change());
        };
        tracing::Span::current()
            .record("namespace", node.namespace.as_deref())
            .record("name", node.name.as_str());
        if node.deleting && node.finalizers.iter().any(|f| f == "orphan") {
            return self.orphan_dependents(uid, &node).await;
        }
        if node.deleting && node.finalizers.iter().any(|f| f == "foregroundDeletion") {
            return self.delete_dependents_first(uid, &node).await;
        }
        if node.owners.is_empty() {
            return Ok(Action::await_change());
        }
        let mut absent = Vec::new();
        for o in &node.owners {
            if !self.owner_exists(o, node.namespace.as_deref()).await? {
                absent.push(o.uid.clone());
            }
        }
        if absent.is_empty() {
            return Ok(Action::await_change());
        }
        let api = self.api_for(&node.ar, node.namespaced, node.namespace.as_deref());
        if absent.len() == node.owners.len() {
            // Every owner is gone: delete it, letting its own dependents follow in the
            // background (Kubernetes uses the policy the owner was deleted with; the
            // apiserver does not record it, so Background).
            if node.deleting {
                return Ok(Action::await_change());
            }
            tracing::info!(kind = %node.ar.kind, "deleting an object whose owners are gone");
            let dp = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                preconditions: Some(Preconditions {
                    uid: Some(uid.to_string()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            return match api.delete(&node.name, &dp).await {
                Ok(_) => Ok(Action::await_change()),
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                    Ok(Action::await_change())
                }
                Err(source) => Err(Error::Delete {
                    kind: node.ar.kind.clone(),
                    name: node.name.clone(),
                    source,
                }),
            };
        }
        // Some owners remain: drop the references to those that are gone.
        self.edit(&api, &node, uid, |o| {
            if let Some(refs) = o.metadata.owner_references.as_mut() {
                refs.retain(|r| !absent.contains(&r.uid));
            }
        })
        .await?;
        Ok(Action::await_change())
    }

    /// Whether `o` (referenced from an object in `ns`) exists with that uid: the graph
    /// first, the apiserver when the graph does not have it.
    async fn owner_exists(&self, o: &OwnerReference, ns: Option<&str>) -> Result<bool, Error> {
        if lock(&self.graph).nodes.contains_key(&o.uid) {
            return Ok(true);
        }
        let known = self
            .resources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(o.api_version.clone(), o.kind.clone()))
            .cloned();
        let (ar, namespaced) = match known {
            Some(r) => r,
            // Not discovered yet (a custom resource defined since): ask discovery now.
            None => {
                let gvk = match o.api_version.split_once('/') {
                    Some((g, v)) => kube::api::GroupVersionKind::gvk(g, v, &o.kind),
                    None => kube::api::GroupVersionKind::gvk("", &o.api_version, &o.kind),
                };
                match kube::discovery::pinned_kind(&self.ctx.client, &gvk).await {
                    Ok((ar, caps)) => (ar, caps.scope == Scope::Namespaced),
                    // A kind this apiserver does not serve: cannot exist.
                    Err(kube::Error::Api(e)) if e.code == 404 => return Ok(false),
                    Err(kube::Error::Discovery(_)) => return Ok(false),
                    Err(source) => {
                        return Err(Error::Owner {
                            kind: o.kind.clone(),
                            name: o.name.clone(),
                            source,
                        })
                    }
                }
            }
        };
        let api = self.api_for(&ar, namespaced, ns);
        let found = api.get_opt(&o.name).await.map_err(|source| Error::Owner {
            kind: o.kind.clone(),
            name: o.name.clone(),
            source,
        })?;
        match found {
            Some(obj) => Ok(obj.metadata.uid.as_deref() == Some(o.uid.as_str())),
            None => Ok(false),
        }
    }

    async fn orphan_dependents(&self, uid: &str, node: &Node) -> Result<Action, Error> {
        let deps = lock(&self.graph).dependents_of(uid);
        for (duid, d) in deps {
            let api = self.api_for(&d.ar, d.namespaced, d.namespace.as_deref());
            self.edit(&api, &d, &duid, |o| {
                if let Some(refs) = o.metadata.owner_references.as_mut() {
                    refs.retain(|r| r.uid != uid);
                }
            })
            .await?;
        }
        self.remove_finalizer(uid, node, "orphan").await
    }

    async fn delete_dependents_first(&self, uid: &str, node: &Node) -> Result<Action, Error> {
        let deps = lock(&self.graph).dependents_of(uid);
        let mut blocking = 0;
        for (duid, d) in &deps {
            let blocks = d
                .owners
                .iter()
                .any(|r| r.uid == uid && r.block_owner_deletion == Some(true));
            if blocks {
                blocking += 1;
            }
            if d.deleting {
                continue;
            }
            let api = self.api_for(&d.ar, d.namespaced, d.namespace.as_deref());
            let dp = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Foreground),
                preconditions: Some(Preconditions {
                    uid: Some(duid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&d.name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(source) => {
                    return Err(Error::Delete {
                        kind: d.ar.kind.clone(),
                        name: d.name.clone(),
                        source,
                    })
                }
            }
        }
        if blocking > 0 {
            // Their deletion events queue this owner again; look anyway in a while.
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
        self.remove_finalizer(uid, node, "foregroundDeletion").await
    }

    async fn remove_finalizer(&self, uid: &str, node: &Node, f: &str) -> Result<Action, Error> {
        let api = self.api_for(&node.ar, node.namespaced, node.namespace.as_deref());
        self.edit(&api, node, uid, |o| {
            if let Some(fs) = o.metadata.finalizers.as_mut() {
                fs.retain(|x| x != f);
            }
        })
        .await?;
        Ok(Action::await_change())
    }

    /// Reads the object, applies `change`, and writes it back guarded by its
    /// resourceVersion; does nothing if it is gone or is another object by now.
    async fn edit(
        &self,
        api: &Api<DynamicObject>,
        node: &Node,
        uid: &str,
        change: impl Fn(&mut DynamicObject),
    ) -> Result<(), Error> {
        let (kind, name) = (&node.ar.kind, node.name.as_str());
        let metadata = |o: &DynamicObject| {
            serde_json::to_value(&o.metadata).map_err(|source| Error::Metadata {
                kind: kind.clone(),
                name: name.to_string(),
                source,
            })
        };
        for _ in 0..5 {
            let current = api.get_opt(name).await.map_err(|source| Error::Read {
                kind: kind.clone(),
                name: name.to_string(),
                source,
            })?;
            let Some(mut o) = current else {
                return Ok(());
            };
            if o.metadata.uid.as_deref() != Some(uid) {
                return Ok(());
            }
            let before = metadata(&o)?;
            change(&mut o);
            if metadata(&o)? == before {
                return Ok(());
            }
            match api.replace(name, &PostParams::default(), &o).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
                Err(source) => {
                    return Err(Error::Update {
                        kind: kind.clone(),
                        name: name.to_string(),
                        source,
                    })
                }
            }
        }
        Err(Error::Conflicts {
            kind: kind.clone(),
            name: name.to_string(),
        })
    }
}
