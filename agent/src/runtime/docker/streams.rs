//! The output streams of running containers, multiplexed by the daemon: a command run in a
//! container (exec) with its collected output and exit code, and a container's logs.

use std::time::Duration;

use hyper::Method;
use serde_json::json;

use super::{other, DockerRuntime};
use crate::runtime::{ContainerStatus, ExecResult, Result, RuntimeError};

impl DockerRuntime {
    /// Runs `cmd` in container `id`, giving up after `timeout`.
    pub(super) async fn exec_in(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecResult> {
        let run = async {
            let created = self
                .docker
                .json(
                    Method::POST,
                    &format!("/containers/{id}/exec"),
                    Some(&json!({"AttachStdout": true, "AttachStderr": true, "Cmd": cmd})),
                )
                .await
                .map_err(other)?;
            let eid = created
                .get("Id")
                .and_then(|i| i.as_str())
                .ok_or_else(|| RuntimeError::Other("exec: no id".into()))?
                .to_string();
            let (frames, mut rx) = tokio::sync::mpsc::channel::<(u8, bytes::Bytes)>(16);
            let collect = async move {
                let mut output = Vec::new();
                while let Some((_, data)) = rx.recv().await {
                    if output.len() < 64 * 1024 {
                        output.extend_from_slice(&data);
                    }
                }
                output
            };
            let start = json!({"Detach": false, "Tty": false});
            let start_path = format!("/exec/{eid}/start");
            let (r, output) = tokio::join!(
                self.docker
                    .stream(Method::POST, &start_path, Some(&start), frames),
                collect
            );
            r.map_err(other)?;
            let info = self
                .docker
                .json(Method::GET, &format!("/exec/{eid}/json"), None)
                .await
                .map_err(other)?;
            Ok(ExecResult {
                exit_code: info.get("ExitCode").and_then(|c| c.as_i64()).unwrap_or(-1) as i32,
                output: String::from_utf8_lossy(&output).into_owned(),
            })
        };
        tokio::time::timeout(timeout, run)
            .await
            .unwrap_or_else(|_| {
                Err(RuntimeError::Other(format!(
                    "command timed out after {timeout:?}"
                )))
            })
    }

    /// Sends container `c`'s logs to `tx` as `opts` ask.
    pub(super) async fn stream_logs(
        &self,
        c: &ContainerStatus,
        opts: &crate::logs::LogOptions,
        tx: tokio::sync::mpsc::Sender<bytes::Bytes>,
    ) -> Result<()> {
        let mut path = format!(
            "/containers/{}/logs?stdout=1&stderr=1&follow={}&timestamps={}",
            c.id, opts.follow as u8, opts.timestamps as u8
        );
        if let Some(n) = opts.tail_lines {
            path.push_str(&format!("&tail={n}"));
        }
        if let Some(t) = opts.since {
            path.push_str(&format!(
                "&since={}.{:09}",
                t.as_second(),
                t.subsec_nanosecond().max(0)
            ));
        }
        let mut budget = opts.limit_bytes.unwrap_or(u64::MAX);
        let (frames, mut rx) = tokio::sync::mpsc::channel::<(u8, bytes::Bytes)>(64);
        let forward = async move {
            while let Some((_, mut b)) = rx.recv().await {
                if (b.len() as u64) > budget {
                    b.truncate(budget as usize);
                }
                budget -= b.len() as u64;
                if tx.send(b).await.is_err() || budget == 0 {
                    break;
                }
            }
        };
        let (r, ()) = tokio::join!(
            self.docker.stream(Method::GET, &path, None, frames),
            forward
        );
        r.map_err(other)
    }
}
