//! The output streams of running containers, multiplexed by the daemon: a command run in a
//! container (exec) with its collected output and exit code, the same with the caller's
//! streams attached (`kubectl exec`), and a container's logs.

use std::time::Duration;

use hyper::Method;
use serde_json::json;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{other, DockerRuntime};
use crate::runtime::attach::{Demux, Session, Streams, TermSize, STDOUT};
use crate::runtime::{ContainerStatus, ExecResult, Result, RuntimeError};

/// How long the daemon may take to mark an exec finished once its output has ended.
const EXIT_WAIT: Duration = Duration::from_secs(5);

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

    /// Starts `cmd` in container `id` with the caller's streams attached: the exec's
    /// hijacked connection carries stdin one way (half-closed when stdin ends) and the
    /// output the other; the exit code is read once the output has ended.
    pub(super) async fn exec_attach(
        &self,
        id: &str,
        cmd: &[String],
        streams: Streams,
    ) -> Result<Session> {
        let created = self
            .docker
            .json(
                Method::POST,
                &format!("/containers/{id}/exec"),
                Some(&json!({
                    "AttachStdin": streams.stdin,
                    "AttachStdout": streams.stdout,
                    "AttachStderr": streams.stderr,
                    "Tty": streams.tty,
                    "Cmd": cmd,
                })),
            )
            .await
            .map_err(other)?;
        let eid = created
            .get("Id")
            .and_then(|i| i.as_str())
            .ok_or_else(|| RuntimeError::Other("exec: no id".into()))?
            .to_string();
        let io = self
            .docker
            .upgrade(
                Method::POST,
                &format!("/exec/{eid}/start"),
                &json!({"Detach": false, "Tty": streams.tty}),
            )
            .await
            .map_err(other)?;
        let (mut rd, mut wr) = tokio::io::split(io);
        let (out_tx, output) = mpsc::channel(16);
        let tty = streams.tty;
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            let mut demux = Demux::default();
            while let Ok(n) = rd.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if tty {
                    if out_tx
                        .send((STDOUT, Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    continue;
                }
                demux.push(&buf[..n]);
                while let Some(f) = demux.next_frame() {
                    if out_tx.send(f).await.is_err() {
                        return;
                    }
                }
            }
        });
        let stdin = streams.stdin.then(|| {
            let (tx, mut rx) = mpsc::channel::<Bytes>(16);
            tokio::spawn(async move {
                while let Some(b) = rx.recv().await {
                    if wr.write_all(&b).await.is_err() {
                        return;
                    }
                }
                let _ = wr.shutdown().await;
            });
            tx
        });
        let resize = tty.then(|| {
            let (tx, mut rx) = mpsc::channel::<TermSize>(4);
            let docker = self.docker.clone();
            let eid = eid.clone();
            tokio::spawn(async move {
                while let Some(s) = rx.recv().await {
                    let path = format!("/exec/{eid}/resize?h={}&w={}", s.height, s.width);
                    if let Err(e) = docker.json(Method::POST, &path, None).await {
                        tracing::debug!(error = %e, "resizing an exec's terminal");
                    }
                }
            });
            tx
        });
        let docker = self.docker.clone();
        let exit = Box::pin(async move {
            let _ = reader.await;
            let deadline = tokio::time::Instant::now() + EXIT_WAIT;
            loop {
                let info = docker
                    .json(Method::GET, &format!("/exec/{eid}/json"), None)
                    .await
                    .map_err(other)?;
                let running = info.get("Running").and_then(|r| r.as_bool()) == Some(true);
                if !running {
                    let code = info.get("ExitCode").and_then(|c| c.as_i64()).unwrap_or(-1);
                    return Ok(i32::try_from(code).unwrap_or(-1));
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(RuntimeError::Other(
                        "the command's output ended but it still runs".into(),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Ok(Session {
            stdin,
            output,
            resize,
            exit,
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
