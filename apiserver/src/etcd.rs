//! The apiserver's etcd v3 client: every member of `--etcd-servers` behind one handle.
//!
//! Contract: a read is retried on the next member after any failure (reads change nothing).
//! A write is retried on the next member only when the failed attempt certainly never
//! reached a server (a refused connection); any other failure is returned, because the
//! write may have been applied, and the caller (a client of the apiserver) decides.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proto::etcdserverpb as pb;
pub use proto::prefix_end;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::error::ApiError;

const MAX_MSG: usize = 64 << 20;

/// How long a call may keep trying members before it reports the last failure.
const TOTAL: Duration = Duration::from_secs(12);

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No member could serve (no quorum, none reachable): 503.
    #[error("{0}")]
    Unavailable(String),
    /// The request took longer than allowed; it may still take effect: 504.
    #[error("{0}")]
    Timeout(String),
    /// The revision asked for has been compacted: 410.
    #[error("{0}")]
    Compacted(String),
    #[error("{0}")]
    Other(String),
}

impl From<EtcdError> for ApiError {
    fn from(e: EtcdError) -> Self {
        match e {
            EtcdError::Unavailable(m) => {
                ApiError::Unavailable(format!("etcd cluster is unavailable or misconfigured: {m}"))
            }
            EtcdError::Timeout(m) => ApiError::Timeout(format!(
                "Timeout: request did not complete within requested timeout - {m}"
            )),
            EtcdError::Compacted(m) => ApiError::Expired(m),
            EtcdError::Other(m) => ApiError::Internal(m),
        }
    }
}

fn classify(s: &Status) -> EtcdError {
    let msg = s.message().to_string();
    match s.code() {
        Code::OutOfRange if msg.contains("compacted") => EtcdError::Compacted(msg),
        Code::Unavailable => EtcdError::Unavailable(msg),
        Code::DeadlineExceeded | Code::Cancelled => EtcdError::Timeout(msg),
        _ => EtcdError::Other(format!("{:?}: {msg}", s.code())),
    }
}

struct Member {
    url: String,
    unary: Channel,
    stream: Channel,
}

/// A handle on the etcd (or Flotilla kvstore) cluster.
pub struct Etcd {
    members: Vec<Member>,
    /// The member the last successful call went to; calls start there.
    preferred: AtomicUsize,
    /// Latency of unary calls by operation, failovers included (`/metrics`).
    pub latency: crate::latency::Histograms<&'static str>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mutates {
    No,
    Yes,
}

impl Etcd {
    /// `timeout` bounds each attempt of a unary call.
    /// `tls` is used for https:// members.
    pub fn new(
        urls: &[String],
        tls: Option<&proto::tls::ClientTls>,
        timeout: Duration,
    ) -> Result<Self, String> {
        if urls.is_empty() {
            return Err("--etcd-servers must name at least one member".into());
        }
        let mut members = Vec::new();
        for url in urls {
            let ep = Endpoint::from_shared(url.clone())
                .and_then(|ep| proto::tls::ClientTls::apply(tls, url, ep))
                .map_err(|e| format!("--etcd-servers {url:?}: {e}"))?;
            // Pings find a member that vanished (killed, paused, cut off: no RST comes
            // back) within 3 s, so a call in flight fails then rather than at `timeout`,
            // and the next one reconnects, fails to connect and moves on.
            let unary = ep
                .clone()
                .connect_timeout(Duration::from_millis(500))
                .timeout(timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(1))
                .keep_alive_timeout(Duration::from_secs(2))
                .keep_alive_while_idle(true)
                .connect_lazy();
            let stream = ep
                .connect_timeout(Duration::from_millis(500))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(2))
                .keep_alive_timeout(Duration::from_secs(3))
                .connect_lazy();
            members.push(Member {
                url: url.clone(),
                unary,
                stream,
            });
        }
        Ok(Self {
            members,
            preferred: AtomicUsize::new(0),
            latency: Default::default(),
        })
    }

    fn kv(&self, i: usize) -> pb::kv_client::KvClient<Channel> {
        pb::kv_client::KvClient::new(self.members[i].unary.clone())
            .max_decoding_message_size(MAX_MSG)
            .max_encoding_message_size(MAX_MSG)
    }

    /// Runs `call` on members starting at the preferred one, as the contract above says.
    async fn call<T, F, Fut>(
        &self,
        op: &'static str,
        mutates: Mutates,
        call: F,
    ) -> Result<T, EtcdError>
    where
        F: FnMut(usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let started = std::time::Instant::now();
        let r = self.call_members(mutates, call).await;
        crate::latency::observe(&self.latency, op, started.elapsed());
        r
    }

    async fn call_members<T, F, Fut>(&self, mutates: Mutates, mut call: F) -> Result<T, EtcdError>
    where
        F: FnMut(usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let n = self.members.len();
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last = None;
        let deadline = tokio::time::Instant::now() + TOTAL;
        // Two passes: a member that just lost its leader may have a new one a moment later.
        for attempt in 0..2 * n {
            if attempt > 0 && tokio::time::Instant::now() >= deadline {
                break;
            }
            let i = (start + attempt) % n;
            match call(i).await {
                Ok(v) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(s) => {
                    let retry = match mutates {
                        Mutates::No => matches!(
                            s.code(),
                            Code::Unavailable
                                | Code::DeadlineExceeded
                                | Code::Cancelled
                                | Code::Unknown
                        ),
                        Mutates::Yes => {
                            s.code() == Code::Unavailable && proto::connection_refused(&s)
                        }
                    };
                    tracing::debug!(member = %self.members[i].url, code = ?s.code(), error = %s.message(), retry, "etcd call failed");
                    if !retry {
                        return Err(classify(&s));
                    }
                    last = Some(s);
                    if attempt + 1 == n {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                }
            }
        }
        Err(last
            .map(|s| classify(&s))
            .unwrap_or_else(|| EtcdError::Unavailable("no member answered".into())))
    }

    pub async fn range(&self, req: pb::RangeRequest) -> Result<pb::RangeResponse, EtcdError> {
        self.call("range", Mutates::No, |i| {
            let req = req.clone();
            let mut kv = self.kv(i);
            async move { kv.range(req).await.map(|r| r.into_inner()) }
        })
        .await
    }

    pub async fn txn(&self, req: pb::TxnRequest) -> Result<pb::TxnResponse, EtcdError> {
        self.call("txn", Mutates::Yes, |i| {
            let req = req.clone();
            let mut kv = self.kv(i);
            async move { kv.txn(req).await.map(|r| r.into_inner()) }
        })
        .await
    }

    pub async fn compact(&self, revision: i64) -> Result<(), EtcdError> {
        self.call("compact", Mutates::Yes, |i| {
            let mut kv = self.kv(i);
            async move {
                kv.compact(pb::CompactionRequest {
                    revision,
                    physical: false,
                })
                .await
                .map(|_| ())
            }
        })
        .await
    }

    /// The cluster's current revision, read linearizably.
    pub async fn current_revision(&self) -> Result<i64, EtcdError> {
        let r = self
            .range(pb::RangeRequest {
                key: b"/registry/\0health".to_vec(),
                count_only: true,
                ..Default::default()
            })
            .await?;
        Ok(r.header.map(|h| h.revision).unwrap_or(0))
    }

    /// Opens a watch stream on member `i` (taken modulo the member count) with one create
    /// request; returns the request sender (for progress requests) and the response stream.
    pub async fn watch(
        &self,
        i: usize,
        create: pb::WatchCreateRequest,
    ) -> Result<
        (
            tokio::sync::mpsc::Sender<pb::WatchRequest>,
            tonic::Streaming<pb::WatchResponse>,
        ),
        EtcdError,
    > {
        use pb::watch_request::RequestUnion;
        let i = i % self.members.len();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tx.send(pb::WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(create)),
        })
        .await
        .map_err(|_| EtcdError::Other("watch request channel closed".into()))?;
        let mut client = pb::watch_client::WatchClient::new(self.members[i].stream.clone())
            .max_decoding_message_size(MAX_MSG);
        let stream = tokio::time::timeout(
            Duration::from_secs(3),
            client.watch(tokio_stream::wrappers::ReceiverStream::new(rx)),
        )
        .await
        .map_err(|_| EtcdError::Timeout(format!("opening a watch on {}", self.members[i].url)))?
        .map_err(|s| classify(&s))?
        .into_inner();
        Ok((tx, stream))
    }

    /// Grants a lease of `ttl` seconds; its ID.
    pub async fn lease_grant(&self, ttl: i64) -> Result<i64, EtcdError> {
        self.call("lease_grant", Mutates::Yes, |i| {
            let mut lease = pb::lease_client::LeaseClient::new(self.members[i].unary.clone());
            async move {
                lease
                    .lease_grant(pb::LeaseGrantRequest { ttl, id: 0 })
                    .await
                    .map(|r| r.into_inner().id)
            }
        })
        .await
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn member_url(&self, i: usize) -> &str {
        &self.members[i % self.members.len()].url
    }

    pub fn preferred(&self) -> usize {
        self.preferred.load(Ordering::Relaxed)
    }
}
