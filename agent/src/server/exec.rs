//! `/exec/<ns>/<pod>/<container>` (also `/exec/<ns>/<pod>/<uid>/<container>`), GET or
//! POST: a command in a running container with the caller's streams on a WebSocket
//! (`websocket.rs`), the kubelet's query (`command` repeated; `input`, `output`, `error`,
//! `tty` as 1). Reached only once the request is authorized.
//!
//! Channels: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize (`{"Width":w,"Height":h}`).
//! When the command's output has ended the error channel carries one metav1.Status, as
//! the kubelet writes it: `Success`; `NonZeroExitCode` with the code as the `ExitCode`
//! cause (kubectl exits with it); or `InternalError` when the command could not run.
//! Then the socket is closed. A client that goes away ends the session (its stdin is
//! closed; the command may go on, as under the kubelet).

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::logs::percent_decode;
use super::websocket::{self, CLOSE, V4, V5};
use super::{text, Body};
use crate::runtime::attach::{Session, Streams, TermSize, STDERR, STDOUT};
use crate::runtime::Runtime;

const STDIN: u8 = 0;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;

/// What an exec request asks for.
#[derive(Debug, PartialEq)]
pub struct ExecRequest {
    pub namespace: String,
    pub pod: String,
    pub uid: Option<String>,
    pub container: String,
    pub command: Vec<String>,
    pub streams: Streams,
}

impl ExecRequest {
    /// From the path's segments after `exec` and the query; the error is the 400's text.
    pub fn parse(segs: &[String], query: Option<&str>) -> Result<Self, String> {
        let (namespace, pod, uid, container) = match segs {
            [ns, pod, c] => (ns, pod, None, c),
            [ns, pod, uid, c] => (ns, pod, Some(uid.clone()), c),
            _ => return Err("404".into()),
        };
        let mut command = Vec::new();
        let mut streams = Streams::default();
        for kv in query.unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let on = v == "1";
            match k {
                "command" => command.push(percent_decode(v)),
                "input" => streams.stdin = on,
                "output" => streams.stdout = on,
                "error" => streams.stderr = on,
                "tty" => streams.tty = on,
                _ => {}
            }
        }
        if command.is_empty() {
            return Err("you must specify at least 1 command".into());
        }
        if !(streams.stdin || streams.stdout || streams.stderr) {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        // With a terminal, stderr is the terminal too (as the kubelet does).
        if streams.tty {
            streams.stderr = false;
        }
        Ok(ExecRequest {
            namespace: namespace.clone(),
            pod: pod.clone(),
            uid,
            container: container.clone(),
            command,
            streams,
        })
    }
}

/// The status the error channel ends with.
pub fn status(command: &[String], exit: Result<i32, String>) -> String {
    match exit {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        // kubectl reads the code as a u8.
        Ok(code @ 1..=255) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Ok(code) => return status(command, Err(format!("exit code {code} out of range"))),
        Err(e) => {
            let msg = format!("error executing command in container: {e}");
            json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("Internal error occurred: {msg}"),
                "reason": "InternalError",
                "details": {"causes": [{"message": msg}]},
                "code": 500,
            })
        }
    }
    .to_string()
}

/// A resize message's size (`{"Width":w,"Height":h}`, a newline after it).
pub fn parse_resize(b: &[u8]) -> Option<TermSize> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Size {
        width: u16,
        height: u16,
    }
    let s: Size = serde_json::from_slice(b).ok()?;
    Some(TermSize {
        width: s.width,
        height: s.height,
    })
}

/// Serves an exec request: checks the container runs, switches to the WebSocket and
/// runs the session on its own task.
pub async fn serve(
    runtime: &Arc<dyn Runtime>,
    mut req: Request<Incoming>,
    segs: &[String],
) -> Response<Body> {
    let er = match ExecRequest::parse(segs, req.uri().query()) {
        Ok(r) => r,
        Err(e) if e == "404" => return text(StatusCode::NOT_FOUND, "404 page not found"),
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let pods = match runtime.pods().await {
        Ok(p) => p,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let view = pods.into_values().find(|v| {
        v.pod.as_ref().is_some_and(|p| {
            p.namespace == er.namespace
                && p.name == er.pod
                && er.uid.as_ref().is_none_or(|u| *u == p.uid)
        })
    });
    let Some(view) = view else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod \"{}\" not found on this node", er.pod),
        );
    };
    let running = view
        .latest(&er.container, false)
        .or_else(|| view.latest(&er.container, true))
        .filter(|c| c.running());
    let Some(container) = running else {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "container \"{}\" in pod \"{}\" is not running",
                er.container, er.pod
            ),
        );
    };
    let id = container.id.clone();
    // After the checks: a client refused here retries over SPDY, and should hear the
    // same reason again.
    let hs = match websocket::handshake(req.headers(), &[V5, V4]) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let on = hyper::upgrade::on(&mut req);
    let runtime = runtime.clone();
    let v5 = hs.protocol == V5;
    tokio::spawn(async move {
        let Some(socket) = websocket::accept(on).await else {
            return;
        };
        let started = runtime.exec_attached(&id, &er.command, er.streams).await;
        let started = started.map_err(|e| e.to_string());
        session(socket, started, &er.command, er.streams, v5).await;
    });
    websocket::switching(&hs)
}

/// Pumps one session: the client's stdin and resizes to the command on a task of their
/// own (so a command blocked on its output never stalls its input, nor the reverse),
/// the command's output to the client here; then the status, then close.
async fn session(
    socket: websocket::Socket,
    started: Result<Session, String>,
    command: &[String],
    streams: Streams,
    v5: bool,
) {
    let (mut tx, mut rx) = socket.split();
    // An empty message on the first output channel says the session is open (as the
    // kubelet and kube-apiserver send it).
    let first = if streams.stdout {
        STDOUT
    } else if streams.stderr {
        STDERR
    } else {
        ERROR
    };
    if tx
        .send(Message::Binary(websocket::frame(first, &[])))
        .await
        .is_err()
    {
        return;
    }
    let exit = match started {
        Err(e) => Err(e),
        Ok(mut s) => {
            let stdin = s.stdin.take();
            let resize = s.resize.take();
            let mut input = tokio::spawn(async move {
                let mut stdin = stdin;
                while let Some(Ok(m)) = rx.next().await {
                    let Message::Binary(b) = m else {
                        if matches!(m, Message::Close(_)) {
                            break;
                        }
                        continue;
                    };
                    match b.first() {
                        Some(&STDIN) => {
                            let closed = match &stdin {
                                Some(w) => w.send(b.slice(1..)).await.is_err(),
                                None => false,
                            };
                            if closed {
                                stdin = None;
                            }
                        }
                        Some(&RESIZE) => {
                            if let (Some(r), Some(size)) = (&resize, parse_resize(&b[1..])) {
                                let _ = r.try_send(size);
                            }
                        }
                        Some(&CLOSE) if v5 && b.get(1) == Some(&STDIN) => stdin = None,
                        _ => {}
                    }
                }
            });
            loop {
                tokio::select! {
                    out = s.output.recv() => match out {
                        Some((ch, b)) => {
                            let m = Message::Binary(websocket::frame(ch, &b));
                            if tx.send(m).await.is_err() {
                                input.abort();
                                return;
                            }
                        }
                        None => break,
                    },
                    _ = &mut input => {
                        // The client is gone: nobody to tell how it ended.
                        return;
                    }
                }
            }
            input.abort();
            s.exit.await.map_err(|e| e.to_string())
        }
    };
    let status = status(command, exit);
    let _ = tx
        .send(Message::Binary(websocket::frame(ERROR, status.as_bytes())))
        .await;
    // kubectl hears the end of its streams only from a normal closure (1000).
    let close = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = tx.send(Message::Close(Some(close))).await;
    let _ = tx.flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn requests_as_the_apiserver_sends_them() {
        let r = ExecRequest::parse(
            &segs(&["d", "p", "c"]),
            Some("command=sh&command=-c&command=echo%20hi&input=1&output=1&tty=1"),
        )
        .unwrap();
        assert_eq!(r.command, ["sh", "-c", "echo hi"]);
        assert!(r.streams.stdin && r.streams.stdout && r.streams.tty && !r.streams.stderr);
        assert_eq!(r.uid, None);
        let r =
            ExecRequest::parse(&segs(&["d", "p", "u", "c"]), Some("command=ls&error=1")).unwrap();
        assert_eq!(r.uid.as_deref(), Some("u"));
        assert!(r.streams.stderr && !r.streams.stdout);
        assert!(ExecRequest::parse(&segs(&["d", "p", "c"]), Some("output=1")).is_err());
        assert!(ExecRequest::parse(&segs(&["d", "p", "c"]), Some("command=ls")).is_err());
    }

    #[test]
    fn statuses_as_the_kubelet_writes_them() {
        let cmd = ["sh".to_string()];
        assert_eq!(status(&cmd, Ok(0)), r#"{"metadata":{},"status":"Success"}"#);
        let v: serde_json::Value = serde_json::from_str(&status(&cmd, Ok(3))).unwrap();
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
        let v: serde_json::Value =
            serde_json::from_str(&status(&cmd, Err("no such container".into()))).unwrap();
        assert_eq!(v["reason"], "InternalError");
        assert_eq!(v["code"], 500);
        assert_eq!(
            parse_resize(b"{\"Width\":80,\"Height\":24}\n"),
            Some(TermSize {
                width: 80,
                height: 24
            })
        );
    }
}
