//! Independent registers: clients read, write and compare-and-set keys `r/<n>` with unique
//! values. A few keys are active at a time; each is retired after `--ops-per-key`
//! operations, which keeps every key's history small enough to check exhaustively.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::Rng;

use super::{Ctx, Worker};
use crate::history::{Kind, Op};
use crate::opts::ReadMode;

#[derive(Default)]
pub struct Keys {
    active: Vec<(u64, u32)>,
    next: u64,
    /// The last value known for each key (makes compare-and-set succeed often).
    pub last: HashMap<u64, u64>,
    pub used: Vec<u64>,
    values: u64,
}

impl Keys {
    pub fn new(active: usize) -> Keys {
        let mut k = Keys::default();
        for _ in 0..active.max(1) {
            k.fresh();
        }
        k
    }

    fn fresh(&mut self) -> (u64, u32) {
        let id = self.next;
        self.next += 1;
        self.used.push(id);
        self.active.push((id, 0));
        (id, 0)
    }

    /// A key for the next operation, retiring keys that have had their share.
    pub fn pick(&mut self, rng: &mut impl Rng, per_key: u32) -> u64 {
        let i = rng.random_range(0..self.active.len());
        self.active[i].1 += 1;
        let id = self.active[i].0;
        if self.active[i].1 >= per_key {
            self.active.swap_remove(i);
            self.fresh();
        }
        id
    }

    /// The keys operations go to now.
    pub fn active(&self) -> Vec<u64> {
        self.active.iter().map(|&(id, _)| id).collect()
    }

    pub fn unique_value(&mut self) -> u64 {
        self.values += 1;
        self.values
    }
}

pub fn key(id: u64) -> String {
    format!("r/{id}")
}

fn parse(v: Option<Vec<u8>>) -> Result<Option<u64>, String> {
    match v {
        None => Ok(None),
        Some(b) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| format!("unparseable value {:?}", String::from_utf8_lossy(&b))),
    }
}

/// Runs the clients until the time limit; returns the keys used.
pub async fn run(ctx: Ctx) -> anyhow::Result<Arc<Mutex<Keys>>> {
    let c = ctx.opts.concurrency;
    let keys = Arc::new(Mutex::new(Keys::new(c.div_ceil(4))));
    let mut tasks = Vec::new();
    for w in 0..c {
        let mut worker = Worker::new(&ctx, w, c)?;
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            while worker.pace().await {
                one_op(&mut worker, &keys).await;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(keys)
}

async fn one_op(w: &mut Worker, keys: &Mutex<Keys>) {
    let per_key = w.ctx.opts.ops_per_key;
    let serializable = w.ctx.opts.read_mode == ReadMode::Serializable;
    let choice = w.rng.random_range(0..3u8);
    let (id, value, last) = {
        let mut k = keys.lock().unwrap_or_else(|e| e.into_inner());
        let id = k.pick(&mut w.rng, per_key);
        (id, k.unique_value(), k.last.get(&id).copied())
    };
    let k = key(id);
    let remember = |v: u64| {
        keys.lock()
            .unwrap_or_else(|e| e.into_inner())
            .last
            .insert(id, v);
    };
    // Write, compare-and-set (when a value to compare with is known), or read.
    let choice = match (choice, last) {
        (1, _) => 1,
        (2, Some(_)) => 2,
        _ => 0,
    };
    match (choice, last) {
        (0, _) => {
            w.invoke(Op::Read {
                key: k.clone(),
                value: None,
            });
            match w.client.get(&k, serializable).await.map(|(v, _)| parse(v)) {
                Ok(Ok(v)) => {
                    if let Some(v) = v {
                        remember(v);
                    }
                    w.ok(Op::Read { key: k, value: v })
                }
                Ok(Err(e)) => w.error(
                    Op::Read {
                        key: k,
                        value: None,
                    },
                    crate::client::OpError::Fail(e),
                    true,
                ),
                Err(e) => w.error(
                    Op::Read {
                        key: k,
                        value: None,
                    },
                    e,
                    true,
                ),
            }
        }
        (1, _) => {
            let op = Op::Write {
                key: k.clone(),
                value,
            };
            w.invoke(op.clone());
            match w.client.put(&k, value.to_string().into_bytes()).await {
                Ok(_) => {
                    remember(value);
                    w.ok(op)
                }
                Err(e) => w.error(op, e, false),
            }
        }
        (_, from) => {
            let from = from.unwrap_or_default();
            let op = Op::Cas {
                key: k.clone(),
                from,
                to: value,
            };
            w.invoke(op.clone());
            let r = w
                .client
                .cas(
                    &k,
                    from.to_string().into_bytes(),
                    value.to_string().into_bytes(),
                )
                .await;
            match r {
                Ok(true) => {
                    remember(value);
                    w.ok(op)
                }
                Ok(false) => w.ctx.rec.record(
                    w.process,
                    Kind::Fail,
                    Some(w.node),
                    op,
                    Some("compare failed".into()),
                ),
                Err(e) => w.error(op, e, false),
            }
        }
    }
}

/// After the cluster healed: a linearizable read of every key through every member.
pub async fn final_reads(ctx: &Ctx, keys: &Mutex<Keys>) {
    let used = keys.lock().unwrap_or_else(|e| e.into_inner()).used.clone();
    let n = ctx.cluster.size();
    let mut tasks = Vec::new();
    for node in (0..n).filter(|&i| ctx.cluster.running(i)) {
        let ctx = ctx.clone();
        let used = used.clone();
        tasks.push(tokio::spawn(async move {
            let process = 1_000_000 + node as i64;
            let Ok(mut c) = ctx.client(node) else { return };
            for id in used {
                let k = key(id);
                let op = Op::Read {
                    key: k.clone(),
                    value: None,
                };
                ctx.rec
                    .record(process, Kind::Invoke, Some(node), op.clone(), None);
                match c.get(&k, false).await.map(|(v, _)| parse(v)) {
                    Ok(Ok(value)) => ctx.rec.record(
                        process,
                        Kind::Ok,
                        Some(node),
                        Op::Read { key: k, value },
                        None,
                    ),
                    Ok(Err(e)) => ctx.rec.record(process, Kind::Fail, Some(node), op, Some(e)),
                    Err(e) => {
                        ctx.rec
                            .record(process, Kind::Fail, Some(node), op, Some(e.to_string()))
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// The register workload as a run drives it.
#[derive(Default)]
pub struct Register {
    keys: Option<Arc<Mutex<Keys>>>,
}

#[async_trait::async_trait]
impl super::Workload for Register {
    async fn run(&mut self, ctx: &Ctx) -> anyhow::Result<()> {
        self.keys = Some(run(ctx.clone()).await?);
        Ok(())
    }

    async fn finish(
        &mut self,
        ctx: &Ctx,
        _healed: Instant,
        _dir: &std::path::Path,
    ) -> anyhow::Result<()> {
        if let Some(keys) = &self.keys {
            final_reads(ctx, keys).await;
        }
        Ok(())
    }

    fn check(
        &mut self,
        history: &[crate::history::Event],
        deadline: Instant,
    ) -> Vec<crate::checker::Verdict> {
        vec![crate::checker::register::check(history, deadline)]
    }
}
