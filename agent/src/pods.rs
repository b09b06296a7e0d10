//! The pods bound to this node: one watch (`fieldSelector=spec.nodeName=<node>`), one
//! worker per pod uid fed the newest object. After every (re)list, pods that are no longer
//! listed, and pods the runtime holds that the API does not know (deleted while the agent
//! was down), get a worker told the object is gone, which stops and removes them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::node_state::Shared;
use crate::worker;

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
        let task = tokio::spawn(worker::run(shared.clone(), uid.to_string(), rx));
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
