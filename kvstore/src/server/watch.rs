//! etcd's Watch service. One task per stream serves all of that stream's watchers.
//!
//! Each watcher has the next revision it must deliver (`next_rev`). A synced watcher takes
//! events from the shared broadcast (see `watch::hub`) and skips revisions below `next_rev`;
//! an unsynced one (new with a past start revision, or its stream lagged, or a snapshot
//! replaced the state) reads stored history from `next_rev` up to the current revision and
//! then joins the broadcast. Since the broadcast receiver exists before any history read,
//! nothing falls between the two and nothing is sent twice.
//!
//! With auth enabled, creating a watcher needs READ over its range for the stream's caller
//! (its token or client certificate); a refusal is answered as etcd 3.4 answers it: a
//! response with watch ID -1, created and canceled, whose cancel reason is the error.
//!
//! Limits: a stream holds at most `--max-watchers-per-stream` watchers (synced or
//! catching up); a create beyond that is refused the same way, with
//! `too_many_watchers_reason` as the cancel reason, until a cancel makes room. Creates are
//! served one at a time in the order they arrive, because etcd clients match each
//! "created" response to their oldest unanswered create; so at most one create is pending
//! inside the member per stream, and what a client sends meanwhile waits unread in the
//! stream's HTTP/2 receive window, which flow control bounds (the same back-pressure
//! etcd's bounded control channel gives).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use proto::etcdserverpb::watch_request::RequestUnion;
use proto::etcdserverpb::watch_server::Watch;
use proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use proto::mvccpb::{event::EventType, Event};
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info};

use super::identity::ClientIdentity;
use super::node::Node;
use crate::auth::Need;
use crate::error::KvError;
use crate::mvcc::{ChangeKind, MvccRead, RangeEnd};
use crate::storage::mvcc_store::HistoryEvent;
use crate::storage::state_machine::Store;
use crate::watch::hub::{HubMsg, RevisionEvents};

/// Events read from history per step, so one catching-up watcher cannot starve the others.
const HISTORY_BATCH: usize = 1000;
/// Events sent in one response at most (a revision is never split).
const MAX_EVENTS_PER_RESPONSE: usize = 1000;

/// The cancel reason of a create refused because its stream holds `limit` watchers.
pub fn too_many_watchers_reason(limit: usize) -> String {
    format!(
        "mvcc: too many watchers on the WatchStream (at most {limit}, --max-watchers-per-stream); cancel one or open another stream"
    )
}

pub struct WatchService {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let meta = req.metadata().clone();
        let identity = req.extensions().get::<ClientIdentity>().cloned();
        let input = req.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let hub = self.node.store.hub.subscribe();
        let stream_rev = self.node.store.revisions().current;
        let task = StreamTask {
            node: self.node.clone(),
            out: tx,
            hub,
            watchers: BTreeMap::new(),
            next_auto_id: 0,
            stream_rev,
            progress_pending: false,
            meta,
            identity,
        };
        tokio::spawn(task.run(input));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

struct Watcher {
    key: Vec<u8>,
    end: RangeEnd,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    next_rev: i64,
    synced: bool,
}

impl Watcher {
    fn wants(&self, e: &HistoryEvent) -> bool {
        if !self.end.contains(&self.key, &e.kv.key) {
            return false;
        }
        match e.kind {
            ChangeKind::Put => !self.no_put,
            ChangeKind::Delete => !self.no_delete,
        }
    }

    /// The event as this watcher is sent it. `store` reads back a previous value that the
    /// write left out (a DeleteRange without prev_kv), only for a watcher that asked for it.
    fn event(&self, e: &HistoryEvent, store: Option<&Store>) -> Event {
        let kind = match e.kind {
            ChangeKind::Put => EventType::Put,
            ChangeKind::Delete => EventType::Delete,
        };
        let prev_kv = match (&e.prev, store) {
            (_, _) if !self.prev_kv => None,
            (Some(_), Some(store)) if e.prev_value_omitted => {
                // As etcd's watch server: the version before the event's revision; if
                // compaction removed it meanwhile, the event goes without one. (The
                // omitted prev has no key either: it is the event's.)
                let (view, _) = store.read_view();
                view.get(&e.kv.key, e.revision.saturating_sub(1))
                    .ok()
                    .flatten()
            }
            (_, None) if e.prev_value_omitted => None,
            (p, _) => p.clone(),
        };
        Event {
            r#type: kind as i32,
            kv: Some(e.kv.clone()),
            prev_kv,
        }
    }
}

struct StreamTask {
    node: Arc<Node>,
    out: mpsc::Sender<Result<WatchResponse, Status>>,
    hub: broadcast::Receiver<HubMsg>,
    watchers: BTreeMap<i64, Watcher>,
    next_auto_id: i64,
    /// Every event up to this revision has been delivered to every synced watcher.
    stream_rev: i64,
    /// A progress request waits for every watcher to be synced.
    progress_pending: bool,
    /// Who opened the stream: each create is checked for them.
    meta: tonic::metadata::MetadataMap,
    identity: Option<ClientIdentity>,
}

/// The client went away; the task ends.
struct Closed;

impl StreamTask {
    async fn run(mut self, mut input: Streaming<WatchRequest>) {
        let mut progress = tokio::time::interval(self.node.config.progress_notify);
        progress.tick().await;
        loop {
            if self.catch_up_one().await.is_err() {
                return;
            }
            let unsynced = self.watchers.values().any(|w| !w.synced);
            let result = tokio::select! {
                biased;
                req = input.next() => match req {
                    Some(Ok(req)) => self.handle(req).await,
                    Some(Err(_)) | None => Err(Closed),
                },
                msg = self.hub.recv() => self.on_hub(msg).await,
                _ = progress.tick() => self.notify_progress().await,
                // Unsynced watchers make progress between other work.
                _ = std::future::ready(()), if unsynced => Ok(()),
            };
            if result.is_err() {
                return;
            }
        }
    }

    async fn send(&self, resp: WatchResponse) -> Result<(), Closed> {
        self.out.send(Ok(resp)).await.map_err(|_| Closed)
    }

    fn header(&self, revision: i64) -> Option<proto::etcdserverpb::ResponseHeader> {
        Some(self.node.header(revision))
    }

    async fn handle(&mut self, req: WatchRequest) -> Result<(), Closed> {
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => self.create(c).await,
            Some(RequestUnion::CancelRequest(c)) => {
                if self.watchers.remove(&c.watch_id).is_some() {
                    let resp = WatchResponse {
                        header: self.header(self.node.store.revisions().current),
                        watch_id: c.watch_id,
                        canceled: true,
                        ..Default::default()
                    };
                    self.send(resp).await?;
                }
                Ok(())
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                self.progress_pending = true;
                self.flush_progress().await
            }
            None => Ok(()),
        }
    }

    /// Whether the stream's caller may watch `[key, range_end)`; the error is the cancel
    /// reason etcd gives.
    async fn permitted(&self, c: &WatchCreateRequest) -> Result<(), String> {
        // etcd watches "\0", the smallest key, for an empty key.
        let key: &[u8] = if c.key.is_empty() { &[0] } else { &c.key };
        let need = Need::Read {
            key,
            range_end: &c.range_end,
        };
        let checked = match self.node.caller(&self.meta, self.identity.as_ref()).await {
            Ok(who) => self.node.authorize(who.as_deref(), &[need]).await,
            Err(e) => Err(e),
        };
        checked.map_err(|e| match e {
            KvError::InvalidAuthToken | KvError::AuthOldRevision | KvError::UserEmpty => {
                e.to_string()
            }
            _ => KvError::PermissionDenied.to_string(),
        })
    }

    async fn create(&mut self, c: WatchCreateRequest) -> Result<(), Closed> {
        if let Err(reason) = self.permitted(&c).await {
            let resp = WatchResponse {
                header: self.header(self.node.store.revisions().current),
                watch_id: -1,
                created: true,
                canceled: true,
                cancel_reason: reason,
                ..Default::default()
            };
            return self.send(resp).await;
        }
        let current = self.node.store.revisions().current;
        let limit = self.node.config.max_watchers_per_stream;
        if self.watchers.len() >= limit {
            debug!(
                watchers = self.watchers.len(),
                limit, "watch create refused: stream is full"
            );
            let resp = WatchResponse {
                header: self.header(current),
                watch_id: -1,
                created: true,
                canceled: true,
                cancel_reason: too_many_watchers_reason(limit),
                ..Default::default()
            };
            return self.send(resp).await;
        }
        let id = if c.watch_id != 0 {
            c.watch_id
        } else {
            // etcd never hands out an ID twice on a stream.
            while self.watchers.contains_key(&self.next_auto_id) {
                self.next_auto_id += 1;
            }
            self.next_auto_id += 1;
            self.next_auto_id - 1
        };
        if self.watchers.contains_key(&id) || id < 0 {
            let resp = WatchResponse {
                header: self.header(current),
                watch_id: id,
                created: true,
                canceled: true,
                cancel_reason: "mvcc: duplicate watch ID provided on the WatchStream".into(),
                ..Default::default()
            };
            return self.send(resp).await;
        }
        // filters: 0 = NOPUT, 1 = NODELETE
        let (no_put, no_delete) = (c.filters.contains(&0), c.filters.contains(&1));
        let start = if c.start_revision > 0 {
            c.start_revision
        } else {
            current + 1
        };
        let w = Watcher {
            key: c.key,
            end: RangeEnd::from_request(&c.range_end),
            prev_kv: c.prev_kv,
            no_put,
            no_delete,
            progress_notify: c.progress_notify,
            next_rev: start,
            synced: start > current,
        };
        debug!(watch_id = id, start, "watch created");
        self.watchers.insert(id, w);
        self.send(WatchResponse {
            header: self.header(current),
            watch_id: id,
            created: true,
            ..Default::default()
        })
        .await
    }

    /// Delivers what the hub published: this message and every one already queued behind it
    /// (up to `MAX_EVENTS_PER_RESPONSE` events), so a burst of revisions goes to each
    /// watcher as one response, and the stream's responses to the socket as one write.
    async fn on_hub(
        &mut self,
        msg: Result<HubMsg, broadcast::error::RecvError>,
    ) -> Result<(), Closed> {
        let mut outgoing: BTreeMap<i64, (i64, Vec<Event>)> = BTreeMap::new();
        let mut gathered = 0usize;
        let mut msg = msg.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(n) => TryRecvError::Lagged(n),
            broadcast::error::RecvError::Closed => TryRecvError::Closed,
        });
        let fell_behind = loop {
            match msg {
                Ok(HubMsg::Events(ev)) => {
                    gathered = gathered.saturating_add(self.gather(&ev, &mut outgoing));
                }
                Ok(HubMsg::Reset) | Err(TryRecvError::Lagged(_)) => break true,
                Err(TryRecvError::Closed) => return Err(Closed),
                Err(TryRecvError::Empty) => break false,
            }
            if gathered >= MAX_EVENTS_PER_RESPONSE {
                break false;
            }
            msg = self.hub.try_recv();
        };
        for (id, (revision, events)) in outgoing {
            self.send(WatchResponse {
                header: self.header(revision),
                watch_id: id,
                events,
                ..Default::default()
            })
            .await?;
        }
        if fell_behind {
            // Fall back to history from where each watcher is.
            info!(
                watchers = self.watchers.len(),
                "watch stream fell behind; catching up from history"
            );
            for w in self.watchers.values_mut() {
                w.synced = false;
            }
            self.stream_rev = self.stream_rev.max(self.node.store.revisions().current);
        }
        Ok(())
    }

    /// Adds one revision's events to what each synced watcher is sent; returns how many.
    fn gather(
        &mut self,
        ev: &RevisionEvents,
        outgoing: &mut BTreeMap<i64, (i64, Vec<Event>)>,
    ) -> usize {
        let mut added = 0usize;
        let store = self.node.store.clone();
        for (id, w) in self.watchers.iter_mut() {
            if !w.synced || ev.revision < w.next_rev {
                continue;
            }
            w.next_rev = ev.revision + 1;
            let mut events = ev.events.iter().filter(|e| w.wants(e)).peekable();
            if events.peek().is_none() {
                continue;
            }
            let (revision, out) = outgoing.entry(*id).or_default();
            let before = out.len();
            out.extend(events.map(|e| w.event(e, Some(&store))));
            added = added.saturating_add(out.len() - before);
            *revision = ev.revision;
        }
        self.stream_rev = self.stream_rev.max(ev.revision);
        added
    }

    /// Advances one unsynced watcher by up to `HISTORY_BATCH` events of history.
    async fn catch_up_one(&mut self) -> Result<(), Closed> {
        let Some((&id, _)) = self.watchers.iter().find(|(_, w)| !w.synced) else {
            return self.flush_progress().await;
        };
        let store = self.node.store.clone();
        let next_rev = self.watchers[&id].next_rev;
        // History is disk work: keep it off the threads Raft runs on.
        let (read, revs) = tokio::task::block_in_place(|| {
            let (view, revs) = store.read_view();
            if next_rev < revs.compacted {
                (None, revs)
            } else {
                (
                    Some(view.history(next_rev, revs.current, HISTORY_BATCH)),
                    revs,
                )
            }
        });
        let Some(read) = read else {
            self.watchers.remove(&id);
            let resp = WatchResponse {
                header: self.header(revs.current),
                watch_id: id,
                canceled: true,
                compact_revision: revs.compacted,
                cancel_reason: "etcdserver: mvcc: required revision has been compacted".into(),
                ..Default::default()
            };
            return self.send(resp).await;
        };
        let history = match read {
            Ok(h) => h,
            Err(e) => {
                self.watchers.remove(&id);
                let resp = WatchResponse {
                    header: self.header(revs.current),
                    watch_id: id,
                    canceled: true,
                    cancel_reason: e.to_string(),
                    ..Default::default()
                };
                return self.send(resp).await;
            }
        };
        let w = &self.watchers[&id];
        let last_read = history.last().map(|e| e.revision);
        let mut responses: Vec<WatchResponse> = Vec::new();
        let mut batch: Vec<Event> = Vec::new();
        let mut batch_rev = 0;
        for (i, e) in history.iter().enumerate() {
            if w.wants(e) {
                batch.push(w.event(e, None));
                batch_rev = e.revision;
            }
            let boundary = history.get(i + 1).is_none_or(|n| n.revision != e.revision);
            if boundary && batch.len() >= MAX_EVENTS_PER_RESPONSE {
                responses.push(WatchResponse {
                    header: self.header(batch_rev),
                    watch_id: id,
                    events: std::mem::take(&mut batch),
                    ..Default::default()
                });
            }
        }
        if !batch.is_empty() {
            responses.push(WatchResponse {
                header: self.header(batch_rev),
                watch_id: id,
                events: batch,
                ..Default::default()
            });
        }
        // A short read reached the current revision: the watcher joins the live stream.
        let done = history.len() < HISTORY_BATCH || last_read.is_none_or(|r| r >= revs.current);
        let next = if done {
            revs.current + 1
        } else {
            last_read.map_or(revs.current + 1, |r| r + 1)
        };
        if let Some(w) = self.watchers.get_mut(&id) {
            w.next_rev = w.next_rev.max(next);
            w.synced = done;
        }
        for r in responses {
            self.send(r).await?;
        }
        Ok(())
    }

    /// Answers a pending progress request once every watcher is synced, with the revision
    /// up to which every event has been sent (etcd sends it with watch ID -1).
    async fn flush_progress(&mut self) -> Result<(), Closed> {
        if !self.progress_pending || self.watchers.values().any(|w| !w.synced) {
            return Ok(());
        }
        self.progress_pending = false;
        let resp = WatchResponse {
            header: self.header(self.stream_rev),
            watch_id: -1,
            ..Default::default()
        };
        self.send(resp).await
    }

    /// Periodic progress notifications for synced watchers that asked for them.
    async fn notify_progress(&mut self) -> Result<(), Closed> {
        let ids: Vec<i64> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.synced && w.progress_notify)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.send(WatchResponse {
                header: self.header(self.stream_rev),
                watch_id: id,
                ..Default::default()
            })
            .await?;
        }
        Ok(())
    }
}
