//! Resource usage of the node and its containers, as the kubelet reports it through
//! cAdvisor: a collector samples every `--housekeeping-interval` (cAdvisor's 10 s) the
//! node (`/proc`) and each running container (the runtime's [`Runtime::usage`]: its
//! cgroups), keeps the last two samples of each so CPU has a rate, and serves
//! `/metrics/resource` (`resource.rs`, Prometheus text in the kubelet's metric names: what
//! the metrics-server scrapes), `/metrics/cadvisor` (`cadvisor.rs`, the same samples in
//! cAdvisor's names and labels, for Prometheus), `/metrics` (`kubelet.rs`, the kubelet's
//! own: running pods and containers, pod start latency) and `/stats/summary`
//! (`summary.rs`, the kubelet's stats/v1alpha1 Summary). They are authorized on the agent
//! port as `nodes/metrics` and `nodes/stats`. Parsing of kernel files is pure
//! (`cgroupfs.rs`).

pub mod cadvisor;
pub mod cgroupfs;
pub mod kubelet;
pub mod resource;
pub mod summary;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;

pub use crate::runtime::Usage;
use crate::runtime::{ContainerState, PodRef, Runtime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub at: Timestamp,
    pub usage: Usage,
}

/// The CPU rate between two samples in nanocores (1e9 = one core busy), when time passed
/// and the counter did not go back.
pub fn nanocores(prev: &Sample, now: &Sample) -> Option<u64> {
    let dt = now.at.duration_since(prev.at).as_nanos();
    let dcpu = now.usage.cpu_ns.checked_sub(prev.usage.cpu_ns)?;
    if dt <= 0 {
        return None;
    }
    let rate = u128::from(dcpu).checked_mul(1_000_000_000)? / u128::try_from(dt).ok()?;
    u64::try_from(rate).ok()
}

/// One series: the latest sample and the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Series {
    pub latest: Sample,
    pub previous: Option<Sample>,
}

impl Series {
    fn push(old: Option<&Series>, s: Sample) -> Series {
        Series {
            latest: s,
            previous: old.map(|o| o.latest),
        }
    }

    pub fn nanocores(&self) -> Option<u64> {
        nanocores(self.previous.as_ref()?, &self.latest)
    }
}

/// A running container's usage.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerStats {
    pub pod: PodRef,
    pub name: String,
    pub image: String,
    pub started: Timestamp,
    pub series: Series,
}

/// What the collector last saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub node: Option<Series>,
    /// By container id.
    pub containers: BTreeMap<String, ContainerStats>,
    /// When the node started (its boot time), for the node's start time.
    pub node_started: Option<Timestamp>,
    /// Pods with a ready sandbox or a running container, at the last sample (the kubelet's
    /// `kubelet_running_pods`).
    pub running_pods: u64,
    /// Containers the runtime holds, by kube's `container_state` label (`created`,
    /// `running`, `exited`).
    pub containers_by_state: [u64; 3],
}

/// The `container_state` label of each slot of [`Snapshot::containers_by_state`].
pub const CONTAINER_STATES: [&str; 3] = ["created", "running", "exited"];

pub struct Collector {
    runtime: Arc<dyn Runtime>,
    pub node_name: String,
    state: Mutex<Snapshot>,
}

impl Collector {
    pub fn new(runtime: Arc<dyn Runtime>, node_name: String) -> Arc<Self> {
        Arc::new(Collector {
            runtime,
            node_name,
            state: Mutex::new(Snapshot::default()),
        })
    }

    /// Samples every `interval` until dropped.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sample().await;
        }
    }

    /// One sample of the node and every running container; containers no longer running
    /// are forgotten.
    pub async fn sample(&self) {
        let node = tokio::task::spawn_blocking(cgroupfs::read_node)
            .await
            .ok()
            .flatten();
        let node_at = Timestamp::now();
        let pods = match self.runtime.pods().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "listing containers for their usage");
                return;
            }
        };
        let mut seen = BTreeMap::new();
        let (mut running_pods, mut by_state) = (0u64, [0u64; 3]);
        for view in pods.values() {
            if view.sandbox.as_ref().is_some_and(|s| s.ready) || view.any_running() {
                running_pods += 1;
            }
            for c in &view.containers {
                let slot = match c.state {
                    ContainerState::Created => 0,
                    ContainerState::Running { .. } => 1,
                    ContainerState::Exited { .. } => 2,
                };
                by_state[slot] += 1;
            }
            let Some(pod) = view.pod.clone() else {
                continue;
            };
            for c in view.containers.iter().filter(|c| !c.init) {
                let ContainerState::Running { started_at } = c.state else {
                    continue;
                };
                if let Some(u) = self.runtime.usage(c).await {
                    let s = Sample {
                        at: Timestamp::now(),
                        usage: u,
                    };
                    let stats = ContainerStats {
                        pod: pod.clone(),
                        name: c.name.clone(),
                        image: c.image.clone(),
                        started: started_at,
                        series: Series::push(None, s),
                    };
                    seen.insert(c.id.clone(), stats);
                }
            }
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = node {
            let s = Sample {
                at: node_at,
                usage: u,
            };
            st.node = Some(Series::push(st.node.as_ref(), s));
        }
        if st.node_started.is_none() {
            st.node_started = boot_time();
        }
        st.running_pods = running_pods;
        st.containers_by_state = by_state;
        let old = std::mem::take(&mut st.containers);
        for (id, mut c) in seen {
            c.series = Series::push(old.get(&id).map(|o| &o.series), c.series.latest);
            st.containers.insert(id, c);
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The machine's boot time, from `/proc/stat`'s `btime`.
fn boot_time() -> Option<Timestamp> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let secs: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Timestamp::from_second(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(secs: i64, cpu_ns: u64) -> Sample {
        Sample {
            at: Timestamp::from_second(1_000_000 + secs).unwrap(),
            usage: Usage {
                cpu_ns,
                ..Default::default()
            },
        }
    }

    #[test]
    fn the_cpu_rate_is_the_counters_slope() {
        assert_eq!(
            nanocores(&sample(0, 0), &sample(10, 5_000_000_000)),
            Some(500_000_000),
            "5 s of CPU in 10 s is half a core"
        );
        assert_eq!(nanocores(&sample(0, 10), &sample(0, 20)), None, "no time");
        assert_eq!(
            nanocores(&sample(0, 20), &sample(10, 10)),
            None,
            "a counter that went back"
        );
        assert_eq!(
            nanocores(&sample(0, 0), &sample(1, u64::MAX)),
            Some(u64::MAX),
            "a huge counter does not overflow the arithmetic"
        );
        let s = Series::push(None, sample(0, 0));
        assert_eq!(s.nanocores(), None, "one sample has no rate");
        let s = Series::push(Some(&s), sample(15, 1_500_000_000));
        assert_eq!(s.nanocores(), Some(100_000_000));
    }
}
