//! A work queue as client-go's: a key is queued once however often it is added, is never
//! handed to two workers at once (added while in process, it comes back after `done`),
//! and failed keys come back after a per-key exponential backoff (5 ms doubling to
//! 1000 s, reset on success). A key waits for at most one timer: added after a delay
//! while it already waits, the earlier time wins (client-go's delaying queue, kube-runtime's
//! scheduler), so periodic requeues never multiply.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use component_base::backoff::KeyedBackoff;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::queue_metrics::QueueMetrics;

struct Inner<K> {
    queue: VecDeque<K>,
    /// When each queued key was added (how long it waited, for the metrics).
    added: HashMap<K, Instant>,
    /// When each key in process was handed out.
    started: HashMap<K, Instant>,
    /// Queued or waiting to be re-queued after processing.
    dirty: HashSet<K>,
    processing: HashSet<K>,
    /// Keys waiting for a timer, and when it fires.
    waiting: HashMap<K, Instant>,
}

pub struct WorkQueue<K> {
    inner: Mutex<Inner<K>>,
    notify: Notify,
    backoff: KeyedBackoff<K>,
    /// client-go's metrics, once the controller names the queue.
    metrics: OnceLock<Arc<QueueMetrics>>,
}

impl<K: Clone + Eq + Hash + Send + Sync + 'static> WorkQueue<K> {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                added: HashMap::new(),
                started: HashMap::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                waiting: HashMap::new(),
            }),
            notify: Notify::new(),
            backoff: KeyedBackoff::new(Duration::from_millis(5), Duration::from_secs(1000)),
            metrics: OnceLock::new(),
        })
    }

    /// Keeps client-go's metrics under `name` from now on (the first name stays).
    pub fn export_metrics_as(&self, name: &'static str) {
        let m = crate::queue_metrics::named(name);
        m.depth.store(
            i64::try_from(self.len()).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
        let _ = self.metrics.set(m);
    }

    /// A key entered the queue.
    fn queued(&self, i: &mut Inner<K>, key: &K) {
        if let Some(m) = self.metrics.get() {
            m.adds.fetch_add(1, Ordering::Relaxed);
            m.depth.fetch_add(1, Ordering::Relaxed);
            i.added.insert(key.clone(), Instant::now());
        }
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
            self.queued(&mut i, &key);
            i.queue.push_back(key);
            drop(i);
            self.notify.notify_one();
        }
    }

    /// Adds `key` after `delay` (from a timer task); when it already waits for an earlier
    /// time, that one stands. A delay past the end of time (computed from what an object
    /// says) is never: the key waits for a change or the periodic resync instead.
    pub fn add_after(self: &Arc<Self>, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let Some(at) = Instant::now().checked_add(delay) else {
            return;
        };
        {
            let mut i = self.lock();
            match i.waiting.get(&key) {
                Some(earlier) if *earlier <= at => return,
                _ => i.waiting.insert(key.clone(), at),
            };
        }
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let mut i = q.lock();
            // A timer replaced by an earlier one has nothing left to do.
            if i.waiting.get(&key) == Some(&at) {
                i.waiting.remove(&key);
                drop(i);
                q.add(key);
            }
        });
    }

    /// Adds `key` after its backoff: the processing failed.
    pub fn add_rate_limited(self: &Arc<Self>, key: K) {
        let d = self.backoff.failed(key.clone());
        if let Some(m) = self.metrics.get() {
            m.retries.fetch_add(1, Ordering::Relaxed);
        }
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
                    if let Some(m) = self.metrics.get() {
                        m.depth.fetch_sub(1, Ordering::Relaxed);
                        let now = Instant::now();
                        if let Some(t) = i.added.remove(&k) {
                            m.waited(now.duration_since(t));
                        }
                        i.started.insert(k.clone(), now);
                    }
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
        if let (Some(m), Some(t)) = (self.metrics.get(), i.started.remove(key)) {
            m.worked(t.elapsed());
        }
        if i.dirty.contains(key) {
            self.queued(&mut i, key);
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
    async fn a_key_waits_for_one_timer_and_the_earliest_wins() {
        let q = WorkQueue::<String>::new();
        let t = Instant::now();
        q.add_after("a".into(), Duration::from_millis(200));
        q.add_after("a".into(), Duration::from_millis(50));
        q.add_after("a".into(), Duration::from_millis(300));
        assert_eq!(q.get().await, "a");
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(50) && waited < Duration::from_millis(200));
        q.done(&"a".to_string());
        // The replaced timers add nothing.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(q.is_empty());
        // Once fired, a key may wait again.
        q.add_after("a".into(), Duration::from_millis(1));
        assert_eq!(q.get().await, "a");
    }

    #[tokio::test]
    async fn a_delay_past_the_end_of_time_is_never() {
        let q = WorkQueue::<String>::new();
        q.add_after("a".into(), Duration::MAX);
        q.add_after("b".into(), Duration::from_secs(u64::MAX / 2));
        q.add("c".into());
        assert_eq!(q.get().await, "c");
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn a_named_queue_counts_adds_depth_waits_and_retries() {
        let q = WorkQueue::<String>::new();
        q.export_metrics_as("test-queue");
        q.add("a".into());
        q.add("a".into());
        q.add("b".into());
        let m = crate::queue_metrics::named("test-queue");
        assert_eq!(m.adds.load(Ordering::Relaxed), 2);
        assert_eq!(m.depth.load(Ordering::Relaxed), 2);
        let a = q.get().await;
        q.done(&a);
        q.add_rate_limited("c".into());
        assert_eq!(m.depth.load(Ordering::Relaxed), 1);
        assert_eq!(m.retries.load(Ordering::Relaxed), 1);
        let mut text = String::new();
        component_base::metrics::Collect::render(&crate::queue_metrics::Exported, &mut text);
        for line in [
            "workqueue_depth{name=\"test-queue\"} 1",
            "workqueue_adds_total{name=\"test-queue\"} 2",
            "workqueue_retries_total{name=\"test-queue\"} 1",
            "workqueue_queue_duration_seconds_count{name=\"test-queue\"} 1",
            "workqueue_work_duration_seconds_count{name=\"test-queue\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
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
