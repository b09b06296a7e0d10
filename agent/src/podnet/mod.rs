//! The routed pod network of a node (flannel's host-gw scheme), for the Docker runtime.
//!
//! Each node's pods get addresses from its podCIDR: the Node's `spec.podCIDR` (set by the
//! node IPAM controller), else `--pod-cidr`. The runtime cannot start sandboxes before it
//! has one (`DockerRuntime::network_ready`, which the Node's Ready condition reports). Then
//! this loop (one per node, watching every Node) keeps, retrying each failed step with a
//! bounded backoff and checking everything again every minute:
//! - the node's Docker bridge network of its podCIDR (`DockerRuntime::set_pod_cidr`);
//! - `iptables` DOCKER-USER rules accepting traffic from and to `--cluster-cidr` (Docker's
//!   FORWARD policy and isolation chains drop bridge-to-bridge traffic otherwise);
//! - an nftables table `ip flotilla-podnet-<podCIDR>` masquerading traffic from the
//!   podCIDR to outside the cluster network (pod-to-pod traffic keeps the pod's address);
//! - for each other Node with a podCIDR whose InternalIP is not this host's, a route
//!   `<podCIDR> via <InternalIP> proto 241`; routes of that protocol inside the cluster
//!   network that no Node wants are removed.
//!
//! What is left when the agent stops: all of it (pods keep running and keep their
//! network). The DOCKER-USER rules are shared by the cluster's agents of the machine.
//!
//! Layout: `plan.rs` is pure (names, nft text, route plan); `kernel.rs` runs the commands.

pub mod kernel;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::backoff::Backoff;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use self::plan::{Cidr, NodeNet};
use crate::runtime::docker::DockerRuntime;

/// What the loop needs to know of the agent.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node_name: String,
    /// The whole pod network (`--cluster-cidr`).
    pub cluster_cidr: Cidr,
    /// `--pod-cidr`: the podCIDR while the Node has none.
    pub fallback_pod_cidr: Option<Cidr>,
}

/// How often everything is checked again when nothing changed.
const RESYNC: Duration = Duration::from_secs(60);

/// What has been applied so far.
#[derive(Default)]
struct Applied {
    /// The podCIDR whose masquerade table is in place.
    masquerade: Option<Cidr>,
    /// Said once: which podCIDR the node waits for, or that no route is needed.
    said_waiting: bool,
    said_no_routes: bool,
    said_outside: Option<Cidr>,
}

/// Keeps the node's pod network in place until the task is dropped.
pub async fn run(client: kube::Client, rt: Arc<DockerRuntime>, s: Settings) {
    let api: Api<Node> = Api::all(client);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut nodes: BTreeMap<String, NodeNet> = BTreeMap::new();
    let mut listing: BTreeMap<String, NodeNet> = BTreeMap::new();
    let mut listed = false;
    let mut applied = Applied::default();
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut failing = false;
    let mut next = Instant::now() + RESYNC;
    loop {
        tokio::select! {
            ev = stream.next() => {
                let changed = match ev {
                    Some(Ok(Event::Init)) => { listing.clear(); false }
                    Some(Ok(Event::InitApply(n))) => {
                        if let Some(name) = n.metadata.name.clone() {
                            listing.insert(name, plan::node_net(&n));
                        }
                        false
                    }
                    Some(Ok(Event::InitDone)) => {
                        listed = true;
                        nodes = std::mem::take(&mut listing);
                        true
                    }
                    Some(Ok(Event::Apply(n))) => match n.metadata.name.clone() {
                        Some(name) => {
                            let net = plan::node_net(&n);
                            nodes.insert(name, net.clone()) != Some(net)
                        }
                        None => false,
                    },
                    Some(Ok(Event::Delete(n))) => match &n.metadata.name {
                        Some(name) => nodes.remove(name).is_some(),
                        None => false,
                    },
                    Some(Err(e)) => {
                        warn!(node = %s.node_name, error = %e, "watching Nodes for the pod network");
                        false
                    }
                    None => return,
                };
                // A change is acted on at once, unless a failure is backing off.
                if changed && listed && !failing {
                    next = Instant::now();
                }
            }
            _ = tokio::time::sleep_until(next), if listed => {
                match reconcile(&rt, &s, &nodes, &mut applied).await {
                    Ok(()) => {
                        failing = false;
                        backoff.reset();
                        next = Instant::now() + RESYNC;
                    }
                    Err(()) => {
                        failing = true;
                        next = Instant::now() + backoff.next_delay();
                    }
                }
            }
        }
    }
}

/// One pass over everything; each failure is logged (with the command and its stderr)
/// and makes the pass fail, the other steps still being tried.
async fn reconcile(
    rt: &DockerRuntime,
    s: &Settings,
    nodes: &BTreeMap<String, NodeNet>,
    applied: &mut Applied,
) -> Result<(), ()> {
    let mut ok = true;
    let own = nodes
        .get(&s.node_name)
        .and_then(|n| n.pod_cidr)
        .or(s.fallback_pod_cidr);
    match own {
        None => {
            if !applied.said_waiting {
                info!(node = %s.node_name, "no podCIDR yet (none in the Node's spec, no --pod-cidr): pods wait for the network");
                applied.said_waiting = true;
            }
        }
        Some(cidr) => {
            if !s.cluster_cidr.contains(&cidr) && applied.said_outside != Some(cidr) {
                warn!(node = %s.node_name, pod_cidr = %cidr, cluster_cidr = %s.cluster_cidr,
                    "the podCIDR is outside --cluster-cidr: its pods' traffic to other nodes is masqueraded and may be dropped");
                applied.said_outside = Some(cidr);
            }
            // The host first: pods start only once their traffic can flow.
            let mut host_ok = true;
            if let Err(e) = kernel::ensure_docker_user(&s.cluster_cidr).await {
                warn!(node = %s.node_name, error = %e, "accepting the cluster network in DOCKER-USER; retrying");
                rt.network_pending(format!("podCIDR {cidr}: {e}"));
                host_ok = false;
            }
            if applied.masquerade != Some(cidr) {
                match kernel::apply_masquerade(&cidr, &s.cluster_cidr).await {
                    Ok(()) => {
                        info!(node = %s.node_name, table = %plan::nft_table(&cidr), "egress masquerade in place");
                        if let Some(old) = applied.masquerade.replace(cidr) {
                            if let Err(e) = kernel::remove_masquerade(&old).await {
                                warn!(node = %s.node_name, error = %e, "removing the masquerade of the former podCIDR");
                            }
                        }
                    }
                    Err(e) => {
                        warn!(node = %s.node_name, error = %e, "applying the egress masquerade; retrying");
                        rt.network_pending(format!("podCIDR {cidr}: {e}"));
                        host_ok = false;
                    }
                }
            }
            if host_ok {
                if let Err(e) = rt.set_pod_cidr(cidr).await {
                    warn!(node = %s.node_name, error = %e, "setting up the pod network; retrying");
                    rt.network_pending(e);
                    ok = false;
                }
            } else {
                ok = false;
            }
        }
    }
    if let Err(e) = routes(s, nodes, applied).await {
        warn!(node = %s.node_name, error = %e, "updating host-gw routes; retrying");
        ok = false;
    }
    if ok {
        Ok(())
    } else {
        Err(())
    }
}

/// Brings the routes of ours in line with the Nodes.
async fn routes(
    s: &Settings,
    nodes: &BTreeMap<String, NodeNet>,
    applied: &mut Applied,
) -> Result<(), kernel::CmdError> {
    let local: BTreeSet<_> = kernel::local_addrs().await?;
    let want = plan::desired_routes(nodes, &s.node_name, &local, &s.cluster_cidr);
    let with_cidr = nodes
        .iter()
        .filter(|(n, net)| **n != s.node_name && net.pod_cidr.is_some())
        .count();
    if want.is_empty() && with_cidr > 0 && !applied.said_no_routes {
        debug!(node = %s.node_name, "every other Node's InternalIP is on this host: no host-gw route needed");
        applied.said_no_routes = true;
    }
    let current = kernel::our_routes().await?;
    let (replace, delete) = plan::route_changes(&current, &want, &s.cluster_cidr);
    let mut first_err = None;
    for (dst, via) in replace {
        match kernel::route_replace(&dst, &via).await {
            Ok(()) => info!(node = %s.node_name, %dst, %via, "host-gw route set"),
            Err(e) => {
                warn!(node = %s.node_name, error = %e, "setting a host-gw route");
                first_err.get_or_insert(e);
            }
        }
    }
    for dst in delete {
        match kernel::route_delete(&dst).await {
            Ok(()) => info!(node = %s.node_name, %dst, "host-gw route removed"),
            Err(e) => {
                warn!(node = %s.node_name, error = %e, "removing a host-gw route");
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// An exclusive machine-wide lock named `name` (under /run/flotilla), released when
/// dropped; none without a writable lock directory.
async fn lock(name: &str) -> Option<std::fs::File> {
    let name = name.to_string();
    tokio::task::spawn_blocking(move || {
        let dir = std::path::Path::new("/run/flotilla");
        std::fs::create_dir_all(dir).ok()?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{name}.lock")))
            .ok()?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).ok()?;
        Some(f)
    })
    .await
    .ok()
    .flatten()
}
