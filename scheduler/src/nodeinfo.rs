//! What the scheduler knows about a pod and a node, computed once when it arrives so that
//! plugins do no parsing in the hot loop.

use std::collections::HashMap;
use std::sync::Arc;

use flotilla_core::labels::Labels;
use flotilla_core::quantity;
use k8s_openapi::api::core::v1::{Container, Node, Pod, Taint};

/// Requested or allocatable amounts. Each comes from a quantity someone wrote, so sums
/// saturate at the i64 bounds rather than overflow (two containers may each ask for `5E`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
}

impl Resources {
    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(o.milli_cpu);
        self.memory = self.memory.saturating_add(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_add(o.ephemeral_storage);
        self.pods = self.pods.saturating_add(o.pods);
    }
    pub fn sub(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(o.milli_cpu);
        self.memory = self.memory.saturating_sub(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_sub(o.ephemeral_storage);
        self.pods = self.pods.saturating_sub(o.pods);
    }
    fn max(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
    }
    fn of_list(
        list: Option<
            &std::collections::BTreeMap<
                String,
                k8s_openapi::apimachinery::pkg::api::resource::Quantity,
            >,
        >,
    ) -> Resources {
        // Too large to count is as large as can be (a pod asking `5E` of cpu fits nowhere,
        // it does not ask for nothing); negative amounts (invalid) and garbage are none.
        let milli = |q: &str| quantity::saturating_milli(q).unwrap_or(0).max(0);
        let units = |q: &str| quantity::saturating_units(q).unwrap_or(0).max(0);
        let mut r = Resources::default();
        for (k, q) in list.into_iter().flatten() {
            match k.as_str() {
                "cpu" => r.milli_cpu = milli(&q.0),
                "memory" => r.memory = units(&q.0),
                "ephemeral-storage" => r.ephemeral_storage = units(&q.0),
                "pods" => r.pods = units(&q.0),
                _ => {}
            }
        }
        r
    }
}

/// A sum of [`Resources`] kept exactly (in i128), so that taking a pod off a node undoes
/// adding it even when the i64 view saturated: i64::MAX pods of i64::MAX each still fit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Exact {
    milli_cpu: i128,
    memory: i128,
    ephemeral_storage: i128,
    pods: i128,
}

impl Exact {
    fn add(&mut self, r: &Resources, sign: i128) {
        self.milli_cpu += sign * i128::from(r.milli_cpu);
        self.memory += sign * i128::from(r.memory);
        self.ephemeral_storage += sign * i128::from(r.ephemeral_storage);
        self.pods += sign * i128::from(r.pods);
    }

    /// The sum clamped to the i64 range.
    fn view(&self) -> Resources {
        let c = |v: i128| i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX });
        Resources {
            milli_cpu: c(self.milli_cpu),
            memory: c(self.memory),
            ephemeral_storage: c(self.ephemeral_storage),
            pods: c(self.pods),
        }
    }
}

/// What the scoring plugins assume a container without requests uses (Kubernetes'
/// DefaultMilliCPURequest and DefaultMemoryRequest), so that such pods still spread.
pub const DEFAULT_MILLI_CPU: i64 = 100;
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// A host port a pod asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    /// Two host ports conflict when port and protocol agree and either IP is a wildcard or
    /// both are the same.
    pub fn conflicts(&self, o: &HostPort) -> bool {
        let wild = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
        self.port == o.port
            && self.protocol == o.protocol
            && (wild(&self.ip) || wild(&o.ip) || self.ip == o.ip)
    }
}

#[derive(Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// What it requests (Kubernetes' computePodResourceRequest: the sum of the containers,
    /// at least the largest init container, plus overhead), with pods = 1.
    pub requests: Resources,
    /// The same with defaults for containers that request nothing (for scoring).
    pub non_zero: Resources,
    pub host_ports: Vec<HostPort>,
    pub priority: i32,
    pub has_required_anti_affinity: bool,
}

fn container_requests(c: &Container) -> (Resources, Resources) {
    let r = Resources::of_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()));
    // A limit without a request means the request equals the limit (apiserver defaulting
    // does this; be robust when it did not).
    let lim = Resources::of_list(c.resources.as_ref().and_then(|r| r.limits.as_ref()));
    let mut r2 = r;
    if r2.milli_cpu == 0 {
        r2.milli_cpu = lim.milli_cpu;
    }
    if r2.memory == 0 {
        r2.memory = lim.memory;
    }
    let mut nz = r2;
    if nz.milli_cpu == 0 {
        nz.milli_cpu = DEFAULT_MILLI_CPU;
    }
    if nz.memory == 0 {
        nz.memory = DEFAULT_MEMORY;
    }
    (r2, nz)
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> Arc<PodInfo> {
        let m = &pod.metadata;
        let spec = pod.spec.clone().unwrap_or_default();
        let (mut req, mut nz) = (Resources::default(), Resources::default());
        // Sidecars (init containers with restartPolicy Always) run alongside the app.
        let mut sidecars = (Resources::default(), Resources::default());
        let (mut init_max, mut init_nz) = (Resources::default(), Resources::default());
        for c in spec.init_containers.iter().flatten() {
            let (r, n) = container_requests(c);
            if c.restart_policy.as_deref() == Some("Always") {
                sidecars.0.add(&r);
                sidecars.1.add(&n);
            } else {
                let mut r = r;
                r.add(&sidecars.0);
                init_max.max(&r);
                let mut n = n;
                n.add(&sidecars.1);
                init_nz.max(&n);
            }
        }
        for c in &spec.containers {
            let (r, n) = container_requests(c);
            req.add(&r);
            nz.add(&n);
        }
        req.add(&sidecars.0);
        nz.add(&sidecars.1);
        req.max(&init_max);
        nz.max(&init_nz);
        let overhead = Resources::of_list(spec.overhead.as_ref());
        req.add(&overhead);
        nz.add(&overhead);
        req.pods = 1;
        nz.pods = 1;
        let mut host_ports = Vec::new();
        for c in &spec.containers {
            for p in c.ports.iter().flatten() {
                if let Some(hp) = p.host_port.filter(|p| *p > 0) {
                    host_ports.push(HostPort {
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        ip: p.host_ip.clone().unwrap_or_default(),
                        port: hp,
                    });
                }
            }
        }
        let has_required_anti_affinity = spec
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_some_and(|t| !t.is_empty());
        Arc::new(PodInfo {
            uid: m.uid.clone().unwrap_or_default(),
            namespace: m.namespace.clone().unwrap_or_default(),
            name: m.name.clone().unwrap_or_default(),
            labels: m.labels.clone().unwrap_or_default(),
            requests: req,
            non_zero: nz,
            host_ports,
            priority: spec.priority.unwrap_or(0),
            has_required_anti_affinity,
            pod,
        })
    }

    pub fn spec(&self) -> &k8s_openapi::api::core::v1::PodSpec {
        static EMPTY: std::sync::OnceLock<k8s_openapi::api::core::v1::PodSpec> =
            std::sync::OnceLock::new();
        self.pod
            .spec
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(Default::default))
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A node with everything placed on it: bound pods and the scheduler's own assumed ones.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub node: Arc<Node>,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub requested: Resources,
    pub non_zero_requested: Resources,
    pub pods: HashMap<String, Arc<PodInfo>>,
    pub used_ports: Vec<HostPort>,
    /// `requested` and `non_zero_requested` exactly; those are their clamped views.
    exact: (Exact, Exact),
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let mut n = NodeInfo {
            name: String::new(),
            node: node.clone(),
            labels: Labels::new(),
            taints: Vec::new(),
            unschedulable: false,
            allocatable: Resources::default(),
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            pods: HashMap::new(),
            used_ports: Vec::new(),
            exact: (Exact::default(), Exact::default()),
        };
        n.set_node(node);
        n
    }

    pub fn set_node(&mut self, node: Arc<Node>) {
        self.name = node.metadata.name.clone().unwrap_or_default();
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.clone().unwrap_or_default();
        self.taints = spec.taints.unwrap_or_default();
        self.unschedulable = spec.unschedulable.unwrap_or(false);
        let status = node.status.clone().unwrap_or_default();
        self.allocatable =
            Resources::of_list(status.allocatable.as_ref().or(status.capacity.as_ref()));
        self.node = node;
    }

    pub fn add_pod(&mut self, p: Arc<PodInfo>) {
        if let Some(old) = self.pods.insert(p.uid.clone(), p.clone()) {
            self.account(&old, false);
        }
        self.account(&p, true);
    }

    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let p = self.pods.remove(uid)?;
        self.account(&p, false);
        Some(p)
    }

    fn account(&mut self, p: &PodInfo, add: bool) {
        let sign = if add { 1 } else { -1 };
        self.exact.0.add(&p.requests, sign);
        self.exact.1.add(&p.non_zero, sign);
        self.requested = self.exact.0.view();
        self.non_zero_requested = self.exact.1.view();
        if add {
            self.used_ports.extend(p.host_ports.iter().cloned());
        } else {
            for hp in &p.host_ports {
                if let Some(i) = self.used_ports.iter().position(|u| u == hp) {
                    self.used_ports.swap_remove(i);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{node, pod};

    fn two_containers(cpu: &str, mem: &str) -> Pod {
        let mut p = pod("p", cpu, mem);
        let spec = p.spec.as_mut().unwrap();
        let mut second = spec.containers[0].clone();
        second.name = "second".into();
        spec.containers.push(second);
        p
    }

    #[test]
    fn two_containers_of_5e_memory_do_not_overflow() {
        let info = PodInfo::new(Arc::new(two_containers("", "5E")));
        assert_eq!(info.requests.memory, i64::MAX);
        assert_eq!(info.non_zero.memory, i64::MAX);
    }

    #[test]
    fn a_cpu_request_too_large_to_count_is_huge_not_zero() {
        // "5E" cores is 5e21 millicores: past i64, so as much as can be, not nothing.
        let info = PodInfo::new(Arc::new(pod("p", "5E", "1e400")));
        assert_eq!(info.requests.milli_cpu, i64::MAX);
        assert_eq!(info.requests.memory, i64::MAX);
        let neg = PodInfo::new(Arc::new(pod("n", "-1", "-5E")));
        assert_eq!((neg.requests.milli_cpu, neg.requests.memory), (0, 0));
        let n = NodeInfo::new(Arc::new(node("n", "9999999999999999999999", "1e400")));
        assert_eq!(n.allocatable.milli_cpu, i64::MAX);
        assert_eq!(n.allocatable.memory, i64::MAX);
    }

    #[test]
    fn saturated_sums_come_back_exactly_when_pods_leave() {
        let mut n = NodeInfo::new(Arc::new(node("n", "1", "8E")));
        let small = PodInfo::new(Arc::new(pod("small", "100m", "1Gi")));
        n.add_pod(small.clone());
        let mut huge = Vec::new();
        for i in 0..4 {
            let mut p = two_containers("5E", "5E");
            p.metadata.uid = Some(format!("huge-{i}"));
            let info = PodInfo::new(Arc::new(p));
            n.add_pod(info.clone());
            huge.push(info);
        }
        assert_eq!(n.requested.memory, i64::MAX);
        assert_eq!(n.requested.milli_cpu, i64::MAX);
        assert_eq!(n.requested.pods, 5);
        for h in &huge {
            n.remove_pod(&h.uid);
        }
        assert_eq!(
            n.requested, small.requests,
            "what is left is exactly the small pod"
        );
        n.remove_pod(&small.uid);
        assert_eq!(n.requested, Resources::default());
        assert_eq!(n.non_zero_requested, Resources::default());
    }
}
