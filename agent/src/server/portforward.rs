//! `/portForward/<ns>/<pod>` (also `/portForward/<ns>/<pod>/<uid>`), GET or POST: the
//! kubelet's port-forwarding, SPDY/3.1 streams (`spdy/`) carried either in a WebSocket
//! whose binary messages are the SPDY byte stream (`SPDY/3.1+portforward.k8s.io`,
//! kubectl 1.31 and later) or on the upgraded connection itself (`Upgrade: SPDY/3.1`,
//! `X-Stream-Protocol-Version: portforward.k8s.io`, older clients and kubectl's
//! fallback). Reached only once the request is authorized.
//!
//! Per forwarded connection the client opens two streams with headers `streamtype`
//! (`error`, `data`), `port` and `requestid`; each is answered with SYN_REPLY. The data
//! stream is spliced to a TCP connection to the port on the pod's loopback address
//! (`Runtime::port_forward`): the client's FIN half-closes it, the pod's close ends the
//! data stream (FIN) and then the error stream (FIN: kubectl then closes its local
//! socket). A failed dial writes the kubelet's message on the error stream. PINGs are
//! echoed; GOAWAY or the transport's end ends every connection.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::spdy::{self, Codec, Frame, CANCEL};
use super::websocket;
use super::{text, Body};
use crate::runtime::{Runtime, SandboxStatus};

/// The WebSocket protocol that tunnels SPDY.
pub const TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
/// The SPDY stream protocol of port-forwarding.
pub const PORT_FORWARD: &str = "portforward.k8s.io";
/// Streams open at once on one session; more are refused (RST_STREAM).
const MAX_STREAMS: usize = 512;
/// RST_STREAM status: a stream that cannot be served.
const REFUSED_STREAM: u32 = 3;

/// How the client's bytes arrive and the session's leave.
struct Wire {
    input: mpsc::Receiver<Bytes>,
    output: mpsc::Sender<Bytes>,
}

fn spdy_upgrade(h: &hyper::HeaderMap) -> bool {
    let has = |name: &str, token: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has("upgrade", "SPDY/3.1") && has("x-stream-protocol-version", PORT_FORWARD)
}

/// Serves a port-forward request: checks the pod has a sandbox here, switches protocols
/// and runs the session on its own task.
pub async fn serve(
    runtime: &Arc<dyn Runtime>,
    mut req: Request<Incoming>,
    segs: &[String],
) -> Response<Body> {
    let (ns, pod, uid) = match segs {
        [ns, pod] => (ns, pod, None),
        [ns, pod, uid] => (ns, pod, Some(uid)),
        _ => return text(StatusCode::NOT_FOUND, "404 page not found"),
    };
    let pods = match runtime.pods().await {
        Ok(p) => p,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let view = pods.into_values().find(|v| {
        v.pod.as_ref().is_some_and(|p| {
            p.namespace == *ns && p.name == *pod && uid.is_none_or(|u| *u == p.uid)
        })
    });
    let Some((sandbox, pod_uid)) = view.and_then(|v| Some((v.sandbox?, v.pod?.uid))) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod \"{pod}\" not found on this node"),
        );
    };
    let target = Target {
        runtime: runtime.clone(),
        sandbox,
        pod: pod.clone(),
        uid: pod_uid,
    };
    let on = hyper::upgrade::on(&mut req);
    if spdy_upgrade(req.headers()) {
        tokio::spawn(async move {
            let Ok(io) = on.await else { return };
            session(raw_wire(TokioIo::new(io)), target).await;
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "Upgrade")
            .header("upgrade", "SPDY/3.1")
            .header("x-stream-protocol-version", PORT_FORWARD)
            .body(http_body_util::BodyExt::boxed(
                http_body_util::Empty::<Bytes>::new(),
            ))
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, ""));
    }
    let hs = match websocket::handshake(req.headers(), &[TUNNEL]) {
        Ok(h) => h,
        Err(r) => return r,
    };
    tokio::spawn(async move {
        let Some(socket) = websocket::accept(on).await else {
            return;
        };
        session(websocket_wire(socket), target).await;
    });
    websocket::switching(&hs)
}

/// The SPDY byte stream on the upgraded connection itself.
fn raw_wire(io: TokioIo<hyper::upgrade::Upgraded>) -> Wire {
    let (mut rd, mut wr) = tokio::io::split(io);
    let (in_tx, input) = mpsc::channel::<Bytes>(16);
    let (output, mut out_rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 || in_tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(b) = out_rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    Wire { input, output }
}

/// The SPDY byte stream as a WebSocket's binary messages (a frame may come in several;
/// each frame goes out as one). Closed with 1000 when the session ends.
fn websocket_wire(socket: websocket::Socket) -> Wire {
    let (mut tx, mut rx) = socket.split();
    let (in_tx, input) = mpsc::channel::<Bytes>(16);
    let (output, mut out_rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        while let Some(Ok(m)) = rx.next().await {
            match m {
                Message::Binary(b) => {
                    if in_tx.send(b).await.is_err() {
                        break;
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    });
    tokio::spawn(async move {
        while let Some(b) = out_rx.recv().await {
            if tx.send(Message::Binary(b)).await.is_err() {
                return;
            }
        }
        let close = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = tx.send(Message::Close(Some(close))).await;
    });
    Wire { input, output }
}

/// Where the session's connections go.
#[derive(Clone)]
struct Target {
    runtime: Arc<dyn Runtime>,
    sandbox: SandboxStatus,
    pod: String,
    uid: String,
}

/// One forwarded connection's two streams, as far as they are known.
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
    port: u16,
}

/// What the session loop tells a connection's task.
enum ToPod {
    Data(Bytes),
    Fin,
}

async fn session(mut wire: Wire, target: Target) {
    let mut codec = Codec::default();
    let (frames_tx, mut frames) = mpsc::channel::<Frame>(64);
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut conns: HashMap<u32, (mpsc::Sender<ToPod>, JoinHandle<()>)> = HashMap::new();
    'session: loop {
        tokio::select! {
            chunk = wire.input.recv() => {
                let Some(chunk) = chunk else { break };
                codec.push(&chunk);
                loop {
                    let f = match codec.next_frame() {
                        Ok(Some(f)) => f,
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(error = %e, "port-forward: a bad frame ends the session");
                            break 'session;
                        }
                    };
                    let replies = handle(f, &target, &mut pairs, &mut conns, &frames_tx).await;
                    match replies {
                        None => break 'session,
                        Some(replies) => {
                            for r in replies {
                                if !send(&mut codec, &wire.output, &r).await {
                                    break 'session;
                                }
                            }
                        }
                    }
                }
            }
            Some(f) = frames.recv() => {
                if let Frame::Data { stream, fin: true, .. } = &f {
                    // A data stream ended from the pod's side: forget its connection.
                    conns.remove(stream);
                }
                if !send(&mut codec, &wire.output, &f).await {
                    break;
                }
            }
        }
    }
    for (_, (_, task)) in conns {
        task.abort();
    }
}

async fn send(codec: &mut Codec, out: &mpsc::Sender<Bytes>, f: &Frame) -> bool {
    match codec.encode(f) {
        Ok(b) => out.send(b).await.is_ok(),
        Err(e) => {
            tracing::debug!(error = %e, "port-forward: encoding a frame");
            false
        }
    }
}

/// The frames that answer `f`; `None` ends the session.
async fn handle(
    f: Frame,
    target: &Target,
    pairs: &mut HashMap<String, Pair>,
    conns: &mut HashMap<u32, (mpsc::Sender<ToPod>, JoinHandle<()>)>,
    frames: &mpsc::Sender<Frame>,
) -> Option<Vec<Frame>> {
    match f {
        Frame::SynStream {
            stream, headers, ..
        } => {
            let kind = spdy::header(&headers, "streamtype").unwrap_or("");
            let port = spdy::header(&headers, "port").and_then(|p| p.parse::<u16>().ok());
            let request = spdy::header(&headers, "requestid")
                .unwrap_or("")
                .to_string();
            let refuse = Frame::RstStream {
                stream,
                status: REFUSED_STREAM,
            };
            let (Some(port), true) = (port.filter(|p| *p > 0), pairs.len() < MAX_STREAMS) else {
                return Some(vec![refuse]);
            };
            let reply = Frame::SynReply {
                stream,
                fin: false,
                headers: vec![],
            };
            let pair = pairs.entry(request.clone()).or_default();
            pair.port = port;
            match kind {
                "error" => pair.error = Some(stream),
                "data" => pair.data = Some(stream),
                _ => return Some(vec![refuse]),
            }
            let mut out = vec![reply];
            if let (Some(error), Some(data)) = (pair.error, pair.data) {
                pairs.remove(&request);
                let (tx, rx) = mpsc::channel(64);
                let task = tokio::spawn(forward(
                    target.clone(),
                    port,
                    data,
                    error,
                    rx,
                    frames.clone(),
                ));
                conns.insert(data, (tx, task));
            } else if kind == "data" {
                // A data stream without its error stream first: nothing to report on.
                out.push(Frame::RstStream {
                    stream,
                    status: REFUSED_STREAM,
                });
                pairs.remove(&request);
            }
            Some(out)
        }
        Frame::Data { stream, fin, data } => {
            if let Some((tx, _)) = conns.get(&stream) {
                let mut gone = !data.is_empty() && tx.send(ToPod::Data(data)).await.is_err();
                if fin && !gone {
                    gone = tx.send(ToPod::Fin).await.is_err();
                }
                if gone {
                    conns.remove(&stream);
                }
            }
            Some(vec![])
        }
        Frame::RstStream { stream, .. } => {
            if let Some((_, task)) = conns.remove(&stream) {
                task.abort();
            }
            Some(vec![])
        }
        Frame::Ping { id } => Some(vec![Frame::Ping { id }]),
        Frame::GoAway { .. } => None,
        Frame::SynReply { .. } | Frame::Headers { .. } | Frame::Ignored { .. } => Some(vec![]),
    }
}

/// One forwarded connection: dials the pod, then copies both ways until the pod closes.
async fn forward(
    target: Target,
    port: u16,
    data: u32,
    error: u32,
    mut from_client: mpsc::Receiver<ToPod>,
    frames: mpsc::Sender<Frame>,
) {
    let fin = |stream| Frame::Data {
        stream,
        fin: true,
        data: Bytes::new(),
    };
    let tcp = match target.runtime.port_forward(&target.sandbox, port).await {
        Ok(s) => s,
        Err(e) => {
            let why = match e {
                crate::runtime::RuntimeError::Other(m) => m,
                e => e.to_string(),
            };
            let msg = format!(
                "error forwarding port {port} to pod {}, uid {}: {why}",
                target.pod, target.uid
            );
            let _ = frames
                .send(Frame::Data {
                    stream: error,
                    fin: true,
                    data: Bytes::from(msg),
                })
                .await;
            let _ = frames
                .send(Frame::RstStream {
                    stream: data,
                    status: CANCEL,
                })
                .await;
            return;
        }
    };
    let (mut rd, mut wr) = tcp.into_split();
    let to_pod = tokio::spawn(async move {
        while let Some(m) = from_client.recv().await {
            match m {
                ToPod::Data(b) => {
                    if wr.write_all(&b).await.is_err() {
                        return;
                    }
                }
                ToPod::Fin => break,
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; 32 * 1024];
    while let Ok(n) = rd.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let f = Frame::Data {
            stream: data,
            fin: false,
            data: Bytes::copy_from_slice(&buf[..n]),
        };
        if frames.send(f).await.is_err() {
            to_pod.abort();
            return;
        }
    }
    to_pod.abort();
    let _ = frames.send(fin(data)).await;
    let _ = frames.send(fin(error)).await;
}
