//! Container lifecycle hooks: postStart runs right after a container starts (a failure
//! kills the container, which then restarts by its policy); preStop runs before a
//! container is stopped, within its grace period, which the stop then gets what is left
//! of. Handlers: exec, httpGet, tcpSocket and sleep, the way probes run them.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};

use crate::runtime::Runtime;

/// Runs one hook handler against container `id` within `timeout`.
pub async fn run(
    h: &LifecycleHandler,
    c: &Container,
    id: &str,
    pod_ip: &str,
    runtime: &dyn Runtime,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(s) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64).min(timeout)).await;
        return Ok(());
    }
    let as_probe = Probe {
        exec: h.exec.clone(),
        http_get: h.http_get.clone(),
        tcp_socket: h.tcp_socket.clone(),
        ..Default::default()
    };
    crate::probes::run(&as_probe, c, id, pod_ip, runtime, timeout).await
}

/// The preStop handler of a container, if it has one.
pub fn pre_stop(c: &Container) -> Option<&LifecycleHandler> {
    c.lifecycle.as_ref()?.pre_stop.as_ref()
}

/// The postStart handler of a container, if it has one.
pub fn post_start(c: &Container) -> Option<&LifecycleHandler> {
    c.lifecycle.as_ref()?.post_start.as_ref()
}
