//! The worker loop every controller runs: take a key, sync it, forget or back off, and
//! queue everything again periodically (level-triggered resync).

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use crate::workqueue::WorkQueue;

/// What a sync asks for next.
pub enum Next {
    Done,
    /// Run again after this long (waiting for time to pass, not for a change).
    After(Duration),
}

/// Runs `workers` workers over `queue` with `sync`, and every `resync` queues
/// `all_keys()`, until aborted.
pub async fn run_workers<K, S, F, A>(
    name: &'static str,
    queue: Arc<WorkQueue<K>>,
    workers: usize,
    resync: Duration,
    sync: S,
    all_keys: A,
) where
    K: Clone + Eq + Hash + Send + Sync + std::fmt::Debug + 'static,
    S: Fn(K) -> F + Send + Sync + Clone + 'static,
    F: Future<Output = anyhow::Result<Next>> + Send,
    A: Fn() -> Vec<K> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let (q, sync) = (queue.clone(), sync.clone());
        set.spawn(async move {
            loop {
                let key = q.get().await;
                match sync(key.clone()).await {
                    Ok(next) => {
                        q.forget(&key);
                        if let Next::After(d) = next {
                            q.add_after(key.clone(), d);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(controller = name, key = ?key, error = %e, "sync failed; will retry");
                        q.add_rate_limited(key.clone());
                    }
                }
                q.done(&key);
            }
        });
    }
    loop {
        tokio::time::sleep(resync).await;
        for k in all_keys() {
            queue.add(k);
        }
    }
}
