//! openraft's network over tonic: each Raft RPC is one unary call on the peer service,
//! its request and reply bincode frames in the envelope of `wire` (which also carries this
//! member's cluster ID). The same client carries the internal calls a follower makes on the
//! leader (`PeerCall`). Messages are bounded by `wire::MAX_PEER_MESSAGE_BYTES` both ways:
//! the log reader hands replication no more entries than fit (`log_store`), and snapshots
//! travel in chunks (`snapshot_transfer`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::OptionalSend;
use proto::peer::peer_client::PeerClient;
use tokio::io::AsyncSeekExt;
use tonic::transport::{Channel, Endpoint};

use super::calls::{PeerCall, PeerReply};
use super::snapshot_transfer::{read_chunk, ChunkReply, SnapshotChunk};
use super::types::{Member, NodeId, Snapshot, SnapshotRecord, TypeConfig, Vote};
use super::wire::{self, decode_frame, MAX_PEER_FRAME_BYTES, MAX_PEER_MESSAGE_BYTES};
use crate::storage::db::encode;

/// What a connection to a peer carries. Each kind has its own HTTP/2 connection, so a
/// heartbeat never queues behind a large AppendEntries or snapshot chunk, nor behind the
/// forwarded requests of a follower's clients (etcd keeps raft messages on streams of
/// their own, apart from client traffic, for the same reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Heartbeats (openraft's heartbeat client).
    Heartbeat,
    /// AppendEntries with entries, votes, leader transfer.
    Replication,
    /// Snapshot chunks.
    Snapshot,
    /// Internal calls (`PeerCall`): forwarded proposals, read index, lease calls.
    Calls,
}

/// Lazily connected channels to peers by URL and lane.
#[derive(Clone, Default)]
pub struct Peers {
    channels: Arc<Mutex<HashMap<(String, Lane), Conn>>>,
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

    pub fn client(
        &self,
        url: &str,
        lane: Lane,
    ) -> Result<PeerClient<Channel>, tonic::transport::Error> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(&(url.to_string(), lane)) {
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
            (url.to_string(), lane),
            Conn {
                channel: ch.clone(),
                answered: Instant::now(),
            },
        );
        Ok(Self::bounded(ch))
    }

    fn answered(&self, url: &str, lane: Lane) {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get_mut(&(url.to_string(), lane)) {
            c.answered = Instant::now();
        }
    }

    /// After a call to `url` timed out or broke: forgets the connection if it has answered
    /// nothing for a while. Across a partition a TCP connection backs its retransmissions
    /// off for seconds, so after the heal a fresh connection gets through at once while the
    /// old one would still wait; a connection that answered recently (a slow moment under
    /// load) is kept, as reconnecting would only add work.
    fn failed(&self, url: &str, lane: Lane) {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let key = (url.to_string(), lane);
        if map.get(&key).is_some_and(|c| c.answered.elapsed() > STALE) {
            map.remove(&key);
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
            .client(url, Lane::Calls)
            .map_err(|e| CallError::NotSent(format!("peer {url}: {e}")))?;
        let mut req = tonic::Request::new(self.request(encode(call)));
        req.set_timeout(timeout);
        let resp = client.call(req).await.map_err(|s| {
            if is_transport_failure(&s) {
                self.failed(url, Lane::Calls);
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
        self.answered(url, Lane::Calls);
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
        self.connection(target, node, Lane::Replication)
    }

    async fn new_heartbeat_client(&mut self, target: NodeId, node: &Member) -> PeerConnection {
        self.connection(target, node, Lane::Heartbeat)
    }

    async fn new_snapshot_client(&mut self, target: NodeId, node: &Member) -> PeerConnection {
        self.connection(target, node, Lane::Snapshot)
    }
}

impl NetworkFactory {
    fn connection(&self, target: NodeId, node: &Member, lane: Lane) -> PeerConnection {
        PeerConnection {
            target,
            url: node.peer_urls.first().cloned().unwrap_or_default(),
            peers: self.peers.clone(),
            lane,
        }
    }
}

pub struct PeerConnection {
    target: NodeId,
    url: String,
    peers: Peers,
    lane: Lane,
}

/// What a member answers to a Raft RPC: openraft's reply, or why Raft could not handle it
/// (it stopped: a fatal error on that member).
pub type RpcReply<T> = Result<T, String>;

type RpcErr = RPCError<TypeConfig>;

impl PeerConnection {
    /// Sends one encoded request (`frame`) and decodes the reply.
    async fn rpc<Resp>(&self, method: Method, frame: Vec<u8>, ttl: Duration) -> Result<Resp, RpcErr>
    where
        Resp: serde::de::DeserializeOwned,
    {
        let mut client = self
            .peers
            .client(&self.url, self.lane)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let mut request = tonic::Request::new(self.peers.request(frame));
        request.set_timeout(ttl);
        let began = std::time::Instant::now();
        let reply = match method {
            Method::Vote => client.vote(request).await,
            Method::PreVote => client.pre_vote(request).await,
            Method::Append { .. } => client.append_entries(request).await,
            Method::Snapshot => client.install_snapshot(request).await,
            Method::TransferLeader => client.transfer_leader(request).await,
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
                self.peers.failed(&self.url, self.lane);
            }
            match s.code() {
                tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&s)),
                _ => RPCError::Network(NetworkError::new(&s)),
            }
        })?;
        self.peers.answered(&self.url, self.lane);
        let result: RpcReply<Resp> = decode_frame(&payload.into_inner().data)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        // The peer's Raft has stopped: as good as unreachable.
        result.map_err(|e| {
            RPCError::Unreachable(Unreachable::new(&std::io::Error::other(format!(
                "peer {}: {e}",
                self.target
            ))))
        })
    }
}

enum Method {
    Vote,
    PreVote,
    Append { heartbeat: bool },
    Snapshot,
    TransferLeader,
}

/// How often a snapshot transfer starts again from the first chunk when the receiver asks
/// before it gives up (openraft then sends it again later).
const SNAPSHOT_RESTARTS: u32 = 3;

impl RaftNetworkV2<TypeConfig> for PeerConnection {
    type SnapshotData = tokio::fs::File;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RpcErr> {
        tracing::trace!(
            target = self.target,
            entries = rpc.entries.len(),
            "append entries"
        );
        // `LogReader::limited_get_log_entries` keeps several entries within a message, and
        // the request size limit keeps a lone entry within it.
        let frame = encode(&rpc);
        if frame.len() > MAX_PEER_FRAME_BYTES {
            let e = std::io::Error::other(format!(
                "an AppendEntries of {} entries is {} bytes, more than a peer message may be ({MAX_PEER_FRAME_BYTES} bytes)",
                rpc.entries.len(),
                frame.len()
            ));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let heartbeat = rpc.entries.is_empty();
        self.rpc(Method::Append { heartbeat }, frame, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RpcErr> {
        self.rpc(Method::Vote, encode(&rpc), option.hard_ttl())
            .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RpcErr> {
        self.rpc(Method::PreVote, encode(&rpc), option.hard_ttl())
            .await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RpcErr> {
        self.rpc(Method::TransferLeader, encode(&req), option.hard_ttl())
            .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        mut snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let meta = SnapshotRecord::new(snapshot.meta.clone());
        let size = option
            .snapshot_chunk_size()
            .unwrap_or(1 << 20)
            .clamp(1, MAX_PEER_FRAME_BYTES / 2);
        let storage = |e: std::io::Error| {
            StreamingError::Network(NetworkError::new(&std::io::Error::other(format!(
                "reading snapshot {}: {e}",
                meta.snapshot_id
            ))))
        };
        let end = snapshot
            .snapshot
            .seek(std::io::SeekFrom::End(0))
            .await
            .map_err(storage)?;
        let mut cancel = std::pin::pin!(cancel);
        let mut offset = 0u64;
        let mut restarts = 0;
        loop {
            if let Some(closed) = cancel.as_mut().now_or_never() {
                return Err(closed.into());
            }
            let data = read_chunk(&mut snapshot.snapshot, offset, size)
                .await
                .map_err(storage)?;
            let len = data.len() as u64;
            let done = offset.saturating_add(len) >= end;
            let chunk = SnapshotChunk {
                vote: vote.clone(),
                meta: meta.clone(),
                offset,
                data,
                done,
            };
            tracing::debug!(
                target = self.target,
                snapshot = %meta.snapshot_id,
                offset,
                len,
                end,
                "sending snapshot chunk"
            );
            let reply: ChunkReply = self
                .rpc(Method::Snapshot, encode(&chunk), option.hard_ttl())
                .await
                .map_err(|e| match e {
                    RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                    RPCError::Timeout(t) => StreamingError::Timeout(t),
                    RPCError::Network(n) => StreamingError::Network(n),
                    RPCError::RemoteError(r) => StreamingError::Network(NetworkError::new(
                        &std::io::Error::other(r.to_string()),
                    )),
                })?;
            match reply {
                ChunkReply::Taken { vote: theirs } => {
                    if theirs != vote || done {
                        return Ok(SnapshotResponse::new(theirs));
                    }
                    offset = offset.saturating_add(len);
                }
                ChunkReply::Restart if restarts < SNAPSHOT_RESTARTS => {
                    restarts += 1;
                    offset = 0;
                }
                ChunkReply::Restart => {
                    let e = std::io::Error::other(format!(
                        "peer {} asked to restart snapshot {} {restarts} times",
                        self.target, meta.snapshot_id
                    ));
                    return Err(StreamingError::Network(NetworkError::new(&e)));
                }
            }
        }
    }
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
}
