//! Unique inserts: each add puts key `s/<element>`; after the cluster healed, every member
//! is asked (linearizably) for all elements.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Ctx, Worker};
use crate::history::{Kind, Op};

const PREFIX: &str = "s/";

pub async fn run(ctx: Ctx) -> anyhow::Result<()> {
    let c = ctx.opts.concurrency;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..c {
        let mut worker = Worker::new(&ctx, w, c)?;
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            while worker.pace().await {
                let element = next.fetch_add(1, Ordering::Relaxed);
                let op = Op::Add { element };
                worker.invoke(op.clone());
                let key = format!("{PREFIX}{element:010}");
                match worker
                    .client
                    .put(&key, element.to_string().into_bytes())
                    .await
                {
                    Ok(_) => worker.ok(op),
                    Err(e) => worker.error(op, e, false),
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}

/// Reads every element through every member (retrying each member for a while).
pub async fn final_reads(ctx: &Ctx) {
    for node in (0..ctx.cluster.size()).filter(|&i| ctx.cluster.running(i)) {
        let process = 1_000_000 + node as i64;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let op = Op::ReadAll { elements: None };
            ctx.rec
                .record(process, Kind::Invoke, Some(node), op.clone(), None);
            let r = match ctx.client(node) {
                Ok(mut c) => c.range_prefix(PREFIX, false).await,
                Err(e) => Err(crate::client::OpError::Fail(e.to_string())),
            };
            match r {
                Ok((kvs, _)) => {
                    let elements = kvs
                        .iter()
                        .filter_map(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
                        .collect();
                    ctx.rec.record(
                        process,
                        Kind::Ok,
                        Some(node),
                        Op::ReadAll {
                            elements: Some(elements),
                        },
                        None,
                    );
                    break;
                }
                Err(e) => {
                    ctx.rec
                        .record(process, Kind::Fail, Some(node), op, Some(e.to_string()));
                    if Instant::now() > deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
    }
}

/// The set workload as a run drives it.
pub struct Set;

#[async_trait::async_trait]
impl super::Workload for Set {
    async fn run(&mut self, ctx: &Ctx) -> anyhow::Result<()> {
        run(ctx.clone()).await
    }

    async fn finish(
        &mut self,
        ctx: &Ctx,
        _healed: Instant,
        _dir: &std::path::Path,
    ) -> anyhow::Result<()> {
        final_reads(ctx).await;
        Ok(())
    }

    fn check(
        &mut self,
        history: &[crate::history::Event],
        _deadline: Instant,
    ) -> Vec<crate::checker::Verdict> {
        vec![crate::checker::set::check(history)]
    }
}
