//! The garbage collector's graph of owner references, over objects of every kind by uid:
//! who owns whom, kept by the watches, read by the reconciles. Pure.

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ApiResource;

/// An object as the graph knows it (metadata only).
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) ar: ApiResource,
    pub(super) namespaced: bool,
    pub(super) namespace: Option<String>,
    pub(super) name: String,
    pub(super) owners: Vec<OwnerReference>,
    pub(super) deleting: bool,
    pub(super) finalizers: Vec<String>,
}

#[derive(Default)]
pub(super) struct Graph {
    pub(super) nodes: HashMap<String, Node>,
    pub(super) dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    pub(super) fn upsert(&mut self, uid: String, n: Node) {
        self.remove(&uid);
        for o in &n.owners {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(uid.clone());
        }
        self.nodes.insert(uid, n);
    }
    pub(super) fn remove(&mut self, uid: &str) -> Option<Node> {
        let old = self.nodes.remove(uid)?;
        for o in &old.owners {
            if let Some(d) = self.dependents.get_mut(&o.uid) {
                d.remove(uid);
                if d.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
        }
        Some(old)
    }
    pub(super) fn dependents_of(&self, uid: &str) -> Vec<(String, Node)> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d).map(|n| (d.clone(), n.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, owners: &[&str]) -> Node {
        Node {
            ar: ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&()),
            namespaced: true,
            namespace: Some("ns".into()),
            name: name.into(),
            owners: owners
                .iter()
                .map(|u| OwnerReference {
                    uid: u.to_string(),
                    ..Default::default()
                })
                .collect(),
            deleting: false,
            finalizers: vec![],
        }
    }

    fn dependents(g: &Graph, uid: &str) -> Vec<String> {
        let mut v: Vec<String> = g.dependents_of(uid).into_iter().map(|(u, _)| u).collect();
        v.sort();
        v
    }

    #[test]
    fn dependents_follow_owner_references_as_they_change() {
        let mut g = Graph::default();
        g.upsert("rs".into(), node("rs", &["d"]));
        g.upsert("p1".into(), node("p1", &["rs"]));
        g.upsert("p2".into(), node("p2", &["rs", "other"]));
        assert_eq!(dependents(&g, "rs"), ["p1", "p2"]);
        assert_eq!(dependents(&g, "d"), ["rs"]);
        // p2 released by rs: no longer its dependent.
        g.upsert("p2".into(), node("p2", &["other"]));
        assert_eq!(dependents(&g, "rs"), ["p1"]);
        assert_eq!(g.remove("p1").map(|n| n.name), Some("p1".to_string()));
        assert!(dependents(&g, "rs").is_empty());
        assert!(
            !g.dependents.contains_key("rs"),
            "no empty entries are left"
        );
        assert!(g.remove("p1").is_none());
    }
}
