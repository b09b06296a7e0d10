//! An etcd v3 client bound to one member, as a Jepsen client process is: no failover inside
//! (the harness decides where to go next) and every error classified as certainly-not-applied
//! or outcome-unknown.

use std::time::Duration;

use proto::etcdserverpb as pb;
pub use proto::prefix_end;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// Why an operation did not complete normally.
#[derive(Clone, Debug, thiserror::Error)]
pub enum OpError {
    /// Certainly not applied (rejected, or never sent).
    #[error("{0}")]
    Fail(String),
    /// May or may not have been applied, now or later.
    #[error("{0}")]
    Unknown(String),
}

fn classify(s: Status) -> OpError {
    let msg = format!("{:?}: {}", s.code(), s.message());
    match s.code() {
        // The server refused the request before proposing it.
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::ResourceExhausted
        | Code::Unimplemented => OpError::Fail(msg),
        // Refused connections never carried the request.
        Code::Unavailable if proto::connection_refused(&s) => OpError::Fail(msg),
        // A member that knows of no leader refuses before proposing (etcd's interceptor
        // does the same). Taking the server at its word keeps "unknown" for what truly is,
        // and a "no leader" answer for a write that did take effect would show up as a
        // violation.
        Code::Unavailable if s.message() == NO_LEADER => OpError::Fail(msg),
        _ => OpError::Unknown(msg),
    }
}

/// etcd's `ErrGRPCNoLeader` message.
const NO_LEADER: &str = "etcdserver: no leader";

#[derive(Clone)]
pub struct Client {
    kv: pb::kv_client::KvClient<Channel>,
    watch: pb::watch_client::WatchClient<Channel>,
    cluster: pb::cluster_client::ClusterClient<Channel>,
    maint: pb::maintenance_client::MaintenanceClient<Channel>,
}

const MAX_MSG: usize = 64 << 20;

impl Client {
    /// A lazily connecting client of `url` (over `tls` if it is https://); every unary
    /// call gives up after `timeout`.
    pub fn new(
        url: &str,
        tls: Option<&proto::tls::ClientTls>,
        timeout: Duration,
    ) -> anyhow::Result<Client> {
        let ep = Endpoint::from_shared(url.to_string())?;
        let ep = proto::tls::ClientTls::apply(tls, url, ep)?;
        let ch = ep
            .clone()
            .connect_timeout(Duration::from_millis(500))
            .timeout(timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        // Watches are long-lived: their channel has no per-request timeout.
        let wch = ep
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(2))
            .connect_lazy();
        Ok(Client {
            kv: pb::kv_client::KvClient::new(ch.clone())
                .max_decoding_message_size(MAX_MSG)
                .max_encoding_message_size(MAX_MSG),
            watch: pb::watch_client::WatchClient::new(wch).max_decoding_message_size(MAX_MSG),
            cluster: pb::cluster_client::ClusterClient::new(ch.clone()),
            maint: pb::maintenance_client::MaintenanceClient::new(ch),
        })
    }

    async fn range(&mut self, req: pb::RangeRequest) -> Result<pb::RangeResponse, OpError> {
        Ok(self.kv.range(req).await.map_err(classify)?.into_inner())
    }

    /// Value of `key` (None: absent) and the response's revision.
    pub async fn get(
        &mut self,
        key: &str,
        serializable: bool,
    ) -> Result<(Option<Vec<u8>>, i64), OpError> {
        let r = self
            .range(pb::RangeRequest {
                key: key.as_bytes().to_vec(),
                serializable,
                ..Default::default()
            })
            .await?;
        let rev = revision(&r.header);
        Ok((r.kvs.into_iter().next().map(|kv| kv.value), rev))
    }

    /// Every key and value under `prefix`.
    pub async fn range_prefix(
        &mut self,
        prefix: &str,
        serializable: bool,
    ) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, i64), OpError> {
        let r = self
            .range(pb::RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                serializable,
                ..Default::default()
            })
            .await?;
        let rev = revision(&r.header);
        Ok((
            r.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect(),
            rev,
        ))
    }

    /// Every key under `prefix` as it was at `revision` (linearizable), with its revisions.
    pub async fn prefix_at(
        &mut self,
        prefix: &str,
        revision: i64,
    ) -> Result<Vec<proto::mvccpb::KeyValue>, OpError> {
        let r = self
            .range(pb::RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                revision,
                ..Default::default()
            })
            .await?;
        Ok(r.kvs)
    }

    pub async fn put(&mut self, key: &str, value: Vec<u8>) -> Result<i64, OpError> {
        let r = self
            .kv
            .put(pb::PutRequest {
                key: key.as_bytes().to_vec(),
                value,
                ..Default::default()
            })
            .await
            .map_err(classify)?
            .into_inner();
        Ok(revision(&r.header))
    }

    /// Sets `key` to `to` if its value is `from`; Ok(false) when it was not.
    pub async fn cas(&mut self, key: &str, from: Vec<u8>, to: Vec<u8>) -> Result<bool, OpError> {
        let r = self
            .kv
            .txn(pb::TxnRequest {
                compare: vec![pb::Compare {
                    result: pb::compare::CompareResult::Equal as i32,
                    target: pb::compare::CompareTarget::Value as i32,
                    key: key.as_bytes().to_vec(),
                    target_union: Some(pb::compare::TargetUnion::Value(from)),
                    ..Default::default()
                }],
                success: vec![put_op(key, to)],
                failure: vec![],
            })
            .await
            .map_err(classify)?
            .into_inner();
        Ok(r.succeeded)
    }

    /// One Txn putting `value` at every key of `puts` and deleting `deletes`.
    pub async fn txn(
        &mut self,
        puts: &[String],
        deletes: &[String],
        value: &[u8],
    ) -> Result<i64, OpError> {
        let mut success: Vec<pb::RequestOp> =
            puts.iter().map(|k| put_op(k, value.to_vec())).collect();
        success.extend(deletes.iter().map(|k| pb::RequestOp {
            request: Some(pb::request_op::Request::RequestDeleteRange(
                pb::DeleteRangeRequest {
                    key: k.as_bytes().to_vec(),
                    ..Default::default()
                },
            )),
        }));
        let r = self
            .kv
            .txn(pb::TxnRequest {
                compare: vec![],
                success,
                failure: vec![],
            })
            .await
            .map_err(classify)?
            .into_inner();
        Ok(revision(&r.header))
    }

    /// This member's ID and the leader it knows of (0: none).
    pub async fn status(&mut self) -> Result<(u64, u64), OpError> {
        let r = self
            .maint
            .status(pb::StatusRequest {})
            .await
            .map_err(classify)?
            .into_inner();
        Ok((r.header.map_or(0, |h| h.member_id), r.leader))
    }

    /// (hash, compact revision) of the key space at `rev`.
    pub async fn hash_kv(&mut self, rev: i64) -> Result<(u32, i64), OpError> {
        let r = self
            .maint
            .hash_kv(pb::HashKvRequest { revision: rev })
            .await
            .map_err(classify)?
            .into_inner();
        Ok((r.hash, r.compact_revision))
    }

    pub async fn compact(&mut self, rev: i64) -> Result<(), OpError> {
        self.kv
            .compact(pb::CompactionRequest {
                revision: rev,
                physical: false,
            })
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// (member id, name, peer URLs) of every member.
    pub async fn member_list(&mut self) -> Result<Vec<(u64, String, Vec<String>)>, OpError> {
        let r = self
            .cluster
            .member_list(pb::MemberListRequest { linearizable: true })
            .await
            .map_err(classify)?
            .into_inner();
        Ok(r.members
            .into_iter()
            .map(|m| (m.id, m.name, m.peer_ur_ls))
            .collect())
    }

    pub async fn member_add(&mut self, peer_url: &str) -> Result<u64, OpError> {
        let r = self
            .cluster
            .member_add(pb::MemberAddRequest {
                peer_ur_ls: vec![peer_url.to_string()],
                is_learner: false,
            })
            .await
            .map_err(classify)?
            .into_inner();
        Ok(r.member.map_or(0, |m| m.id))
    }

    pub async fn member_remove(&mut self, id: u64) -> Result<(), OpError> {
        self.cluster
            .member_remove(pb::MemberRemoveRequest { id })
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Opens a watch of `prefix` from `start_revision` with prev_kv; returns the sender that
    /// keeps the stream open and the stream of responses.
    pub async fn watch(
        &mut self,
        prefix: &str,
        start_revision: i64,
    ) -> Result<
        (
            tokio::sync::mpsc::Sender<pb::WatchRequest>,
            tonic::Streaming<pb::WatchResponse>,
        ),
        OpError,
    > {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: prefix.as_bytes().to_vec(),
                    range_end: prefix_end(prefix.as_bytes()),
                    start_revision,
                    prev_kv: true,
                    ..Default::default()
                },
            )),
        })
        .await
        .map_err(|e| OpError::Fail(e.to_string()))?;
        let stream = self
            .watch
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(classify)?
            .into_inner();
        Ok((tx, stream))
    }
}

fn put_op(key: &str, value: Vec<u8>) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value,
            ..Default::default()
        })),
    }
}

fn revision(h: &Option<pb::ResponseHeader>) -> i64 {
    h.as_ref().map_or(0, |h| h.revision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_leader_is_a_definite_failure_and_a_timeout_is_not() {
        let no_leader = classify(Status::unavailable("etcdserver: no leader"));
        assert!(matches!(no_leader, OpError::Fail(_)), "{no_leader:?}");
        let timed_out = classify(Status::unavailable(
            "etcdserver: request timed out, possibly due to previous leader failure",
        ));
        assert!(matches!(timed_out, OpError::Unknown(_)), "{timed_out:?}");
        let refused = classify(Status::invalid_argument("etcdserver: key is not provided"));
        assert!(matches!(refused, OpError::Fail(_)));
    }
}
