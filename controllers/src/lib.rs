//! `flotilla controller-manager`: the reconciling controllers, as kube-controller-manager.
//!
//! Layout:
//! - `lib.rs`: the registration table [`CONTROLLERS`] (a controller's `--controllers`
//!   name, the informers it reads, its constructor) and the run: only the controllers
//!   enabled and served, and only the informers they declared.
//! - `config.rs`: flags, validated once; `context.rs`: what every controller gets, and
//!   the relations they share (owner references, readiness); `credentials.rs`: each
//!   controller's own ServiceAccount and token (`--use-service-account-credentials`).
//! - `reconciler.rs`: the one controller shape (`reconcile` and `error_policy` returning
//!   an `Action`) and its runner; `workqueue.rs`: the deduplicating, rate-limited queue
//!   under it (`queue_metrics.rs`: client-go's metrics of each, by controller name); `informer.rs`: shared watches and caches, made on demand;
//!   `expectations.rs`: no double creation; `claims.rs`: adoption and release of pods and
//!   revisions (kube's ControllerRefManager); `backoff.rs`: per-key exponential backoff.
//! - One module per controller, its pure decisions in their own file:
//!   `deployment/` (`plan.rs` rollout arithmetic, `status.rs`, `replicasets.rs` writes),
//!   `replicaset/` (generic over the owner kind; `plan.rs` scale diff, status
//!   counts), `replicationcontroller.rs` (that controller for core/v1 RCs),
//!   `garbagecollector/` (`graph.rs`), `nodelifecycle/` (`health.rs`), `nodeipam/`
//!   (`cidrset.rs` ranges, `plan.rs` who holds which; with `--allocate-node-cidrs`), `endpoints/`
//!   (`plan.rs`; Endpoints and EndpointSlices), `namespace.rs`, `serviceaccount.rs`,
//!   `servicelb/` (`pool.rs`; with `--load-balancer-ip-range`), `job/` (`plan.rs` counting
//!   and ending, `scale.rs` pods to run, `policy.rs` failure and success policies),
//!   `daemonset/` (`nodes.rs` where pods belong, `plan.rs` pods and rollout),
//!   `history.rs` (ControllerRevisions of DaemonSets and StatefulSets), `cronjob/` (`plan.rs` schedule times, concurrency, history), `ttlafterfinished.rs`,
//!   `disruption/` (`plan.rs` PodDisruptionBudget arithmetic), `statefulset/` (`identity.rs`
//!   names, labels and claims, `plan.rs` ordered creation, scale-down and rolling update),
//!   `volumebinder/` (`plan.rs` which volume a claim gets, volume phases), `localpath/`
//!   (`plan.rs` the local-path provisioner's volumes and helper pods), `protection/` (the
//!   pvc-protection and pv-protection finalizers), `hpa/` (the horizontal-pod-autoscaler:
//!   `compute.rs` proposals per metric, `replicas.rs` kube's replica calculator,
//!   `behavior.rs` stabilization and policies).
//!
//! Adding a controller: a module with a [`reconciler::Reconciler`] and a
//! `new(&Arc<Context>) -> Box<dyn Run>` that takes its informers from
//! `ctx.informers.get::<K>()`, registers handlers that queue keys and returns
//! `Controller::new(reconciler, queue).into()`; then one line in [`CONTROLLERS`], naming
//! the ServiceAccount it acts as, and its `system:controller:<account>` role in the
//! apiserver's bootstrap policy (`authz/bootstrap/controller_roles.rs`).
//!
//! Every controller is level-triggered: a change only queues a key; `reconcile` compares
//! the object with the world as the caches show it, acts once and returns when to look
//! again; errors are retried per the controller's error policy (by default a per-key
//! backoff), and every key is queued again every 5 minutes.

pub mod claims;
pub mod config;
pub mod context;
pub mod credentials;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod expectations;
#[cfg(test)]
mod extremes;
pub mod garbagecollector;
pub mod history;
pub mod hpa;
pub mod informer;
pub mod job;
pub mod localpath;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podcontrol;
pub mod protection;
pub mod queue_metrics;
pub mod reconciler;
pub mod replicaset;
pub mod replicationcontroller;
pub mod serviceaccount;
pub mod servicelb;
pub mod statefulset;
pub mod ttlafterfinished;
pub mod volumebinder;
pub mod workqueue;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use component_base::events::Recorder;
use component_base::leaderelection::{run_maybe_elected, LeaderState};
use component_base::metrics::Registry;
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController, Service,
    ServiceAccount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use tokio::sync::watch;

pub use config::{ControllerManagerConfig, ControllerManagerFlags};

use crate::context::Context;
use crate::credentials::Credentials;
use crate::informer::{Informers, Need};
use crate::reconciler::Run;

/// A controller, as the controller-manager knows it.
pub struct Registration {
    /// Its name in `--controllers`.
    pub name: &'static str,
    /// The ServiceAccounts in kube-system it acts as with
    /// `--use-service-account-credentials` (kube's names); the first is its own, others
    /// serve what the controller's module asks them for (`Context::client_as`).
    pub accounts: &'static [&'static str],
    /// The informers it reads; it runs only if the apiserver serves all of them.
    pub informers: &'static [Need],
    /// Registers its informer handlers and returns it, ready to run.
    pub new: fn(&Arc<Context>) -> Box<dyn Run>,
}

const fn all<K: informer::Watched>() -> Need {
    Need::all::<K>()
}

/// Every controller of this build, in kube-controller-manager's names.
#[rustfmt::skip]
pub const CONTROLLERS: &[Registration] = &[
    Registration { name: "deployment", accounts: &["deployment-controller"], informers: &[all::<Deployment>(), all::<ReplicaSet>(), all::<Pod>()], new: deployment::new },
    Registration { name: "replicaset", accounts: &["replicaset-controller"], informers: &[all::<ReplicaSet>(), all::<Pod>()], new: replicaset::new },
    Registration { name: "replicationcontroller", accounts: &["replication-controller"], informers: &[all::<ReplicationController>(), all::<Pod>()], new: replicationcontroller::new },
    Registration { name: "job", accounts: &["job-controller"], informers: &[all::<Job>(), all::<Pod>()], new: job::new },
    Registration { name: "daemonset", accounts: &["daemon-set-controller"], informers: &[all::<DaemonSet>(), all::<Node>(), all::<Pod>(), all::<ControllerRevision>()], new: daemonset::new },
    Registration { name: "statefulset", accounts: &["statefulset-controller"], informers: &[all::<StatefulSet>(), all::<Pod>(), all::<PersistentVolumeClaim>(), all::<ControllerRevision>()], new: statefulset::new },
    Registration { name: "cronjob", accounts: &["cronjob-controller"], informers: &[all::<CronJob>(), all::<Job>()], new: cronjob::new },
    Registration { name: "disruption", accounts: &["disruption-controller"], informers: &[all::<PodDisruptionBudget>(), all::<Pod>(), all::<ReplicaSet>(), all::<Deployment>(), all::<ReplicationController>()], new: disruption::new },
    Registration { name: "horizontalpodautoscaling", accounts: &["horizontal-pod-autoscaler"], informers: &[all::<HorizontalPodAutoscaler>(), all::<Pod>()], new: hpa::new },
    Registration { name: "ttl-after-finished", accounts: &["ttl-after-finished-controller"], informers: &[all::<Job>()], new: ttlafterfinished::new },
    Registration { name: "persistentvolume-binder", accounts: &["persistent-volume-binder"], informers: &[all::<PersistentVolumeClaim>(), all::<PersistentVolume>(), all::<StorageClass>()], new: volumebinder::new },
    Registration { name: "pvc-protection", accounts: &["pvc-protection-controller"], informers: &[all::<PersistentVolumeClaim>(), all::<Pod>()], new: protection::pvc::new },
    Registration { name: "pv-protection", accounts: &["pv-protection-controller"], informers: &[all::<PersistentVolume>()], new: protection::pv::new },
    Registration { name: "local-path-provisioner", accounts: &[localpath::ACCOUNT], informers: &[all::<PersistentVolumeClaim>(), all::<PersistentVolume>(), all::<StorageClass>(), all::<Node>()], new: localpath::new },
    Registration { name: "garbagecollector", accounts: &["generic-garbage-collector"], informers: &[], new: garbagecollector::new },
    Registration { name: "nodeipam", accounts: &["node-controller"], informers: &[all::<Node>()], new: nodeipam::new },
    Registration { name: "nodelifecycle", accounts: &["node-controller"], informers: &[all::<Node>(), Need::namespaced::<Lease>("kube-node-lease"), all::<Pod>()], new: nodelifecycle::new },
    Registration { name: "endpoints", accounts: &["endpoint-controller", endpoints::SLICE_ACCOUNT], informers: &[all::<Service>(), all::<Pod>()], new: endpoints::new },
    Registration { name: "namespace", accounts: &["namespace-controller"], informers: &[all::<Namespace>()], new: namespace::new },
    Registration { name: "servicelb", accounts: &[servicelb::ACCOUNT], informers: &[all::<Service>()], new: servicelb::new },
    Registration { name: "serviceaccount", accounts: &["service-account-controller"], informers: &[all::<Namespace>(), all::<ServiceAccount>()], new: serviceaccount::new },
];

/// Runs the controller-manager until `shutdown`; the controllers act only while this
/// replica holds the lease.
pub async fn run(
    cfg: ControllerManagerConfig,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let base = component_base::client::config_from_kubeconfig(&cfg.common.kubeconfig).await?;
    let client = kube::Client::try_from(base.clone())?;
    let leader = LeaderState::new("flotilla-controller-manager");
    let mut reg = Registry::default();
    reg.register(leader.clone());
    reg.register(Arc::new(queue_metrics::Exported));
    if let Some(serving) = &cfg.common.serving {
        component_base::metrics::serve(serving, reg, client.clone())
            .await
            .map_err(|e| anyhow::anyhow!("serving the secure port {}: {e:#}", serving.addr))?;
    }
    tracing::info!(controllers = ?cfg.enabled, use_service_account_credentials = cfg.use_service_account_credentials, "starting");
    let election = cfg.common.election.clone();
    let identity = cfg.common.identity.clone();
    run_maybe_elected(client, election, &identity, leader, shutdown, move |term| {
        // Every request of the leader's controllers carries its fence: what one sends
        // after another replica took the lease is refused.
        let fenced = term.config(&base);
        let cfg = cfg.clone();
        async move {
            let client = kube::Client::try_from(fenced.clone())?;
            run_controllers(client, fenced, cfg, term).await
        }
    })
    .await
}

/// Runs the enabled controllers while this replica leads. `client` (the kubeconfig's
/// credentials) runs the shared informers and, with `--use-service-account-credentials`,
/// makes each controller's account and token; the controllers then act with those.
async fn run_controllers(
    client: kube::Client,
    base: kube::Config,
    cfg: ControllerManagerConfig,
    term: component_base::leaderelection::Term,
) -> anyhow::Result<()> {
    let enabled: Vec<&Registration> = CONTROLLERS
        .iter()
        .filter(|c| cfg.enabled.contains(&c.name))
        .collect();
    // As kube-controller-manager: a controller whose resources are not served is not
    // started (its informers would only fail to list).
    let served = served(&client, enabled.iter().flat_map(|c| c.informers)).await;
    let informers = Arc::new(Informers::new(client.clone()));
    let credentials = if cfg.use_service_account_credentials {
        Some(Credentials::new(client.clone(), base)?)
    } else {
        None
    };
    let mut tasks = tokio::task::JoinSet::new();
    // Controllers register their handlers first; then the informers start.
    let mut controllers = Vec::new();
    // One token (and one refresher) per account, however many controllers act as it
    // (nodelifecycle and nodeipam are both `node-controller`).
    let mut acting_as: std::collections::HashMap<&'static str, kube::Client> =
        std::collections::HashMap::new();
    for c in enabled {
        if let Some(missing) = c
            .informers
            .iter()
            .map(Need::resource)
            .find(|r| !served.contains(r))
        {
            tracing::info!(controller = c.name, api_version = %missing.0, resource = %missing.1, "not starting: the apiserver does not serve its resource");
            continue;
        }
        let mut clients = Vec::with_capacity(c.accounts.len());
        for &account in c.accounts {
            let made = acting_as.get(account).cloned();
            let acting = match (&credentials, made) {
                (Some(_), Some(made)) => made,
                (Some(creds), None) => {
                    let (acting, refresh) = creds.client(account).await?;
                    tasks.spawn(refresh);
                    acting_as.insert(account, acting.clone());
                    acting
                }
                (None, _) => client.clone(),
            };
            clients.push((account, acting));
        }
        let own = clients
            .first()
            .map_or_else(|| client.clone(), |(_, c)| c.clone());
        let ctx = Arc::new(Context {
            recorder: Recorder::new(own.clone(), c.accounts.first().unwrap_or(&c.name)),
            client: own,
            clients,
            informers: informers.clone(),
            config: cfg.clone(),
            term: term.clone(),
        });
        let needs: Vec<_> = c.informers.iter().map(|n| n.informer(&informers)).collect();
        controllers.push((c.name, needs, (c.new)(&ctx)));
    }
    informers.start(&mut tasks);
    tracing::debug!(informers = informers.len(), "informers started");
    for (name, needs, controller) in controllers {
        tasks.spawn(async move {
            for i in &needs {
                i.synced().await;
            }
            controller.run(name).await;
        });
    }
    match tasks.join_next().await {
        Some(r) => Err(anyhow::anyhow!("a controller or informer ended: {r:?}")),
        None => Ok(()),
    }
}

type Resource = (
    std::borrow::Cow<'static, str>,
    std::borrow::Cow<'static, str>,
);

/// Which of the resources `needs` read the apiserver serves (apiVersion, plural), asking
/// discovery once per apiVersion until it answers.
async fn served<'a>(
    client: &kube::Client,
    needs: impl Iterator<Item = &'a Need>,
) -> HashSet<Resource> {
    let versions: BTreeSet<String> = needs.map(|n| n.resource().0.into_owned()).collect();
    let mut served = HashSet::new();
    for v in versions {
        let list = loop {
            let r = if v.contains('/') {
                client.list_api_group_resources(&v).await
            } else {
                client.list_core_api_resources(&v).await
            };
            match r {
                Ok(list) => break list.resources,
                // The group (version) is not served at all.
                Err(kube::Error::Api(e)) if e.code == 404 => break Vec::new(),
                Err(e) => {
                    tracing::warn!(api_version = %v, error = %e, "discovery failed; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        };
        for r in list {
            served.insert((v.clone().into(), r.name.into()));
        }
    }
    served
}
