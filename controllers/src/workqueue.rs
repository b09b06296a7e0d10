//! A work queue as client-go's: a key is queued once however often it is added, is never
//! handed to two workers at once (added while in process, it comes back after `done`),
//! and failed keys come back after a per-key exponential backoff (5 ms doubling to
//! 1000 s, reset on success).

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use component_base::backoff::KeyedBackoff;
use tokio::sync::Notify;

struct Inner<K> {
    queue: VecDeque<K>,
    /// Queued or waiting to be re-queued after processing.
    dirty: HashSet<K>,
    processing: HashSet<K>,
}

pub struct WorkQueue<K> {
    inner: Mutex<Inner<K>>,
    notify: Notify,
    backoff: KeyedBackoff<K>,
}

impl<K: Clone + Eq + Hash + Send + Sync + 'static> WorkQueue<K> {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
            }),
            notify: Notify::new(),
            backoff: KeyedBackoff::new(Duration::from_millis(5), Duration::from_secs(1000)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, key: K) {
        let mut i = self.lock();
        if !i.dirty.insert(key.clone()) {
            return;
        }
        if !i.processing.contains(&key) {
            i.queue.push_back(key);
            drop(i);
            self.notify.notify_one();
        }
    }

    /// Adds `key` after `delay` (from a timer task).
    pub fn add_after(self: &Arc<Self>, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(key);
        });
    }

    /// Adds `key` after its backoff: the processing failed.
    pub fn add_rate_limited(self: &Arc<Self>, key: K) {
        let d = self.backoff.failed(key.clone());
        self.add_after(key, d);
    }

    /// The processing of `key` succeeded: its next failure backs off from the start.
    pub fn forget(&self, key: &K) {
        self.backoff.forget(key);
    }

    /// Waits for the next key; the caller must call [`WorkQueue::done`] with it.
    pub async fn get(&self) -> K {
        loop {
            let notified = self.notify.notified();
            {
                let mut i = self.lock();
                if let Some(k) = i.queue.pop_front() {
                    i.dirty.remove(&k);
                    i.processing.insert(k.clone());
                    if !i.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return k;
                }
            }
            notified.await;
        }
    }

    pub fn done(&self, key: &K) {
        let mut i = self.lock();
        i.processing.remove(key);
        if i.dirty.contains(key) {
            i.queue.push_back(key.clone());
            drop(i);
            self.notify.notify_one();
        }
    }

    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dedups_and_never_hands_out_a_key_twice_at_once() {
        let q = WorkQueue::<String>::new();
        q.add("a".into());
        q.add("a".into());
        q.add("b".into());
        assert_eq!(q.len(), 2);
        let a = q.get().await;
        assert_eq!(a, "a");
        q.add("a".into()); // while processing: comes back after done
        let b = q.get().await;
        assert_eq!(b, "b");
        assert!(q.is_empty());
        q.done(&a);
        assert_eq!(q.get().await, "a");
        q.done(&"a".to_string());
        q.done(&b);
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn failures_back_off() {
        let q = WorkQueue::<String>::new();
        q.add_rate_limited("a".into());
        q.add_rate_limited("a".into());
        let t = tokio::time::Instant::now();
        let k = q.get().await;
        assert_eq!(k, "a");
        assert!(t.elapsed() >= Duration::from_millis(5));
    }
}
