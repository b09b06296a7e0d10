//! Watchers of prefix `w/` and writers of Txns under it. Each Txn puts its id as the value
//! of one to three keys and sometimes deletes another. Watchers start at chosen revisions,
//! and after an error, a stall, or now and then on purpose, resume from the revision after
//! the last one they saw, through another member.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::etcdserverpb::WatchResponse;
use proto::mvccpb;
use rand::seq::IndexedRandom;
use rand::Rng;
use tokio::sync::watch as signal;
use tracing::debug;

use super::{Ctx, Worker};
use crate::checker::watch::{Kv, Segment, WEvent, WatcherLog};
use crate::history::Op;

const PREFIX: &str = "w/";
const KEYS: usize = 16;
/// A stream with no response for this long is presumed stuck (an isolated member).
const IDLE: Duration = Duration::from_secs(3);

pub struct Watchers {
    pub logs: Arc<Mutex<Vec<WatcherLog>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The last revision to reach, once known.
    last: signal::Sender<Option<i64>>,
}

impl Watchers {
    /// Tells the watchers the revision of the last write and waits (until `deadline`) for
    /// them to reach it.
    pub async fn finish(self, last: Option<i64>, deadline: Instant) -> Vec<WatcherLog> {
        let _ = self.last.send(Some(last.unwrap_or(0)));
        for t in self.tasks {
            let left = deadline.saturating_duration_since(Instant::now());
            let abort = t.abort_handle();
            if tokio::time::timeout(left, t).await.is_err() {
                abort.abort();
            }
        }
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.clone()
    }
}

fn watchers_and_writers(concurrency: usize) -> (usize, usize) {
    let watchers = (concurrency / 2).max(2);
    (watchers, concurrency.saturating_sub(watchers).max(1))
}

/// Starts the watchers and returns at once. Even-numbered watchers start at once from
/// `base + 1`; odd-numbered ones start later, at a random time in the first half of the run,
/// from a random revision already written (`latest` is the highest revision acknowledged so
/// far), so they replay history while faults and compactions happen.
pub fn start_watchers(ctx: &Ctx, base: i64, latest: Arc<AtomicI64>) -> Watchers {
    let (n_watchers, _) = watchers_and_writers(ctx.opts.concurrency);
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = signal::channel(None);
    let mut tasks = Vec::new();
    let half = ctx.end.saturating_duration_since(Instant::now()) / 2;
    for id in 0..n_watchers {
        let mut rng = ctx.rng(5000 + id as u64);
        let delay = if id % 2 == 0 {
            Duration::ZERO
        } else {
            half.mul_f64(rng.random_range(0.0..1.0))
        };
        logs.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(WatcherLog {
                id,
                segments: Vec::new(),
            });
        let ctx = ctx.clone();
        let (logs, rx, latest) = (logs.clone(), rx.clone(), latest.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let top = latest.load(Ordering::Relaxed).max(base + 1);
            let start = rng.random_range(base + 1..=top);
            watcher(ctx, id, start, rng, logs, rx).await;
        }));
    }
    Watchers {
        logs,
        tasks,
        last: tx,
    }
}

fn kv(k: &mvccpb::KeyValue) -> Kv {
    Kv {
        key: String::from_utf8_lossy(&k.key).into_owned(),
        value: String::from_utf8_lossy(&k.value).into_owned(),
        mod_revision: k.mod_revision,
        create_revision: k.create_revision,
        version: k.version,
    }
}

fn events(resp: &WatchResponse) -> Vec<WEvent> {
    resp.events
        .iter()
        .filter_map(|e| {
            let k = e.kv.as_ref()?;
            Some(WEvent {
                delete: e.r#type == mvccpb::event::EventType::Delete as i32,
                kv: kv(k),
                prev: e.prev_kv.as_ref().map(kv),
            })
        })
        .collect()
}

async fn watcher(
    ctx: Ctx,
    id: usize,
    start: i64,
    mut rng: rand_chacha::ChaCha8Rng,
    logs: Arc<Mutex<Vec<WatcherLog>>>,
    mut last: signal::Receiver<Option<i64>>,
) {
    let n = ctx.cluster.size();
    let mut node = id % n;
    let mut next = start;
    let push = |seg: Segment| {
        logs.lock().unwrap_or_else(|e| e.into_inner())[id]
            .segments
            .push(seg);
    };
    let done =
        |next: i64, last: &signal::Receiver<Option<i64>>| last.borrow().is_some_and(|l| next > l);
    loop {
        if done(next, &last) {
            return;
        }
        let mut seg = Segment {
            node,
            start_revision: next,
            ..Default::default()
        };
        let opened = match ctx.client(node) {
            Ok(mut c) => c.watch(PREFIX, next).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let (_keep, mut stream) = match opened {
            Ok(s) => s,
            Err(e) => {
                seg.end = format!("open failed: {e}");
                push(seg);
                node = (node + 1) % n;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        // Now and then leave on purpose after a while, to test resuming.
        let leave_after = rng.random_range(20..400usize);
        let mut got = 0usize;
        seg.end = loop {
            if done(next, &last) {
                break "caught up".into();
            }
            let msg = tokio::select! {
                m = tokio::time::timeout(IDLE, stream.message()) => m,
                _ = last.changed() => continue,
            };
            match msg {
                Err(_) => break "idle".into(),
                Ok(Err(status)) => break format!("{:?}: {}", status.code(), status.message()),
                Ok(Ok(None)) => break "stream ended".into(),
                Ok(Ok(Some(resp))) => {
                    if resp.compact_revision > 0 {
                        seg.compacted = Some(resp.compact_revision);
                        next = next.max(resp.compact_revision);
                        break format!("compacted at {}", resp.compact_revision);
                    }
                    if resp.canceled {
                        break format!("canceled: {}", resp.cancel_reason);
                    }
                    let evs = events(&resp);
                    if let Some(e) = evs.last() {
                        next = e.kv.mod_revision + 1;
                        seg.responses.push(evs);
                        got += 1;
                        if got >= leave_after && ctx.end > Instant::now() {
                            break "left on purpose".into();
                        }
                    }
                }
            }
        };
        debug!(watcher = id, node, end = %seg.end, next, "watch segment ended");
        let ended_in_error = seg.end != "left on purpose" && seg.end != "caught up";
        push(seg);
        node = (node + 1) % n;
        if ended_in_error {
            tokio::time::sleep(Duration::from_millis(100)).await;
        } else if rng.random_bool(0.5) {
            // Stay away a while, as a client with a flaky link would: history may be
            // compacted meanwhile, which the server must then say.
            tokio::time::sleep(Duration::from_millis(rng.random_range(200..2500))).await;
        }
    }
}

/// Writers: Txns of puts (and sometimes a delete) under the prefix until the time limit.
pub async fn run_writers(ctx: Ctx, latest: Arc<AtomicI64>) -> anyhow::Result<()> {
    let (watchers, writers) = watchers_and_writers(ctx.opts.concurrency);
    let ids = Arc::new(AtomicU64::new(1));
    let keys: Vec<String> = (0..KEYS).map(|i| format!("{PREFIX}{i:02}")).collect();
    let mut tasks = Vec::new();
    for w in 0..writers {
        // Writer processes are numbered after the watchers' slots.
        let mut worker = Worker::new(&ctx, watchers + w, writers)?;
        let (ids, keys, latest) = (ids.clone(), keys.clone(), latest.clone());
        tasks.push(tokio::spawn(async move {
            while worker.pace().await {
                let id = ids.fetch_add(1, Ordering::Relaxed);
                let count = worker.rng.random_range(1..=3);
                let mut chosen: Vec<String> = keys
                    .choose_multiple(&mut worker.rng, count + 1)
                    .cloned()
                    .collect();
                let deletes = if worker.rng.random_bool(0.2) {
                    chosen.pop().into_iter().collect()
                } else {
                    chosen.pop();
                    Vec::new()
                };
                let op = Op::Txn {
                    id,
                    puts: chosen.clone(),
                    deletes: deletes.clone(),
                    revision: None,
                };
                worker.invoke(op.clone());
                match worker
                    .client
                    .txn(&chosen, &deletes, id.to_string().as_bytes())
                    .await
                {
                    Ok(rev) => {
                        latest.fetch_max(rev, Ordering::Relaxed);
                        worker.ok(Op::Txn {
                            id,
                            puts: chosen,
                            deletes,
                            revision: Some(rev),
                        })
                    }
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

/// The current revision of the store (after the writers stopped: the last write's).
pub async fn current_revision(ctx: &Ctx, deadline: Instant) -> Option<i64> {
    super::through_any(ctx, deadline, |mut c| async move {
        c.range_prefix(PREFIX, false).await.map(|(_, rev)| rev)
    })
    .await
}

/// The watch workload as a run drives it: the watchers and the base revision while it
/// runs, then what they saw and the last revision.
#[derive(Default)]
pub struct Watch {
    running: Option<(Watchers, i64)>,
    seen: Option<(Vec<WatcherLog>, i64, Option<i64>)>,
}

#[async_trait::async_trait]
impl super::Workload for Watch {
    async fn run(&mut self, ctx: &Ctx) -> anyhow::Result<()> {
        let base = current_revision(ctx, Instant::now() + Duration::from_secs(10))
            .await
            .ok_or_else(|| anyhow::anyhow!("reading the base revision: no member answered"))?;
        let latest = Arc::new(AtomicI64::new(base));
        let watchers = start_watchers(ctx, base, latest.clone());
        // Kept before the writers run, so a failed run still stops the watchers.
        self.running = Some((watchers, base));
        run_writers(ctx.clone(), latest).await
    }

    async fn finish(
        &mut self,
        ctx: &Ctx,
        _healed: Instant,
        dir: &std::path::Path,
    ) -> anyhow::Result<()> {
        let Some((watchers, base)) = self.running.take() else {
            return Ok(());
        };
        let last = current_revision(ctx, Instant::now() + Duration::from_secs(20)).await;
        let logs = watchers
            .finish(last, Instant::now() + Duration::from_secs(30))
            .await;
        super::save(dir, "watches.json", &logs)?;
        self.seen = Some((logs, base, last));
        Ok(())
    }

    fn check(
        &mut self,
        history: &[crate::history::Event],
        _deadline: Instant,
    ) -> Vec<crate::checker::Verdict> {
        let Some((logs, base, last)) = &self.seen else {
            return vec![crate::checker::Verdict::new("watch")];
        };
        vec![crate::checker::watch::check(
            history,
            &crate::checker::watch::Observed {
                watchers: logs,
                base: *base,
                last: *last,
            },
        )]
    }
}
