//! Who leads, as the services must see it, and handing leadership over.
//!
//! openraft keeps a leader that has lost its quorum in the `Leader` state: it stops taking
//! writes once its lease (`election_timeout_max` since the last quorum acknowledgement)
//! runs out, but it does not step down. etcd's CheckQuorum makes such a leader a follower,
//! so its clients get "no leader" and go elsewhere at once, and its lessor stops granting
//! keep-alives. Here a leader without a quorum acknowledgement for an election timeout is
//! treated as not leading (`quorum_lost`): requests are refused with `NoLeader` and the
//! lessor is demoted until a quorum answers again.
//!
//! Handing over: `transfer` is etcd's MoveLeader, and a leader that is asked to stop hands
//! leadership to its most caught-up voter first (`best_successor`), as etcd does on
//! SIGTERM, so a rolling restart costs no election timeout.

use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::{Instant as _, RaftMetrics, ServerState};
use tracing::info;

use super::node::{Leadership, Node};
use crate::error::KvError;
use crate::raft::types::{NodeId, TypeConfig};

/// Whether `m`, a leader's metrics, shows no quorum acknowledgement for `election`. A
/// leader that is the only voter is its own quorum: it hears from no one and loses nothing.
pub fn quorum_lost(m: &RaftMetrics<TypeConfig>, election: Duration) -> bool {
    m.state == ServerState::Leader
        && !sole_voter(m)
        && m.last_quorum_acked
            .as_ref()
            .is_some_and(|t| t.elapsed() > election)
}

/// Whether this member is the only voter of its membership.
fn sole_voter(m: &RaftMetrics<TypeConfig>) -> bool {
    let mut voters = m.membership_config.membership().voter_ids();
    voters.next() == Some(m.id) && voters.next().is_none()
}

/// Whether `m` shows this member leading with its quorum.
pub fn leads(m: &RaftMetrics<TypeConfig>, election: Duration) -> bool {
    m.state == ServerState::Leader && !quorum_lost(m, election)
}

/// Follows Raft's view of leadership: logs changes and arms or disarms lease expiry. Also
/// stops the member if Raft stopped on a storage error (`fatal::on_raft_fatal`), so it never
/// keeps serving what it can no longer keep up to date. Metrics change on every heartbeat a
/// quorum answers; when they stop changing, the check runs every heartbeat interval anyway,
/// which is how a leader cut off from its quorum is noticed.
pub async fn watch(node: Arc<Node>) {
    let mut metrics = node.raft.metrics();
    let election = node.config.election;
    let mut last = (None, false);
    loop {
        let (leader, term, leading, isolated) = {
            let m = metrics.borrow_watched();
            if let Err(f) = &m.running_state {
                crate::fatal::on_raft_fatal(f);
            }
            let leading = leads(&m, election);
            let isolated = m.state == ServerState::Leader && !leading;
            let leader = if isolated { None } else { m.current_leader };
            (leader, m.current_term, leading, isolated)
        };
        let now = Leadership { leader, isolated };
        node.leadership
            .send_if_modified(|l| std::mem::replace(l, now) != now);
        if (leader, leading) != last {
            if leader.is_some() && leader != last.0 {
                crate::metrics::global()
                    .leader_changes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            match leader {
                Some(l) => {
                    info!(leader = %format!("{l:x}"), term, this_member = leading, "leader changed")
                }
                None if last.1 => {
                    info!(term, "no leader: this member lost its quorum")
                }
                None => info!(term, "no leader"),
            }
            if leading && !last.1 {
                node.store.lessor.promote();
            } else if !leading && last.1 {
                node.store.lessor.demote();
            }
            last = (leader, leading);
        }
        match tokio::time::timeout(node.config.heartbeat, metrics.changed()).await {
            Ok(Ok(())) | Err(_) => {}
            Ok(Err(_)) => return,
        }
    }
}

/// etcd's MoveLeader: hands leadership from this member, which must lead, to the voter
/// `to`, and returns once `to` leads (or `timeout` passes).
///
/// The transferee first catches up to the log as it is when the call begins (etcd's raft
/// also waits for the transferee's log before it sends MsgTimeoutNow). Then openraft's
/// transfer stops this leader taking writes and tells `to` to campaign at once; `to` wins
/// without waiting out an election timeout, as its log is the longest. A transfer cannot
/// be called off: if `to` fails to win, the cluster elects a leader the ordinary way.
pub async fn transfer(node: &Node, to: NodeId, timeout: Duration) -> Result<(), KvError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let election = node.config.election;
    let mut metrics = node.raft.metrics();
    let target = {
        let m = metrics.borrow_watched();
        if !leads(&m, election) {
            return Err(KvError::NotLeader);
        }
        if !m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == to)
        {
            return Err(KvError::BadLeaderTransferee);
        }
        if to == node.id {
            return Ok(());
        }
        m.last_log_index.unwrap_or(0)
    };
    loop {
        let matched = {
            let m = metrics.borrow_watched();
            if m.state != ServerState::Leader {
                return Err(KvError::NotLeader);
            }
            m.replication
                .as_ref()
                .and_then(|r| r.get(&to).cloned().flatten())
                .map_or(0, |l| l.index)
        };
        if matched >= target {
            break;
        }
        match tokio::time::timeout_at(deadline, metrics.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(KvError::Stopped),
            Err(_) => return Err(KvError::TimeoutLeaderTransfer),
        }
    }
    info!(to = %format!("{to:x}"), log_index = target, "transferring leadership");
    node.raft
        .trigger()
        .transfer_leader(to)
        .await
        .map_err(|_| KvError::Stopped)?;
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    node.raft
        .wait(Some(left))
        .metrics(|m| m.current_leader == Some(to), "leader transfer")
        .await
        .map(|_| ())
        .map_err(|_| KvError::TimeoutLeaderTransfer)
}

/// The voter most worth handing leadership to when this leader stops: the one whose log
/// matches the most of this leader's (none in a cluster of one).
pub fn best_successor(node: &Node) -> Option<NodeId> {
    let m = node.raft.metrics();
    let m = m.borrow_watched();
    if m.state != ServerState::Leader {
        return None;
    }
    let replication = m.replication.as_ref()?;
    m.membership_config
        .membership()
        .voter_ids()
        .filter(|v| *v != node.id)
        .max_by_key(|v| replication.get(v).cloned().flatten().map(|l| l.index))
}

/// When this member leads, transfers leadership to its best successor before it stops;
/// gives up after a few election timeouts (the cluster then elects without it).
pub async fn hand_over(node: &Node) {
    let Some(to) = best_successor(node) else {
        return;
    };
    let timeout = node.config.election.saturating_mul(3);
    match transfer(node, to, timeout).await {
        Ok(()) => info!(to = %format!("{to:x}"), "handed leadership over before stopping"),
        Err(e) => {
            tracing::warn!(to = %format!("{to:x}"), error = %e, "could not hand leadership over before stopping")
        }
    }
}
