//! [`Storage`] over the etcd v3 API (the kvstore or etcd), through [`crate::etcd::Etcd`]
//! and its failover rules.

use proto::etcdserverpb as pb;

use super::{Guard, Kv, Op, Range, Storage, StorageError, Txn, TxnResult};
use crate::etcd::Etcd;

fn compare(g: &Guard) -> pb::Compare {
    let (key, target, union) = match g {
        Guard::Absent(k) => (
            k,
            pb::compare::CompareTarget::Create,
            pb::compare::TargetUnion::CreateRevision(0),
        ),
        Guard::ModRevision(k, rev) => (
            k,
            pb::compare::CompareTarget::Mod,
            pb::compare::TargetUnion::ModRevision(*rev),
        ),
    };
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: target as i32,
        key: key.as_bytes().to_vec(),
        range_end: vec![],
        target_union: Some(union),
    }
}

fn request(op: &Op) -> pb::RequestOp {
    let r = match op {
        Op::Put(k, v) => pb::request_op::Request::RequestPut(pb::PutRequest {
            key: k.as_bytes().to_vec(),
            value: v.clone(),
            ..Default::default()
        }),
        Op::Delete(k) => pb::request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest {
            key: k.as_bytes().to_vec(),
            ..Default::default()
        }),
    };
    pb::RequestOp { request: Some(r) }
}

fn read(key: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        })),
    }
}

fn kv(k: proto::mvccpb::KeyValue) -> Kv {
    Kv {
        key: k.key,
        value: k.value,
        create_revision: k.create_revision,
        mod_revision: k.mod_revision,
    }
}

fn revision(h: &Option<pb::ResponseHeader>) -> i64 {
    h.as_ref().map(|h| h.revision).unwrap_or(0)
}

#[async_trait::async_trait]
impl Storage for Etcd {
    async fn range(
        &self,
        start: &[u8],
        end: &[u8],
        revision: i64,
        limit: i64,
    ) -> Result<Range, StorageError> {
        let r = Etcd::range(
            self,
            pb::RangeRequest {
                key: start.to_vec(),
                range_end: end.to_vec(),
                limit,
                revision,
                ..Default::default()
            },
        )
        .await?;
        Ok(Range {
            revision: self::revision(&r.header),
            more: r.more,
            count: r.count,
            kvs: r.kvs.into_iter().map(kv).collect(),
        })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, StorageError> {
        let r = Etcd::txn(
            self,
            pb::TxnRequest {
                compare: txn.guards.iter().map(compare).collect(),
                success: txn.ops.iter().map(request).collect(),
                failure: txn.on_failure.iter().map(|k| read(k)).collect(),
            },
        )
        .await?;
        let found = if r.succeeded {
            vec![]
        } else {
            r.responses
                .iter()
                .map(|o| {
                    matches!(
                        o.response.as_ref(),
                        Some(pb::response_op::Response::ResponseRange(r)) if !r.kvs.is_empty()
                    )
                })
                .collect()
        };
        Ok(TxnResult {
            succeeded: r.succeeded,
            revision: revision(&r.header),
            found,
        })
    }
}
