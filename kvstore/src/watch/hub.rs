//! Fan-out of applied changes to watch streams.
//!
//! The state machine publishes each revision's events once, as one `Arc`, on a bounded
//! broadcast channel; every watch stream holds a receiver, so thousands of watchers cost no
//! task and no copy each. Publishing never waits: a stream that falls behind by more than the
//! channel's capacity is told it lagged and catches up from stored history instead.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::storage::mvcc_store::HistoryEvent;

/// The events of one revision, in the order the Txn made them.
#[derive(Debug)]
pub struct RevisionEvents {
    pub revision: i64,
    pub events: Vec<HistoryEvent>,
}

#[derive(Debug, Clone)]
pub enum HubMsg {
    Events(Arc<RevisionEvents>),
    /// The state was replaced by a snapshot: every stream re-reads history from where it was.
    Reset,
}

pub struct WatchHub {
    tx: broadcast::Sender<HubMsg>,
}

impl WatchHub {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        WatchHub { tx }
    }

    pub fn publish(&self, msg: HubMsg) {
        // No receiver is fine: nobody is watching.
        let _ = self.tx.send(msg);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<HubMsg> {
        self.tx.subscribe()
    }
}
