//! Single-key reads, linearizable or serializable, of keys put beforehand.

use proto::etcdserverpb::RangeRequest;

use super::{put, random_index, status};
use crate::kv::drive::drive;
use crate::kv::report::Row;
use crate::kv::Ctx;

/// How many keys are put for the reads to find.
const PRELOAD: u64 = 10_000;

pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let f = &ctx.flags;
    let n = f.key_space.min(PRELOAD);
    let keys: Vec<Vec<u8>> = (0..n).map(|i| ctx.key("r", i)).collect();
    let keys = std::sync::Arc::new(keys);
    // Runs after the first find the keys in place.
    let present = ctx
        .pool
        .kv(0)
        .range(RangeRequest {
            key: b"r".to_vec(),
            range_end: b"s".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!(status(e)))?
        .into_inner()
        .count;
    let todo = if present as u64 >= n { 0 } else { n };
    let (pool, k, value) = (ctx.pool.clone(), keys.clone(), ctx.value());
    let load = drive(64, todo, ctx.deadline, move |c, i| {
        put(pool.kv(c), k[i as usize].clone(), value.clone())
    })
    .await;
    if load.errors > 0 {
        anyhow::bail!("preloading keys: {:?}", load.first_error);
    }
    let serializable = f.serializable;
    let pool = ctx.pool.clone();
    ctx.servers.reset_peaks();
    let out = drive(f.clients, f.total, ctx.deadline, move |c, _| {
        let mut kv = pool.kv(c);
        let key = keys[random_index(keys.len() as u64) as usize].clone();
        async move {
            let r = kv
                .range(RangeRequest {
                    key,
                    serializable,
                    ..Default::default()
                })
                .await
                .map_err(status)?;
            if r.into_inner().kvs.len() != 1 {
                return Err("a preloaded key was not found".into());
            }
            Ok(())
        }
    })
    .await;
    let name = if serializable {
        "range, serializable"
    } else {
        "range, linearizable"
    };
    Ok(vec![ctx.row(name, out)])
}
