//! A container's usage: the cgroups of its main process (its pid from an inspection,
//! kept while the process lives), read as `crate::stats::cgroupfs` reads them.

use hyper::Method;

use super::DockerRuntime;
use crate::stats::{cgroupfs, Usage};

impl DockerRuntime {
    pub(super) async fn container_usage(&self, id: &str) -> Option<Usage> {
        let cached = self.pids.lock().ok()?.get(id).copied();
        let pid = match cached {
            Some(p) => p,
            None => {
                let info = self
                    .docker
                    .json(Method::GET, &format!("/containers/{id}/json"), None)
                    .await
                    .ok()?;
                let pid = info
                    .pointer("/State/Pid")
                    .and_then(|p| p.as_i64())
                    .and_then(|p| i32::try_from(p).ok())
                    .filter(|p| *p > 0)?;
                self.pids.lock().ok()?.insert(id.to_string(), pid);
                pid
            }
        };
        let usage = tokio::task::spawn_blocking(move || cgroupfs::read_pid(pid))
            .await
            .ok()
            .flatten();
        if usage.is_none() {
            // Gone (or never readable): forget the pid, so the map holds only the living.
            if let Ok(mut pids) = self.pids.lock() {
                pids.remove(id);
            }
        }
        usage
    }
}
