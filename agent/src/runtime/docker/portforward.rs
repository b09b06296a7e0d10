//! Port-forwarding into a pod: a TCP connection made from inside the pod's network
//! namespace (the sandbox's), to the port on its loopback address, as the kubelet's
//! runtimes do, so that what listens only on localhost in the pod is reached too. The
//! socket is made on a thread of its own that has entered the namespace and then ends
//! (a socket keeps the namespace it was made in; the thread is never reused).

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::time::Duration;

use hyper::Method;
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

use super::{other, DockerRuntime};
use crate::runtime::{Result, RuntimeError, SandboxStatus};

const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

impl DockerRuntime {
    pub(super) async fn dial_in_pod(
        &self,
        sandbox: &SandboxStatus,
        port: u16,
    ) -> Result<tokio::net::TcpStream> {
        let info = self
            .docker
            .json(
                Method::GET,
                &format!("/containers/{}/json", sandbox.id),
                None,
            )
            .await
            .map_err(other)?;
        let pid = info
            .pointer("/State/Pid")
            .and_then(|p| p.as_i64())
            .filter(|p| *p > 0)
            .ok_or_else(|| RuntimeError::Other("the pod's sandbox is not running".into()))?;
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("port-forward".into())
            .spawn(move || {
                let dial = || -> std::io::Result<std::net::TcpStream> {
                    move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))?;
                    let s = std::net::TcpStream::connect_timeout(
                        &(Ipv4Addr::LOCALHOST, port).into(),
                        DIAL_TIMEOUT,
                    )?;
                    s.set_nonblocking(true)?;
                    Ok(s)
                };
                let _ = tx.send(dial());
            })?;
        let s = rx
            .await
            .map_err(|_| RuntimeError::Other("the dialling thread ended".into()))?
            .map_err(|e| crate::runtime::dial_error(port, &e))?;
        Ok(tokio::net::TcpStream::from_std(s)?)
    }
}
