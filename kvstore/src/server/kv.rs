//! etcd's KV service: Range, Put, DeleteRange, Txn, Compact.
//!
//! With auth enabled, every request but Compact (which etcd does not check) is checked for
//! its caller on this member after validation: reads once this member is up to date,
//! writes before they are proposed and again when they are applied (`Node::propose_as`).

use std::sync::Arc;

use proto::etcdserverpb::kv_server::Kv;
use proto::etcdserverpb::response_op::Response as OpResponse;
use proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

use super::node::Node;
use crate::auth::needs;
use crate::error::KvError;
use crate::mvcc::{range, txn, validate};
use crate::raft::types::{Command, Output, Pb};
use crate::storage::state_machine::ALARM_NOSPACE;

pub struct KvService {
    pub node: Arc<Node>,
}

impl KvService {
    /// etcd's size limit applies to the encoded request.
    fn check_size(&self, len: usize) -> Result<(), KvError> {
        if len > self.node.config.max_request_bytes {
            return Err(KvError::RequestTooLarge);
        }
        Ok(())
    }

    /// etcd's quota check: a write that would take the database past the quota raises the
    /// NOSPACE alarm and is refused.
    async fn check_quota(&self, len: usize) -> Result<(), KvError> {
        let node = &self.node;
        if node.store.db_size_recent().saturating_add(len as u64) <= node.config.quota_backend_bytes
        {
            return Ok(());
        }
        if !node.store.has_alarm(ALARM_NOSPACE) {
            let cmd = Command::Alarm {
                action: 1,
                member_id: node.id,
                alarm: ALARM_NOSPACE,
            };
            node.propose(cmd).await?;
        }
        Err(KvError::NoSpace)
    }

    async fn txn(&self, who: Option<String>, t: TxnRequest) -> Result<(TxnResponse, i64), KvError> {
        let applied = self.node.propose_as(who, Command::Txn(Pb(t))).await?;
        match applied.output? {
            Output::Txn(Pb(resp)) => Ok((resp, applied.revision)),
            other => Err(KvError::Internal(format!("txn applied as {other:?}"))),
        }
    }

    /// Range for `who` (the request already validated): checked, then read here.
    pub async fn range_local(
        &self,
        who: Option<&str>,
        req: &RangeRequest,
    ) -> Result<RangeResponse, KvError> {
        if !req.serializable {
            self.node.read_barrier().await?;
        }
        self.node.authorize(who, &[needs::range(req)]).await?;
        let read = || {
            let (view, revs) = self.node.store.read_view();
            range::execute(&view, revs, req, None).map(|r| (r, revs))
        };
        // A large range is long disk work: keep it off the threads Raft runs on (moving off
        // costs more than a point read takes, so point reads stay).
        let (mut resp, revs) = if may_be_large(req) {
            tokio::task::block_in_place(read)
        } else {
            read()
        }?;
        resp.header = Some(self.node.header(revs.current));
        Ok(resp)
    }
}

/// Whether a range may read many keys (not a point read, not a small page).
fn may_be_large(r: &RangeRequest) -> bool {
    !r.range_end.is_empty() && !(1..=1000).contains(&r.limit)
}

fn is_read_only(t: &TxnRequest) -> bool {
    use proto::etcdserverpb::request_op::Request;
    t.success
        .iter()
        .chain(&t.failure)
        .all(|op| match &op.request {
            Some(Request::RequestRange(_)) => true,
            Some(Request::RequestTxn(inner)) => is_read_only(inner),
            _ => false,
        })
}

#[tonic::async_trait]
impl Kv for KvService {
    #[tracing::instrument(skip_all, level = "debug")]
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        validate::range(req.get_ref())?;
        let who = self.node.caller_of(&req).await?;
        Ok(Response::new(
            self.range_local(who.as_deref(), req.get_ref()).await?,
        ))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let len = prost::Message::encoded_len(req.get_ref());
        self.check_size(len)?;
        validate::put(req.get_ref())?;
        let who = self.node.caller_of(&req).await?;
        self.check_quota(len).await?;
        let (mut resp, rev) = self.txn(who, txn::put_as_txn(req.into_inner())).await?;
        let Some(OpResponse::ResponsePut(mut put)) = resp.responses.pop().and_then(|r| r.response)
        else {
            return Err(KvError::internal("put produced no response").into());
        };
        put.header = Some(self.node.header(rev));
        Ok(Response::new(put))
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        self.check_size(prost::Message::encoded_len(req.get_ref()))?;
        validate::delete(req.get_ref())?;
        let who = self.node.caller_of(&req).await?;
        let (mut resp, rev) = self.txn(who, txn::delete_as_txn(req.into_inner())).await?;
        let Some(OpResponse::ResponseDeleteRange(mut del)) =
            resp.responses.pop().and_then(|r| r.response)
        else {
            return Err(KvError::internal("delete produced no response").into());
        };
        del.header = Some(self.node.header(rev));
        Ok(Response::new(del))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let len = prost::Message::encoded_len(req.get_ref());
        self.check_size(len)?;
        validate::txn(req.get_ref(), self.node.config.max_txn_ops)?;
        let who = self.node.caller_of(&req).await?;
        let req = req.into_inner();
        if is_read_only(&req) {
            // A read-only Txn is a linearizable read: no log entry needed.
            self.node.read_barrier().await?;
            let mut wanted = Vec::new();
            needs::txn(&req, &mut wanted);
            self.node.authorize(who.as_deref(), &wanted).await?;
            let read = || {
                let (view, revs) = self.node.store.read_view();
                txn::execute(&view, revs, &req).map(|o| (o, revs))
            };
            let large = req
                .success
                .iter()
                .chain(&req.failure)
                .any(|op| match &op.request {
                    Some(proto::etcdserverpb::request_op::Request::RequestRange(r)) => {
                        may_be_large(r)
                    }
                    _ => true,
                });
            let (out, revs) = if large {
                tokio::task::block_in_place(read)
            } else {
                read()
            }?;
            let mut resp = out.response;
            resp.header = Some(self.node.header(revs.current));
            return Ok(Response::new(resp));
        }
        self.check_quota(len).await?;
        let (mut resp, rev) = self.txn(who, req).await?;
        resp.header = Some(self.node.header(rev));
        Ok(Response::new(resp))
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        // etcd checks no permission for compaction, but a token must still be valid.
        self.node.caller_of(&req).await?;
        let req = req.into_inner();
        let applied = self
            .node
            .propose(Command::Compact {
                revision: req.revision,
            })
            .await?;
        applied.output?;
        // etcd's `physical`: answer once the compacted versions are gone from this member's
        // database, not only from what reads can see.
        if req.physical
            && !self
                .node
                .store
                .wait_compacted_physically(req.revision, self.node.config.request_timeout())
                .await
        {
            return Err(KvError::Timeout.into());
        }
        Ok(Response::new(CompactionResponse {
            header: Some(self.node.header(applied.revision)),
        }))
    }
}
