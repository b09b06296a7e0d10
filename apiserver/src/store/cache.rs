//! The watch cache: one storage (kvstore) watch on `/registry/` feeds an in-memory copy of every
//! object plus a window of recent events, from which client lists and watches are served.
//!
//! Contract: `rev` is a revision such that every change up to it, and none after it, is
//! reflected in `objects`; `window` holds every event with a revision above `oldest` in
//! order. A client watch subscribes under the same lock the feed holds while applying an
//! event, so it sees each event exactly once: from the window or from the channel.
//!
//! Layout: this file holds the cache (objects, the event window, subscriptions);
//! `cache/object.rs` the form each object is held and served in; `cache/feed.rs` the feed
//! that follows the storage (`run`) and `catch_up`.

mod feed;
pub mod follow;
mod object;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{broadcast, watch};

pub use self::feed::{catch_up, run};
pub use self::object::{CachedObj, Labels, Selection};
use crate::kinds::Kinds;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug)]
pub struct CacheEvent {
    pub rev: i64,
    pub typ: EventType,
    /// The object after the change (for a delete: the last state, at the delete revision).
    pub obj: Arc<CachedObj>,
    /// What selectors saw of the object before the change, if it existed.
    pub prev: Option<Selection>,
}

#[derive(Debug, Clone)]
pub enum Notice {
    Event(Arc<CacheEvent>),
    /// Everything up to this revision has been delivered.
    Progress(i64),
    /// The cache was rebuilt; watches served from it must end (clients resume by RV).
    Reset,
}

struct State {
    rev: i64,
    ready: bool,
    objects: BTreeMap<String, Arc<CachedObj>>,
    window: VecDeque<Arc<CacheEvent>>,
    oldest: i64,
}

pub struct Cache {
    state: RwLock<State>,
    tx: broadcast::Sender<Notice>,
    rev_tx: watch::Sender<i64>,
    kinds: Kinds,
    capacity: usize,
    /// Wakes the feed to ask its member for a progress notification now.
    progress_wanted: tokio::sync::Notify,
}

/// How much the cache holds, by resource (the key's plural), for `/metrics`.
pub struct Sizes {
    pub objects: BTreeMap<String, usize>,
    pub events: BTreeMap<String, usize>,
    pub capacity: usize,
}

fn resource_of(key: &str) -> &str {
    crate::kinds::storage_of(key).unwrap_or("")
}

/// Where a client watch starts.
pub enum Start {
    /// Every event after this revision.
    After(i64),
    /// ADDED for every current object, then every later event.
    Snapshot,
}

pub struct Subscription {
    /// Synthetic ADDED events or events from the window, in order.
    pub backlog: Vec<Arc<CacheEvent>>,
    pub rev: i64,
    pub rx: broadcast::Receiver<Notice>,
}

impl Cache {
    pub fn new(kinds: Kinds, capacity: usize) -> Arc<Self> {
        let (tx, _) = broadcast::channel(capacity.max(1024));
        let (rev_tx, _) = watch::channel(0);
        Arc::new(Self {
            state: RwLock::new(State {
                rev: 0,
                ready: false,
                objects: BTreeMap::new(),
                window: VecDeque::new(),
                oldest: 0,
            }),
            tx,
            rev_tx,
            kinds,
            capacity,
            progress_wanted: tokio::sync::Notify::new(),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn revision(&self) -> Option<i64> {
        let s = self.read();
        s.ready.then_some(s.rev)
    }

    pub fn get(&self, key: &str) -> Option<Arc<CachedObj>> {
        let s = self.read();
        if !s.ready {
            return None;
        }
        s.objects.get(key).cloned()
    }

    /// Every cached object under `prefix`, and the revision they are current at.
    pub fn list(&self, prefix: &str) -> Option<(Vec<Arc<CachedObj>>, i64)> {
        let s = self.read();
        if !s.ready {
            return None;
        }
        let items = s
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        Some((items, s.rev))
    }

    /// Waits until the cache reflects revision `rev`; false if it did not within `limit`.
    pub async fn wait_for(&self, rev: i64, limit: Duration) -> bool {
        let mut rx = self.rev_tx.subscribe();
        let ok = tokio::time::timeout(limit, async {
            loop {
                if self.revision().is_some_and(|r| r >= rev) {
                    return;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        ok.is_ok()
    }

    pub fn sizes(&self) -> Sizes {
        let s = self.read();
        fn count<'a>(keys: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
            let mut by: BTreeMap<&str, usize> = BTreeMap::new();
            for k in keys {
                *by.entry(resource_of(k)).or_default() += 1;
            }
            by.into_iter().map(|(r, n)| (r.to_string(), n)).collect()
        }
        Sizes {
            objects: count(s.objects.keys().map(String::as_str)),
            events: count(s.window.iter().map(|e| e.obj.key.as_str())),
            capacity: self.capacity,
        }
    }

    /// Subscribes a client watch; None if the cache cannot serve that start (not ready,
    /// or the revision is older than the window or newer than the cache).
    pub fn subscribe(&self, prefix: &str, start: Start) -> Option<Subscription> {
        let s = self.read();
        if !s.ready {
            return None;
        }
        let backlog = match start {
            Start::Snapshot => s
                .objects
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, o)| {
                    Arc::new(CacheEvent {
                        rev: o.rev,
                        typ: EventType::Added,
                        obj: o.clone(),
                        prev: None,
                    })
                })
                .collect(),
            Start::After(rev) => {
                if rev < s.oldest || rev > s.rev {
                    return None;
                }
                s.window
                    .iter()
                    .filter(|e| e.rev > rev && e.obj.key.starts_with(prefix))
                    .cloned()
                    .collect()
            }
        };
        Some(Subscription {
            backlog,
            rev: s.rev,
            rx: self.tx.subscribe(),
        })
    }

    /// Rebuilds from a full list at one revision.
    fn reset(&self, objects: BTreeMap<String, Arc<CachedObj>>, rev: i64) {
        let mut s = self.write();
        s.objects = objects;
        s.window.clear();
        s.rev = rev;
        s.oldest = rev;
        s.ready = true;
        let _ = self.tx.send(Notice::Reset);
        drop(s);
        self.rev_tx.send_replace(rev);
    }

    /// Applies the events of one watch response (all of one or more revisions, in order).
    fn apply(&self, events: Vec<super::storage::Event>) {
        let mut s = self.write();
        let mut last = s.rev;
        for e in events {
            let kv = e.kv;
            let rev = kv.mod_revision;
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            if key.starts_with(crate::kinds::CRD_PREFIX) {
                // The kinds a CRD defines change before anything at its revision is
                // published: a request that waits for this revision finds them.
                self.kinds
                    .define(&key, (!e.deleted).then_some(kv.value.as_slice()));
            }
            let prev = s.objects.get(&key).cloned();
            let ev = if e.deleted {
                let Some(p) = prev else {
                    last = last.max(rev);
                    continue;
                };
                s.objects.remove(&key);
                CacheEvent {
                    rev,
                    typ: EventType::Deleted,
                    obj: Arc::new(p.at_rev(rev)),
                    prev: Some(p.selection()),
                }
            } else {
                let Some(obj) = CachedObj::from_kv(&self.kinds, &kv.key, &kv.value, rev) else {
                    last = last.max(rev);
                    continue;
                };
                let obj = Arc::new(obj);
                s.objects.insert(key, obj.clone());
                let typ = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                CacheEvent {
                    rev,
                    typ,
                    obj,
                    prev: prev.map(|p| p.selection()),
                }
            };
            last = last.max(rev);
            let ev = Arc::new(ev);
            s.window.push_back(ev.clone());
            if s.window.len() > self.capacity {
                if let Some(old) = s.window.pop_front() {
                    s.oldest = old.rev;
                }
            }
            let _ = self.tx.send(Notice::Event(ev));
        }
        s.rev = last;
        drop(s);
        self.rev_tx.send_replace(last);
    }

    fn progress(&self, rev: i64) {
        let mut s = self.write();
        if rev <= s.rev {
            return;
        }
        s.rev = rev;
        let _ = self.tx.send(Notice::Progress(rev));
        drop(s);
        self.rev_tx.send_replace(rev);
    }
}
