//! The scheduler's view of the cluster: nodes with the pods placed on them, including pods
//! it has assumed onto a node and is still binding, so the next decision already counts
//! them. Pure: fed by watch events, read by the scheduling loop.

use std::collections::HashMap;
use std::sync::Arc;

use flotilla_core::labels::Labels;
use k8s_openapi::api::core::v1::Node;

use crate::nodeinfo::{NodeInfo, PodInfo};

#[derive(Debug)]
struct Placed {
    node: String,
    assumed: bool,
}

#[derive(Default)]
pub struct Cache {
    nodes: HashMap<String, NodeInfo>,
    /// Names of nodes that exist (a node deleted while pods remain on it stays in `nodes`
    /// until they are gone, but is not offered).
    order: Vec<String>,
    /// The same names, for O(1) lookups.
    present: std::collections::HashSet<String>,
    placed: HashMap<String, Placed>,
    /// Pods with required anti-affinity terms (uid → node), which constrain every
    /// incoming pod.
    anti_affinity: HashMap<String, String>,
    namespaces: HashMap<String, Labels>,
    /// Unbound pods nominated to a node by preemption (uid → node, pod): they reserve room
    /// there against pods of lower or equal priority.
    nominated: HashMap<String, (String, Arc<PodInfo>)>,
    /// Claims, volumes and classes (what VolumeBinding reads).
    pub storage: crate::volumes::Storage,
}

impl Cache {
    pub fn node_count(&self) -> usize {
        self.order.len()
    }
    /// The node at position `i` of the node list.
    pub fn node_at(&self, i: usize) -> Option<&NodeInfo> {
        self.order.get(i).and_then(|n| self.nodes.get(n))
    }
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name).filter(|_| self.present.contains(name))
    }
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.order.iter().filter_map(|n| self.nodes.get(n))
    }
    pub fn namespace_labels(&self, ns: &str) -> Option<&Labels> {
        self.namespaces.get(ns)
    }
    /// Pods with required anti-affinity and the nodes they are on.
    pub fn anti_affinity_pods(&self) -> impl Iterator<Item = (&PodInfo, &NodeInfo)> {
        self.anti_affinity.iter().filter_map(|(uid, node)| {
            let n = self.nodes.get(node)?;
            Some((n.pods.get(uid)?.as_ref(), n))
        })
    }

    /// Records (or with `None` clears) the node `p` was nominated to.
    pub fn nominate(&mut self, p: Arc<PodInfo>, node: Option<String>) {
        match node.filter(|n| !n.is_empty()) {
            Some(n) => {
                self.nominated.insert(p.uid.clone(), (n, p));
            }
            None => {
                self.nominated.remove(&p.uid);
            }
        }
    }

    pub fn unnominate(&mut self, uid: &str) {
        self.nominated.remove(uid);
    }

    /// Pods other than `pod` nominated to `node` with at least its priority.
    pub fn nominated_for(&self, node: &str, pod: &PodInfo) -> Vec<Arc<PodInfo>> {
        self.nominated
            .values()
            .filter(|(n, p)| n == node && p.uid != pod.uid && p.priority >= pod.priority)
            .map(|(_, p)| p.clone())
            .collect()
    }

    pub fn set_namespace(&mut self, name: String, labels: Labels) {
        self.namespaces.insert(name, labels);
    }
    pub fn remove_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
    }

    pub fn upsert_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        match self.nodes.get_mut(&name) {
            Some(n) => n.set_node(node),
            None => {
                self.nodes.insert(name.clone(), NodeInfo::new(node));
            }
        }
        if self.present.insert(name.clone()) {
            self.order.push(name);
        }
    }

    pub fn remove_node(&mut self, name: &str) {
        if self.present.remove(name) {
            self.order.retain(|n| n != name);
        }
        if self.nodes.get(name).is_some_and(|n| n.pods.is_empty()) {
            self.nodes.remove(name);
        }
    }

    /// Replaces the node set after a relist: nodes not in `names` are removed.
    pub fn retain_nodes(&mut self, names: &std::collections::HashSet<String>) {
        let gone: Vec<String> = self
            .order
            .iter()
            .filter(|n| !names.contains(*n))
            .cloned()
            .collect();
        for n in gone {
            self.remove_node(&n);
        }
    }

    fn place(&mut self, p: Arc<PodInfo>, node: &str, assumed: bool) {
        self.unplace(&p.uid);
        self.nominated.remove(&p.uid);
        let n = self.nodes.entry(node.to_string()).or_insert_with(|| {
            NodeInfo::new(Arc::new(Node {
                metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: Some(node.to_string()),
                    ..Default::default()
                },
                ..Default::default()
            }))
        });
        if p.has_required_anti_affinity {
            self.anti_affinity.insert(p.uid.clone(), node.to_string());
        }
        self.placed.insert(
            p.uid.clone(),
            Placed {
                node: node.to_string(),
                assumed,
            },
        );
        n.add_pod(p);
    }

    fn unplace(&mut self, uid: &str) -> Option<Placed> {
        let old = self.placed.remove(uid)?;
        self.anti_affinity.remove(uid);
        if let Some(n) = self.nodes.get_mut(&old.node) {
            n.remove_pod(uid);
            if n.pods.is_empty() && !self.present.contains(&old.node) {
                self.nodes.remove(&old.node);
            }
        }
        Some(old)
    }

    /// The scheduler decided `p` goes to `node`; it counts there until the binding is
    /// confirmed by the watch or forgotten.
    pub fn assume(&mut self, p: Arc<PodInfo>, node: &str) {
        self.place(p, node, true);
    }

    /// The binding failed: the assumed pod no longer counts.
    pub fn forget(&mut self, uid: &str) {
        if self.placed.get(uid).is_some_and(|p| p.assumed) {
            self.unplace(uid);
        }
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.placed.get(uid).is_some_and(|p| p.assumed)
    }

    /// A pod the watch shows bound to `node` (confirms an assumed one).
    pub fn add_bound(&mut self, p: Arc<PodInfo>, node: &str) {
        self.place(p, node, false);
    }

    /// A pod that is gone or finished.
    pub fn remove_pod(&mut self, uid: &str) {
        self.nominated.remove(uid);
        self.unplace(uid);
    }

    /// Uids of every pod placed, for reconciling after a relist.
    pub fn placed_uids(&self) -> Vec<String> {
        self.placed.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{node, pod};

    #[test]
    fn assumed_pods_count_until_forgotten_and_bound_ones_replace_them() {
        let mut c = Cache::default();
        c.upsert_node(Arc::new(node("n1", "4", "8Gi")));
        let p = PodInfo::new(Arc::new(pod("p1", "500m", "1Gi")));
        c.assume(p.clone(), "n1");
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 500);
        assert!(c.is_assumed(&p.uid));
        c.forget(&p.uid);
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 0);
        c.assume(p.clone(), "n1");
        c.add_bound(p.clone(), "n1");
        assert!(!c.is_assumed(&p.uid));
        c.forget(&p.uid);
        assert_eq!(
            c.node("n1").unwrap().requested.milli_cpu,
            500,
            "bound pods are not forgotten"
        );
        assert_eq!(c.node("n1").unwrap().requested.pods, 1);
    }

    #[test]
    fn a_deleted_node_keeps_its_pods_until_they_go() {
        let mut c = Cache::default();
        c.upsert_node(Arc::new(node("n1", "4", "8Gi")));
        let p = PodInfo::new(Arc::new(pod("p1", "500m", "1Gi")));
        c.add_bound(p.clone(), "n1");
        c.remove_node("n1");
        assert_eq!(c.node_count(), 0);
        assert!(c.node("n1").is_none());
        c.upsert_node(Arc::new(node("n1", "4", "8Gi")));
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 500);
        c.remove_node("n1");
        c.remove_pod(&p.uid);
        assert!(c.nodes.is_empty());
    }
}
