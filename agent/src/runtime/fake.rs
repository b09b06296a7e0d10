//! The fake runtime: nothing runs. Sandboxes get an address from a private range, init
//! containers complete at once and app containers run until stopped, as kwok's and
//! kubemark's hollow nodes do; scale tests run thousands of these in one process.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

use super::*;

#[derive(Default)]
pub struct FakeRuntime {
    /// Distinguishes the address ranges of hollow nodes sharing a process.
    node_index: u32,
    next: AtomicU64,
    pods: Mutex<BTreeMap<String, PodView>>,
}

impl FakeRuntime {
    pub fn new(node_index: u32) -> Self {
        FakeRuntime {
            node_index,
            ..Default::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, PodView>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn id(&self) -> String {
        format!("{:016x}", self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

#[async_trait::async_trait]
impl Runtime for FakeRuntime {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn pods(&self) -> Result<BTreeMap<String, PodView>> {
        Ok(self.lock().clone())
    }

    async fn pod(&self, uid: &str) -> Result<PodView> {
        Ok(self.lock().get(uid).cloned().unwrap_or_default())
    }

    /// A hollow container uses 10m of CPU and 8 MiB, so metrics pipelines have numbers.
    async fn usage(&self, c: &ContainerStatus) -> Option<Usage> {
        let ContainerState::Running { started_at } = c.state else {
            return None;
        };
        let ran = Timestamp::now().duration_since(started_at).as_nanos();
        let cpu_ns = u64::try_from(ran.max(0) / 100).unwrap_or(u64::MAX);
        Some(Usage {
            cpu_ns,
            memory_bytes: 8 << 20,
            working_set_bytes: 8 << 20,
            rss_bytes: Some(8 << 20),
        })
    }

    async fn run_sandbox(&self, cfg: &SandboxConfig) -> Result<SandboxStatus> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // 10.128.0.0/9 split by node: 2^15 nodes of 254-address blocks is plenty here.
        let node = self.node_index % 32768;
        let ip = format!("10.{}.{}.{}", 128 + (node >> 8), node & 0xff, (n % 253) + 2);
        let sb = SandboxStatus {
            id: self.id(),
            ready: true,
            ip: Some(ip),
        };
        let mut pods = self.lock();
        let view = pods.entry(cfg.pod.uid.clone()).or_default();
        view.pod = Some(cfg.pod.clone());
        view.sandbox = Some(sb.clone());
        Ok(sb)
    }

    async fn stop_pod(&self, uid: &str, _grace: Duration) -> Result<()> {
        let now = Timestamp::now();
        if let Some(v) = self.lock().get_mut(uid) {
            for c in &mut v.containers {
                stop(c, now);
            }
            if let Some(sb) = &mut v.sandbox {
                sb.ready = false;
            }
        }
        Ok(())
    }

    async fn remove_pod(&self, uid: &str) -> Result<()> {
        self.lock().remove(uid);
        Ok(())
    }

    async fn start_container(
        &self,
        sandbox: &SandboxStatus,
        cfg: &ContainerConfig,
    ) -> Result<String> {
        let id = self.id();
        let now = Timestamp::now();
        let state = if cfg.init {
            ContainerState::Exited {
                exit_code: 0,
                started_at: Some(now),
                finished_at: now,
                reason: "Completed".into(),
                message: None,
            }
        } else {
            ContainerState::Running { started_at: now }
        };
        let mut pods = self.lock();
        let view = pods.entry(cfg.pod.uid.clone()).or_default();
        if view.sandbox.as_ref().map(|s| &s.id) != Some(&sandbox.id) {
            return Err(RuntimeError::NotFound(sandbox.id.clone()));
        }
        view.containers.push(ContainerStatus {
            id: id.clone(),
            name: cfg.name.clone(),
            attempt: cfg.attempt,
            init: cfg.init,
            hash: cfg.hash,
            image: cfg.image.clone(),
            image_id: format!("fake://{}", cfg.image),
            state,
            log_path: cfg.log_path.clone(),
        });
        Ok(id)
    }

    async fn stop_container(&self, id: &str, _grace: Duration) -> Result<()> {
        let now = Timestamp::now();
        for v in self.lock().values_mut() {
            for c in v.containers.iter_mut().filter(|c| c.id == id) {
                stop(c, now);
            }
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        for v in self.lock().values_mut() {
            v.containers.retain(|c| c.id != id);
        }
        Ok(())
    }

    async fn exec(&self, _id: &str, _cmd: &[String], _timeout: Duration) -> Result<ExecResult> {
        Ok(ExecResult {
            exit_code: 0,
            output: String::new(),
        })
    }

    /// Hollow containers write nothing.
    async fn logs(
        &self,
        _c: &ContainerStatus,
        _opts: &crate::logs::LogOptions,
        _tx: tokio::sync::mpsc::Sender<bytes::Bytes>,
    ) -> Result<()> {
        Ok(())
    }
}

fn stop(c: &mut ContainerStatus, now: Timestamp) {
    if let ContainerState::Running { started_at } = c.state {
        c.state = ContainerState::Exited {
            exit_code: 0,
            started_at: Some(started_at),
            finished_at: now,
            reason: "Completed".into(),
            message: None,
        };
    }
}
