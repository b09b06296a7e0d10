//! The pods bound to this node: one watch (`fieldSelector=spec.nodeName=<node>`), one
//! worker per pod uid fed the newest object. After every (re)list, pods that are no longer
//! listed, and pods the runtime holds that the API does not know (deleted while the agent
//! was down), get a worker told the object is gone, which stops and removes them.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use component_base::supervise::catch_panic;
use flotilla_core::backoff::Backoff;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::node_state::Shared;
use crate::worker;

/// Runs a pod's worker (`start` makes one) until it returns. One that panics (a bug some
/// pod's values reach) is logged and started again after `backoff`, from the newest pod
/// object, so no pod is left without a worker; once the agent is `stopping`, at once (to
/// stop the pod).
async fn restarting<F, Fut>(
    uid: &str,
    mut backoff: Backoff,
    mut stopping: watch::Receiver<bool>,
    mut start: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    while let Err(panic) = catch_panic(start()).await {
        let wait = backoff.next_delay();
        error!(uid, %panic, retry = ?wait, "pod worker panicked; starting it again");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopping.wait_for(|s| *s) => {}
        }
    }
}

struct Handle {
    tx: watch::Sender<Option<Pod>>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Workers {
    by_uid: HashMap<String, Handle>,
}

impl Workers {
    fn send(&mut self, shared: &Arc<Shared>, uid: &str, pod: Option<Pod>) {
        self.by_uid.retain(|_, h| !h.task.is_finished());
        if let Some(h) = self.by_uid.get(uid) {
            h.tx.send_replace(pod);
            return;
        }
        let (tx, rx) = watch::channel(pod);
        let (shared, id) = (shared.clone(), uid.to_string());
        let task = tokio::spawn(async move {
            let restarts = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
            let stopping = shared.stopping.clone();
            restarting(&id, restarts, stopping, || {
                worker::run(shared.clone(), id.clone(), rx.clone())
            })
            .await
        });
        self.by_uid.insert(uid.to_string(), Handle { tx, task });
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for h in self.by_uid.values() {
            h.task.abort();
        }
    }
}

/// Watches this node's pods and runs their workers until the task is dropped.
pub async fn run(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", shared.node_name));
    let mut stream = watcher(api, cfg).default_backoff().boxed();
    let mut workers = Workers::default();
    let mut listed: HashSet<String> = HashSet::new();
    let mut stopping = shared.stopping.clone();
    loop {
        let ev = tokio::select! {
            ev = stream.next() => ev,
            _ = stopping.wait_for(|s| *s) => None,
        };
        let Some(ev) = ev else {
            // Stopping: every worker stops its pod and ends; then this does.
            for (_, h) in workers.by_uid.drain() {
                let _ = h.task.await;
            }
            return;
        };
        match ev {
            Ok(Event::Init) => listed.clear(),
            Ok(Event::InitApply(p)) => {
                if let Some(uid) = p.metadata.uid.clone() {
                    listed.insert(uid.clone());
                    workers.send(&shared, &uid, Some(p));
                }
            }
            Ok(Event::InitDone) => {
                let gone: Vec<String> = workers
                    .by_uid
                    .keys()
                    .filter(|u| !listed.contains(*u))
                    .cloned()
                    .collect();
                for uid in gone {
                    workers.send(&shared, &uid, None);
                }
                match shared.runtime.pods().await {
                    Ok(held) => {
                        for uid in held.keys().filter(|u| !listed.contains(*u)) {
                            info!(uid, "removing a pod the API no longer has");
                            workers.send(&shared, uid, None);
                        }
                    }
                    Err(e) => warn!(error = %e, "listing the runtime's pods"),
                }
            }
            Ok(Event::Apply(p)) => {
                if let Some(uid) = p.metadata.uid.clone() {
                    workers.send(&shared, &uid, Some(p));
                }
            }
            Ok(Event::Delete(p)) => {
                if let Some(uid) = p.metadata.uid.clone() {
                    workers.send(&shared, &uid, None);
                }
            }
            Err(e) => warn!(node = %shared.node_name, error = %e, "watching pods"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_panicking_worker_is_started_again_until_it_returns() {
        let runs = Arc::new(AtomicUsize::new(0));
        let (_tx, stopping) = watch::channel(false);
        let r = runs.clone();
        let backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(5));
        tokio::time::timeout(
            Duration::from_secs(5),
            restarting("u", backoff, stopping, move || {
                let r = r.clone();
                async move {
                    if r.fetch_add(1, Ordering::SeqCst) < 2 {
                        panic!("a worker bug");
                    }
                }
            }),
        )
        .await
        .expect("restarted until it returned");
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}
