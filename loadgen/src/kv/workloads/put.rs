//! Puts: random keys of the key space, fixed-size values.

use super::{put, random_index};
use crate::kv::drive::drive;
use crate::kv::report::Row;
use crate::kv::Ctx;

pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let f = &ctx.flags;
    let keys: Vec<Vec<u8>> = (0..f.key_space).map(|i| ctx.key("k", i)).collect();
    let keys = std::sync::Arc::new(keys);
    let value = ctx.value();
    let pool = ctx.pool.clone();
    ctx.servers.reset_peaks();
    let out = drive(f.clients, f.total, ctx.deadline, move |c, _| {
        let key = keys[random_index(keys.len() as u64) as usize].clone();
        put(pool.kv(c), key, value.clone())
    })
    .await;
    Ok(vec![ctx.row("put", out)])
}
