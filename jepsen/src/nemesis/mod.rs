//! The nemesis: rounds of (wait, start a fault, wait, stop it) until the time limit, every
//! choice of interval and target drawn from the seed, every start and stop recorded in the
//! history. It always stops the fault it started, and at the end heals everything.

pub mod grudges;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tracing::{info, warn};

use crate::client::Client;
use crate::cluster::{ClusterControl, Start};
use crate::history::{Kind, Op, Recorder, NEMESIS};
use crate::opts::NemesisKind;

/// A fault in force, with what undoing it needs.
enum Active {
    Killed(usize),
    Paused(usize),
    Partitioned,
    /// Removed from the cluster and wiped.
    Removed(usize),
    Nothing,
}

pub struct Nemesis {
    cluster: Arc<dyn ClusterControl>,
    kinds: Vec<NemesisKind>,
    rng: ChaCha8Rng,
    rec: Recorder,
    interval: Duration,
    /// Member ID of each node, as the cluster knows it now.
    ids: Vec<u64>,
}

impl Nemesis {
    pub fn new(
        cluster: Arc<dyn ClusterControl>,
        kinds: Vec<NemesisKind>,
        rng: ChaCha8Rng,
        rec: Recorder,
        interval: Duration,
        ids: Vec<u64>,
    ) -> Nemesis {
        let kinds = kinds
            .into_iter()
            .filter(|k| *k != NemesisKind::None)
            .collect();
        Nemesis {
            cluster,
            kinds,
            rng,
            rec,
            interval,
            ids,
        }
    }

    /// A duration around the mean interval (half to one and a half of it).
    fn jitter(&mut self) -> Duration {
        self.interval.mul_f64(self.rng.random_range(0.5..1.5))
    }

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

    /// Runs rounds until `end`; returns with every fault undone.
    pub async fn run(mut self, end: Instant) {
        if self.kinds.is_empty() {
            return;
        }
        loop {
            let wait = self.jitter();
            if Instant::now() + wait >= end {
                break;
            }
            tokio::time::sleep(wait).await;
            let kind = *self
                .kinds
                .choose(&mut self.rng)
                .unwrap_or(&NemesisKind::None);
            let active = self.start(kind).await;
            let hold = self.jitter();
            let until = (Instant::now() + hold).min(end);
            tokio::time::sleep_until(until.into()).await;
            self.stop(kind, active).await;
        }
        if let Err(e) = self.blocking(|c| c.heal()).await {
            warn!(error = %e, "final heal failed");
        }
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
        Client::new(&self.cluster.client_url(node), Duration::from_secs(1)).ok()
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

    /// The leader half of the time (when there is one), else a random member.
    async fn target(&mut self) -> usize {
        let n = self.cluster.size();
        if self.rng.random_bool(0.5) {
            if let Some(l) = self.leader().await {
                return l;
            }
        }
        self.rng.random_range(0..n)
    }

    async fn start(&mut self, kind: NemesisKind) -> Active {
        let n = self.cluster.size();
        match kind {
            NemesisKind::None => Active::Nothing,
            NemesisKind::Kill => {
                let t = self.target().await;
                self.note("start-kill", Some(t), self.cluster.name(t));
                match self.blocking(move |c| c.kill(t)).await {
                    Ok(()) => Active::Killed(t),
                    Err(e) => self.failed(e),
                }
            }
            NemesisKind::Pause => {
                let t = self.target().await;
                self.note("start-pause", Some(t), self.cluster.name(t));
                match self.blocking(move |c| c.pause(t)).await {
                    Ok(()) => Active::Paused(t),
                    Err(e) => self.failed(e),
                }
            }
            NemesisKind::PartitionOne
            | NemesisKind::PartitionLeader
            | NemesisKind::PartitionHalves
            | NemesisKind::PartitionRing
            | NemesisKind::Bridge => {
                let leader = match kind {
                    NemesisKind::PartitionLeader => self.leader().await,
                    _ => None,
                };
                let (grudge, detail) = grudges::for_kind(kind, n, leader, &mut self.rng);
                self.note(&format!("start-{}", fault_name(kind)), None, detail);
                match self.blocking(move |c| c.partition(&grudge)).await {
                    Ok(()) => Active::Partitioned,
                    Err(e) => self.failed(e),
                }
            }
            NemesisKind::Member => self.remove_member().await,
            NemesisKind::Compact => {
                let detail = self.compact().await;
                self.note("start-compact", None, detail);
                Active::Nothing
            }
        }
    }

    fn failed(&self, e: anyhow::Error) -> Active {
        warn!(error = %e, "fault could not be injected");
        self.note("fault-failed", None, e.to_string());
        Active::Nothing
    }

    async fn stop(&mut self, kind: NemesisKind, active: Active) {
        let name = fault_name(kind);
        let result = match active {
            Active::Nothing => Ok(()),
            Active::Killed(t) => self.blocking(move |c| c.start(t, Start::Restart)).await,
            Active::Paused(t) => self.blocking(move |c| c.resume(t)).await,
            Active::Partitioned => self.blocking(|c| c.heal()).await,
            Active::Removed(t) => self.add_member(t).await,
        };
        let detail = match (&result, kind) {
            (Err(e), _) => format!("failed: {e}"),
            (Ok(()), NemesisKind::Compact) => self.compact().await,
            _ => String::new(),
        };
        self.note(&format!("stop-{name}"), None, detail);
    }

    /// Compacts at a recent revision; returns what it did.
    async fn compact(&mut self) -> String {
        let node = self.rng.random_range(0..self.cluster.size());
        let back = self.rng.random_range(0..50);
        let Some(mut c) = self.client(node) else {
            return "no client".into();
        };
        let rev = match c.get("compact-probe", false).await {
            Ok((_, rev)) => rev,
            Err(e) => return format!("reading the revision failed: {e}"),
        };
        let at = (rev - back).max(1);
        match c.compact(at).await {
            Ok(()) => crate::history::compaction_detail(at, &self.cluster.name(node)),
            Err(e) => format!("compaction at {at} failed: {e}"),
        }
    }

    /// A member to talk to other than `not`, that answers.
    async fn other_client(&self, not: usize) -> Option<Client> {
        for node in (0..self.cluster.size()).filter(|&i| i != not) {
            if let Some(mut c) = self.client(node) {
                if c.status().await.is_ok() {
                    return Some(c);
                }
            }
        }
        None
    }

    async fn member_ids(&self, not: usize) -> Option<Vec<(u64, String, Vec<String>)>> {
        self.other_client(not).await?.member_list().await.ok()
    }

    /// Shrink: remove a member through another one, then kill and wipe it.
    async fn remove_member(&mut self) -> Active {
        let t = self.rng.random_range(0..self.cluster.size());
        let id = self.ids[t];
        self.note(
            "start-member",
            Some(t),
            format!("remove {}", self.cluster.name(t)),
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut removed = false;
        while Instant::now() < deadline && !removed {
            if let Some(mut c) = self.other_client(t).await {
                // An ambiguous outcome is settled by the member list, not by a retry.
                let _ = c.member_remove(id).await;
            }
            removed = self
                .member_ids(t)
                .await
                .is_some_and(|l| l.iter().all(|(m, _, _)| *m != id));
            if !removed {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        if !removed {
            return self.failed(anyhow::anyhow!("member {id:x} was not removed in time"));
        }
        match self
            .blocking(move |c| {
                c.kill(t)?;
                c.wipe(t)
            })
            .await
        {
            Ok(()) => Active::Removed(t),
            Err(e) => {
                warn!(error = %e, "removed member could not be wiped");
                Active::Removed(t)
            }
        }
    }

    /// Grow: add the wiped member back (it gets a new ID) and start it empty.
    async fn add_member(&mut self, t: usize) -> anyhow::Result<()> {
        let url = self.cluster.peer_url(t);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if Instant::now() > deadline {
                anyhow::bail!("{} could not be added back in time", self.cluster.name(t));
            }
            let listed = self.member_ids(t).await.unwrap_or_default();
            if let Some((id, _, _)) = listed.iter().find(|(_, _, urls)| urls.contains(&url)) {
                self.ids[t] = *id;
                let initial = listed
                    .iter()
                    .map(|(id, name, urls)| {
                        let name = if urls.contains(&url) {
                            self.cluster.name(t)
                        } else if name.is_empty() {
                            format!("{id:x}")
                        } else {
                            name.clone()
                        };
                        format!("{name}={}", urls.first().cloned().unwrap_or_default())
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                return self
                    .blocking(move |c| {
                        c.start(
                            t,
                            Start::Join {
                                initial_cluster: initial,
                            },
                        )
                    })
                    .await;
            }
            if !listed.is_empty() {
                if let Some(mut c) = self.other_client(t).await {
                    let _ = c.member_add(&url).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

pub fn fault_name(kind: NemesisKind) -> &'static str {
    match kind {
        NemesisKind::None => "none",
        NemesisKind::Kill => "kill",
        NemesisKind::Pause => "pause",
        NemesisKind::PartitionOne => "partition-one",
        NemesisKind::PartitionLeader => "partition-leader",
        NemesisKind::PartitionHalves => "partition-halves",
        NemesisKind::PartitionRing => "partition-ring",
        NemesisKind::Bridge => "bridge",
        NemesisKind::Member => "member",
        NemesisKind::Compact => "compact",
    }
}
