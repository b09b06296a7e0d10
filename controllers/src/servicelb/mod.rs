//! The service load-balancer controller (what k3s's servicelb or MetalLB are to a bare
//! cluster, in kube's service controller's place): every Service of type LoadBalancer
//! without a `loadBalancerClass` gets one address from `--load-balancer-ip-range` in
//! `status.loadBalancer.ingress` (`ipMode: VIP`); every node's proxy then serves it. A
//! Service that stops being a LoadBalancer has the address removed from its status, which
//! frees it; so does its deletion. `spec.loadBalancerIP` (deprecated in kube, still
//! honoured) asks for a given address.
//!
//! No address is given to two Services: one worker decides, from the addresses every
//! Service shows plus those it wrote and has not seen yet (`pool.rs`), and writes with
//! the Service's resourceVersion. A new leader reads them all from the informer's first
//! list before deciding. Runs only when `--load-balancer-ip-range` is set; acts as kube's
//! `service-controller` account.

pub mod pool;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use component_base::events::{object_ref, EventType};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;

use crate::context::{key_of, Context, Key};
use crate::informer::{Change, Informer};
use crate::reconciler::{Action, Controller, Reconciler, Run};
use crate::workqueue::WorkQueue;
use pool::{decide, holders, Claim, Decision, Pool};

/// The account it acts as (kube's service controller).
pub const ACCOUNT: &str = "service-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the load-balancer status of {namespace}/{name}")]
    Status {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

pub struct ServiceLbController {
    ctx: Arc<Context>,
    pool: Pool,
    services: Arc<Informer<Service>>,
    /// Addresses written and not yet seen in the cache: address → `ns/name`.
    pending: Mutex<BTreeMap<Ipv4Addr, String>>,
}

/// Registered only with `--load-balancer-ip-range` (`config.rs` leaves it out of the
/// enabled controllers otherwise).
pub fn new(ctx: &Arc<Context>) -> Box<dyn Run> {
    let queue = WorkQueue::<Key>::new();
    let pool = ctx
        .config
        .load_balancer_ip_range
        .unwrap_or_else(|| Pool::parse("0.0.0.0/32").expect("a valid empty pool"));
    let r = Arc::new(ServiceLbController {
        ctx: ctx.clone(),
        pool,
        services: ctx.informers.get(),
        pending: Mutex::new(BTreeMap::new()),
    });
    let q = queue.clone();
    r.services.on_change(move |ch| match ch {
        Change::Apply { new, .. } => q.add(key_of(new)),
        Change::Delete(old) => q.add(key_of(old)),
    });
    // One worker: decisions are made one at a time over the whole pool.
    Controller::new(r, queue).workers(1).into()
}

fn ours(s: &Service) -> bool {
    let spec = s.spec.as_ref();
    spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
        && spec
            .and_then(|s| s.load_balancer_class.as_deref())
            .is_none_or(str::is_empty)
        && s.metadata.deletion_timestamp.is_none()
}

fn ingress_ips(s: &Service) -> Vec<Ipv4Addr> {
    s.status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

fn claim(s: &Service) -> Claim {
    let m = &s.metadata;
    Claim {
        key: format!(
            "{}/{}",
            m.namespace.as_deref().unwrap_or_default(),
            m.name.as_deref().unwrap_or_default()
        ),
        age: format!(
            "{}/{}",
            m.creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
            m.uid.as_deref().unwrap_or_default()
        ),
        wants: s
            .spec
            .as_ref()
            .and_then(|s| s.load_balancer_ip.as_deref())
            .filter(|s| !s.is_empty())
            .and_then(|s| s.parse().ok()),
        has: ingress_ips(s),
    }
}

impl ServiceLbController {
    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<Ipv4Addr, String>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `ips` as the Service's only ingress addresses (none: cleared).
    async fn write(&self, svc: &Service, ips: &[Ipv4Addr]) -> Result<(), Error> {
        let (ns, name) = (
            svc.metadata.namespace.clone().unwrap_or_default(),
            svc.metadata.name.clone().unwrap_or_default(),
        );
        let api: Api<Service> = Api::namespaced(self.ctx.client.clone(), &ns);
        let ingress: Vec<serde_json::Value> = ips
            .iter()
            .map(|ip| serde_json::json!({"ip": ip.to_string(), "ipMode": "VIP"}))
            .collect();
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": svc.metadata.resource_version},
            "status": {"loadBalancer": {"ingress": ingress}},
        });
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|source| Error::Status {
                namespace: ns,
                name,
                source,
            })
    }
}

impl Reconciler for ServiceLbController {
    type Key = Key;
    type Error = Error;

    async fn reconcile(&self, key: &Key) -> Result<Action, Error> {
        let (ns, name) = key;
        let me = format!("{ns}/{name}");
        let store = self.services.store();
        let svc = store.get(&ObjectRef::new(name).within(ns));
        // Forget writes the cache now shows, and those of Services gone or changed.
        let all = store.state();
        let claims: Vec<Claim> = all.iter().filter(|s| ours(s)).map(|s| claim(s)).collect();
        self.pending()
            .retain(|ip, k| claims.iter().any(|c| &c.key == k && !c.has.contains(ip)));
        let Some(svc) = svc else {
            return Ok(Action::await_change());
        };
        if !ours(&svc) {
            let stale: Vec<Ipv4Addr> = ingress_ips(&svc)
                .into_iter()
                .filter(|ip| self.pool.contains(*ip))
                .collect();
            if !stale.is_empty() && svc.metadata.deletion_timestamp.is_none() {
                tracing::info!(service = %me, ?stale, "no longer a LoadBalancer: address released");
                self.write(&svc, &[]).await?;
            }
            return Ok(Action::await_change());
        }
        let held = holders(&claims, &self.pool, &self.pending());
        let mine = claim(&svc);
        match decide(&mine, &self.pool, &held) {
            Decision::Keep => Ok(Action::await_change()),
            Decision::Assign(ip) => {
                self.write(&svc, &[ip]).await?;
                tracing::info!(service = %me, %ip, "load-balancer address assigned");
                self.ctx.recorder.record(
                    &object_ref(svc.as_ref()),
                    EventType::Normal,
                    "IPAllocated",
                    &format!("Assigned IP [\"{ip}\"]"),
                );
                let mut p = self.pending();
                p.retain(|_, k| k != &me);
                p.insert(ip, me);
                Ok(Action::await_change())
            }
            Decision::Refuse { reason, message } => {
                self.ctx.recorder.record(
                    &object_ref(svc.as_ref()),
                    EventType::Warning,
                    reason,
                    &message,
                );
                Ok(Action::requeue(Duration::from_secs(30)))
            }
        }
    }

    fn all_keys(&self) -> Vec<Key> {
        self.services
            .store()
            .state()
            .iter()
            .map(|s| key_of(s.as_ref()))
            .collect()
    }
}
