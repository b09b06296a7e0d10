//! Batching of proposals on the leader.
//!
//! One client write per log entry would cost an entry's encoding, append and apply, and a
//! round of responders, per write. Here the proposals that arrive while earlier ones are in
//! flight are gathered into one `Command::Batch` entry: one append, one replication round
//! and one apply for all of them. A lone proposal on an idle leader goes out at once,
//! unbatched. (openraft 0.10 no longer waits for the leader's fsync before replicating, and
//! the log's sync thread groups the fsyncs of concurrent appends.)
//!
//! Proposals wait for room in a byte budget (`MAX_PENDING_BYTES`) before they queue, so
//! however many clients write at once, what they pin in the write path is bounded.
//!
//! Here too is etcd's back-pressure rule that every proposal passes first
//! (`exceeds_request_limit`): a member whose applying lags its log by more than
//! `MAX_APPLY_GAP` entries refuses new proposals with "etcdserver: too many requests".

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::node::Retry;
use crate::error::KvError;
use crate::raft::types::{Applied, Command, Output, Raft};

/// Entries a leader has in flight at once; more proposals wait and join the next batch.
const MAX_IN_FLIGHT: usize = 4;
/// Upper bounds of one batch. A batch stops growing once it reaches `MAX_BATCH_BYTES`, so
/// an entry holds at most that plus one proposal (see `raft::wire` for why that matters).
const MAX_BATCH_COMMANDS: usize = 512;
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// etcd's `maxGapBetweenApplyAndCommitIndex`: a member that has committed more than this
/// many entries beyond what it has applied refuses new proposals with "etcdserver: too
/// many requests" instead of letting the log (and the memory of everything waiting on it)
/// grow while applying cannot keep up. A healthy member lags by tens of entries.
pub const MAX_APPLY_GAP: u64 = 5000;
/// The gap up to which a lease revocation is still accepted: revoking deletes keys and
/// relieves the pressure, so newer etcd (`exceedsRequestLimit`, `maxPriorityGap`) lets
/// `LeaseRevoke` through up to twice the normal gap.
pub const MAX_PRIORITY_APPLY_GAP: u64 = 2 * MAX_APPLY_GAP;

/// Whether a proposal must be refused because `committed` is too far ahead of `applied`
/// (etcd's `ci > ai + maxGapBetweenApplyAndCommitIndex`).
pub fn exceeds_request_limit(applied: u64, committed: u64, priority: bool) -> bool {
    let gap = committed.saturating_sub(applied);
    let limit = if priority {
        MAX_PRIORITY_APPLY_GAP
    } else {
        MAX_APPLY_GAP
    };
    gap > limit
}

/// Proposals that may use `MAX_PRIORITY_APPLY_GAP`: lease revocations (a client's, or an
/// expiry the leader decided), as etcd's `isPriorityRequest`.
pub fn is_priority(cmd: &Command) -> bool {
    match cmd {
        Command::LeaseRevoke { .. } => true,
        Command::AsUser { cmd, .. } => matches!(**cmd, Command::LeaseRevoke { .. }),
        _ => false,
    }
}

struct Pending {
    cmd: Command,
    size: usize,
    reply: oneshot::Sender<Result<Applied, Retry>>,
}

/// Bytes of proposals a member holds between their arrival and their reply (queued, in a
/// batch, in the log, being applied); a proposal beyond it waits for room. This bounds the
/// memory client load can pin in the write path, whatever the number of clients, and makes
/// them wait at the door rather than inside Raft.
const MAX_PENDING_BYTES: usize = 64 << 20;
/// The semaphore counts in units of this many bytes (its permits are `u32`).
const BUDGET_UNIT: usize = 1024;

/// Units of the pending budget a proposal of `size` bytes takes: at least one, at most all.
fn budget_units(size: usize) -> u32 {
    let units = (size / BUDGET_UNIT).saturating_add(1);
    units.min(MAX_PENDING_BYTES / BUDGET_UNIT) as u32
}

#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::UnboundedSender<Pending>,
    budget: Arc<Semaphore>,
}

impl Proposer {
    pub fn start(raft: Raft) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx));
        Proposer {
            tx,
            budget: Arc::new(Semaphore::new(MAX_PENDING_BYTES / BUDGET_UNIT)),
        }
    }

    /// Proposes `cmd` on this member's Raft (which must be the leader for it to succeed).
    pub async fn propose(&self, cmd: Command, size: usize) -> Result<Applied, Retry> {
        let pending = PendingGauge::enter();
        let room = self
            .budget
            .acquire_many(budget_units(size))
            .await
            .map_err(|_| Retry::Fail(KvError::Stopped))?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { cmd, size, reply })
            .map_err(|_| Retry::Fail(KvError::Stopped))?;
        let r = rx.await.unwrap_or(Err(Retry::Fail(KvError::Stopped)));
        drop(room);
        drop(pending);
        if r.is_err() {
            crate::metrics::global()
                .proposals_failed
                .fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

/// Counts a proposal in `etcd_server_proposals_pending` while it lives, so a caller that
/// gives up waiting (a client gone) leaves the gauge as it found it.
struct PendingGauge;

impl PendingGauge {
    fn enter() -> Self {
        crate::metrics::global()
            .proposals_pending
            .fetch_add(1, Ordering::Relaxed);
        PendingGauge
    }
}

impl Drop for PendingGauge {
    fn drop(&mut self) {
        crate::metrics::global()
            .proposals_pending
            .fetch_sub(1, Ordering::Relaxed);
    }
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else { return };
        let mut bytes = first.size;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_COMMANDS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.size;
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let (cmds, replies): (Vec<Command>, Vec<_>) =
                batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
            let single = cmds.len() == 1;
            let cmd = if single {
                cmds.into_iter()
                    .next()
                    .unwrap_or(Command::Batch(Vec::new()))
            } else {
                Command::Batch(cmds)
            };
            let result = raft.client_write(cmd).await.map(|r| r.data);
            match result {
                Ok(applied) if single => {
                    if let Some(reply) = replies.into_iter().next() {
                        let _ = reply.send(Ok(applied));
                    }
                }
                Ok(Applied {
                    output: Ok(Output::Batch(results)),
                    ..
                }) if results.len() == replies.len() => {
                    for (reply, r) in replies.into_iter().zip(results) {
                        let _ = reply.send(Ok(r));
                    }
                }
                Ok(other) => {
                    for reply in replies {
                        let _ = reply.send(Err(Retry::Fail(KvError::Internal(format!(
                            "batch applied as {other:?}"
                        )))));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(super::node::retry_for_write(&e, "proposal")));
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MAX_REQUEST_BYTES_CAP;
    use crate::raft::wire::{MAX_PEER_FRAME_BYTES, SNAPSHOT_CHUNK_BYTES};

    #[test]
    fn proposals_are_refused_past_etcds_apply_gap() {
        assert!(!exceeds_request_limit(0, 0, false));
        assert!(!exceeds_request_limit(100, 100 + MAX_APPLY_GAP, false));
        assert!(exceeds_request_limit(100, 101 + MAX_APPLY_GAP, false));
        // A lease revocation gets twice the room, and no more.
        assert!(!exceeds_request_limit(100, 101 + MAX_APPLY_GAP, true));
        assert!(!exceeds_request_limit(
            100,
            100 + MAX_PRIORITY_APPLY_GAP,
            true
        ));
        assert!(exceeds_request_limit(
            100,
            101 + MAX_PRIORITY_APPLY_GAP,
            true
        ));
        // Applied ahead of the estimate of committed (metrics read at different moments).
        assert!(!exceeds_request_limit(u64::MAX, 0, false));
    }

    #[test]
    fn every_proposal_fits_the_pending_budget() {
        assert_eq!(budget_units(0), 1);
        assert_eq!(budget_units(BUDGET_UNIT - 1), 1);
        assert_eq!(budget_units(BUDGET_UNIT), 2);
        let all = (MAX_PENDING_BYTES / BUDGET_UNIT) as u32;
        assert_eq!(budget_units(MAX_PENDING_BYTES * 2), all);
        assert_eq!(budget_units(usize::MAX), all);
        // The largest request a client may send takes about half of the budget, so two
        // can be in flight at once.
        assert!(budget_units(MAX_REQUEST_BYTES_CAP) <= all / 2 + 1);
    }

    #[test]
    fn only_lease_revocations_have_priority() {
        assert!(is_priority(&Command::LeaseRevoke { id: 7 }));
        assert!(is_priority(&Command::AsUser {
            user: Some("u".into()),
            cmd: Box::new(Command::LeaseRevoke { id: 7 }),
        }));
        assert!(!is_priority(&Command::LeaseGrant { id: 7, ttl: 5 }));
        assert!(!is_priority(&Command::Compact { revision: 3 }));
        assert!(!is_priority(&Command::AsUser {
            user: None,
            cmd: Box::new(Command::Compact { revision: 3 }),
        }));
    }

    #[test]
    fn the_largest_entry_and_a_snapshot_chunk_fit_in_a_peer_message() {
        // A batch below MAX_BATCH_BYTES plus one more proposal, with room for the entry's
        // own framing (log id, variant tags, a length per command).
        let largest_entry = MAX_BATCH_BYTES + MAX_REQUEST_BYTES_CAP + 64 * MAX_BATCH_COMMANDS;
        assert!(largest_entry < MAX_PEER_FRAME_BYTES);
        assert!((SNAPSHOT_CHUNK_BYTES as usize) < MAX_PEER_FRAME_BYTES / 4);
    }
}
