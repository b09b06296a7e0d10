//! Cluster-level logging: the agent ships every container's log lines, labelled with
//! `namespace`, `pod`, `container` and `node`, to Grafana Loki's push API
//! (`--log-sink loki=URL`).
//!
//! Contract: a line that reached a container's log while the agent ran is delivered to
//! Loki at least once, in order per container, unless the spool overflowed its bound
//! while Loki was away *and* the container's own rotated logs dropped the line before it
//! was read; a Loki outage, an agent restart, or a pod deleted right after it logged lose
//! nothing short of that.
//!
//! - Discovery (`run`): every second the runtime's containers are listed; each container
//!   not being read gets a tailer, from just after its last spooled line (the spool's
//!   positions), so a restarted agent goes on where it stopped.
//! - Tailers: the runtime's log stream of the container with timestamps, followed while
//!   it runs (`Runtime::logs`, the stream `kubectl logs -f` reads), cut into lines. A
//!   stream that stays silent (5 s, doubling to 60 s) while the log's last line is newer
//!   than what it brought (Docker's json-file follower can stop at a rotation) is dropped
//!   and read again from its last line.
//! - The batcher collects lines for up to `BATCH_WAIT` or `BATCH_BYTES` (promtail's
//!   defaults, 1 s and 1 MiB) into one push body (`batch.rs`) and appends it to the spool
//!   (`spool.rs`: fsynced segments, bounded by `--log-spool-size`; a full spool makes the
//!   batcher, and so the tailers, wait: the backpressure).
//! - The sender pushes the oldest segment (`loki.rs`) and removes it when Loki took it or
//!   refused it for good (a 4xx other than 429), else retries it with backoff (0.5 s up to
//!   30 s), so segments go out in order.

pub mod batch;
pub mod loki;
pub mod spool;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flotilla_core::backoff::Backoff;
use tokio::sync::mpsc;
use tokio::time::Instant;

use self::batch::{Batch, Entry, Labels};
use self::spool::Spool;
use crate::logs::LogOptions;
use crate::runtime::{ContainerState, ContainerStatus, Runtime};

const BATCH_WAIT: Duration = Duration::from_secs(1);
const BATCH_BYTES: usize = 1 << 20;
const DISCOVERY: Duration = Duration::from_secs(1);

/// Where and how the agent ships logs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub loki: Arc<loki::Loki>,
    pub spool_dir: PathBuf,
    pub spool_bytes: u64,
}

/// The shipper's counters, in `/metrics`.
#[derive(Default)]
pub struct ShipMetrics {
    pub lines_spooled: AtomicU64,
    pub batches_sent: AtomicU64,
    pub batches_refused: AtomicU64,
    pub push_failures: AtomicU64,
    pub spool_bytes: AtomicU64,
}

impl component_base::metrics::Collect for ShipMetrics {
    fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, kind, help, v) in [
            (
                "flotilla_log_lines_spooled_total",
                "counter",
                "Container log lines written to the shipping spool.",
                g(&self.lines_spooled),
            ),
            (
                "flotilla_log_batches_sent_total",
                "counter",
                "Batches of log lines the log store took.",
                g(&self.batches_sent),
            ),
            (
                "flotilla_log_batches_refused_total",
                "counter",
                "Batches the log store refused for good (dropped).",
                g(&self.batches_refused),
            ),
            (
                "flotilla_log_push_failures_total",
                "counter",
                "Pushes that failed and are retried.",
                g(&self.push_failures),
            ),
            (
                "flotilla_log_spool_bytes",
                "gauge",
                "Bytes waiting in the shipping spool.",
                g(&self.spool_bytes),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
    }
}

/// One line of one container, on its way to the batcher.
struct Line {
    id: String,
    labels: Arc<Labels>,
    entry: Entry,
}

/// Ships the logs of `runtime`'s containers on node `node` until dropped.
pub async fn run(runtime: Arc<dyn Runtime>, node: String, s: Settings, metrics: Arc<ShipMetrics>) {
    let spool = match Spool::open(&s.spool_dir, s.spool_bytes) {
        Ok(sp) => sp,
        Err(e) => {
            tracing::error!(dir = %s.spool_dir.display(), error = %e, "opening the log spool; no logs are shipped");
            return;
        }
    };
    tracing::info!(sink = %s.loki.url(), spool = %s.spool_dir.display(), "shipping container logs");
    let (tx, rx) = mpsc::channel::<Line>(4096);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(send(spool.clone(), s.loki.clone(), metrics.clone()));
    tasks.spawn(batch(rx, spool.clone(), metrics.clone()));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, Option<i128>)>();
    // Containers with a tailer, and those whose stream ended after they stopped.
    let mut tailing: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    // Where a tailer that ended left off (its lines may not be spooled yet).
    let mut resume: HashMap<String, i128> = HashMap::new();
    let mut tick = tokio::time::interval(DISCOVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(pods) = runtime.pods().await else {
            continue;
        };
        let mut states: HashMap<String, bool> = HashMap::new();
        for view in pods.values() {
            let Some(pod) = &view.pod else { continue };
            for c in &view.containers {
                states.insert(c.id.clone(), c.running());
                if tailing.contains(&c.id) || finished.contains(&c.id) {
                    continue;
                }
                if matches!(c.state, ContainerState::Created) {
                    continue;
                }
                let labels = Arc::new(Labels {
                    namespace: pod.namespace.clone(),
                    pod: pod.name.clone(),
                    container: c.name.clone(),
                    node: node.clone(),
                });
                tailing.insert(c.id.clone());
                let since = spool.position(&c.id).max(resume.get(&c.id).copied());
                let (rt, c, tx, done) = (runtime.clone(), c.clone(), tx.clone(), done_tx.clone());
                tokio::spawn(async move {
                    let last = tail(rt, &c, labels, since, tx).await;
                    let _ = done.send((c.id, last));
                });
            }
        }
        while let Ok((id, last)) = done_rx.try_recv() {
            tailing.remove(&id);
            if let Some(t) = last {
                resume.insert(id.clone(), t);
            }
            // A stream that broke while the container runs is read again (from the last
            // spooled line); one that ended with the container is done.
            if states.get(&id) != Some(&true) {
                finished.insert(id);
            }
        }
        finished.retain(|id| states.contains_key(id));
        resume.retain(|id, _| states.contains_key(id));
        spool.retain_positions(|id| states.contains_key(id) || tailing.contains(id));
        metrics.spool_bytes.store(spool.bytes(), Ordering::Relaxed);
    }
}

/// How long a tailer waits in silence before it asks whether the log holds newer lines
/// than it got; the wait doubles up to [`MAX_SILENCE`] while nothing comes.
const SILENCE: Duration = Duration::from_secs(5);
const MAX_SILENCE: Duration = Duration::from_secs(60);

/// Whether container `c`'s log ends with a line newer than `last` (its last line, read
/// without following).
async fn has_newer(runtime: &dyn Runtime, c: &ContainerStatus, last: Option<i128>) -> bool {
    let opts = LogOptions {
        tail_lines: Some(1),
        timestamps: true,
        ..Default::default()
    };
    let (tx, mut rx) = mpsc::channel::<Bytes>(4);
    let read = async {
        let _ = runtime.logs(c, &opts, tx).await;
    };
    let collect = async {
        let mut out = Vec::new();
        while let Some(b) = rx.recv().await {
            out.extend_from_slice(&b);
        }
        out
    };
    let ((), out) = tokio::join!(read, collect);
    out.split(|b| *b == b'\n')
        .filter_map(batch::parse_timestamped)
        .last()
        .is_some_and(|e| last.is_none_or(|l| e.time.as_nanosecond() > l))
}

/// Reads container `c`'s log from after `since` (Unix nanoseconds) until its stream ends,
/// or stalls: Docker's json-file follower can stop at a rotation and never go on, so a
/// stream silent for a while whose log holds a newer line than it brought is dropped (and
/// read again from its last line by the next discovery). Returns the time of the last
/// line it passed on.
async fn tail(
    runtime: Arc<dyn Runtime>,
    c: &ContainerStatus,
    labels: Arc<Labels>,
    since: Option<i128>,
    tx: mpsc::Sender<Line>,
) -> Option<i128> {
    let opts = LogOptions {
        follow: true,
        timestamps: true,
        since: since.and_then(|ns| jiff::Timestamp::from_nanosecond(ns).ok()),
        ..Default::default()
    };
    let (btx, mut brx) = mpsc::channel::<Bytes>(16);
    let read = async {
        if let Err(e) = runtime.logs(c, &opts, btx).await {
            tracing::debug!(container = %c.id, error = %e, "reading a container's log to ship it");
        }
        // What was read is drained by `forward`, which ends when the channel closes.
        std::future::pending::<()>().await;
    };
    let mut last = since;
    let forward = async {
        let mut pending: Vec<u8> = Vec::new();
        let mut silence = SILENCE;
        loop {
            let b = match tokio::time::timeout(silence, brx.recv()).await {
                Ok(Some(b)) => b,
                Ok(None) => return,
                Err(_) => {
                    if has_newer(runtime.as_ref(), c, last).await {
                        tracing::info!(container = %c.id, "the log stream stalled behind the log; reading again");
                        return;
                    }
                    silence = (silence * 2).min(MAX_SILENCE);
                    continue;
                }
            };
            silence = SILENCE;
            pending.extend_from_slice(&b);
            let mut used = 0;
            while let Some(i) = pending[used..].iter().position(|b| *b == b'\n') {
                let line = &pending[used..used + i];
                used += i + 1;
                let Some(entry) = batch::parse_timestamped(line) else {
                    continue;
                };
                let ns = entry.time.as_nanosecond();
                // `since` is inclusive: the last line shipped comes again.
                if last.is_some_and(|l| ns <= l) {
                    continue;
                }
                last = Some(ns);
                let line = Line {
                    id: c.id.clone(),
                    labels: labels.clone(),
                    entry,
                };
                if tx.send(line).await.is_err() {
                    return;
                }
            }
            pending.drain(..used);
        }
    };
    tokio::select! {
        () = read => {}
        () = forward => {}
    }
    last
}

/// Collects lines into batches and spools them.
async fn batch(mut rx: mpsc::Receiver<Line>, spool: Arc<Spool>, metrics: Arc<ShipMetrics>) {
    let mut b = Batch::default();
    let mut positions: BTreeMap<String, i128> = BTreeMap::new();
    let mut deadline: Option<Instant> = None;
    loop {
        let next = match deadline {
            Some(d) => tokio::select! {
                l = rx.recv() => Some(l),
                _ = tokio::time::sleep_until(d) => None,
            },
            None => Some(rx.recv().await),
        };
        match next {
            // The batch's time is up.
            None => {}
            Some(None) => {
                flush(&mut b, &mut positions, &spool, &metrics).await;
                return;
            }
            Some(Some(l)) => {
                positions.insert(l.id, l.entry.time.as_nanosecond());
                b.push(&l.labels, l.entry);
                deadline.get_or_insert_with(|| Instant::now() + BATCH_WAIT);
                if b.bytes() < BATCH_BYTES {
                    continue;
                }
            }
        }
        flush(&mut b, &mut positions, &spool, &metrics).await;
        deadline = None;
    }
}

async fn flush(
    b: &mut Batch,
    positions: &mut BTreeMap<String, i128>,
    spool: &Spool,
    metrics: &ShipMetrics,
) {
    if b.is_empty() {
        return;
    }
    let body = b.body();
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    while let Err(e) = spool.append(&body, positions).await {
        tracing::warn!(error = %e, "writing the log spool; retrying");
        tokio::time::sleep(backoff.next_delay()).await;
    }
    metrics
        .lines_spooled
        .fetch_add(b.lines() as u64, Ordering::Relaxed);
    metrics.spool_bytes.store(spool.bytes(), Ordering::Relaxed);
    *b = Batch::default();
    positions.clear();
}

/// Pushes the spool's segments, oldest first.
async fn send(spool: Arc<Spool>, loki: Arc<loki::Loki>, metrics: Arc<ShipMetrics>) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut failing = false;
    loop {
        let (seq, body) = match spool.oldest().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "reading the log spool");
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        let outcome = loki.push(body).await;
        let done = match outcome {
            loki::Outcome::Taken => {
                if failing {
                    tracing::info!(sink = %loki.url(), "the log store takes lines again");
                }
                metrics.batches_sent.fetch_add(1, Ordering::Relaxed);
                true
            }
            loki::Outcome::Refused(why) => {
                tracing::warn!(sink = %loki.url(), %why, "the log store refused a batch; dropping it");
                metrics.batches_refused.fetch_add(1, Ordering::Relaxed);
                true
            }
            loki::Outcome::Retry(why) => {
                if !failing {
                    tracing::warn!(sink = %loki.url(), %why, "pushing logs failed; retrying with backoff");
                }
                failing = true;
                metrics.push_failures.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff.next_delay()).await;
                false
            }
        };
        if done {
            failing = false;
            backoff.reset();
            if let Err(e) = spool.remove(seq).await {
                tracing::warn!(error = %e, "removing a sent log batch");
            }
            metrics.spool_bytes.store(spool.bytes(), Ordering::Relaxed);
        }
    }
}
