//! Watch events into the cache and the queue: the only place either is fed.
//!
//! - An unbound pod for this scheduler (not being deleted, not finished) is queued.
//! - A bound pod counts on its node (confirming an assumed one); finished pods do not.
//! - A node added or changed in what scheduling looks at, and a bound pod deleted, give
//!   unschedulable pods another try.
//! - After a relist, what the list did not contain is dropped.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use tokio::time::Instant;

use crate::cache::Cache;
use crate::nodeinfo::{NodeInfo, PodInfo};
use crate::queue::SchedulingQueue;

pub struct State {
    pub cache: Cache,
    pub queue: SchedulingQueue,
    pub scheduler_name: String,
    relist_pods: Option<HashSet<String>>,
    relist_nodes: Option<HashSet<String>>,
}

fn finished(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// Whether an update changed anything scheduling looks at (not just status or
/// resourceVersion).
fn pod_changed(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec
        || old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
}

fn node_changed(old: &NodeInfo, new: &Node) -> bool {
    let fresh = NodeInfo::new(Arc::new(new.clone()));
    old.labels != fresh.labels
        || old.taints != fresh.taints
        || old.unschedulable != fresh.unschedulable
        || old.allocatable != fresh.allocatable
}

impl State {
    pub fn new(scheduler_name: &str) -> Self {
        Self {
            cache: Cache::default(),
            queue: SchedulingQueue::default(),
            scheduler_name: scheduler_name.to_string(),
            relist_pods: None,
            relist_nodes: None,
        }
    }

    pub fn pod_applied(&mut self, pod: Pod, now: Instant) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some(seen) = self.relist_pods.as_mut() {
            seen.insert(uid.clone());
        }
        if finished(&pod) {
            self.pod_deleted(&pod, now);
            return;
        }
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        match node {
            Some(node) => {
                self.queue.remove(&uid);
                self.cache.add_bound(PodInfo::new(Arc::new(pod)), &node);
            }
            None => {
                let ours = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.scheduler_name.as_deref())
                    .unwrap_or("default-scheduler")
                    == self.scheduler_name;
                if !ours || pod.metadata.deletion_timestamp.is_some() {
                    self.queue.remove(&uid);
                    self.cache.unnominate(&uid);
                    return;
                }
                // Being bound by us: the watch has not caught up yet.
                if self.cache.is_assumed(&uid) {
                    return;
                }
                let changed = self
                    .queue
                    .get(&uid)
                    .is_none_or(|old| pod_changed(&old.pod, &pod));
                let nominated = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.nominated_node_name.clone());
                let info = PodInfo::new(Arc::new(pod));
                self.cache.nominate(info.clone(), nominated);
                self.queue.upsert(info, changed, now);
            }
        }
    }

    pub fn pod_deleted(&mut self, pod: &Pod, now: Instant) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        self.queue.remove(&uid);
        let was_bound = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        self.cache.remove_pod(&uid);
        if was_bound {
            self.queue.move_all_to_active_or_backoff(now);
        }
    }

    pub fn pods_relist_started(&mut self) {
        self.relist_pods = Some(HashSet::new());
    }

    /// Drops pods the relist did not contain (they were deleted while the watch was down),
    /// except those being bound.
    pub fn pods_relist_done(&mut self, now: Instant) {
        let Some(seen) = self.relist_pods.take() else {
            return;
        };
        for uid in self.cache.placed_uids() {
            if !seen.contains(&uid) && !self.cache.is_assumed(&uid) {
                self.cache.remove_pod(&uid);
            }
        }
        self.queue.retain(|uid| seen.contains(uid));
        self.queue.move_all_to_active_or_backoff(now);
    }

    pub fn node_applied(&mut self, node: Node, now: Instant) {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(seen) = self.relist_nodes.as_mut() {
            seen.insert(name.clone());
        }
        let changed = self
            .cache
            .node(&name)
            .is_none_or(|old| node_changed(old, &node));
        self.cache.upsert_node(Arc::new(node));
        if changed {
            self.queue.move_all_to_active_or_backoff(now);
        }
    }

    pub fn node_deleted(&mut self, node: &Node) {
        self.cache
            .remove_node(node.metadata.name.as_deref().unwrap_or_default());
    }

    pub fn nodes_relist_started(&mut self) {
        self.relist_nodes = Some(HashSet::new());
    }

    pub fn nodes_relist_done(&mut self, now: Instant) {
        if let Some(seen) = self.relist_nodes.take() {
            self.cache.retain_nodes(&seen);
            self.queue.move_all_to_active_or_backoff(now);
        }
    }

    pub fn namespace_applied(&mut self, ns: Namespace) {
        let name = ns.metadata.name.unwrap_or_default();
        self.cache
            .set_namespace(name, ns.metadata.labels.unwrap_or_default());
    }

    /// A claim, volume or class changed: pods waiting on storage may fit now.
    pub fn storage_changed(
        &mut self,
        now: Instant,
        change: impl FnOnce(&mut crate::volumes::Storage),
    ) {
        change(&mut self.cache.storage);
        self.queue.move_all_to_active_or_backoff(now);
    }

    pub fn namespace_deleted(&mut self, ns: &Namespace) {
        self.cache
            .remove_namespace(ns.metadata.name.as_deref().unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{node, pod};

    #[test]
    fn bound_pods_count_and_unbound_ones_queue() {
        let mut s = State::new("default-scheduler");
        let t = Instant::now();
        s.node_applied(node("n1", "2", "2Gi"), t);
        s.pod_applied(pod("a", "1", ""), t);
        assert_eq!(s.queue.sizes(), (1, 0, 0));
        let mut bound = pod("a", "1", "");
        bound.spec.as_mut().unwrap().node_name = Some("n1".into());
        s.pod_applied(bound.clone(), t);
        assert_eq!(s.queue.sizes(), (0, 0, 0));
        assert_eq!(s.cache.node("n1").unwrap().requested.milli_cpu, 1000);
        // Another scheduler's pods are not ours.
        let mut other = pod("b", "1", "");
        other.spec.as_mut().unwrap().scheduler_name = Some("custom".into());
        s.pod_applied(other, t);
        assert_eq!(s.queue.sizes(), (0, 0, 0));
        // A finished pod no longer counts.
        bound.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        s.pod_applied(bound, t);
        assert_eq!(s.cache.node("n1").unwrap().requested.milli_cpu, 0);
    }

    #[test]
    fn a_relist_drops_what_disappeared() {
        let mut s = State::new("default-scheduler");
        let t = Instant::now();
        s.node_applied(node("n1", "2", "2Gi"), t);
        let mut bound = pod("a", "1", "");
        bound.spec.as_mut().unwrap().node_name = Some("n1".into());
        s.pod_applied(bound, t);
        s.pod_applied(pod("q", "", ""), t);
        s.pods_relist_started();
        s.pods_relist_done(t);
        assert_eq!(s.cache.node("n1").unwrap().requested.pods, 0);
        assert_eq!(s.queue.sizes(), (0, 0, 0));
        s.nodes_relist_started();
        s.nodes_relist_done(t);
        assert_eq!(s.cache.node_count(), 0);
    }
}
