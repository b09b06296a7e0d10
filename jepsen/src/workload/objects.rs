//! Kubernetes objects as registers: clients get, put (unconditional update, or create),
//! update with a resourceVersion precondition (compare-and-set), create, delete and list
//! ConfigMaps through the apiserver of the master they are bound to. Keys rotate as in the
//! register workload, so each object's history stays small enough to check exhaustively.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;

use super::register::Keys;
use super::{Ctx, Worker};
use crate::api::Api;
use crate::client::OpError;
use crate::history::{Kind, Op};
use crate::opts::ReadMode;

pub fn name(id: u64) -> String {
    format!("jepsen-{id}")
}

/// `--read-mode serializable`: reads at resourceVersion "0", which the apiserver may serve
/// from its cache, stale.
fn any(ctx: &Ctx) -> bool {
    ctx.opts.read_mode == ReadMode::Serializable
}

/// A client process of the objects workload.
struct Client {
    w: Worker,
    cfg: kube::Config,
    api: Api,
}

impl Client {
    /// Records a failure; a process replaced after an unknown outcome gets a new client.
    fn error(&mut self, op: Op, e: OpError, reads_cannot_be_unknown: bool) {
        let before = self.w.process;
        self.w.error(op, e, reads_cannot_be_unknown);
        if self.w.process != before {
            if let Ok(api) = Api::new(self.cfg.clone(), self.w.ctx.op_timeout(), any(&self.w.ctx)) {
                self.api = api;
            }
        }
    }

    fn fail(&self, op: Op, why: String) {
        self.w
            .ctx
            .rec
            .record(self.w.process, Kind::Fail, Some(self.w.node), op, Some(why));
    }
}

pub async fn run(ctx: Ctx) -> anyhow::Result<Arc<Mutex<Keys>>> {
    let c = ctx.opts.concurrency;
    let keys = Arc::new(Mutex::new(Keys::new(c.div_ceil(4))));
    let mut configs = Vec::new();
    for node in 0..ctx.cluster.size() {
        configs.push(ctx.kube_config(node).await?);
    }
    let mut tasks = Vec::new();
    for w in 0..c {
        let w = Worker::new(&ctx, w, c)?;
        let cfg = configs[w.node].clone();
        let api = Api::new(cfg.clone(), ctx.op_timeout(), any(&ctx))?;
        let mut client = Client { w, cfg, api };
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            while client.w.pace().await {
                one_op(&mut client, &keys).await;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(keys)
}

async fn one_op(c: &mut Client, keys: &Mutex<Keys>) {
    let per_key = c.w.ctx.opts.ops_per_key;
    let choice = c.w.rng.random_range(0..10u8);
    let (id, value, last, active) = {
        let mut k = keys.lock().unwrap_or_else(|e| e.into_inner());
        let id = k.pick(&mut c.w.rng, per_key);
        (id, k.unique_value(), k.last.get(&id).copied(), k.active())
    };
    let key = name(id);
    let remember = |v: u64| {
        keys.lock()
            .unwrap_or_else(|e| e.into_inner())
            .last
            .insert(id, v);
    };
    match (choice, last) {
        (3..=4, _) => {
            let op = Op::Put {
                key: key.clone(),
                value,
                rv: None,
            };
            c.w.invoke(op.clone());
            match c.api.put(&key, value).await {
                Ok(rv) => {
                    remember(value);
                    c.w.ok(Op::Put {
                        key,
                        value,
                        rv: Some(rv),
                    })
                }
                Err(e) => c.error(op, e, false),
            }
        }
        (5..=6, Some(from)) => {
            let op = Op::Update {
                key: key.clone(),
                from,
                to: value,
                rv: None,
            };
            c.w.invoke(op.clone());
            let read = match c.api.get(&key).await {
                Ok(r) => r,
                // The read failed: nothing was written.
                Err(e) => return c.error(op, e, true),
            };
            let Some((Some(now), rv)) = read else {
                return c.fail(op, "not found".into());
            };
            if now != from {
                return c.fail(op, format!("value is {now}"));
            }
            match c.api.update(&key, rv, value).await {
                Ok(rv) => {
                    remember(value);
                    c.w.ok(Op::Update {
                        key,
                        from,
                        to: value,
                        rv: Some(rv),
                    })
                }
                Err(e) => c.error(op, e, false),
            }
        }
        (7, _) => {
            let op = Op::Create {
                key: key.clone(),
                value,
                rv: None,
            };
            c.w.invoke(op.clone());
            match c.api.create(&key, value).await {
                Ok(rv) => {
                    remember(value);
                    c.w.ok(Op::Create {
                        key,
                        value,
                        rv: Some(rv),
                    })
                }
                Err(e) => c.error(op, e, false),
            }
        }
        (8, _) => {
            let op = Op::Delete { key: key.clone() };
            c.w.invoke(op.clone());
            match c.api.delete(&key).await {
                Ok(()) => c.w.ok(op),
                Err(e) => c.error(op, e, false),
            }
        }
        (9, _) => {
            let keys: Vec<String> = active.into_iter().map(name).collect();
            let op = Op::List {
                keys: keys.clone(),
                found: None,
            };
            c.w.invoke(op.clone());
            match c.api.list().await {
                Ok(all) => {
                    let found = all.into_iter().filter(|l| keys.contains(&l.key)).collect();
                    c.w.ok(Op::List {
                        keys,
                        found: Some(found),
                    })
                }
                Err(e) => c.error(op, e, true),
            }
        }
        // A read (also instead of an update when no value is known yet).
        _ => {
            let op = Op::Get {
                key: key.clone(),
                value: None,
                rv: None,
            };
            c.w.invoke(op.clone());
            match c.api.get(&key).await {
                Ok(r) => {
                    if let Some((Some(v), _)) = r {
                        remember(v);
                    }
                    c.w.ok(Op::Get {
                        key,
                        value: r.and_then(|(v, _)| v),
                        rv: r.map(|(_, rv)| rv),
                    })
                }
                Err(e) => c.error(op, e, true),
            }
        }
    }
}

/// After the cluster healed: a consistent read of every object through every apiserver,
/// each given a while to become ready again.
pub async fn final_reads(ctx: &Ctx, keys: &Mutex<Keys>) {
    let used = keys.lock().unwrap_or_else(|e| e.into_inner()).used.clone();
    let mut tasks = Vec::new();
    for node in (0..ctx.cluster.size()).filter(|&i| ctx.cluster.running(i)) {
        let ctx = ctx.clone();
        let used = used.clone();
        tasks.push(tokio::spawn(async move {
            let process = 1_000_000 + node as i64;
            let Ok(cfg) = ctx.kube_config(node).await else {
                return;
            };
            let Ok(api) = Api::new(cfg, ctx.op_timeout(), false) else {
                return;
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while api.list().await.is_err() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            for id in used {
                let key = name(id);
                let op = Op::Get {
                    key: key.clone(),
                    value: None,
                    rv: None,
                };
                ctx.rec
                    .record(process, Kind::Invoke, Some(node), op.clone(), None);
                match api.get(&key).await {
                    Ok(r) => ctx.rec.record(
                        process,
                        Kind::Ok,
                        Some(node),
                        Op::Get {
                            key,
                            value: r.and_then(|(v, _)| v),
                            rv: r.map(|(_, rv)| rv),
                        },
                        None,
                    ),
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

/// The objects workload as a run drives it.
#[derive(Default)]
pub struct Objects {
    keys: Option<Arc<Mutex<Keys>>>,
}

#[async_trait::async_trait]
impl super::Workload for Objects {
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
        crate::checker::objects::check(history, deadline)
    }
}
