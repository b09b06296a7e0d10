//! Read-index batching on the leader, as etcd's linearizable read loop: one leadership
//! confirmation (a heartbeat round to a quorum, then the leader applies up to the read
//! index) answers every request that arrived before it began. Requests arriving while a
//! round is in flight wait for the next one, so each is answered by a round that started
//! after it was asked: a read still sees every write committed before it, and 1,000
//! concurrent linearizable reads or lease keep-alives cost a few rounds, not 1,000.

use openraft::errors::RaftError;
use openraft::raft::ReadPolicy;
use tokio::sync::{mpsc, oneshot};

use super::node::Retry;
use crate::error::KvError;
use crate::raft::types::Raft;

/// What a round answers: the log index a read must see, or why it could not.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Index(u64),
    NotLeader,
    Stopped,
}

type Waiter = oneshot::Sender<Outcome>;

#[derive(Clone)]
pub struct ReadIndexer {
    tx: mpsc::UnboundedSender<Waiter>,
}

impl ReadIndexer {
    pub fn start(raft: Raft) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx));
        ReadIndexer { tx }
    }

    /// Confirms leadership with a quorum (shared with concurrent callers); returns the log
    /// index a read must see.
    pub async fn read_index(&self) -> Result<u64, Retry> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(tx)
            .map_err(|_| Retry::Fail(KvError::Stopped))?;
        match rx.await {
            Ok(Outcome::Index(i)) => Ok(i),
            Ok(Outcome::NotLeader) => Err(Retry::Again),
            Ok(Outcome::Stopped) | Err(_) => Err(Retry::Fail(KvError::Stopped)),
        }
    }
}

/// Takes every waiter queued so far (at least one).
fn gather(first: Waiter, rx: &mut mpsc::UnboundedReceiver<Waiter>) -> Vec<Waiter> {
    let mut all = vec![first];
    while let Ok(w) = rx.try_recv() {
        all.push(w);
    }
    all
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<Waiter>) {
    while let Some(first) = rx.recv().await {
        let waiters = gather(first, &mut rx);
        let outcome = match raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(read) => Outcome::Index(read.index()),
            Err(RaftError::APIError(_)) => Outcome::NotLeader,
            Err(RaftError::Fatal(_)) => Outcome::Stopped,
        };
        tracing::trace!(waiters = waiters.len(), ?outcome, "read index round");
        for w in waiters {
            let _ = w.send(outcome.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_round_takes_everyone_queued_before_it_and_no_one_after() {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiter>();
        let mut answers = Vec::new();
        for _ in 0..3 {
            let (w, r) = oneshot::channel();
            tx.send(w).unwrap();
            answers.push(r);
        }
        let first = rx.recv().await.unwrap();
        let batch = gather(first, &mut rx);
        assert_eq!(batch.len(), 3);
        // One that arrives once the round has begun waits for the next.
        let (late, _late_rx) = oneshot::channel();
        tx.send(late).unwrap();
        for w in batch {
            w.send(Outcome::Index(7)).unwrap();
        }
        for r in answers {
            assert_eq!(r.await.unwrap(), Outcome::Index(7));
        }
        let next = rx.recv().await.unwrap();
        assert_eq!(gather(next, &mut rx).len(), 1);
    }
}
