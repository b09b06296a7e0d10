//! Leases: grant `leases` of them, keep them alive (`total` keep-alives over one stream per
//! client, each waiting for its answer), then revoke them all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest};
use tokio_stream::StreamExt;

use super::status;
use crate::kv::drive::{drive, Outcome};
use crate::kv::hist::Latencies;
use crate::kv::report::Row;
use crate::kv::Ctx;

pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let f = &ctx.flags;
    let n = f.leases.max(1);
    let ids: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let (pool, i2) = (ctx.pool.clone(), ids.clone());
    ctx.servers.reset_peaks();
    let grants = drive(f.clients, n, ctx.deadline, move |c, i| {
        let mut l = pool.lease(c);
        let ids = i2.clone();
        async move {
            let r = l
                .lease_grant(LeaseGrantRequest { ttl: 600, id: 0 })
                .await
                .map_err(status)?
                .into_inner();
            if !r.error.is_empty() {
                return Err(r.error);
            }
            ids[i as usize].store(r.id as u64, Ordering::Relaxed);
            Ok(())
        }
    })
    .await;
    let mut rows = vec![ctx.row("lease grant", grants)];

    ctx.servers.reset_peaks();
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..f.clients.max(1) {
        let mut l = ctx.pool.lease(c);
        let (ids, next, total, deadline) = (ids.clone(), next.clone(), f.total, ctx.deadline);
        tasks.push(tokio::spawn(async move {
            let mut lat = Latencies::default();
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let mut errors = 0u64;
            let mut first = None;
            let id_of =
                |k: u64| ids[(k % ids.len() as u64) as usize].load(Ordering::Relaxed) as i64;
            let mut k = next.fetch_add(1, Ordering::Relaxed);
            if k >= total {
                return (lat, 0, None);
            }
            // The first request goes out with the call: a server may send the stream's
            // headers only with its first answer (etcd does).
            let _ = tx.send(LeaseKeepAliveRequest { id: id_of(k) }).await;
            let mut began = Instant::now();
            let call = l.lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx));
            let mut stream = match tokio::time::timeout(Duration::from_secs(10), call).await {
                Ok(Ok(s)) => s.into_inner(),
                Ok(Err(e)) => return (lat, 1, Some(status(e))),
                Err(_) => {
                    return (
                        lat,
                        1,
                        Some("opening the keep-alive stream timed out".into()),
                    )
                }
            };
            let mut sent = true;
            loop {
                if !sent {
                    k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= total || tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    began = Instant::now();
                    if tx
                        .send(LeaseKeepAliveRequest { id: id_of(k) })
                        .await
                        .is_err()
                    {
                        errors += 1;
                        break;
                    }
                }
                sent = false;
                match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
                    Ok(Some(Ok(r))) if r.ttl > 0 => lat.record(began.elapsed()),
                    Ok(Some(Ok(r))) => {
                        errors += 1;
                        first.get_or_insert(format!("lease {:x} not found (ttl {})", r.id, r.ttl));
                    }
                    other => {
                        errors += 1;
                        first.get_or_insert(format!("keep-alive stream: {other:?}"));
                        break;
                    }
                }
            }
            (lat, errors, first)
        }));
    }
    let mut ka = Outcome {
        latencies: Latencies::default(),
        elapsed: Duration::ZERO,
        errors: 0,
        first_error: None,
    };
    for t in tasks {
        if let Ok((lat, e, first)) = t.await {
            ka.latencies.merge(&lat);
            ka.errors += e;
            if ka.first_error.is_none() {
                ka.first_error = first;
            }
        }
    }
    ka.elapsed = start.elapsed();
    rows.push(ctx.row("lease keepalive", ka));

    let pool = ctx.pool.clone();
    ctx.servers.reset_peaks();
    let revokes = drive(f.clients, n, ctx.deadline, move |c, i| {
        let mut l = pool.lease(c);
        let id = ids[i as usize].load(Ordering::Relaxed) as i64;
        async move {
            l.lease_revoke(LeaseRevokeRequest { id })
                .await
                .map(|_| ())
                .map_err(status)
        }
    })
    .await;
    rows.push(ctx.row("lease revoke", revokes));
    Ok(rows)
}
