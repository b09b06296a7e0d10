//! [`Storage`] in memory: the model the registry's and the watch cache's unit tests run
//! on. It keeps every version since it was made, so reads and watches from a past
//! revision work as on etcd, until [`Memory::compact`] says that history is gone. It has
//! one replica and sends `Progress` only when asked.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{
    Event, Guard, Kv, Op, Range, Storage, StorageError, Txn, TxnResult, WatchMessage, WatchSpec,
    WatchStream,
};

#[derive(Default)]
struct State {
    revision: i64,
    /// Reads and watches before this revision fail as compacted.
    compacted: i64,
    /// Every version of every key: (key, revision) → the value then, None once deleted.
    versions: BTreeMap<(Vec<u8>, i64), Option<Kv>>,
    /// The keys each revision changed.
    changes: BTreeMap<i64, Vec<Vec<u8>>>,
}

impl State {
    /// The key as of `rev`.
    fn at(&self, key: &[u8], rev: i64) -> Option<&Kv> {
        self.versions
            .range((key.to_vec(), 0)..=(key.to_vec(), rev))
            .next_back()
            .and_then(|(_, v)| v.as_ref())
    }

    fn holds(&self, g: &Guard) -> bool {
        match g {
            Guard::Absent(k) => self.at(k.as_bytes(), self.revision).is_none(),
            Guard::ModRevision(k, rev) => self
                .at(k.as_bytes(), self.revision)
                .is_some_and(|kv| kv.mod_revision == *rev),
        }
    }
}

struct Inner {
    state: Mutex<State>,
    /// The newest revision, for watches to wait on.
    revision: tokio::sync::watch::Sender<i64>,
}

#[derive(Clone)]
pub struct Memory(Arc<Inner>);

impl Default for Memory {
    fn default() -> Self {
        Memory(Arc::new(Inner {
            state: Mutex::new(State::default()),
            revision: tokio::sync::watch::Sender::new(0),
        }))
    }
}

impl Memory {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, StorageError> {
        self.0
            .state
            .lock()
            .map_err(|_| StorageError::Other("storage lock poisoned".into()))
    }

    pub fn revision(&self) -> i64 {
        self.lock().map(|s| s.revision).unwrap_or(0)
    }

    /// Forgets the history before `rev` (as etcd's compaction): reads at an older revision
    /// and watches from one fail as compacted.
    pub fn compact(&self, rev: i64) {
        if let Ok(mut s) = self.lock() {
            s.compacted = s.compacted.max(rev.min(s.revision));
        }
        self.0.revision.send_modify(|_| {});
    }
}

#[async_trait::async_trait]
impl Storage for Memory {
    async fn range(
        &self,
        start: &[u8],
        end: &[u8],
        revision: i64,
        limit: i64,
    ) -> Result<Range, StorageError> {
        let s = self.lock()?;
        if revision > 0 && revision < s.compacted {
            return Err(StorageError::Compacted(
                "etcdserver: mvcc: required revision has been compacted".into(),
            ));
        }
        if revision > s.revision {
            return Err(StorageError::Other(format!(
                "required revision {revision} is a future revision"
            )));
        }
        let rev = if revision == 0 { s.revision } else { revision };
        let mut keys: Vec<&Vec<u8>> = s
            .versions
            .keys()
            .map(|(k, _)| k)
            .filter(|k| k.as_slice() >= start && (end.is_empty() || k.as_slice() < end))
            .collect();
        keys.dedup();
        let mut out = Range {
            revision: s.revision,
            ..Default::default()
        };
        for k in keys {
            if let Some(kv) = s.at(k, rev) {
                out.count += 1;
                if limit > 0 && out.kvs.len() as i64 == limit {
                    out.more = true;
                    continue;
                }
                out.kvs.push(kv.clone());
            }
        }
        Ok(out)
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, StorageError> {
        let mut s = self.lock()?;
        if !txn.guards.iter().all(|g| s.holds(g)) {
            let found = txn
                .on_failure
                .iter()
                .map(|k| s.at(k.as_bytes(), s.revision).is_some())
                .collect();
            return Ok(TxnResult {
                succeeded: false,
                revision: s.revision,
                found,
            });
        }
        let rev = s.revision + 1;
        let mut changed = vec![];
        for op in &txn.ops {
            match op {
                Op::Put(k, v) => {
                    let created = s
                        .at(k.as_bytes(), s.revision)
                        .map_or(rev, |kv| kv.create_revision);
                    s.versions.insert(
                        (k.as_bytes().to_vec(), rev),
                        Some(Kv {
                            key: k.as_bytes().to_vec(),
                            value: v.clone(),
                            create_revision: created,
                            mod_revision: rev,
                            stale: false,
                        }),
                    );
                    changed.push(k.as_bytes().to_vec());
                }
                Op::Delete(k) => {
                    if s.at(k.as_bytes(), s.revision).is_some() {
                        s.versions.insert((k.as_bytes().to_vec(), rev), None);
                        changed.push(k.as_bytes().to_vec());
                    }
                }
            }
        }
        s.revision = rev;
        s.changes.insert(rev, changed);
        drop(s);
        self.0.revision.send_replace(rev);
        Ok(TxnResult {
            succeeded: true,
            revision: rev,
            found: vec![],
        })
    }

    async fn current_revision(&self) -> Result<i64, StorageError> {
        Ok(self.lock()?.revision)
    }

    async fn watch(&self, spec: WatchSpec) -> Result<Box<dyn WatchStream>, StorageError> {
        let next = if spec.from > 0 {
            spec.from
        } else {
            self.lock()?.revision + 1
        };
        Ok(Box::new(MemoryWatch {
            memory: self.clone(),
            changed: self.0.revision.subscribe(),
            spec,
            next,
            progress_wanted: false,
            ended: false,
        }))
    }
}

struct MemoryWatch {
    memory: Memory,
    changed: tokio::sync::watch::Receiver<i64>,
    spec: WatchSpec,
    /// The first revision not yet reported.
    next: i64,
    progress_wanted: bool,
    ended: bool,
}

impl MemoryWatch {
    fn selects(&self, key: &[u8]) -> bool {
        if self.spec.end.is_empty() {
            key == self.spec.start.as_slice()
        } else {
            key >= self.spec.start.as_slice() && key < self.spec.end.as_slice()
        }
    }

    /// What there is to say now, if anything.
    fn poll(&mut self) -> Option<WatchMessage> {
        let Ok(s) = self.memory.lock() else {
            self.ended = true;
            return Some(WatchMessage::Canceled("storage lock poisoned".into()));
        };
        if self.next < s.compacted {
            self.ended = true;
            return Some(WatchMessage::Compacted(s.compacted));
        }
        let mut events = vec![];
        for (rev, keys) in s.changes.range(self.next..) {
            for key in keys.iter().filter(|k| self.selects(k)) {
                let prev = s.at(key, rev - 1).cloned();
                let event = match s.versions.get(&(key.clone(), *rev)) {
                    Some(Some(kv)) => Event {
                        deleted: false,
                        kv: kv.clone(),
                        prev,
                    },
                    _ => Event {
                        deleted: true,
                        kv: Kv {
                            key: key.clone(),
                            value: vec![],
                            create_revision: 0,
                            mod_revision: *rev,
                            stale: false,
                        },
                        prev,
                    },
                };
                events.push(Event {
                    prev: event.prev.filter(|_| self.spec.prev_kv),
                    ..event
                });
            }
        }
        self.next = self.next.max(s.revision + 1);
        if !events.is_empty() {
            return Some(WatchMessage::Events(events));
        }
        if std::mem::take(&mut self.progress_wanted) {
            return Some(WatchMessage::Progress(s.revision));
        }
        None
    }
}

#[async_trait::async_trait]
impl WatchStream for MemoryWatch {
    async fn next(&mut self) -> Option<WatchMessage> {
        loop {
            if self.ended {
                return None;
            }
            if let Some(m) = self.poll() {
                return Some(m);
            }
            self.changed.changed().await.ok()?;
        }
    }

    async fn request_progress(&mut self) {
        // `next` looks at this before it waits.
        self.progress_wanted = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn guards_revisions_and_past_reads_follow_etcd() {
        let m = Memory::new();
        let put = |k: &str, v: &str| Op::Put(k.into(), v.as_bytes().to_vec());
        let r = m
            .txn(Txn {
                guards: vec![Guard::Absent("/a".into())],
                ops: vec![put("/a", "1"), put("/b", "1")],
                on_failure: vec![],
            })
            .await
            .unwrap();
        assert!(r.succeeded && r.revision == 1);
        let again = m
            .txn(Txn {
                guards: vec![Guard::Absent("/a".into())],
                ops: vec![put("/a", "2")],
                on_failure: vec!["/a".into(), "/c".into()],
            })
            .await
            .unwrap();
        assert!(!again.succeeded);
        assert_eq!(again.found, vec![true, false]);
        let r = m
            .txn(Txn {
                guards: vec![Guard::ModRevision("/a".into(), 1)],
                ops: vec![put("/a", "2"), Op::Delete("/b".into())],
                on_failure: vec![],
            })
            .await
            .unwrap();
        assert!(r.succeeded && r.revision == 2);
        let a = m.get("/a").await.unwrap().unwrap();
        assert_eq!((a.create_revision, a.mod_revision), (1, 2));
        assert!(m.get("/b").await.unwrap().is_none());
        let old = m.range(b"/", b"0", 1, 0).await.unwrap();
        assert_eq!(old.kvs.len(), 2);
        let limited = m.range(b"/", b"0", 1, 1).await.unwrap();
        assert!(limited.more && limited.kvs.len() == 1 && limited.count == 2);
    }

    #[tokio::test]
    async fn watches_report_changes_in_order_progress_and_compaction() {
        let m = Memory::new();
        let put = |k: &str| Txn {
            ops: vec![Op::Put(k.into(), b"v".to_vec())],
            ..Default::default()
        };
        m.txn(put("/a/1")).await.unwrap();
        m.txn(put("/b/1")).await.unwrap();
        let spec = WatchSpec {
            start: b"/a/".to_vec(),
            end: b"/a0".to_vec(),
            from: 1,
            prev_kv: true,
            ..Default::default()
        };
        let mut w = m.watch(spec.clone()).await.unwrap();
        let Some(WatchMessage::Events(ev)) = w.next().await else {
            panic!("events")
        };
        assert_eq!(ev.len(), 1, "only the watched range");
        assert_eq!((ev[0].kv.mod_revision, ev[0].deleted), (1, false));
        m.txn(Txn {
            ops: vec![Op::Delete("/a/1".into())],
            ..Default::default()
        })
        .await
        .unwrap();
        let Some(WatchMessage::Events(ev)) = w.next().await else {
            panic!("events")
        };
        assert!(ev[0].deleted && ev[0].kv.mod_revision == 3);
        assert_eq!(ev[0].prev.as_ref().map(|p| p.mod_revision), Some(1));
        w.request_progress().await;
        assert_eq!(w.next().await, Some(WatchMessage::Progress(3)));
        m.compact(3);
        assert_eq!(
            m.watch(spec).await.unwrap().next().await,
            Some(WatchMessage::Compacted(3))
        );
        assert!(matches!(
            m.range(b"/", b"0", 2, 0).await,
            Err(StorageError::Compacted(_))
        ));
    }
}
