//! The watch cache: one kvstore watch on `/registry/` feeds an in-memory copy of every
//! object plus a window of recent events, from which client lists and watches are served.
//!
//! Contract: `rev` is a revision such that every change up to it, and none after it, is
//! reflected in `objects`; `window` holds every event with a revision above `oldest` in
//! order. A client watch subscribes under the same lock the feed holds while applying an
//! event, so it sees each event exactly once: from the window or from the channel.
//!
//! The feed follows one member at a time. Every few seconds it compares its revision with a
//! linearizable read and asks the member for a progress notification; a member that cannot
//! bring the cache up to date (isolated, stuck) is abandoned for the next one.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use proto::etcdserverpb as pb;
use proto::mvccpb;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use super::{decode_stored, set_rv};
use crate::etcd::{prefix_end, Etcd, EtcdError};
use crate::kinds::Kinds;

/// One object as served: JSON with its resourceVersion, and what selectors look at.
/// Every object of the cluster is held like this, so each part takes no more memory than
/// it needs (no spare capacity, labels in one sorted slice).
#[derive(Debug)]
pub struct CachedObj {
    pub key: String,
    pub rev: i64,
    pub json: Bytes,
    pub labels: Labels,
    pub fields: Vec<(&'static str, String)>,
}

/// An object's labels, sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(Box<[(Box<str>, Box<str>)]>);

impl Labels {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.0[i].1)
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for Labels {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(it: I) -> Self {
        let mut v: Vec<(Box<str>, Box<str>)> =
            it.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.dedup_by(|a, b| a.0 == b.0);
        Labels(v.into_boxed_slice())
    }
}

/// What selectors look at in an object's previous version, kept instead of the whole
/// version: an event needs the old labels and fields to tell a watcher with a selector
/// that the object left (or entered) its view, never the old JSON.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub labels: Labels,
    pub fields: Vec<(&'static str, String)>,
}

impl CachedObj {
    pub fn selection(&self) -> Selection {
        Selection {
            labels: self.labels.clone(),
            fields: self.fields.clone(),
        }
    }

    /// Builds the served form of a stored value; None for keys that are not objects of a
    /// served kind (allocations, other tools' keys).
    pub fn from_kv(kinds: &Kinds, key: &[u8], value: &[u8], rev: i64) -> Option<Self> {
        let key = String::from_utf8(key.to_vec()).ok()?;
        let plural = key.strip_prefix("/registry/")?.split('/').next()?;
        let kind = kinds.by_plural(plural)?;
        let v = decode_stored(value, rev).ok()?;
        Some(Self::from_value(key.clone(), &v, rev, kind.fields(&v)))
    }

    fn from_value(
        key: String,
        v: &Value,
        rev: i64,
        mut fields: Vec<(&'static str, String)>,
    ) -> Self {
        let labels = v["metadata"]["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        let mut json = serde_json::to_vec(v).unwrap_or_default();
        json.shrink_to_fit();
        fields.shrink_to_fit();
        Self {
            key,
            rev,
            json: Bytes::from(json),
            labels,
            fields,
        }
    }

    /// The same object with another resourceVersion (a DELETED event carries the revision
    /// of the delete).
    pub fn at_rev(&self, rev: i64) -> Self {
        let mut v: Value = serde_json::from_slice(&self.json).unwrap_or_default();
        set_rv(&mut v, rev);
        Self::from_value(self.key.clone(), &v, rev, self.fields.clone())
    }
}

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
    key.strip_prefix("/registry/")
        .and_then(|k| k.split('/').next())
        .unwrap_or("")
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
    fn apply(&self, events: Vec<mvccpb::Event>) {
        let mut s = self.write();
        let mut last = s.rev;
        for e in events {
            let Some(kv) = e.kv else { continue };
            let rev = kv.mod_revision;
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            let prev = s.objects.get(&key).cloned();
            let ev = if e.r#type == mvccpb::event::EventType::Delete as i32 {
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

const PAGE: i64 = 2000;

/// Lists everything under `/registry/` at one revision, in pages.
async fn list_all(
    etcd: &Etcd,
    kinds: &Kinds,
) -> Result<(BTreeMap<String, Arc<CachedObj>>, i64), EtcdError> {
    let prefix = b"/registry/".to_vec();
    let end = prefix_end(&prefix);
    let mut start = prefix;
    let mut rev = 0;
    let mut out = BTreeMap::new();
    loop {
        let r = etcd
            .range(pb::RangeRequest {
                key: start.clone(),
                range_end: end.clone(),
                limit: PAGE,
                revision: rev,
                ..Default::default()
            })
            .await?;
        if rev == 0 {
            rev = r.header.as_ref().map(|h| h.revision).unwrap_or(0);
        }
        for kv in &r.kvs {
            if let Some(o) = CachedObj::from_kv(kinds, &kv.key, &kv.value, kv.mod_revision) {
                out.insert(o.key.clone(), Arc::new(o));
            }
        }
        match r.kvs.last() {
            Some(kv) if r.more => {
                start = kv.key.clone();
                start.push(0);
            }
            _ => return Ok((out, rev)),
        }
    }
}

/// Why the feed left a watch stream.
enum Left {
    /// History is gone: list again.
    Compacted,
    /// The member failed or fell behind: watch from the next one.
    Member,
}

/// Keeps the cache fed until the process ends.
pub async fn run(cache: Arc<Cache>, etcd: Arc<Etcd>, check_every: Duration) {
    let mut member = etcd.preferred();
    loop {
        let (objects, rev) = match list_all(&etcd, &cache.kinds).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "watch cache: list failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        tracing::info!(objects = objects.len(), rev, "watch cache: listed");
        cache.reset(objects, rev);
        loop {
            match follow(&cache, &etcd, member, check_every).await {
                Left::Compacted => break,
                Left::Member => {
                    member += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

async fn follow(cache: &Cache, etcd: &Etcd, member: usize, check_every: Duration) -> Left {
    use pb::watch_request::RequestUnion;
    let from = cache.read().rev + 1;
    let create = pb::WatchCreateRequest {
        key: b"/registry/".to_vec(),
        range_end: prefix_end(b"/registry/"),
        start_revision: from,
        progress_notify: true,
        ..Default::default()
    };
    let (tx, mut stream) = match etcd.watch(member, create).await {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(member = etcd.member_url(member), error = %e, "watch cache: cannot watch");
            return Left::Member;
        }
    };
    tracing::info!(
        member = etcd.member_url(member),
        from,
        "watch cache: following"
    );
    let mut ticker = tokio::time::interval(check_every);
    ticker.tick().await;
    // A revision the cache must reach before the next check.
    let mut must_reach: Option<i64> = None;
    loop {
        tokio::select! {
            msg = stream.message() => match msg {
                Ok(Some(r)) => {
                    if r.compact_revision > 0 {
                        tracing::warn!(compact_revision = r.compact_revision, "watch cache: history compacted; listing again");
                        return Left::Compacted;
                    }
                    if r.canceled {
                        tracing::warn!(reason = %r.cancel_reason, "watch cache: watch canceled");
                        return Left::Member;
                    }
                    let rev = r.header.as_ref().map(|h| h.revision).unwrap_or(0);
                    if !r.events.is_empty() {
                        cache.apply(r.events);
                    } else if !r.created {
                        cache.progress(rev);
                    }
                }
                Ok(None) | Err(_) => {
                    tracing::warn!(member = etcd.member_url(member), "watch cache: stream ended");
                    return Left::Member;
                }
            },
            _ = cache.progress_wanted.notified() => {
                let _ = tx.send(pb::WatchRequest {
                    request_union: Some(RequestUnion::ProgressRequest(pb::WatchProgressRequest {})),
                }).await;
            }
            _ = ticker.tick() => {
                let have = cache.read().rev;
                if let Some(want) = must_reach.take() {
                    if have < want {
                        tracing::warn!(member = etcd.member_url(member), have, want, "watch cache: member fell behind");
                        return Left::Member;
                    }
                }
                if let Ok(cur) = etcd.current_revision().await {
                    if cur > have {
                        must_reach = Some(cur);
                    }
                }
                let _ = tx.send(pb::WatchRequest {
                    request_union: Some(RequestUnion::ProgressRequest(pb::WatchProgressRequest {})),
                }).await;
            }
        }
    }
}

/// Asks for a consistent view: the current revision read linearizably, then waits for the
/// cache to reach it. False if the caller should read the kvstore instead.
pub async fn catch_up(
    cache: &Cache,
    etcd: &Etcd,
    limit: Duration,
) -> Result<Option<i64>, EtcdError> {
    let cur = etcd.current_revision().await?;
    if cache.revision().is_some_and(|r| r < cur) {
        cache.progress_wanted.notify_one();
    }
    Ok(cache.wait_for(cur, limit).await.then_some(cur))
}

#[cfg(test)]
mod labels_tests {
    use super::*;

    #[test]
    fn labels_are_looked_up_by_key() {
        let l: Labels = [("tier", "web"), ("app", "a"), ("zone", "")]
            .into_iter()
            .collect();
        assert_eq!(l.get("app"), Some("a"));
        assert_eq!(l.get("tier"), Some("web"));
        assert_eq!(l.get("zone"), Some(""));
        assert_eq!(l.get("nope"), None);
        assert_eq!(Labels::default().get("app"), None);
        let o = CachedObj::from_value(
            "/registry/pods/d/p".into(),
            &serde_json::json!({"metadata": {"labels": {"b": "2", "a": "1"}}}),
            7,
            vec![],
        );
        assert_eq!(
            (o.labels.get("a"), o.labels.get("b")),
            (Some("1"), Some("2"))
        );
        assert_eq!(
            o.json.len(),
            serde_json::to_vec(&serde_json::json!({"metadata": {"labels": {"a": "1", "b": "2"}}}))
                .unwrap()
                .len()
        );
    }
}
