//! Leader election with a coordination.k8s.io/v1 Lease, as client-go's leaderelection.
//!
//! Contract:
//! - At most one replica acts at a time, given clocks that run at the same rate: the
//!   leader stops its work (aborts the task) once `renew_deadline` has passed since it
//!   *sent* its last successful renewal, while a standby takes the lease only after it has
//!   seen the same record unchanged for `lease_duration` (> `renew_deadline`), counted from
//!   when its read of that record *returned* — so the leader has stopped before anyone else
//!   can acquire. Writes go through resourceVersion-guarded updates: two candidates cannot
//!   both win one round.
//! - A standby takes over within `lease_duration` plus one retry period of the last renewal
//!   it saw; a leader that shuts down cleanly releases the lease so a standby takes over at
//!   its next retry.
//! - Losing the lease does not end the process: the work is aborted and the replica becomes
//!   a candidate again. The work must own every task it spawns (a `JoinSet`), so aborting it
//!   stops them all.
//! - Fenced writes: the clocks' promise above does not hold for a leader frozen between
//!   deciding a write and sending it. Each acquisition is a write that changes the Lease's
//!   holder or acquireTime, which Flotilla's apiserver pairs with the Lease's fence key;
//!   the work gets a [`Term`] naming the acquisition's revision, and clients it builds with
//!   [`Term::config`] send it with every request, so the apiserver refuses their writes
//!   once anyone acquired the lease again (`apiserver::store::fence`).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct ElectionConfig {
    pub lease_name: String,
    pub namespace: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// The request header that carries a leader's fence.
pub const FENCE_HEADER: &str = "flotilla-fence";

/// What a replica acts with while it leads: who it is and, under leader election, the
/// acquisition it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub identity: String,
    /// `<namespace>/<lease>@<revision of the acquisition>`; `None` without leader election.
    pub fence: Option<String>,
}

impl Term {
    /// A client configuration whose requests carry the fence.
    pub fn config(&self, base: &kube::Config) -> kube::Config {
        let mut c = base.clone();
        if let Some(v) = self
            .fence
            .as_deref()
            .and_then(|f| http::HeaderValue::from_str(f).ok())
        {
            c.headers
                .push((http::HeaderName::from_static(FENCE_HEADER), v));
        }
        c
    }

    /// What writes record about their writer: `<identity>@<revision>`, or the identity
    /// alone without leader election.
    pub fn stamp(&self) -> String {
        match self.fence.as_deref().and_then(|f| f.rsplit_once('@')) {
            Some((_, rev)) => format!("{}@{rev}", self.identity),
            None => self.identity.clone(),
        }
    }
}

/// What this replica knows about the lease, for `/metrics`.
#[derive(Default)]
pub struct LeaderState {
    pub name: String,
    leading: AtomicBool,
    /// Times this replica became the leader.
    acquired: AtomicU64,
    /// Times it lost the lease while acting (not counting a clean release).
    lost: AtomicU64,
}

impl LeaderState {
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_string(),
            ..Default::default()
        })
    }
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::Relaxed)
    }
}

impl crate::metrics::Collect for LeaderState {
    fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let n = &self.name;
        let _ = writeln!(
            out,
            "# HELP leader_election_master_status Whether this replica holds the lease (1) or not (0).\n# TYPE leader_election_master_status gauge\nleader_election_master_status{{name=\"{n}\"}} {}",
            u8::from(self.is_leader())
        );
        let _ = writeln!(
            out,
            "# HELP flotilla_leader_acquired_total Times this replica became the leader.\n# TYPE flotilla_leader_acquired_total counter\nflotilla_leader_acquired_total{{name=\"{n}\"}} {}",
            self.acquired.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP flotilla_leader_lost_total Times this replica lost the lease while leading.\n# TYPE flotilla_leader_lost_total counter\nflotilla_leader_lost_total{{name=\"{n}\"}} {}",
            self.lost.load(Ordering::Relaxed)
        );
    }
}

/// The parts of a Lease that decide who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub holder: String,
    pub duration_secs: i32,
    pub renew_time: Option<MicroTime>,
    pub transitions: i32,
    pub resource_version: String,
}

impl Record {
    fn of(l: &Lease) -> Self {
        let s = l.spec.clone().unwrap_or_default();
        Record {
            holder: s.holder_identity.unwrap_or_default(),
            duration_secs: s.lease_duration_seconds.unwrap_or(0),
            renew_time: s.renew_time,
            transitions: s.lease_transitions.unwrap_or(0),
            resource_version: l.metadata.resource_version.clone().unwrap_or_default(),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease exists: create one naming us.
    Create,
    /// We hold it: renew.
    Renew,
    /// It is free or expired: take it (a new transition).
    Take,
    /// Someone else holds it and it has not expired.
    Wait,
}

/// Who may write the lease now. `unchanged_for`: how long this replica has seen the same
/// record (`None`: no Lease).
pub fn decide(
    current: Option<&Record>,
    unchanged_for: Duration,
    me: &str,
    lease_duration: Duration,
) -> Decision {
    let Some(r) = current else {
        return Decision::Create;
    };
    if r.holder == me {
        return Decision::Renew;
    }
    // Respect the longer of our duration and the holder's: replicas with different flags
    // must still never overlap.
    let theirs = Duration::from_secs(u64::try_from(r.duration_secs).unwrap_or(0));
    if r.holder.is_empty() || unchanged_for >= lease_duration.max(theirs) {
        Decision::Take
    } else {
        Decision::Wait
    }
}

pub struct Elector {
    api: Api<Lease>,
    cfg: ElectionConfig,
    observed: Option<(Record, Instant)>,
    /// The revision of the write that acquired the lease, while we hold it.
    acquired: Option<i64>,
}

impl Elector {
    pub fn new(client: kube::Client, cfg: ElectionConfig) -> Self {
        Self {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: None,
            acquired: None,
        }
    }

    /// The term of the acquisition we hold, if any.
    pub fn term(&self) -> Option<Term> {
        self.acquired.map(|rev| Term {
            identity: self.cfg.identity.clone(),
            fence: Some(format!(
                "{}/{}@{rev}",
                self.cfg.namespace, self.cfg.lease_name
            )),
        })
    }

    /// Forgets the acquisition (the lease was lost or given up).
    fn forget(&mut self) {
        self.acquired = None;
    }

    fn acquired_by(&mut self, l: &Lease) {
        self.acquired = l
            .metadata
            .resource_version
            .as_deref()
            .and_then(|rv| rv.parse().ok());
    }

    /// One round: read the lease and write it if we may. `Ok(true)`: we hold it now.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(jiff::Timestamp::now());
        let secs = i32::try_from(self.cfg.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let current = self.api.get_opt(&self.cfg.lease_name).await?;
        let seen = Instant::now();
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.lease_name.clone()),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.cfg.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(l) => {
                    self.observed = Some((Record::of(&l), Instant::now()));
                    self.acquired_by(&l);
                    Ok(true)
                }
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let rec = Record::of(&lease);
        match &self.observed {
            Some((r, _)) if *r == rec => {}
            _ => self.observed = Some((rec.clone(), seen)),
        }
        let since = self.observed.as_ref().map(|o| o.1).unwrap_or(seen);
        let decision = decide(
            Some(&rec),
            seen.saturating_duration_since(since),
            &self.cfg.identity,
            self.cfg.lease_duration,
        );
        let spec = lease.spec.get_or_insert_with(Default::default);
        // A record naming us that we did not acquire in this run (a restart with a fixed
        // identity) is taken again, so the acquisition has a revision of its own.
        let acquiring = match decision {
            Decision::Renew => self.acquired.is_none(),
            _ => true,
        };
        match decision {
            Decision::Wait | Decision::Create => return Ok(false),
            Decision::Renew if acquiring => {
                spec.acquire_time = Some(now.clone());
                spec.lease_transitions = Some(rec.transitions.saturating_add(1));
            }
            Decision::Take => {
                spec.holder_identity = Some(self.cfg.identity.clone());
                spec.acquire_time = Some(now.clone());
                spec.lease_transitions = Some(rec.transitions.saturating_add(1));
            }
            Decision::Renew => {}
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(secs);
        match self
            .api
            .replace(&self.cfg.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(l) => {
                self.observed = Some((Record::of(&l), Instant::now()));
                if acquiring {
                    self.acquired_by(&l);
                }
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up if we still hold it, so a standby need not wait for it to expire.
    pub async fn release(&mut self) {
        self.forget();
        let Ok(Some(mut lease)) = self.api.get_opt(&self.cfg.lease_name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        match self
            .api
            .replace(&self.cfg.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.cfg.lease_name, "released the lease"),
            Err(e) => {
                tracing::warn!(lease = %self.cfg.lease_name, error = %e, "releasing the lease failed")
            }
        }
    }
}

/// Runs `work` whenever this replica holds the lease, until `shutdown` turns true (then the
/// lease is released) or the work returns (its result is returned). Each run of the work
/// gets the term it acts in.
pub async fn run<F, Fut>(
    client: kube::Client,
    cfg: ElectionConfig,
    state: Arc<LeaderState>,
    mut shutdown: watch::Receiver<bool>,
    work: F,
) -> anyhow::Result<()>
where
    F: Fn(Term) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut elector = Elector::new(client, cfg.clone());
    loop {
        // Candidate: retry with jitter until we hold the lease.
        let acquired_at = loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let start = Instant::now();
            match elector.try_acquire_or_renew().await {
                Ok(true) => break start,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(lease = %cfg.lease_name, error = %e, "reading the lease failed")
                }
            }
            let wait = flotilla_core::backoff::jitter(cfg.retry_period, 0.2);
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        };
        let Some(term) = elector.term() else {
            // Holding the lease without knowing the acquisition's revision (an apiserver
            // that sent no resourceVersion): try again rather than act unfenced.
            tracing::warn!(lease = %cfg.lease_name, "the acquisition has no revision; not acting");
            elector.release().await;
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(cfg.retry_period) => {}
            }
            continue;
        };
        state.leading.store(true, Ordering::Relaxed);
        state.acquired.fetch_add(1, Ordering::Relaxed);
        tracing::info!(lease = %cfg.lease_name, identity = %cfg.identity, fence = ?term.fence, "became the leader");
        let mut handle = tokio::spawn(work(term));
        let mut last_ok = acquired_at;
        let outcome = 'leading: loop {
            tokio::select! {
                _ = shutdown.changed() => break 'leading Outcome::Shutdown,
                res = &mut handle => break 'leading Outcome::WorkEnded(res),
                _ = tokio::time::sleep(cfg.retry_period) => {}
            }
            let deadline = last_ok + cfg.renew_deadline;
            loop {
                let start = Instant::now();
                if start >= deadline {
                    break 'leading Outcome::Lost("the renew deadline passed");
                }
                match tokio::time::timeout_at(deadline, elector.try_acquire_or_renew()).await {
                    Ok(Ok(true)) => {
                        last_ok = start;
                        break;
                    }
                    Ok(Ok(false)) => {
                        break 'leading Outcome::Lost("another replica holds the lease")
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(lease = %cfg.lease_name, error = %e, "renewing the lease failed");
                        let wait = cfg
                            .retry_period
                            .min(deadline.saturating_duration_since(Instant::now()));
                        tokio::select! {
                            _ = shutdown.changed() => break 'leading Outcome::Shutdown,
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                    Err(_) => break 'leading Outcome::Lost("the renew deadline passed"),
                }
            }
        };
        // Stop acting before anything else.
        handle.abort();
        match outcome {
            Outcome::WorkEnded(res) => {
                state.leading.store(false, Ordering::Relaxed);
                elector.release().await;
                return match res {
                    Ok(r) => r,
                    Err(e) => Err(anyhow::anyhow!("the leader's work failed: {e}")),
                };
            }
            Outcome::Shutdown => {
                let _ = handle.await;
                state.leading.store(false, Ordering::Relaxed);
                elector.release().await;
                return Ok(());
            }
            Outcome::Lost(why) => {
                let _ = handle.await;
                elector.forget();
                state.leading.store(false, Ordering::Relaxed);
                state.lost.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(lease = %cfg.lease_name, identity = %cfg.identity, why, "lost the lease; stopped acting");
            }
        }
    }
}

enum Outcome {
    Shutdown,
    Lost(&'static str),
    WorkEnded(Result<anyhow::Result<()>, tokio::task::JoinError>),
}

/// Runs `work` under leader election when `cfg` is set, or directly (until `shutdown`)
/// when leader election is off, as `identity` with no fence.
pub async fn run_maybe_elected<F, Fut>(
    client: kube::Client,
    cfg: Option<ElectionConfig>,
    identity: &str,
    state: Arc<LeaderState>,
    mut shutdown: watch::Receiver<bool>,
    work: F,
) -> anyhow::Result<()>
where
    F: Fn(Term) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    match cfg {
        Some(cfg) => run(client, cfg, state, shutdown, work).await,
        None => {
            state.leading.store(true, Ordering::Relaxed);
            let term = Term {
                identity: identity.to_string(),
                fence: None,
            };
            tokio::select! {
                r = work(term) => r,
                _ = shutdown.changed() => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(holder: &str, secs: i32) -> Record {
        Record {
            holder: holder.into(),
            duration_secs: secs,
            renew_time: None,
            transitions: 0,
            resource_version: "1".into(),
        }
    }

    const D: Duration = Duration::from_secs(15);

    #[test]
    fn no_lease_is_created() {
        assert_eq!(decide(None, Duration::ZERO, "me", D), Decision::Create);
    }

    #[test]
    fn our_own_lease_is_renewed() {
        assert_eq!(
            decide(Some(&rec("me", 15)), Duration::from_secs(100), "me", D),
            Decision::Renew
        );
    }

    #[test]
    fn a_live_holder_is_respected_until_it_expires() {
        let r = rec("other", 15);
        assert_eq!(
            decide(Some(&r), Duration::from_secs(14), "me", D),
            Decision::Wait
        );
        assert_eq!(
            decide(Some(&r), Duration::from_secs(15), "me", D),
            Decision::Take
        );
    }

    #[test]
    fn the_longer_duration_wins() {
        let r = rec("other", 60);
        assert_eq!(
            decide(Some(&r), Duration::from_secs(30), "me", D),
            Decision::Wait
        );
        assert_eq!(
            decide(Some(&r), Duration::from_secs(60), "me", D),
            Decision::Take
        );
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        assert_eq!(
            decide(Some(&rec("", 1)), Duration::ZERO, "me", D),
            Decision::Take
        );
    }
}
