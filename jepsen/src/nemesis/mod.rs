//! The nemesis: rounds of (wait, start a fault, wait, stop it) until the time limit, every
//! choice of interval and target drawn from the seed, every start and stop recorded in the
//! history. It always stops the fault it started, and at the end heals everything.
//!
//! Each fault is one file implementing [`Fault`], listed once in [`ALL`], which is also where
//! `--nemesis` takes its names and help from.

mod agent;
mod compact;
pub mod grudges;
mod kill;
mod member;
mod partition;
mod pause;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tracing::{info, warn};

use crate::client::Client;
use crate::cluster::ClusterControl;
use crate::history::{Kind, Op, Recorder, NEMESIS};

/// Every fault, in the order `--nemesis` lists them (after `none`). A new nemesis is a file
/// implementing [`Fault`] and one line here.
pub const ALL: &[&dyn Fault] = &[
    &kill::Kill,
    &pause::Pause,
    &partition::ONE,
    &partition::LEADER,
    &partition::HALVES,
    &partition::RING,
    &partition::BRIDGE,
    &member::Member,
    &compact::Compact,
    &agent::KILL,
    &agent::PAUSE,
    &agent::PARTITION,
];

/// One kind of fault.
#[async_trait]
pub trait Fault: Sync {
    /// Its `--nemesis` value, and the `start-`/`stop-` suffix of its events in the history.
    fn name(&self) -> &'static str;
    /// Its line in `--nemesis` help.
    fn help(&self) -> &'static str;
    /// Records a `start-<name>` event and injects the fault. An error is recorded as
    /// `fault-failed`; the round then undoes nothing (but still records `stop-<name>`).
    async fn start(&self, cx: &mut Ctx) -> anyhow::Result<Box<dyn Active>>;
}

/// A fault in force, with what undoing it needs.
#[async_trait]
pub trait Active: Send {
    /// Undoes the fault; returns the detail of the `stop-<name>` event.
    async fn undo(self: Box<Self>, cx: &mut Ctx) -> anyhow::Result<String>;
}

/// Nothing to undo (the fault could not be started).
struct Nothing;

#[async_trait]
impl Active for Nothing {
    async fn undo(self: Box<Self>, _: &mut Ctx) -> anyhow::Result<String> {
        Ok(String::new())
    }
}

/// A `--nemesis` value: `none`, or a fault from [`ALL`].
#[derive(Clone, Copy)]
pub enum Choice {
    None,
    Fault(&'static dyn Fault),
}

impl Choice {
    pub const NONE: &'static str = "none";

    /// `name` as a choice; anything not in [`ALL`] is `none` (the parser admits only those).
    pub fn named(name: &str) -> Choice {
        ALL.iter()
            .find(|f| f.name() == name)
            .map_or(Choice::None, |&f| Choice::Fault(f))
    }

    pub fn name(self) -> &'static str {
        match self {
            Choice::None => Choice::NONE,
            Choice::Fault(f) => f.name(),
        }
    }
}

impl fmt::Debug for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Choice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// What a fault acts on and through: the cluster, the seeded generator, the history.
pub struct Ctx {
    cluster: Arc<dyn ClusterControl>,
    rng: ChaCha8Rng,
    rec: Recorder,
    /// Member ID of each node, as the cluster knows it now.
    ids: Vec<u64>,
}

impl Ctx {
    fn note(&self, fault: &str, node: Option<usize>, detail: String) {
        info!(fault, detail = %detail, "nemesis");
        self.rec.record(
            NEMESIS,
            Kind::Info,
            node,
            Op::Nemesis {
                fault: fault.to_string(),
                detail,
            },
            None,
        );
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn ClusterControl) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let c = self.cluster.clone();
        tokio::task::spawn_blocking(move || f(c.as_ref()))
            .await
            .map_err(|e| anyhow::anyhow!("nemesis task: {e}"))?
    }

    fn client(&self, node: usize) -> Option<Client> {
        Client::new(
            &self.cluster.client_url(node),
            self.cluster.client_tls(),
            Duration::from_secs(1),
        )
        .ok()
    }

    /// The node most members name as leader, if any.
    async fn leader(&self) -> Option<usize> {
        let mut votes = vec![0usize; self.cluster.size()];
        for node in 0..self.cluster.size() {
            let Some(mut c) = self.client(node) else {
                continue;
            };
            if let Ok((_, leader)) = c.status().await {
                if let Some(l) = self.ids.iter().position(|&id| id == leader && id != 0) {
                    votes[l] += 1;
                }
            }
        }
        let best = (0..votes.len()).max_by_key(|&i| votes[i])?;
        (votes[best] > 0).then_some(best)
    }

    /// The leader half of the time (when there is one), else a random member; with the
    /// detail of its `start-` event: its name, and ` (leader)` when it led.
    async fn target(&mut self) -> (usize, String) {
        let n = self.cluster.size();
        let leader = self.leader().await;
        let t = match leader {
            Some(l) if self.rng.random_bool(0.5) => l,
            _ => self.rng.random_range(0..n),
        };
        let mark = if leader == Some(t) { " (leader)" } else { "" };
        (t, format!("{}{mark}", self.cluster.name(t)))
    }
}

pub struct Nemesis {
    cx: Ctx,
    faults: Vec<&'static dyn Fault>,
    interval: Duration,
}

impl Nemesis {
    pub fn new(
        cluster: Arc<dyn ClusterControl>,
        choices: &[Choice],
        rng: ChaCha8Rng,
        rec: Recorder,
        interval: Duration,
        ids: Vec<u64>,
    ) -> Nemesis {
        let faults = choices
            .iter()
            .filter_map(|c| match *c {
                Choice::None => None,
                Choice::Fault(f) => Some(f),
            })
            .collect();
        Nemesis {
            cx: Ctx {
                cluster,
                rng,
                rec,
                ids,
            },
            faults,
            interval,
        }
    }

    /// A duration around the mean interval (half to one and a half of it).
    fn jitter(&mut self) -> Duration {
        self.interval.mul_f64(self.cx.rng.random_range(0.5..1.5))
    }

    /// Runs rounds until `end`; returns with every fault undone.
    pub async fn run(mut self, end: Instant) {
        if self.faults.is_empty() {
            return;
        }
        loop {
            let wait = self.jitter();
            if Instant::now() + wait >= end {
                break;
            }
            tokio::time::sleep(wait).await;
            let Some(&fault) = self.faults.choose(&mut self.cx.rng) else {
                break;
            };
            let active = match fault.start(&mut self.cx).await {
                Ok(active) => active,
                Err(e) => {
                    warn!(error = %e, "fault could not be injected");
                    self.cx.note("fault-failed", None, e.to_string());
                    Box::new(Nothing)
                }
            };
            let hold = self.jitter();
            let until = (Instant::now() + hold).min(end);
            tokio::time::sleep_until(until.into()).await;
            let detail = match active.undo(&mut self.cx).await {
                Ok(detail) => detail,
                Err(e) => format!("failed: {e}"),
            };
            self.cx
                .note(&format!("stop-{}", fault.name()), None, detail);
        }
        if let Err(e) = self.cx.blocking(|c| c.heal()).await {
            warn!(error = %e, "final heal failed");
        }
    }
}
