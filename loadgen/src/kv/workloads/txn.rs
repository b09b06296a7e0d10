//! Compare-and-swap on mod_revision, each client on a key of its own: read the revision,
//! then `txn(mod_revision == r) put else get`, as the apiserver updates an object.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use proto::etcdserverpb::request_op::Request;
use proto::etcdserverpb::response_op::Response;
use proto::etcdserverpb::{Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};

use super::status;
use crate::kv::drive::drive;
use crate::kv::report::Row;
use crate::kv::Ctx;

pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let f = &ctx.flags;
    let clients = f.clients.max(1);
    let keys: Arc<Vec<Vec<u8>>> = Arc::new((0..clients as u64).map(|i| ctx.key("t", i)).collect());
    let revs: Arc<Vec<AtomicI64>> = Arc::new((0..clients).map(|_| AtomicI64::new(0)).collect());
    for (c, key) in keys.iter().enumerate() {
        let r = ctx
            .pool
            .kv(c)
            .put(PutRequest {
                key: key.clone(),
                value: ctx.value(),
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!(status(e)))?;
        let rev = r.into_inner().header.map(|h| h.revision).unwrap_or(0);
        revs[c].store(rev, Ordering::Relaxed);
    }
    let (pool, value) = (ctx.pool.clone(), ctx.value());
    ctx.servers.reset_peaks();
    let out = drive(clients, f.total, ctx.deadline, move |c, _| {
        let mut kv = pool.kv(c);
        let key = keys[c].clone();
        let value = value.clone();
        let revs = revs.clone();
        async move {
            let rev = revs[c].load(Ordering::Relaxed);
            let req = TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Mod as i32,
                    key: key.clone(),
                    target_union: Some(TargetUnion::ModRevision(rev)),
                    ..Default::default()
                }],
                success: vec![RequestOp {
                    request: Some(Request::RequestPut(PutRequest {
                        key: key.clone(),
                        value,
                        ..Default::default()
                    })),
                }],
                failure: vec![RequestOp {
                    request: Some(Request::RequestRange(RangeRequest {
                        key,
                        ..Default::default()
                    })),
                }],
            };
            let r = kv.txn(req).await.map_err(status)?.into_inner();
            if r.succeeded {
                revs[c].store(r.header.map(|h| h.revision).unwrap_or(0), Ordering::Relaxed);
                return Ok(());
            }
            // Someone else wrote the key: take its revision and count a conflict.
            let now = r.responses.first().and_then(|o| match &o.response {
                Some(Response::ResponseRange(rr)) => rr.kvs.first().map(|kv| kv.mod_revision),
                _ => None,
            });
            revs[c].store(now.unwrap_or(rev), Ordering::Relaxed);
            Err("compare failed: the key changed under the client".into())
        }
    })
    .await;
    Ok(vec![ctx.row("txn (CAS)", out)])
}
