//! Corruption checks, as etcd's `--experimental-initial-corrupt-check` and
//! `--experimental-corrupt-check-time` (etcd's `etcdserver/corrupt.go`).
//!
//! Contract:
//! - Start-up check ([`initial_check`]): before a member that has applied anything serves
//!   peers or clients, it asks every other member for HashKV at its own current revision.
//!   A peer whose hash differs *with the same compact revision* is a mismatch, and the
//!   member refuses to start ([`CorruptError::Inconsistent`], naming the peers). A peer
//!   that cannot answer (down, behind, compacted past that revision, another compact
//!   revision) is logged and skipped, as etcd does: the check never blocks a start on an
//!   unreachable peer.
//! - Periodic check ([`monitor`]): every interval, the leader hashes its state at its
//!   revision, asks its peers for HashKV at that revision, confirms its reads are current
//!   (a read barrier) and hashes again. It finds a member corrupt when its own hash changed
//!   at the same revision, when a peer is ahead of it (revision or compact revision), or
//!   when a peer with the same compact revision has another hash ([`periodic_findings`]),
//!   and raises etcd's CORRUPT alarm for each such member through the log. While CORRUPT
//!   is active every member refuses writes, compaction and lease grants and revocations
//!   with "etcdserver: corrupt cluster" (`storage::state_machine::apply`); reads are still
//!   served, and the alarm is cleared with `etcdctl alarm disarm`.
//!
//! Peers answer over the peer service (`PeerCall::HashKv` through the `Call` RPC), so the
//! request passes the same cluster-ID check, size cap and bounded decoding as every other
//! peer message, and the client port is never involved.
//!
//! The comparisons are pure functions over the answers ([`initial_findings`],
//! [`periodic_findings`]); the hashing, the peer calls and the alarm are at the edges.

use openraft::async_runtime::WatchReceiver;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use tracing::{info, warn, Instrument};

use super::node::Node;
use crate::error::KvError;
use crate::raft::calls::{MemberHash, PeerCall, PeerReply};
use crate::raft::network::Peers;
use crate::raft::types::{Command, NodeId};
use crate::storage::state_machine::{Store, ALARM_CORRUPT};

/// Why a peer gave no hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoHash {
    /// The peer has not reached the revision yet (etcd: "cannot fetch hash from slow
    /// remote peer").
    PeerBehind,
    /// The peer compacted past the revision (etcd: "local member is behind").
    Compacted,
    /// No answer: down, unreachable, timed out, or another error.
    Failed(String),
}

/// What one peer answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAnswer {
    pub peer: NodeId,
    pub hash: Result<MemberHash, NoHash>,
}

/// What the start-up check found about one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitialFinding {
    /// Same compact revision, another hash: the data differ.
    Mismatch {
        peer: MemberHash,
    },
    /// Another hash, but another compact revision too: not comparable.
    CompactRevisionDiffers {
        peer: MemberHash,
    },
    Agrees {
        peer: NodeId,
    },
    NotChecked {
        peer: NodeId,
        why: NoHash,
    },
}

/// The start-up comparison (etcd's `InitialCheck`): `local` is this member's hash at its
/// current revision, `answers` the peers' hashes at that revision.
pub fn initial_findings(local: &MemberHash, answers: &[PeerAnswer]) -> Vec<InitialFinding> {
    answers
        .iter()
        .map(|a| match &a.hash {
            Ok(p) if p.hash == local.hash => InitialFinding::Agrees { peer: a.peer },
            Ok(p) if p.compact_revision == local.compact_revision => {
                InitialFinding::Mismatch { peer: *p }
            }
            Ok(p) => InitialFinding::CompactRevisionDiffers { peer: *p },
            Err(why) => InitialFinding::NotChecked {
                peer: a.peer,
                why: why.clone(),
            },
        })
        .collect()
}

/// Why the periodic check found a member corrupt (etcd's messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorruptReason {
    /// The leader's own hash changed between two reads at the same revision.
    #[error("found hash mismatch: hash {first} then {second} at revision {revision}, compact revision {compact_revision}")]
    LocalHashChanged {
        first: u32,
        second: u32,
        revision: i64,
        compact_revision: i64,
    },
    #[error("revision from follower must be less than or equal to leader's: follower {follower}, leader {leader}")]
    RevisionAhead { follower: i64, leader: i64 },
    #[error("compact revision from follower must be less than or equal to leader's: follower {follower}, leader {leader}")]
    CompactRevisionAhead { follower: i64, leader: i64 },
    #[error("same compact revision then hashes must match: follower hash {follower}, leader hash {leader} at revision {revision}, compact revision {compact_revision}")]
    HashDiffers {
        follower: u32,
        leader: u32,
        revision: i64,
        compact_revision: i64,
    },
}

/// A member the periodic check found corrupt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    pub member: NodeId,
    pub reason: CorruptReason,
}

/// The leader's comparison (etcd's `PeriodicCheck`): `first` is its hash before asking
/// the peers, `second` after the read barrier; `answers` were asked at `first`'s revision.
/// A member appears once, with the first reason found.
pub fn periodic_findings(
    me: NodeId,
    first: &MemberHash,
    second: &MemberHash,
    answers: &[PeerAnswer],
) -> Vec<Corruption> {
    let mut out: Vec<Corruption> = Vec::new();
    let mut found = |member: NodeId, reason: CorruptReason| {
        if !out.iter().any(|c| c.member == member) {
            out.push(Corruption { member, reason });
        }
    };
    if second.hash != first.hash
        && second.hash_revision == first.hash_revision
        && second.compact_revision == first.compact_revision
    {
        found(
            me,
            CorruptReason::LocalHashChanged {
                first: first.hash,
                second: second.hash,
                revision: first.hash_revision,
                compact_revision: first.compact_revision,
            },
        );
    }
    for a in answers {
        let Ok(p) = &a.hash else { continue };
        if p.revision > second.revision {
            found(
                a.peer,
                CorruptReason::RevisionAhead {
                    follower: p.revision,
                    leader: second.revision,
                },
            );
        }
        if p.compact_revision > second.compact_revision {
            found(
                a.peer,
                CorruptReason::CompactRevisionAhead {
                    follower: p.compact_revision,
                    leader: second.compact_revision,
                },
            );
        }
        if p.compact_revision == first.compact_revision && p.hash != first.hash {
            found(
                a.peer,
                CorruptReason::HashDiffers {
                    follower: p.hash,
                    leader: first.hash,
                    revision: first.hash_revision,
                    compact_revision: first.compact_revision,
                },
            );
        }
    }
    out
}

/// Why a member refused to start, or a check could not run.
#[derive(Debug, thiserror::Error)]
pub enum CorruptError {
    #[error("{member:x} failed to fetch hash ({cause})")]
    LocalHash { member: NodeId, cause: KvError },
    /// etcd's "found data inconsistency with peers", with each mismatching peer named.
    #[error("{member:x} found data inconsistency with peers: {}; refusing to start", describe(.mismatches, .local))]
    Inconsistent {
        member: NodeId,
        local: MemberHash,
        mismatches: Vec<MemberHash>,
    },
}

fn describe(mismatches: &[MemberHash], local: &MemberHash) -> String {
    mismatches
        .iter()
        .map(|p| {
            format!(
                "peer {:x} has hash {} at revision {} (compact revision {}), this member {}",
                p.member_id, p.hash, p.hash_revision, p.compact_revision, local.hash
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// This member's HashKV at `revision` (`<= 0`: its current revision), as etcd's
/// `HashByRev`. Reads the whole retained history: call it off the async threads.
pub fn hash_at(store: &Store, me: NodeId, revision: i64) -> Result<MemberHash, KvError> {
    let (view, revs) = store.read_view();
    let rev = revs.check_read(revision)?;
    let hash = view.hash(revs.compacted, rev)?;
    Ok(MemberHash {
        member_id: me,
        hash,
        hash_revision: rev,
        compact_revision: revs.compacted,
        revision: revs.current,
    })
}

/// `hash_at` on a blocking thread.
pub async fn hash_at_blocking(
    store: Arc<Store>,
    me: NodeId,
    revision: i64,
) -> Result<MemberHash, KvError> {
    tokio::task::spawn_blocking(move || hash_at(&store, me, revision))
        .await
        .map_err(KvError::internal)?
}

/// Asks each `(member, peer URLs)` for HashKV at `revision`, all at once; each member's
/// URLs in turn until one answers (etcd's `getPeerHashKVs`).
async fn peer_hashes(
    peers: &Peers,
    members: &[(NodeId, Vec<String>)],
    revision: i64,
    timeout: Duration,
) -> Vec<PeerAnswer> {
    let asks = members.iter().map(|(id, urls)| async move {
        let mut why = NoHash::Failed("no peer URL".into());
        for url in urls {
            let call = PeerCall::HashKv { revision };
            why = match peers.call(url, &call, timeout).await {
                Ok(PeerReply::HashKv(h)) if h.member_id == *id => {
                    return PeerAnswer {
                        peer: *id,
                        hash: Ok(h),
                    }
                }
                Ok(PeerReply::HashKv(h)) => NoHash::Failed(format!(
                    "{url} answered as member {:x}, expected {id:x}",
                    h.member_id
                )),
                Ok(PeerReply::Error(KvError::FutureRevision)) => NoHash::PeerBehind,
                Ok(PeerReply::Error(KvError::Compacted { .. })) => NoHash::Compacted,
                Ok(PeerReply::Error(e)) => NoHash::Failed(format!("{url}: {e}")),
                Ok(other) => NoHash::Failed(format!("{url}: unexpected reply {other:?}")),
                Err(e) => NoHash::Failed(e.to_string()),
            };
            warn!(remote_peer_id = %format!("{id:x}"), remote_peer_endpoint = %url, requested_revision = revision, error = ?why, "failed hash kv request");
        }
        PeerAnswer {
            peer: *id,
            hash: Err(why),
        }
    });
    futures::future::join_all(asks).await
}

/// The start-up check: compares this member's HashKV with every other member's of
/// `members` at this member's current revision, and refuses to start on a mismatch. A
/// member that has applied nothing skips it (etcd: a new member needs no check).
pub async fn initial_check(
    store: &Arc<Store>,
    peers: &Peers,
    me: NodeId,
    members: Vec<(NodeId, Vec<String>)>,
    timeout: Duration,
) -> Result<(), CorruptError> {
    let span = tracing::info_span!("initial_corrupt_check", local_member_id = %format!("{me:x}"));
    async move {
        if store.state().applied.is_none() {
            info!("skipping the initial corruption check: this member has applied nothing yet");
            return Ok(());
        }
        info!(?timeout, "starting initial corruption check");
        let local = hash_at_blocking(store.clone(), me, 0)
            .await
            .map_err(|cause| CorruptError::LocalHash { member: me, cause })?;
        let others: Vec<_> = members.into_iter().filter(|(id, _)| *id != me).collect();
        let answers = peer_hashes(peers, &others, local.hash_revision, timeout).await;
        let mut mismatches = Vec::new();
        for finding in initial_findings(&local, &answers) {
            match finding {
                InitialFinding::Mismatch { peer } => {
                    warn!(local_member_revision = local.hash_revision, local_member_compact_revision = local.compact_revision, local_member_hash = local.hash,
                        remote_peer_id = %format!("{:x}", peer.member_id), remote_peer_revision = peer.revision,
                        remote_peer_compact_revision = peer.compact_revision, remote_peer_hash = peer.hash,
                        "found different hash values from remote peer");
                    mismatches.push(peer);
                }
                InitialFinding::CompactRevisionDiffers { peer } => {
                    warn!(local_member_revision = local.hash_revision, local_member_compact_revision = local.compact_revision,
                        remote_peer_id = %format!("{:x}", peer.member_id), remote_peer_compact_revision = peer.compact_revision,
                        "found different compact revision values from remote peer");
                }
                InitialFinding::Agrees { .. } => {}
                InitialFinding::NotChecked { peer, why } => {
                    let peer = format!("{peer:x}");
                    match why {
                        NoHash::PeerBehind => warn!(remote_peer_id = %peer, local_member_revision = local.hash_revision, "cannot fetch hash from slow remote peer"),
                        NoHash::Compacted => warn!(remote_peer_id = %peer, local_member_revision = local.hash_revision, "cannot fetch hash from remote peer; local member is behind"),
                        NoHash::Failed(e) => warn!(remote_peer_id = %peer, error = %e, "cannot check the hash of a peer that does not answer"),
                    }
                }
            }
        }
        if !mismatches.is_empty() {
            return Err(CorruptError::Inconsistent {
                member: me,
                local,
                mismatches,
            });
        }
        info!("initial corruption checking passed; no corruption");
        Ok(())
    }
    .instrument(span)
    .await
}

/// The periodic check's loop: every `every`, if this member leads, one check.
pub async fn monitor(node: Arc<Node>, every: Duration) {
    info!(local_member_id = %format!("{:x}", node.id), interval = ?every, "enabled corruption checking");
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate
    loop {
        tick.tick().await;
        if node.raft.metrics().borrow_watched().state != ServerState::Leader {
            continue;
        }
        if let Err(e) = periodic_check(&node).await {
            warn!(error = %e, "failed to check hash KV");
        }
    }
}

/// One periodic check on the leader; raises CORRUPT for every member found corrupt.
#[tracing::instrument(skip_all, fields(local_member_id = %format!("{:x}", node.id), revision = tracing::field::Empty))]
pub async fn periodic_check(node: &Node) -> Result<Vec<Corruption>, KvError> {
    let first = hash_at_blocking(node.store.clone(), node.id, 0).await?;
    tracing::Span::current().record("revision", first.hash_revision);
    let members: Vec<(NodeId, Vec<String>)> = node
        .cluster_info()
        .members
        .into_iter()
        .filter(|m| m.id != node.id)
        .map(|m| (m.id, m.peer_urls))
        .collect();
    let timeout = node.config.request_timeout();
    let answers = peer_hashes(&node.peers, &members, first.hash_revision, timeout).await;
    node.read_barrier().await?;
    let second = hash_at_blocking(node.store.clone(), node.id, 0).await?;
    let found = periodic_findings(node.id, &first, &second, &answers);
    let checked = answers.iter().filter(|a| a.hash.is_ok()).count();
    info!(
        number_of_peers_checked = checked,
        "finished peer corruption check"
    );
    for c in &found {
        warn!(member = %format!("{:x}", c.member), reason = %c.reason, "data corruption found; raising the CORRUPT alarm");
        let active = node
            .store
            .state()
            .alarms
            .contains(&(c.member, ALARM_CORRUPT));
        if !active {
            node.propose(Command::Alarm {
                action: 1,
                member_id: c.member,
                alarm: ALARM_CORRUPT,
            })
            .await?;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(member_id: NodeId, hash: u32, rev: i64, compacted: i64) -> MemberHash {
        MemberHash {
            member_id,
            hash,
            hash_revision: rev,
            compact_revision: compacted,
            revision: rev,
        }
    }

    fn answer(h: MemberHash) -> PeerAnswer {
        PeerAnswer {
            peer: h.member_id,
            hash: Ok(h),
        }
    }

    #[test]
    fn at_start_only_a_different_hash_with_the_same_compact_revision_is_a_mismatch() {
        let local = hash(1, 100, 20, 5);
        let answers = [
            answer(hash(2, 100, 20, 5)),
            answer(hash(3, 999, 20, 5)),
            answer(hash(4, 999, 20, 8)),
            PeerAnswer {
                peer: 5,
                hash: Err(NoHash::PeerBehind),
            },
            PeerAnswer {
                peer: 6,
                hash: Err(NoHash::Failed("connection refused".into())),
            },
        ];
        let found = initial_findings(&local, &answers);
        assert_eq!(
            found,
            vec![
                InitialFinding::Agrees { peer: 2 },
                InitialFinding::Mismatch {
                    peer: hash(3, 999, 20, 5)
                },
                InitialFinding::CompactRevisionDiffers {
                    peer: hash(4, 999, 20, 8)
                },
                InitialFinding::NotChecked {
                    peer: 5,
                    why: NoHash::PeerBehind
                },
                InitialFinding::NotChecked {
                    peer: 6,
                    why: NoHash::Failed("connection refused".into())
                },
            ]
        );
    }

    #[test]
    fn the_refusal_names_the_mismatching_peer() {
        let e = CorruptError::Inconsistent {
            member: 0xa1,
            local: hash(0xa1, 100, 20, 5),
            mismatches: vec![hash(0xb2, 999, 20, 5)],
        };
        let text = e.to_string();
        assert!(
            text.starts_with("a1 found data inconsistency with peers: peer b2 has hash 999"),
            "{text}"
        );
    }

    #[test]
    fn agreeing_followers_raise_nothing() {
        let leader = hash(1, 100, 20, 5);
        let answers = [
            answer(hash(2, 100, 20, 5)),
            PeerAnswer {
                peer: 3,
                hash: Err(NoHash::PeerBehind),
            },
        ];
        assert_eq!(periodic_findings(1, &leader, &leader, &answers), vec![]);
        // A follower that compacted less than the leader is not comparable, not corrupt.
        let answers = [answer(hash(2, 555, 20, 2))];
        assert_eq!(periodic_findings(1, &leader, &leader, &answers), vec![]);
    }

    #[test]
    fn a_follower_with_another_hash_at_the_same_compact_revision_is_corrupt() {
        let leader = hash(1, 100, 20, 5);
        let answers = [answer(hash(2, 100, 20, 5)), answer(hash(3, 7, 20, 5))];
        assert_eq!(
            periodic_findings(1, &leader, &leader, &answers),
            vec![Corruption {
                member: 3,
                reason: CorruptReason::HashDiffers {
                    follower: 7,
                    leader: 100,
                    revision: 20,
                    compact_revision: 5
                }
            }]
        );
    }

    #[test]
    fn a_follower_ahead_of_the_leader_is_corrupt_once() {
        let first = hash(1, 100, 20, 5);
        let second = hash(1, 120, 22, 5);
        let mut ahead = hash(2, 100, 20, 9);
        ahead.revision = 30;
        let found = periodic_findings(1, &first, &second, &[answer(ahead)]);
        assert_eq!(
            found,
            vec![Corruption {
                member: 2,
                reason: CorruptReason::RevisionAhead {
                    follower: 30,
                    leader: 22
                }
            }]
        );
        let mut compacted_ahead = hash(2, 100, 20, 9);
        compacted_ahead.revision = 21;
        let found = periodic_findings(1, &first, &second, &[answer(compacted_ahead)]);
        assert_eq!(
            found[0].reason,
            CorruptReason::CompactRevisionAhead {
                follower: 9,
                leader: 5
            }
        );
    }

    #[test]
    fn the_leader_whose_own_hash_changed_at_the_same_revision_is_corrupt() {
        let first = hash(1, 100, 20, 5);
        let second = hash(1, 101, 20, 5);
        let found = periodic_findings(1, &first, &second, &[]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].member, 1);
        assert!(found[0]
            .reason
            .to_string()
            .starts_with("found hash mismatch"));
        // Writes in between (a new revision) are not a change of the same state.
        assert_eq!(
            periodic_findings(1, &first, &hash(1, 101, 21, 5), &[]),
            vec![]
        );
    }
}
