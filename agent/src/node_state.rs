//! What every pod worker of one node shares (the client, the runtime, the node's name and
//! address, the status rate limit, the recorder, the stop signal, the PLEG), and the
//! stable names derived from a pod (its directory, its containers' spec hashes).

use std::path::PathBuf;
use std::sync::Arc;

use component_base::events::Recorder;
use flotilla_core::ratelimit::TokenBucket;
use k8s_openapi::api::core::v1::{Container, Pod};
use std::time::Duration;
use tokio::sync::watch;

use crate::runtime::{PodRef, Runtime};

/// What every pod worker of one node shares.
pub struct Shared {
    pub client: kube::Client,
    pub runtime: Arc<dyn Runtime>,
    pub node_name: String,
    pub host_ip: String,
    /// `<root-dir>/pods`: logs and volumes, one directory per pod.
    pub pods_dir: PathBuf,
    /// Secret volumes and `medium: Memory` emptyDirs are tmpfs mounts (not for fake
    /// nodes, whose pods never run).
    pub memory_volumes: bool,
    /// Status writes of all the node's pods share this bucket (the kubelet's
    /// `--kube-api-qps` and `--kube-api-burst`), so thousands of pods stay within the
    /// agent's share of the apiserver.
    pub status_writes: Arc<TokenBucket>,
    pub recorder: Recorder,
    /// Turns true when the agent stops and takes its pods down with it: every worker
    /// stops its pod's containers, reports that, and ends.
    pub stopping: watch::Receiver<bool>,
    /// The most grace a pod gets when the agent stops with its pods.
    pub shutdown_grace: Duration,
    /// Wakes a worker when the runtime's view of its pod changed.
    pub pleg: crate::pleg::Pleg,
    /// The node's DNS settings (`--cluster-dns`, `--cluster-domain`, `--resolv-conf`).
    pub dns: crate::dns::NodeDns,
    /// The agent writes each pod's `/etc/resolv.conf` and `/etc/hosts` into its directory
    /// and mounts them into its containers (the Docker runtime; the process runtime's
    /// processes use the host's files).
    pub pod_etc_files: bool,
    /// Every Service (`services.rs`), for containers' Service variables.
    pub services: kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Service>,
    /// The kubelet's metrics the pod workers observe (pod start latency).
    pub kubelet: Arc<crate::stats::kubelet::KubeletMetrics>,
}

/// A stable hash of a container's spec (FNV-1a over its JSON): a running container whose
/// spec hash changed is replaced.
pub fn container_hash(c: &Container) -> u64 {
    fnv(&serde_json::to_vec(c).unwrap_or_default())
}

/// FNV-1a: stable across builds and machines.
pub fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

pub fn pod_dir_name(pod: &PodRef) -> String {
    format!("{}_{}_{}", pod.namespace, pod.name, pod.uid)
}

pub fn pod_ref(p: &Pod) -> PodRef {
    PodRef {
        uid: p.metadata.uid.clone().unwrap_or_default(),
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        name: p.metadata.name.clone().unwrap_or_default(),
    }
}
