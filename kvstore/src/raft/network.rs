//! openraft's network over tonic: each Raft RPC is one unary call on the peer service,
//! its request and reply bincode frames in the envelope of `wire` (which also carries this
//! member's cluster ID). The same client carries the internal calls a follower makes on the
//! leader (`PeerCall`). Messages are bounded by `wire::MAX_PEER_MESSAGE_BYTES` both ways;
//! an AppendEntries request that would exceed it is split (openraft's `PayloadTooLarge`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use proto::peer::peer_client::PeerClient;
use tonic::transport::{Channel, Endpoint};

use super::calls::{PeerCall, PeerReply};
use super::types::{Member, NodeId, TypeConfig};
use super::wire::{self, decode_frame, MAX_PEER_FRAME_BYTES, MAX_PEER_MESSAGE_BYTES};
use crate::storage::db::encode;

/// Lazily connected channels to peers by URL, shared by Raft replication and internal calls.
#[derive(Clone, Default)]
pub struct Peers {
    channels: Arc<Mutex<HashMap<String, Conn>>>,
    /// This member's cluster ID, sent with every request; 0 until it is known (a joining
    /// member asks the cluster for it first).
    cluster_id: Arc<AtomicU64>,
    /// For https:// peer URLs: the peer CA and this member's peer certificate.
    tls: Option<Arc<proto::tls::ClientTls>>,
}

struct Conn {
    channel: Channel,
    /// When a call on it last got an answer (or when it was made).
    answered: Instant,
}

/// A connection that has answered nothing for this long is replaced after its next failure.
const STALE: Duration = Duration::from_secs(1);

impl Peers {
    /// Peers dialled with `tls` where their URL is https://.
    pub fn new(tls: Option<proto::tls::ClientTls>) -> Self {
        Self {
            tls: tls.map(Arc::new),
            ..Self::default()
        }
    }

    /// Sets the cluster ID every request from now on carries.
    pub fn set_cluster_id(&self, id: u64) {
        self.cluster_id.store(id, Ordering::Relaxed);
    }

    fn request(&self, data: Vec<u8>) -> proto::peer::Payload {
        wire::request(self.cluster_id.load(Ordering::Relaxed), data)
    }

    pub fn client(&self, url: &str) -> Result<PeerClient<Channel>, tonic::transport::Error> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(url) {
            return Ok(Self::bounded(c.channel.clone()));
        }
        let ep = Endpoint::from_shared(url.to_string())?;
        let ch = proto::tls::ClientTls::apply(self.tls.as_deref(), url, ep)?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect_lazy();
        map.insert(
            url.to_string(),
            Conn {
                channel: ch.clone(),
                answered: Instant::now(),
            },
        );
        Ok(Self::bounded(ch))
    }

    fn answered(&self, url: &str) {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get_mut(url) {
            c.answered = Instant::now();
        }
    }

    /// After a call to `url` timed out or broke: forgets the connection if it has answered
    /// nothing for a while. Across a partition a TCP connection backs its retransmissions
    /// off for seconds, so after the heal a fresh connection gets through at once while the
    /// old one would still wait; a connection that answered recently (a slow moment under
    /// load) is kept, as reconnecting would only add work.
    fn failed(&self, url: &str) {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(url).is_some_and(|c| c.answered.elapsed() > STALE) {
            map.remove(url);
        }
    }

    /// Messages both ways are bounded by the peer limit (tonic's default of 4 MiB would
    /// refuse a forwarded Txn's large reply or a full AppendEntries).
    fn bounded(ch: Channel) -> PeerClient<Channel> {
        PeerClient::new(ch)
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES)
    }

    /// Makes an internal call on the member at `url`.
    pub async fn call(
        &self,
        url: &str,
        call: &PeerCall,
        timeout: Duration,
    ) -> Result<PeerReply, CallError> {
        let mut client = self
            .client(url)
            .map_err(|e| CallError::NotSent(format!("peer {url}: {e}")))?;
        let mut req = tonic::Request::new(self.request(encode(call)));
        req.set_timeout(timeout);
        let resp = client.call(req).await.map_err(|s| {
            if is_transport_failure(&s) {
                self.failed(url);
            }
            match s.code() {
                tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => CallError::Timeout,
                // tonic's text for a connection that could not be made: nothing was sent.
                tonic::Code::Unavailable if s.message().contains("connect error") => {
                    CallError::NotSent(format!("peer {url}: {}", s.message()))
                }
                // Refused before anything ran: the peer is in another cluster.
                _ if wire::is_cluster_mismatch(&s) => {
                    CallError::NotSent(format!("peer {url}: {}", s.message()))
                }
                _ => CallError::Ambiguous(format!("peer {url}: {}", s.message())),
            }
        })?;
        self.answered(url);
        decode_frame(&resp.into_inner().data)
            .map_err(|e| CallError::Ambiguous(format!("peer {url}: bad reply: {e}")))
    }
}

/// A failure of the connection rather than an answer from the peer.
fn is_transport_failure(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::Unavailable
            | tonic::Code::Unknown
    )
}

/// Why an internal call failed, as far as the caller can tell whether it took effect.
#[derive(Debug)]
pub enum CallError {
    /// The call never reached the peer: safe to retry anything.
    NotSent(String),
    /// No answer in time: it may or may not have taken effect.
    Timeout,
    /// The connection failed after sending: it may or may not have taken effect.
    Ambiguous(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::NotSent(m) | CallError::Ambiguous(m) => f.write_str(m),
            CallError::Timeout => f.write_str("timed out"),
        }
    }
}

pub struct NetworkFactory {
    pub peers: Peers,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerConnection {
        PeerConnection {
            target,
            url: node.peer_urls.first().cloned().unwrap_or_default(),
            peers: self.peers.clone(),
        }
    }
}

pub struct PeerConnection {
    target: NodeId,
    url: String,
    peers: Peers,
}

type RpcErr<E> = RPCError<NodeId, Member, RaftError<NodeId, E>>;

impl PeerConnection {
    /// Sends one encoded request (`frame`) and decodes the reply.
    async fn rpc<Resp, E>(
        &self,
        method: Method,
        frame: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Resp, RpcErr<E>>
    where
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let mut client = self
            .peers
            .client(&self.url)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let mut request = tonic::Request::new(self.peers.request(frame));
        request.set_timeout(option.hard_ttl());
        let began = std::time::Instant::now();
        let reply = match method {
            Method::Vote => client.vote(request).await,
            Method::Append { .. } => client.append_entries(request).await,
            Method::Snapshot => client.install_snapshot(request).await,
        };
        // A heartbeat (an append without entries) is the round trip etcd's prober measures.
        if matches!(method, Method::Append { heartbeat: true }) && reply.is_ok() {
            crate::metrics::global().peer_round_trip(self.target, began.elapsed());
        }
        tracing::trace!(
            target = self.target,
            elapsed_us = began.elapsed().as_micros() as u64,
            "raft rpc"
        );
        let payload = reply.map_err(|s| {
            if is_transport_failure(&s) {
                self.peers.failed(&self.url);
            }
            match s.code() {
                tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&s)),
                _ => RPCError::Network(NetworkError::new(&s)),
            }
        })?;
        self.peers.answered(&self.url);
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode_frame(&payload.into_inner().data)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

enum Method {
    Vote,
    Append { heartbeat: bool },
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        tracing::trace!(
            target = self.target,
            entries = rpc.entries.len(),
            "append entries"
        );
        let frame = encode(&rpc);
        if frame.len() > MAX_PEER_FRAME_BYTES {
            return Err(too_large(rpc.entries.len(), frame.len()));
        }
        let heartbeat = rpc.entries.is_empty();
        self.rpc(Method::Append { heartbeat }, frame, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.rpc(Method::Snapshot, encode(&rpc), &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        self.rpc(Method::Vote, encode(&rpc), &option).await
    }
}

/// An AppendEntries request of `entries` entries that encodes to `bytes`, more than a peer
/// message holds: openraft retries with half as many. A single entry cannot be split; the
/// config keeps entries below the limit (`config::MAX_REQUEST_BYTES_CAP`), so this is a bug.
fn too_large<E>(entries: usize, bytes: usize) -> RpcErr<E>
where
    E: std::error::Error,
{
    if entries > 1 {
        return RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(entries as u64 / 2));
    }
    let e = std::io::Error::other(format!(
        "a log entry of {bytes} bytes is larger than a peer message may be ({MAX_PEER_FRAME_BYTES} bytes)"
    ));
    RPCError::Network(NetworkError::new(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_known_not_to_have_delivered_the_call() {
        let peers = Peers::default();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let e = peers
            .call(&url, &PeerCall::ReadIndex, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(e, CallError::NotSent(_)), "{e:?}");
    }

    #[test]
    fn an_oversized_append_is_split_in_half_and_a_lone_entry_is_an_error() {
        match too_large::<openraft::error::Infallible>(300, MAX_PEER_FRAME_BYTES + 1) {
            RPCError::PayloadTooLarge(p) => assert_eq!(p.entries_hint(), 150),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            too_large::<openraft::error::Infallible>(1, MAX_PEER_FRAME_BYTES + 1),
            RPCError::Network(_)
        ));
    }
}
