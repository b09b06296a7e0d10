//! Client watches: a stream of `{"type","object"}` lines, served from the watch cache when
//! it holds the starting point, otherwise from a storage (kvstore) watch of the resource's prefix
//! (so a client resuming from an old resourceVersion on a freshly started apiserver misses
//! nothing the kvstore still has). With selectors, an object that stops matching is sent
//! as DELETED and one that starts matching as ADDED.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};

use super::cache::{CacheEvent, CachedObj, EventType, Labels, Notice, Selection, Start};
use super::storage::{Event, WatchMessage, WatchSpec};
use super::{parse_rv, ListOptions, Store, Target};
use crate::error::ApiError;
use crate::etcd::prefix_end;

pub struct WatchOptions {
    pub list: ListOptions,
    pub bookmarks: bool,
}

/// One line of the stream.
fn line(typ: &str, object: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(object.len() + 32);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(typ.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    out.extend_from_slice(object);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

pub fn error_line(e: &ApiError) -> Bytes {
    line("ERROR", &crate::error::status_json(&e.to_status()))
}

struct Filter {
    prefix: String,
    opts: ListOptions,
    bookmarks: bool,
    api_version: String,
    kind: &'static str,
    /// The last revision sent (events or bookmarks).
    sent: i64,
    /// The newest revision known to be delivered, including events this client did not
    /// select.
    latest: i64,
}

impl Filter {
    fn selects(&self, labels: &Labels, fields: &[(&'static str, String)]) -> bool {
        self.opts.labels.matches_with(|k| labels.get(k)) && self.opts.fields.matches(fields)
    }

    /// The line a cache event becomes for this client, if any.
    fn translate(&mut self, ev: &CacheEvent) -> Option<Bytes> {
        self.latest = self.latest.max(ev.rev);
        if !ev.obj.key.starts_with(&self.prefix) {
            return None;
        }
        let now = self.selects(&ev.obj.labels, &ev.obj.fields);
        let was = ev
            .prev
            .as_ref()
            .is_some_and(|p: &Selection| self.selects(&p.labels, &p.fields));
        let typ = match (ev.typ, was, now) {
            (EventType::Added, _, true) => EventType::Added,
            (EventType::Modified, true, true) => EventType::Modified,
            (EventType::Modified, false, true) => EventType::Added,
            (EventType::Modified, true, false) => EventType::Deleted,
            (EventType::Deleted, true, _) => EventType::Deleted,
            _ => return None,
        };
        self.sent = self.sent.max(ev.rev);
        Some(line(typ.as_str(), &ev.obj.json))
    }

    fn bookmark(&mut self, rev: i64) -> Option<Bytes> {
        self.latest = self.latest.max(rev);
        if !self.bookmarks || rev <= self.sent {
            return None;
        }
        self.sent = rev;
        let obj = serde_json::json!({
            "kind": self.kind,
            "apiVersion": self.api_version,
            "metadata": { "resourceVersion": rev.to_string() },
        });
        Some(line(
            "BOOKMARK",
            &serde_json::to_vec(&obj).unwrap_or_default(),
        ))
    }
}

impl Store {
    /// Starts a watch; lines arrive on the returned channel until the watch ends (the
    /// receiver dropped, the cache reset, the client too slow, the kvstore stream broken).
    pub async fn watch(
        self: &Arc<Self>,
        t: &Target,
        opts: WatchOptions,
    ) -> Result<mpsc::Receiver<Bytes>, ApiError> {
        opts.list.check()?;
        let info = t.kind.info();
        let mut filter = Filter {
            prefix: t.prefix(),
            opts: opts.list.clone(),
            bookmarks: opts.bookmarks,
            api_version: info.api_version(),
            kind: info.kind,
            sent: 0,
            latest: 0,
        };
        let rv = opts
            .list
            .resource_version
            .as_deref()
            .filter(|r| !r.is_empty() && *r != "0");
        let start = match rv {
            None => Start::Snapshot,
            Some(rv) => Start::After(parse_rv(rv)?),
        };
        let (tx, rx) = mpsc::channel::<Bytes>(256);
        if matches!(start, Start::Snapshot) && !self.cache.wait_for(0, self.cache_wait).await {
            return Err(ApiError::Unavailable(
                "the watch cache is not ready yet".into(),
            ));
        }
        let from = match start {
            Start::After(n) => Some(n),
            Start::Snapshot => None,
        };
        match self.cache.subscribe(&filter.prefix, start) {
            Some(sub) => {
                let metrics = self.metrics.clone();
                let resource = info.plural;
                filter.sent = from.unwrap_or(0);
                tokio::spawn(async move {
                    for ev in &sub.backlog {
                        if let Some(l) = filter.translate(ev) {
                            if tx.send(l).await.is_err() {
                                return;
                            }
                        }
                    }
                    if let Some(l) = filter.bookmark(sub.rev) {
                        let _ = tx.send(l).await;
                    }
                    if pump_cache(filter, sub.rx, tx).await == End::TooSlow {
                        metrics.watcher_terminated(resource);
                    }
                });
            }
            None => {
                let from = from.unwrap_or(0);
                filter.sent = from;
                let store = self.clone();
                tokio::spawn(async move { store.pump_storage(filter, from, tx).await });
            }
        }
        Ok(rx)
    }

    /// Serves a watch straight from the storage, from revision `from + 1`.
    async fn pump_storage(&self, mut filter: Filter, from: i64, tx: mpsc::Sender<Bytes>) {
        let spec = WatchSpec {
            start: filter.prefix.as_bytes().to_vec(),
            end: prefix_end(filter.prefix.as_bytes()),
            from: from.saturating_add(1),
            prev_kv: true,
            progress_notify: filter.bookmarks,
            replica: self.storage.preferred_replica(),
        };
        let mut stream = match self.storage.watch(spec).await {
            Ok(x) => x,
            Err(e) => {
                let _ = tx.send(error_line(&ApiError::from(e))).await;
                return;
            }
        };
        loop {
            let msg = tokio::select! {
                m = stream.next() => m,
                _ = tx.closed() => return,
            };
            match msg {
                None | Some(WatchMessage::Canceled(_)) => return,
                Some(WatchMessage::Compacted(rev)) => {
                    let e = ApiError::Expired(format!("too old resource version: {from} ({rev})"));
                    let _ = tx.send(error_line(&e)).await;
                    return;
                }
                Some(WatchMessage::Progress(rev)) => {
                    if let Some(l) = filter.bookmark(rev) {
                        if tx.send(l).await.is_err() {
                            return;
                        }
                    }
                }
                Some(WatchMessage::Events(events)) => {
                    for e in events {
                        if e.deleted && e.prev.is_none() {
                            // A deletion whose object is unknown cannot be reported: end
                            // the watch with an error (as kube's etcd3 watcher does) so
                            // the client lists again instead of missing it.
                            let e = ApiError::Internal(format!(
                                "etcd event received with PrevKv=nil (key={:?}, modRevision={}, type=DELETE)",
                                String::from_utf8_lossy(&e.kv.key),
                                e.kv.mod_revision
                            ));
                            let _ = tx.send(error_line(&e)).await;
                            return;
                        }
                        let Some(ev) = self.cache_event(e) else {
                            continue;
                        };
                        if let Some(l) = filter.translate(&ev) {
                            if tx.send(l).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        }
    }

    fn cache_event(&self, e: Event) -> Option<CacheEvent> {
        let kv = e.kv;
        let rev = kv.mod_revision;
        let prev = e
            .prev
            .and_then(|p| CachedObj::from_kv(&self.kinds, &p.key, &p.value, p.mod_revision));
        if e.deleted {
            let p = prev?;
            return Some(CacheEvent {
                rev,
                typ: EventType::Deleted,
                obj: Arc::new(p.at_rev(rev)),
                prev: Some(p.selection()),
            });
        }
        let obj = Arc::new(CachedObj::from_kv(&self.kinds, &kv.key, &kv.value, rev)?);
        let typ = if kv.create_revision == kv.mod_revision {
            EventType::Added
        } else {
            EventType::Modified
        };
        Some(CacheEvent {
            rev,
            typ,
            obj,
            prev: prev.map(|p| p.selection()),
        })
    }
}

/// How often a watch that allows bookmarks is told the newest revision, when events it
/// did not select moved it on.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The client went away, or the cache was rebuilt.
    Closed,
    /// The client read too slowly: its events would have had to be buffered without bound.
    TooSlow,
}

/// How long a watch waits for its client to take one more event (its 256-event buffer
/// full) before it is closed.
const SLOW_CLIENT: Duration = Duration::from_secs(30);

async fn pump_cache(
    mut filter: Filter,
    mut rx: broadcast::Receiver<Notice>,
    tx: mpsc::Sender<Bytes>,
) -> End {
    let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
    ticker.tick().await;
    loop {
        let n = tokio::select! {
            n = rx.recv() => n,
            _ = ticker.tick() => Ok(Notice::Progress(filter.latest)),
            _ = tx.closed() => return End::Closed,
        };
        let out = match n {
            Ok(Notice::Event(ev)) => filter.translate(&ev),
            Ok(Notice::Progress(rev)) => filter.bookmark(rev),
            // Rebuilt cache or a client too slow to keep up: end; the client resumes
            // from the last resourceVersion it saw.
            Ok(Notice::Reset) | Err(broadcast::error::RecvError::Closed) => return End::Closed,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::info!(prefix = %filter.prefix, missed = n, "closing a watch whose client does not keep up");
                return End::TooSlow;
            }
        };
        if let Some(l) = out {
            // A client that does not read for this long is dropped rather than buffered.
            match tokio::time::timeout(SLOW_CLIENT, tx.send(l)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return End::Closed,
                Err(_) => {
                    tracing::info!(prefix = %filter.prefix, "closing a watch whose client stopped reading");
                    return End::TooSlow;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> Filter {
        Filter {
            prefix: "/registry/pods/".into(),
            opts: ListOptions::default(),
            bookmarks: false,
            api_version: "v1".into(),
            kind: "Pod",
            sent: 0,
            latest: 0,
        }
    }

    fn event(rev: i64) -> Notice {
        Notice::Event(Arc::new(CacheEvent {
            rev,
            typ: EventType::Added,
            obj: Arc::new(CachedObj {
                key: format!("/registry/pods/default/p{rev}"),
                rev,
                json: Bytes::from_static(b"{}"),
                labels: Labels::default(),
                fields: vec![],
            }),
            prev: None,
        }))
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_the_cache_is_closed_not_buffered() {
        let (btx, brx) = broadcast::channel(8);
        let (tx, mut rx) = mpsc::channel(4);
        // More events than the broadcast keeps, before the pump reads any.
        for rev in 1..=20 {
            let _ = btx.send(event(rev));
        }
        let end = pump_cache(filter(), brx, tx).await;
        assert_eq!(end, End::TooSlow);
        // What it had sent stays readable; then the stream ends.
        let mut n = 0;
        while rx.recv().await.is_some() {
            n += 1;
        }
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn a_watcher_that_keeps_up_sees_every_event_and_ends_with_its_client() {
        let (btx, brx) = broadcast::channel(8);
        let (tx, mut rx) = mpsc::channel(4);
        let pump = tokio::spawn(pump_cache(filter(), brx, tx));
        for rev in 1..=20 {
            let _ = btx.send(event(rev));
            let line = rx.recv().await.expect("a line per event");
            assert!(line.starts_with(b"{\"type\":\"ADDED\""));
        }
        drop(rx);
        assert_eq!(pump.await.unwrap(), End::Closed);
    }
}
