//! One writer, many watchers of one prefix. The writer puts `total` keys at `put_rate` per
//! second; every watcher must see every put, and each delivery's latency is counted from
//! when the put was sent (as etcd's `benchmark watch-latency` counts it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::etcdserverpb::watch_request::RequestUnion;
use proto::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest};
use tokio_stream::StreamExt;

use super::status;
use crate::kv::drive::Outcome;
use crate::kv::hist::Latencies;
use crate::kv::report::Row;
use crate::kv::Ctx;

const PREFIX: &str = "w/";

pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let f = &ctx.flags;
    let total = f.total;
    let base = Instant::now();
    // When put i was sent, in nanoseconds after `base` (0: not yet).
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let deadline = ctx.deadline;
    let (ready_tx, mut ready_rx) =
        tokio::sync::mpsc::channel::<Result<(), String>>(f.clients.max(1));
    let mut watchers = Vec::new();
    for w in 0..f.clients.max(1) {
        let mut client = ctx.pool.watch(w);
        let (sent, ready_tx) = (sent.clone(), ready_tx.clone());
        watchers.push(tokio::spawn(async move {
            let mut lat = Latencies::default();
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let create = WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                    key: PREFIX.as_bytes().to_vec(),
                    range_end: proto::prefix_end(PREFIX.as_bytes()),
                    ..Default::default()
                })),
            };
            let _ = tx.send(create).await;
            let call = client.watch(tokio_stream::wrappers::ReceiverStream::new(rx));
            let mut stream = match tokio::time::timeout_at(deadline, call).await {
                Ok(Ok(s)) => s.into_inner(),
                Ok(Err(e)) => {
                    let _ = ready_tx.send(Err(status(e))).await;
                    return lat;
                }
                Err(_) => {
                    let _ = ready_tx
                        .send(Err("opening the watch timed out".into()))
                        .await;
                    return lat;
                }
            };
            let mut seen = 0u64;
            let mut created = false;
            while seen < total {
                let next = tokio::time::timeout_at(deadline, stream.next()).await;
                let Ok(Some(Ok(resp))) = next else { break };
                if resp.created && !created {
                    created = true;
                    let _ = ready_tx.send(Ok(())).await;
                }
                let now = base.elapsed().as_nanos() as u64;
                for ev in &resp.events {
                    let Some(kv) = &ev.kv else { continue };
                    let idx = std::str::from_utf8(&kv.key[PREFIX.len().min(kv.key.len())..])
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok());
                    if let Some(at) = idx.and_then(|i| sent.get(i as usize)) {
                        let t = at.load(Ordering::Acquire);
                        lat.record(Duration::from_nanos(now.saturating_sub(t)));
                        seen += 1;
                    }
                }
            }
            drop(tx);
            lat
        }));
    }
    drop(ready_tx);
    for _ in 0..watchers.len() {
        match ready_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => anyhow::bail!("creating a watcher: {e}"),
            None => anyhow::bail!("watchers ended before they were created"),
        }
    }
    ctx.servers.reset_peaks();
    let mut kv = ctx.pool.kv(0);
    let value = ctx.value();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f.put_rate.max(1) as f64));
    let start = Instant::now();
    let mut put_errors = 0;
    for i in 0..total {
        tick.tick().await;
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        let key = ctx.key(PREFIX, i);
        sent[i as usize].store(base.elapsed().as_nanos() as u64, Ordering::Release);
        let put = PutRequest {
            key,
            value: value.clone(),
            ..Default::default()
        };
        if kv.put(put).await.is_err() {
            put_errors += 1;
        }
    }
    let mut all = Latencies::default();
    for w in watchers {
        if let Ok(lat) = w.await {
            all.merge(&lat);
        }
    }
    let expected = total * f.clients.max(1) as u64;
    let missed = expected.saturating_sub(all.count());
    let out = Outcome {
        errors: missed + put_errors,
        first_error: (missed + put_errors > 0)
            .then(|| format!("{missed} deliveries missing, {put_errors} puts failed")),
        latencies: all,
        elapsed: start.elapsed(),
    };
    Ok(vec![ctx.row("watch delivery", out)])
}
