//! Workloads: client processes issuing operations at the configured rate until the time
//! limit, each bound to one member; a process whose operation had an unknown outcome is
//! retired and a fresh one (a new process number) takes its place, as in Jepsen.

pub mod follow;
pub mod informers;
pub mod objects;
pub mod pods;
pub mod register;
pub mod set;
pub mod watch;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::checker::Verdict;
use crate::client::{Client, OpError};
use crate::cluster::ClusterControl;
use crate::history::{Event, Kind, Op, Recorder};
use crate::opts::{self, TestOpts};

/// A workload as a run drives it: `prepare` once the cluster is up, before the clock
/// starts; `run` its clients (and observers) until the time limit; `finish` after the heal
/// (final reads, observers brought to the end, what they saw written into the run's
/// directory); `check` the history with what it observed.
#[async_trait]
pub trait Workload: Send {
    /// What must exist before the clock starts (the pods workload's Deployments).
    async fn prepare(&mut self, _setup: &Ctx) -> anyhow::Result<()> {
        Ok(())
    }
    async fn run(&mut self, ctx: &Ctx) -> anyhow::Result<()>;
    /// `healed`: when the nemesis healed everything.
    async fn finish(&mut self, ctx: &Ctx, healed: Instant, dir: &Path) -> anyhow::Result<()>;
    /// The verdicts, the workload's main one first.
    fn check(&mut self, history: &[Event], deadline: Instant) -> Vec<Verdict>;
}

/// The workload `--workload` names.
pub fn new(w: opts::Workload) -> Box<dyn Workload> {
    match w {
        opts::Workload::Register => Box::<register::Register>::default(),
        opts::Workload::Set => Box::new(set::Set),
        opts::Workload::Watch => Box::<watch::Watch>::default(),
        opts::Workload::Objects => Box::<objects::Objects>::default(),
        opts::Workload::Pods => Box::<pods::Pods>::default(),
        opts::Workload::Informers => Box::<informers::Informers>::default(),
    }
}

/// Writes what a workload observed into the run's directory.
fn save(dir: &Path, file: &str, what: &impl serde::Serialize) -> anyhow::Result<()> {
    std::fs::write(dir.join(file), serde_json::to_vec(what)?)?;
    Ok(())
}

/// What every workload task gets.
#[derive(Clone)]
pub struct Ctx {
    pub cluster: Arc<dyn ClusterControl>,
    pub rec: Recorder,
    pub opts: Arc<TestOpts>,
    pub seed: u64,
    /// When clients stop issuing operations.
    pub end: Instant,
}

impl Ctx {
    pub fn rng(&self, stream: u64) -> ChaCha8Rng {
        let mut r = ChaCha8Rng::seed_from_u64(self.seed);
        r.set_stream(stream);
        r
    }

    pub fn op_timeout(&self) -> Duration {
        Duration::from_millis(self.opts.op_timeout_ms)
    }

    /// The admin kubeconfig pointed at `node`'s apiserver.
    pub async fn kube_config(&self, node: usize) -> anyhow::Result<kube::Config> {
        let server = self.cluster.apiserver(node).ok_or_else(|| {
            anyhow::anyhow!(
                "this cluster runs no apiserver (--workload {:?} needs --cluster compose)",
                self.opts.workload
            )
        })?;
        crate::api::config(&server, self.op_timeout()).await
    }

    pub fn client(&self, node: usize) -> anyhow::Result<Client> {
        Client::new(
            &self.cluster.client_url(node),
            self.cluster.client_tls(),
            self.op_timeout(),
        )
    }
}

/// One client process slot: worker `w` is bound to member `w % n` and renumbers itself
/// after an unknown outcome.
pub struct Worker {
    pub ctx: Ctx,
    pub process: i64,
    pub node: usize,
    pub client: Client,
    pub rng: ChaCha8Rng,
    /// Seconds between operations of this worker, on average.
    gap: f64,
}

impl Worker {
    pub fn new(ctx: &Ctx, w: usize, workers: usize) -> anyhow::Result<Worker> {
        let node = w % ctx.cluster.size();
        Ok(Worker {
            ctx: ctx.clone(),
            process: w as i64,
            node,
            client: ctx.client(node)?,
            rng: ctx.rng(1000 + w as u64),
            gap: workers as f64 / ctx.opts.rate,
        })
    }

    /// Paces this worker for at most `rate` operations per second, all workers together.
    pub fn limit_rate(&mut self, rate: f64, workers: usize) {
        self.gap = self.gap.max(workers as f64 / rate);
    }

    /// Waits a random time around the worker's share of the rate; false once time is up.
    pub async fn pace(&mut self) -> bool {
        let d = Duration::from_secs_f64(self.gap * self.rng.random_range(0.0..2.0));
        if Instant::now() + d >= self.ctx.end {
            return false;
        }
        tokio::time::sleep(d).await;
        true
    }

    pub fn invoke(&self, op: Op) {
        self.ctx
            .rec
            .record(self.process, Kind::Invoke, Some(self.node), op, None);
    }

    pub fn ok(&self, op: Op) {
        self.ctx
            .rec
            .record(self.process, Kind::Ok, Some(self.node), op, None);
    }

    /// Records a failed operation; after an unknown outcome the process is replaced.
    pub fn error(&mut self, op: Op, e: OpError, reads_cannot_be_unknown: bool) {
        let kind = match (&e, reads_cannot_be_unknown) {
            (OpError::Fail(_), _) | (_, true) => Kind::Fail,
            (OpError::Unknown(_), false) => Kind::Info,
        };
        self.ctx
            .rec
            .record(self.process, kind, Some(self.node), op, Some(e.to_string()));
        if kind == Kind::Info {
            self.process += self.ctx.opts.concurrency as i64;
            if let Ok(c) = self.ctx.client(self.node) {
                self.client = c;
            }
        }
    }
}

/// Retries `f` through each member in turn until it succeeds or `deadline` passes.
pub async fn through_any<T, F, Fut>(ctx: &Ctx, deadline: Instant, mut f: F) -> Option<T>
where
    F: FnMut(Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, OpError>>,
{
    let n = ctx.cluster.size();
    let mut i = 0;
    while Instant::now() < deadline {
        if let Ok(c) = ctx.client(i % n) {
            if let Ok(v) = f(c).await {
                return Some(v);
            }
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}
