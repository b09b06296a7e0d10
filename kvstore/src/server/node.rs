//! `Node`: one running member as the services see it. It owns the Raft handle and the
//! store, and it is the one place that knows how to reach the leader: proposals, read
//! barriers, lease keep-alives and membership changes run locally on the leader and are
//! forwarded to it from followers, with one retry policy for all of them. It also tells
//! the services who sent a request and whether that caller may do it (`caller`,
//! `authorize`, `propose_as`). Membership changes themselves are in `membership.rs`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_core::backoff::Backoff;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::ServerState;
use proto::etcdserverpb::ResponseHeader;
use tracing::warn;

use super::identity::ClientIdentity;
use super::proposer::Proposer;
use crate::auth::token::Lookup;
use crate::auth::Need;
use crate::config::KvConfig;
use crate::error::KvError;
use crate::raft::calls::{ClusterInfo, MemberInfo, PeerCall, PeerReply};
use crate::raft::network::{CallError, Peers};
use crate::raft::types::{Applied, Command, NodeId, Raft, TypeConfig};
use crate::storage::state_machine::{MemberAttrs, Store};

pub struct Node {
    pub id: NodeId,
    pub cluster_id: u64,
    pub config: KvConfig,
    pub raft: Raft,
    pub store: Arc<Store>,
    pub peers: Peers,
    pub proposer: Proposer,
    /// Leadership confirmations, shared by concurrent reads and lease calls.
    pub reads: super::read_index::ReadIndexer,
    /// Stops this member (set when the cluster removed it).
    pub stop: tokio::sync::watch::Sender<bool>,
    /// Snapshots arriving from the leader.
    pub snapshots: crate::raft::snapshot_transfer::Receiver,
    /// Who leads, as `leadership::watch` last saw it; changes only when that does, so
    /// requests in flight can wait on it.
    pub leadership: tokio::sync::watch::Sender<Leadership>,
}

/// The leader as the services see it: `None` when none is known or this member leads
/// without its quorum (then `isolated`: in Raft's leader state but cut off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Leadership {
    pub leader: Option<NodeId>,
    pub isolated: bool,
}

/// How long a call forwarded to a leader that the cluster has since replaced may still
/// answer, in heartbeats. A leader that handed over cleanly answers within a round trip
/// (openraft completes its pending writes as they apply); one that was cut off never does.
const REPLACED_LEADER_GRACE_HEARTBEATS: u32 = 2;

/// Where the leader is, as this member knows it.
enum Leader {
    Me,
    /// This member leads but has not heard from a quorum for an election timeout.
    Isolated,
    Remote(NodeId, String),
    Unknown,
}

impl Node {
    pub fn header(&self, revision: i64) -> ResponseHeader {
        let term = self.raft.metrics().borrow_watched().current_term;
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.id,
            revision,
            raft_term: term,
        }
    }

    fn leader(&self) -> Leader {
        // Read in place: cloning the metrics would copy the membership on every request.
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        match m.current_leader {
            Some(l) if l == self.id && m.state == ServerState::Leader => {
                if super::leadership::quorum_lost(&m, self.config.election) {
                    Leader::Isolated
                } else {
                    Leader::Me
                }
            }
            Some(l) => match m
                .membership_config
                .membership()
                .get_node(&l)
                .and_then(|n| n.peer_urls.first())
            {
                Some(url) => Leader::Remote(l, url.clone()),
                None => Leader::Unknown,
            },
            None => Leader::Unknown,
        }
    }

    pub fn leader_id(&self) -> Option<NodeId> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        // A leader cut off from its quorum knows of no leader, as etcd's stepped-down one.
        if m.state == ServerState::Leader
            && super::leadership::quorum_lost(&m, self.config.election)
        {
            return None;
        }
        m.current_leader
    }

    /// Returns once `leadership` changes to a state where `holds` is false: the leader
    /// changed (or a new election began), or this member stopped leading. Only a change
    /// counts, as the published state may lag the Raft metrics the caller acted on. It wakes
    /// only on such changes, so however many requests wait on it, load costs nothing here.
    async fn leadership_ends(&self, holds: impl Fn(&Leadership) -> bool) {
        let mut rx = self.leadership.subscribe();
        loop {
            if rx.changed().await.is_err() {
                // The member is going down, and the request with it.
                return std::future::pending::<()>().await;
            }
            if !holds(&rx.borrow_and_update()) {
                return;
            }
        }
    }

    /// Runs `local` if this member leads, or sends `call` to the leader; retries while there
    /// is no leader or the leader moved, until the request timeout. An attempt that may have
    /// taken effect is retried only when `idempotent`: a proposal that might have been
    /// applied is reported, never applied twice.
    pub(super) async fn on_leader<T, F, Fut>(
        &self,
        call: PeerCall,
        idempotent: bool,
        local: F,
        unpack: fn(PeerReply) -> Result<T, KvError>,
    ) -> Result<T, KvError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, Retry>>,
    {
        let deadline = Instant::now() + self.config.request_timeout();
        let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(200));
        loop {
            match self.leader() {
                Leader::Me => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let attempt = tokio::time::timeout(left, local());
                    // A leader cut off from its quorum with the request pending does not
                    // keep the client waiting for the timeout: the outcome is unknown, as
                    // etcd reports it after a leader failure. (A leader that hands over
                    // still completes its pending writes as they apply.)
                    let outcome = tokio::select! {
                        r = attempt => r,
                        () = self.leadership_ends(|l| !l.isolated) => {
                            if idempotent {
                                continue;
                            }
                            return Err(KvError::TimeoutDueToLeaderFail);
                        }
                    };
                    match outcome {
                        Ok(Ok(v)) => return Ok(v),
                        Ok(Err(Retry::Again)) => {}
                        Ok(Err(Retry::Fail(e))) => return Err(e),
                        // Still pending on a leader that may have lost its quorum: the
                        // outcome is unknown, as etcd reports it.
                        Err(_) => return Err(KvError::Timeout),
                    }
                }
                Leader::Remote(id, url) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let sent = self
                        .peers
                        .call(&url, &call, left.max(Duration::from_millis(100)));
                    // A call to a leader that the cluster replaced meanwhile (cut off, most
                    // likely) is not waited out: after a short grace the client hears, and
                    // can go on.
                    let grace = self.config.heartbeat * REPLACED_LEADER_GRACE_HEARTBEATS;
                    let replaced = async {
                        self.leadership_ends(|l| l.leader == Some(id)).await;
                        tokio::time::sleep(grace).await;
                    };
                    let reply = tokio::select! {
                        r = sent => r,
                        () = replaced => Err(CallError::Ambiguous(
                            "the leader changed while the call was in flight".into(),
                        )),
                    };
                    match reply {
                        Ok(PeerReply::Error(KvError::NotLeader | KvError::NoLeader)) => {}
                        Ok(reply) => return unpack(reply),
                        Err(CallError::NotSent(_)) => {}
                        Err(CallError::Ambiguous(_)) if idempotent => {}
                        Err(CallError::Ambiguous(_)) => {
                            return Err(KvError::TimeoutDueToLeaderFail)
                        }
                        Err(CallError::Timeout) => return Err(KvError::Timeout),
                    }
                }
                // Cut off from the quorum: a client does better trying another member now.
                Leader::Isolated => return Err(KvError::NoLeader),
                Leader::Unknown => {}
            }
            let wait = backoff.next_delay();
            if Instant::now() + wait >= deadline {
                return Err(if self.leader_id().is_none() {
                    KvError::NoLeader
                } else {
                    KvError::Timeout
                });
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Who sent a request (etcd's `AuthInfoFromCtx`): the user of its `token` metadata,
    /// else the common name of its verified TLS client certificate, else nobody. A token is
    /// checked whether auth is enabled or not, as etcd does ("invalid auth token"); one
    /// issued by a log entry this member has not applied yet is waited for, up to the
    /// request timeout.
    pub async fn caller(
        &self,
        meta: &tonic::metadata::MetadataMap,
        identity: Option<&ClientIdentity>,
    ) -> Result<Option<String>, KvError> {
        // etcd's gRPC key, then the one its HTTP gateway uses.
        let Some(value) = meta.get("token").or_else(|| meta.get("authorization")) else {
            return Ok(identity.and_then(|i| i.common_name.clone()));
        };
        let token = value.to_str().map_err(|_| KvError::InvalidAuthToken)?;
        let tokens = &self.store.tokens;
        match tokens.lookup(token, Instant::now()) {
            Lookup::User(user) => return Ok(Some(user)),
            Lookup::Unknown { index } if index > self.store.applied_index() => {
                self.raft
                    .wait(Some(self.config.request_timeout()))
                    .applied_index_at_least(Some(index), "auth token")
                    .await
                    .map_err(|_| KvError::InvalidAuthToken)?;
            }
            Lookup::Unknown { .. } | Lookup::Invalid => return Err(KvError::InvalidAuthToken),
        }
        match tokens.lookup(token, Instant::now()) {
            Lookup::User(user) => Ok(Some(user)),
            _ => Err(KvError::InvalidAuthToken),
        }
    }

    /// The caller of a unary request (see `caller`).
    pub async fn caller_of<T>(&self, req: &tonic::Request<T>) -> Result<Option<String>, KvError> {
        self.caller(req.metadata(), req.extensions().get::<ClientIdentity>())
            .await
    }

    /// Checks `needs` for `user` against the auth store as applied here. A refusal is
    /// confirmed after a read barrier, so a grant committed before the request (possibly
    /// through another member) is not refused for this member's lag; when no barrier can
    /// be had (no leader), the refusal stands.
    pub async fn authorize(&self, user: Option<&str>, needs: &[Need<'_>]) -> Result<(), KvError> {
        match self.store.check_auth(user, needs) {
            Err(KvError::Storage(f)) => Err(KvError::Storage(f)),
            Err(refusal) => match self.read_barrier().await {
                Ok(()) => self.store.check_auth(user, needs),
                Err(_) => Err(refusal),
            },
            ok => ok,
        }
    }

    /// Proposes a client's command once `user` may (see `authorize`), tagged with the user
    /// so that the state machine checks it again as of the entry it applies.
    pub async fn propose_as(&self, user: Option<String>, cmd: Command) -> Result<Applied, KvError> {
        self.authorize(user.as_deref(), &cmd.auth_needs()).await?;
        let cmd = Command::AsUser {
            user,
            cmd: Box::new(cmd),
        };
        self.propose(cmd).await
    }

    /// Replicates a command and returns what applying it produced.
    pub async fn propose(&self, cmd: Command) -> Result<Applied, KvError> {
        // Checked where the request arrives, as etcd does, and again on the leader for a
        // forwarded one (`propose_as_leader`).
        self.check_apply_gap(&cmd)?;
        self.on_leader(
            PeerCall::Propose(cmd.clone()),
            false,
            || self.propose_local(cmd.clone()),
            |r| match r {
                PeerReply::Applied(a) => Ok(a),
                PeerReply::Error(e) => Err(e),
                other => Err(unexpected(other)),
            },
        )
        .await
    }

    async fn propose_local(&self, cmd: Command) -> Result<Applied, Retry> {
        let size = cmd.size_hint();
        self.proposer.propose(cmd, size).await
    }

    /// etcd's "too many requests": refuses a proposal while this member's applied index
    /// lags its committed index by more than `proposer::MAX_APPLY_GAP` entries.
    fn check_apply_gap(&self, cmd: &Command) -> Result<(), KvError> {
        let committed = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            m.local_committed.map_or(0, |l| l.index)
        };
        let applied = self.store.applied_index();
        if super::proposer::exceeds_request_limit(
            applied,
            committed,
            super::proposer::is_priority(cmd),
        ) {
            // Once a second at most: under overload this refuses thousands a second.
            static LAST_WARNED: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
            let mut last = LAST_WARNED.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                *last = Some(Instant::now());
                warn!(
                    applied,
                    committed,
                    command = %cmd,
                    "refusing proposals (too many requests): applying is too far behind the log"
                );
            }
            return Err(KvError::TooManyRequests);
        }
        Ok(())
    }

    /// Serves a proposal forwarded by a follower (no further forwarding).
    pub async fn propose_as_leader(&self, cmd: Command) -> PeerReply {
        if let Err(e) = self.check_apply_gap(&cmd) {
            return PeerReply::Error(e);
        }
        match self.propose_local(cmd).await {
            Ok(a) => PeerReply::Applied(a),
            Err(Retry::Again) => PeerReply::Error(KvError::NotLeader),
            Err(Retry::Fail(e)) => PeerReply::Error(e),
        }
    }

    /// Confirms leadership with a quorum (one round for all concurrent callers, see
    /// `read_index.rs`); returns the log index a read must see.
    pub async fn read_index_as_leader(&self) -> Result<u64, Retry> {
        self.reads.read_index().await
    }

    /// The linearizable-read barrier: after it returns, this member's state machine has
    /// applied everything committed before the call began.
    pub async fn read_barrier(&self) -> Result<(), KvError> {
        let index = self
            .on_leader(
                PeerCall::ReadIndex,
                true,
                || self.read_index_as_leader(),
                |r| match r {
                    PeerReply::ReadIndex(i) => Ok(i),
                    PeerReply::Error(e) => Err(e),
                    other => Err(unexpected(other)),
                },
            )
            .await?;
        if self.store.applied_index() >= index {
            return Ok(());
        }
        self.raft
            .wait(Some(self.config.request_timeout()))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map(|_| ())
            .map_err(|_| KvError::Timeout)
    }

    /// Lease calls only the leader can answer: it alone keeps the deadlines. It first
    /// confirms with a quorum that it still leads and has applied everything committed
    /// (etcd's `ensureLeadership`), so a leader cut off from the cluster never renews a
    /// lease that the new leader is about to expire.
    pub async fn lease_local(&self, call: &PeerCall) -> Result<PeerReply, Retry> {
        if !self.store.lessor.is_leader() {
            return Err(Retry::Again);
        }
        self.read_index_as_leader().await?;
        match call {
            PeerCall::LeaseKeepAlive { id } => {
                Ok(PeerReply::KeepAlive(self.store.lessor.keep_alive(*id)))
            }
            PeerCall::LeaseTimeToLive { id } => {
                Ok(PeerReply::TimeToLive(self.store.lessor.remaining(*id)))
            }
            other => Err(Retry::Fail(unexpected_call(other.clone()))),
        }
    }

    async fn lease_call(&self, call: PeerCall) -> Result<PeerReply, KvError> {
        self.on_leader(
            call.clone(),
            true,
            || self.lease_local(&call),
            |r| match r {
                PeerReply::Error(e) => Err(e),
                other => Ok(other),
            },
        )
        .await
    }

    /// Renews a lease; `None` when it does not exist.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<Option<i64>, KvError> {
        match self.lease_call(PeerCall::LeaseKeepAlive { id }).await? {
            PeerReply::KeepAlive(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }

    /// (granted TTL, remaining seconds) of a lease; `None` when it does not exist.
    pub async fn lease_time_to_live(&self, id: i64) -> Result<Option<(i64, i64)>, KvError> {
        match self.lease_call(PeerCall::LeaseTimeToLive { id }).await? {
            PeerReply::TimeToLive(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }

    /// Membership as applied here, with each member's published name and client URLs.
    pub fn cluster_info(&self) -> ClusterInfo {
        let st = self.store.state();
        let m = st.membership.membership();
        let voters: BTreeSet<NodeId> = m.voter_ids().collect();
        let members = m
            .nodes()
            .map(|(id, node)| {
                let attrs = st.members.get(id).cloned().unwrap_or_default();
                MemberInfo {
                    id: *id,
                    name: attrs.name,
                    peer_urls: node.peer_urls.clone(),
                    client_urls: attrs.client_urls,
                    learner: !voters.contains(id),
                }
            })
            .collect();
        ClusterInfo {
            cluster_id: self.cluster_id,
            leader: self.leader_id(),
            members,
        }
    }

    /// Publishes this member's name and client URLs once a leader accepts it.
    pub async fn publish_self(self: Arc<Self>) {
        let attrs = MemberAttrs {
            name: self.config.name.clone(),
            client_urls: self.config.advertise_client_urls.clone(),
        };
        loop {
            if self.store.state().members.get(&self.id) == Some(&attrs) {
                return;
            }
            let cmd = Command::PublishMember {
                id: self.id,
                name: attrs.name.clone(),
                client_urls: attrs.client_urls.clone(),
            };
            match self.propose(cmd).await {
                Ok(_) => return,
                Err(KvError::Stopped) => return,
                Err(e) => {
                    warn!(error = %e, "publishing member attributes failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// The outcome of one attempt on the leader.
pub enum Retry {
    /// Not (or no longer) the leader: look for the leader again.
    Again,
    Fail(KvError),
}

/// What a failed write through Raft (`what`) means for the caller.
pub fn retry_for_write(
    e: &RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
    what: &str,
) -> Retry {
    match e {
        RaftError::Fatal(f) => {
            // Raft stopped on a storage error: the member stops rather than keep answering
            // "server stopped" to writes while it serves reads.
            crate::fatal::on_raft_fatal(f);
            Retry::Fail(KvError::Stopped)
        }
        // Refused before it entered the log: safe to send to the leader, wherever it is.
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => Retry::Again,
        // In the log of a leader that lost its term: it may or may not commit.
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => {
            Retry::Fail(KvError::TimeoutDueToLeaderFail)
        }
        RaftError::APIError(e) => Retry::Fail(KvError::Internal(format!("{what}: {e}"))),
    }
}

fn unexpected(reply: PeerReply) -> KvError {
    KvError::Internal(format!("unexpected peer reply {reply:?}"))
}

pub(super) fn unexpected_call(call: PeerCall) -> KvError {
    KvError::Internal(format!("unexpected peer call {call:?}"))
}
