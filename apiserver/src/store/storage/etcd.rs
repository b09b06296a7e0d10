//! [`Storage`] over the etcd v3 API (the kvstore or etcd), through [`crate::etcd::Etcd`]
//! and its failover rules.

use proto::etcdserverpb as pb;

use proto::mvccpb;

use super::{
    Event, Guard, Kv, Op, Range, Storage, StorageError, Txn, TxnResult, WatchMessage, WatchSpec,
    WatchStream,
};
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
        stale: false,
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

    async fn current_revision(&self) -> Result<i64, StorageError> {
        Etcd::current_revision(self).await
    }

    async fn watch(&self, spec: WatchSpec) -> Result<Box<dyn WatchStream>, StorageError> {
        let create = pb::WatchCreateRequest {
            key: spec.start,
            range_end: spec.end,
            start_revision: spec.from,
            prev_kv: spec.prev_kv,
            progress_notify: spec.progress_notify,
            ..Default::default()
        };
        let (requests, stream) = Etcd::watch(self, spec.replica, create).await?;
        Ok(Box::new(EtcdWatch { requests, stream }))
    }

    fn replicas(&self) -> usize {
        self.member_count()
    }
    fn preferred_replica(&self) -> usize {
        self.preferred()
    }
    fn replica_name(&self, i: usize) -> String {
        self.member_url(i).to_string()
    }
}

/// A watch on one etcd member: its request sender (for progress requests) and responses.
struct EtcdWatch {
    requests: tokio::sync::mpsc::Sender<pb::WatchRequest>,
    stream: tonic::Streaming<pb::WatchResponse>,
}

fn event(e: mvccpb::Event) -> Option<Event> {
    Some(Event {
        deleted: e.r#type == mvccpb::event::EventType::Delete as i32,
        kv: kv(e.kv?),
        prev: e.prev_kv.map(kv),
    })
}

#[async_trait::async_trait]
impl WatchStream for EtcdWatch {
    async fn next(&mut self) -> Option<WatchMessage> {
        loop {
            let r = self.stream.message().await.ok()??;
            if r.compact_revision > 0 {
                return Some(WatchMessage::Compacted(r.compact_revision));
            }
            if r.canceled {
                return Some(WatchMessage::Canceled(r.cancel_reason));
            }
            if !r.events.is_empty() {
                return Some(WatchMessage::Events(
                    r.events.into_iter().filter_map(event).collect(),
                ));
            }
            // The answer to the create request says nothing yet; any other empty response
            // is a progress notification.
            if !r.created {
                return Some(WatchMessage::Progress(revision(&r.header)));
            }
        }
    }

    async fn request_progress(&mut self) {
        use pb::watch_request::RequestUnion;
        let _ = self
            .requests
            .send(pb::WatchRequest {
                request_union: Some(RequestUnion::ProgressRequest(pb::WatchProgressRequest {})),
            })
            .await;
    }
}
