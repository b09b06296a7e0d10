//! The node IPAM controller (kube's `nodeipam` with the range allocator): every Node
//! without `spec.podCIDRs` gets one range of each `--cluster-cidr` (a
//! `/--node-cidr-mask-size`), written once into `spec.podCIDR` and `spec.podCIDRs`; the
//! range of a Node that is gone is free again. Runs only with `--allocate-node-cidrs`.
//!
//! Guarantee: no two Nodes are ever given the same range, also across controller-manager
//! failover. It rests on four things together:
//! - leader election: one replica allocates at a time, and the work of a leader that
//!   lost the lease is aborted before anyone can acquire it;
//! - the leader first sees every Node (the informer's first list, a consistent read made
//!   after it acquired the lease) and occupies every existing `spec.podCIDRs` before it
//!   allocates anything (`prepare`), so it knows every range a former leader wrote;
//! - a range stays occupied until the Node's delete is seen (an update racing it is
//!   harmless); a range chosen for a Node whose write failed, or whose outcome is unknown,
//!   stays held for that Node and is written again, never given to another;
//! - the write is a merge patch guarded by the Node's resourceVersion (a 409 is
//!   requeued), and the apiserver refuses to change `podCIDRs` once set ("node updates
//!   may not change podCIDR except from \"\" to valid"), so a stale cache cannot make the
//!   controller overwrite a range it has not seen.
//!
//! A Node whose `podCIDRs` lie outside every cluster CIDR is left alone (a warning). When a
//! cluster CIDR has no free range left, the Node gets an Event `CIDRNotAvailable` (kube's
//! reason) and is tried again after its backoff. Acts as the ServiceAccount
//! `node-controller`, as kube's nodeipam does. The ranges are the pure [`CidrSet`]s
//! (`cidrset.rs`); who holds what, and the decision per Node, is `plan.rs`; the flags,
//! validated, `config.rs`.

pub mod cidrset;
pub mod config;
pub mod plan;

use std::sync::{Arc, Mutex};

use component_base::events::{object_ref, EventType};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use tokio::task::JoinSet;

use crate::context::Context;
use crate::informer::{Change, Informer};
use crate::reconciler::{Action, Controller, Reconciler, Run};
use crate::workqueue::WorkQueue;

pub use cidrset::{CidrSet, Error as CidrSetError, MAX_NODE_BITS};
pub use config::Config;
pub use flotilla_core::cidr::{Cidr, Family, ParseError};
pub use plan::{Allocations, Decision};

/// kube's event reason when a cluster CIDR is exhausted.
pub const CIDR_NOT_AVAILABLE: &str = "CIDRNotAvailable";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("setting podCIDRs {cidrs} on node {node}")]
    Patch {
        node: String,
        cidrs: String,
        #[source]
        source: kube::Error,
    },
    #[error("node {node}: no free range left in cluster CIDR {cluster}")]
    ClusterFull { node: String, cluster: Cidr },
}

pub struct NodeIpamController {
    ctx: Arc<Context>,
    nodes: Arc<Informer<Node>>,
    /// Never held across an await.
    allocations: Mutex<Allocations>,
}

/// Keyed by Node name: every change and every delete.
pub fn new(ctx: &Arc<Context>) -> Box<dyn Run> {
    let queue = WorkQueue::<String>::new();
    let cfg = ctx.config.node_ipam.clone().unwrap_or_default();
    let r = Arc::new(NodeIpamController {
        ctx: ctx.clone(),
        nodes: ctx.informers.get(),
        allocations: Mutex::new(Allocations::new(cfg.sets())),
    });
    let q = queue.clone();
    r.nodes.on_change(move |ch| {
        let node = match ch {
            Change::Apply { new, .. } => new,
            Change::Delete(old) => old,
        };
        q.add(node.metadata.name.clone().unwrap_or_default());
    });
    Controller::new(r, queue).workers(4).into()
}

impl NodeIpamController {
    fn allocations(&self) -> std::sync::MutexGuard<'_, Allocations> {
        self.allocations.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `cidrs` to the Node, guarded by the resourceVersion the decision was made on.
    async fn assign(&self, node: &Node, cidrs: &[Cidr]) -> Result<Action, Error> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let strings: Vec<String> = cidrs.iter().map(Cidr::to_string).collect();
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": node.metadata.resource_version },
            "spec": { "podCIDR": strings.first(), "podCIDRs": strings },
        });
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(node = %name, pod_cidrs = ?strings, "set node podCIDRs");
                Ok(Action::await_change())
            }
            // Gone: the delete is on its way and frees the range.
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
            // Changed meanwhile (409), or set by someone else (422): the range stays held
            // for this Node until the cache shows what it has.
            Err(source) => Err(Error::Patch {
                node: name,
                cidrs: strings.join(","),
                source,
            }),
        }
    }
}

impl Reconciler for NodeIpamController {
    type Key = String;
    type Error = Error;

    async fn reconcile(&self, name: &String) -> Result<Action, Error> {
        let Some(node) = self.nodes.store().get(&ObjectRef::new(name)) else {
            let held = self.allocations().held(name).to_vec();
            if !held.is_empty() {
                tracing::info!(node = %name, pod_cidrs = ?held, "node gone: releasing its ranges");
            }
            self.allocations().forget(name);
            return Ok(Action::await_change());
        };
        let deleting = node.metadata.deletion_timestamp.is_some();
        let decision =
            self.allocations()
                .decide(name, &flotilla_core::cidr::node_pod_cidrs(&node), !deleting);
        match decision {
            Decision::Keep { outside, invalid } => {
                if !outside.is_empty() {
                    tracing::warn!(node = %name, pod_cidrs = ?outside, "podCIDRs outside the cluster CIDRs: left alone");
                }
                if !invalid.is_empty() {
                    tracing::warn!(node = %name, pod_cidrs = ?invalid, "podCIDRs that do not parse: left alone");
                }
                Ok(Action::await_change())
            }
            Decision::Assign(cidrs) if cidrs.is_empty() => Ok(Action::await_change()),
            Decision::Assign(cidrs) => self.assign(&node, &cidrs).await,
            Decision::Full { cluster } => {
                self.ctx.recorder.record(
                    &object_ref(&*node),
                    EventType::Normal,
                    CIDR_NOT_AVAILABLE,
                    &format!("Node {name} status is now: {CIDR_NOT_AVAILABLE}"),
                );
                Err(Error::ClusterFull {
                    node: name.clone(),
                    cluster,
                })
            }
        }
    }

    /// Every Node, and every Node holding ranges (one whose delete was missed while the
    /// watch was re-listing is released here).
    fn all_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .nodes
            .store()
            .state()
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        keys.extend(self.allocations().holders().cloned());
        keys.sort();
        keys.dedup();
        keys
    }

    /// Before anything is allocated: every range the listed Nodes have is occupied.
    async fn prepare(self: Arc<Self>, _tasks: &mut JoinSet<()>) {
        let nodes = self.nodes.store().state();
        let mut a = self.allocations();
        for n in &nodes {
            let name = n.metadata.name.as_deref().unwrap_or_default();
            if let Decision::Keep { outside, invalid } =
                a.decide(name, &flotilla_core::cidr::node_pod_cidrs(n), false)
            {
                if !outside.is_empty() || !invalid.is_empty() {
                    tracing::warn!(node = %name, outside = ?outside, invalid = ?invalid, "podCIDRs left alone");
                }
            }
        }
        tracing::info!(nodes = nodes.len(), occupied = ?a.occupied(), "occupied the ranges of the listed nodes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;

    fn node(pod_cidr: Option<&str>, pod_cidrs: Option<&[&str]>) -> Node {
        Node {
            spec: Some(NodeSpec {
                pod_cidr: pod_cidr.map(str::to_string),
                pod_cidrs: pod_cidrs.map(|v| v.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_nodes_ranges_are_its_pod_cidrs_or_its_pod_cidr() {
        assert!(flotilla_core::cidr::node_pod_cidrs(&Node::default()).is_empty());
        assert!(flotilla_core::cidr::node_pod_cidrs(&node(Some(""), Some(&[]))).is_empty());
        assert_eq!(
            flotilla_core::cidr::node_pod_cidrs(&node(Some("10.0.0.0/24"), None)),
            ["10.0.0.0/24"]
        );
        assert_eq!(
            flotilla_core::cidr::node_pod_cidrs(&node(
                Some("10.0.0.0/24"),
                Some(&["10.0.0.0/24", "fd00::/64"])
            )),
            ["10.0.0.0/24", "fd00::/64"]
        );
    }
}
