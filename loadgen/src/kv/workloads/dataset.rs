//! A large data set: `total` keys (100 prefixes of up to 10,000 keys each) loaded by the
//! clients, then the servers' RSS and data size, then linearizable ranges over one whole
//! 10,000-key prefix.

use std::sync::Arc;

use proto::etcdserverpb::RangeRequest;

use super::{put, status};
use crate::kv::drive::drive;
use crate::kv::report::Row;
use crate::kv::Ctx;

const PER_PREFIX: u64 = 10_000;
const RANGES: u64 = 50;

fn prefix(group: u64) -> String {
    format!("d/{group:03}/")
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let f = &ctx.flags;
    let total = f.total;
    let (pool, value) = (ctx.pool.clone(), ctx.value());
    let key_size = f.key_size;
    ctx.servers.reset_peaks();
    let load = drive(f.clients, total, ctx.deadline, move |c, i| {
        let p = prefix(i % (total.div_ceil(PER_PREFIX)).max(1));
        let digits = key_size.saturating_sub(p.len()).max(5);
        let key = format!("{p}{:0digits$}", i).into_bytes();
        put(pool.kv(c), key, value.clone())
    })
    .await;
    let mut load_row = ctx.row("load", load);
    // Settle: the members flush what they hold before the size is read.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    load_row.disk_mib = ctx.servers.disk_mib();
    let mut rows = vec![load_row];

    let p = prefix(0).into_bytes();
    let end = proto::prefix_end(&p);
    let (p, end) = (Arc::new(p), Arc::new(end));
    let pool = ctx.pool.clone();
    let want = PER_PREFIX.min(total);
    ctx.servers.reset_peaks();
    let ranges = drive(1, RANGES, ctx.deadline, move |c, _| {
        let mut kv = pool.kv(c);
        let (key, range_end) = ((*p).clone(), (*end).clone());
        async move {
            let r = kv
                .range(RangeRequest {
                    key,
                    range_end,
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner();
            if (r.kvs.len() as u64) < want.min(r.count as u64) {
                return Err(format!(
                    "range returned {} of {} keys",
                    r.kvs.len(),
                    r.count
                ));
            }
            Ok(())
        }
    })
    .await;
    let mut range_row = ctx.row("range of 10,000 keys", ranges);
    range_row.clients = 1;
    rows.push(range_row);
    Ok(rows)
}
