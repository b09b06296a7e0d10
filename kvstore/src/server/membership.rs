//! Membership changes (etcd's MemberAdd, MemberRemove, MemberPromote, MemberUpdate): run
//! on the leader through `Node`'s forwarding, as openraft learner and joint-consensus
//! changes, with etcd's checks and errors.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use tracing::info;

use super::node::{retry_for_write, unexpected_call, Node, Retry};
use crate::error::KvError;
use crate::raft::calls::{PeerCall, PeerReply};
use crate::raft::types::{Member, NodeId, TypeConfig};

impl Node {
    /// Runs a membership change on the leader.
    pub async fn change_members(&self, call: PeerCall) -> Result<PeerReply, KvError> {
        self.on_leader(
            call.clone(),
            false,
            || self.change_members_local(call.clone()),
            |r| match r {
                PeerReply::Error(e) => Err(e),
                other => Ok(other),
            },
        )
        .await
    }

    pub async fn change_members_local(&self, call: PeerCall) -> Result<PeerReply, Retry> {
        let info = self.cluster_info();
        let find = |id: NodeId| info.members.iter().find(|m| m.id == id).cloned();
        let fail = |e: KvError| Retry::Fail(e);
        match call {
            PeerCall::MemberAdd { peer_urls, learner } => {
                if peer_urls.is_empty()
                    || peer_urls
                        .iter()
                        .any(|u| crate::config::parse_url(u).is_err())
                {
                    return Err(fail(KvError::MemberBadUrls));
                }
                if info
                    .members
                    .iter()
                    .any(|m| m.peer_urls.iter().any(|u| peer_urls.contains(u)))
                {
                    return Err(fail(KvError::PeerUrlExists));
                }
                let id = loop {
                    let id = rand::random::<u64>();
                    if id != 0 && find(id).is_none() {
                        break id;
                    }
                };
                let node = Member { peer_urls };
                self.raft
                    .add_learner(id, node, false)
                    .await
                    .map_err(map_change_err)?;
                if !learner {
                    // The learner is in the cluster now: a failure here is reported, never
                    // retried as a whole (that would add the member twice).
                    self.raft
                        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                        .await
                        .map_err(|e| {
                            Retry::Fail(KvError::Internal(format!(
                                "member {id:x} was added as a learner but not made a voter ({e}); promote it with MemberPromote"
                            )))
                        })?;
                }
                info!(member = %format!("{id:x}"), learner, "member added");
                Ok(PeerReply::MemberId(id))
            }
            PeerCall::MemberRemove { id } => {
                let m = find(id).ok_or(fail(KvError::MemberNotFound))?;
                // `retain = false`: a removed voter leaves the membership altogether.
                let change = if m.learner {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                } else {
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                };
                self.raft
                    .change_membership(change, false)
                    .await
                    .map_err(map_change_err)?;
                info!(member = %format!("{id:x}"), "member removed");
                // Tell the removed member, which may never see the entry that removed it,
                // so it stops as an etcd member does. Best effort.
                if let Some(url) = m.peer_urls.first().cloned() {
                    let (peers, cluster_id) = (self.peers.clone(), self.cluster_id);
                    tokio::spawn(async move {
                        let call = PeerCall::Removed { cluster_id, id };
                        let _ = peers.call(&url, &call, Duration::from_secs(2)).await;
                    });
                }
                Ok(PeerReply::Done)
            }
            PeerCall::MemberPromote { id } => {
                let m = find(id).ok_or(fail(KvError::MemberNotFound))?;
                if !m.learner {
                    return Err(fail(KvError::MemberNotLearner));
                }
                if !self.learner_ready(id) {
                    return Err(fail(KvError::LearnerNotReady));
                }
                self.raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map_err(map_change_err)?;
                info!(member = %format!("{id:x}"), "member promoted");
                Ok(PeerReply::Done)
            }
            PeerCall::MemberUpdate { id, peer_urls } => {
                find(id).ok_or(fail(KvError::MemberNotFound))?;
                if peer_urls.is_empty()
                    || peer_urls
                        .iter()
                        .any(|u| crate::config::parse_url(u).is_err())
                {
                    return Err(fail(KvError::MemberBadUrls));
                }
                self.raft
                    .change_membership(
                        ChangeMembers::SetNodes(BTreeMap::from([(id, Member { peer_urls })])),
                        false,
                    )
                    .await
                    .map_err(map_change_err)?;
                Ok(PeerReply::Done)
            }
            other => Err(fail(unexpected_call(other))),
        }
    }

    /// etcd's rule: a learner may be promoted once it has 90% of the leader's log.
    fn learner_ready(&self, id: NodeId) -> bool {
        let m = self.raft.metrics().borrow_watched().clone();
        let last = m.last_log_index.unwrap_or(0);
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten())
            .map_or(0, |l| l.index);
        matched as f64 >= last as f64 * 0.9
    }
}

fn map_change_err(e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> Retry {
    retry_for_write(&e, "membership change")
}
