//! The history: every operation's invocation and completion, and every fault, in the order
//! the harness saw them, with times relative to the start of the test.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// The process that injects faults.
pub const NEMESIS: i64 = -1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Invoke,
    /// Completed and took effect (for reads: returned a value).
    Ok,
    /// Completed and certainly did not take effect.
    Fail,
    /// Outcome unknown: it may take effect at any time after its invocation.
    Info,
}

/// An operation's function with its arguments (on invoke) or its results (on completion).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "kebab-case")]
pub enum Op {
    /// Register read; `value` is the result (None: the key is absent).
    Read {
        key: String,
        value: Option<u64>,
    },
    Write {
        key: String,
        value: u64,
    },
    /// Compare-and-set; a mismatch completes as `fail`.
    Cas {
        key: String,
        from: u64,
        to: u64,
    },
    /// Set workload: insert one unique element.
    Add {
        element: u64,
    },
    /// Set workload: read every element (through `node`).
    ReadAll {
        elements: Option<Vec<u64>>,
    },
    /// Watch workload: one Txn of puts (and deletes); `revision` is its revision when ok.
    Txn {
        id: u64,
        puts: Vec<String>,
        deletes: Vec<String>,
        revision: Option<i64>,
    },
    /// Objects workload: one ConfigMap read (GET with resourceVersion unset, a consistent
    /// read); `value` None: not found. `rv` is the object's resourceVersion.
    Get {
        key: String,
        value: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        rv: Option<u64>,
    },
    /// Objects workload: the value set whatever the object holds (PUT without a
    /// resourceVersion, or POST when there is no object).
    Put {
        key: String,
        value: u64,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        rv: Option<u64>,
    },
    /// Objects workload: GET, then PUT with the resourceVersion read when the value read is
    /// `from` (a compare-and-set; 409 Conflict is a definite failure).
    Update {
        key: String,
        from: u64,
        to: u64,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        rv: Option<u64>,
    },
    /// Objects workload: POST; 409 AlreadyExists is a definite failure.
    Create {
        key: String,
        value: u64,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        rv: Option<u64>,
    },
    /// Objects workload: DELETE; 404 is a definite failure.
    Delete {
        key: String,
    },
    /// Objects workload: a consistent LIST of the run's ConfigMaps; on completion, the
    /// value and resourceVersion of every object listed among `keys` (those the workload
    /// had used when it was invoked; one absent from `found` was not in the list).
    List {
        keys: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        found: Option<Vec<Listed>>,
    },
    /// Pods workload: a Deployment's desired replicas set through its scale subresource.
    Scale {
        deployment: String,
        replicas: u32,
    },
    /// A fault starting or ending.
    Nemesis {
        fault: String,
        detail: String,
    },
}

/// One object of a list result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    pub key: String,
    pub value: Option<u64>,
    pub rv: u64,
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Read { .. } => "read",
            Op::Write { .. } => "write",
            Op::Cas { .. } => "cas",
            Op::Add { .. } => "add",
            Op::ReadAll { .. } => "read-all",
            Op::Txn { .. } => "txn",
            Op::Get { .. } => "get",
            Op::Put { .. } => "put",
            Op::Update { .. } => "update",
            Op::Create { .. } => "create",
            Op::Delete { .. } => "delete",
            Op::List { .. } => "list",
            Op::Scale { .. } => "scale",
            Op::Nemesis { .. } => "nemesis",
        }
    }

    /// Whether the operation changes state (and so whether an unknown outcome matters).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Op::Write { .. }
                | Op::Cas { .. }
                | Op::Add { .. }
                | Op::Txn { .. }
                | Op::Put { .. }
                | Op::Update { .. }
                | Op::Create { .. }
                | Op::Delete { .. }
                | Op::Scale { .. }
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub index: usize,
    /// Nanoseconds since the test started.
    pub time: u64,
    pub process: i64,
    #[serde(rename = "type")]
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub node: Option<usize>,
    #[serde(flatten)]
    pub op: Op,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// How a compaction is described in a nemesis event, and read back by checkers.
pub fn compaction_detail(at: i64, node: &str) -> String {
    format!("compacted at {at} through {node}")
}

/// Revisions of the compactions recorded in the history.
pub fn compactions(history: &[Event]) -> Vec<i64> {
    history
        .iter()
        .filter_map(|e| match &e.op {
            Op::Nemesis { detail, .. } => detail
                .strip_prefix("compacted at ")?
                .split(' ')
                .next()?
                .parse()
                .ok(),
            _ => None,
        })
        .collect()
}

/// Appends events from many tasks; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Recorder {
    pub fn new(start: Instant) -> Recorder {
        Recorder {
            start,
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn record(
        &self,
        process: i64,
        kind: Kind,
        node: Option<usize>,
        op: Op,
        error: Option<String>,
    ) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        // The time is taken under the lock so that indices and times agree in order.
        let time = self.now();
        let index = events.len();
        events.push(Event {
            index,
            time,
            process,
            kind,
            node,
            op,
            error,
        });
    }

    pub fn snapshot(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// An invocation paired with its completion (None: never completed, as if `info`).
#[derive(Clone, Debug)]
pub struct Pair {
    pub invoke: Event,
    pub complete: Option<Event>,
}

impl Pair {
    pub fn kind(&self) -> Kind {
        self.complete.as_ref().map_or(Kind::Info, |c| c.kind)
    }
}

/// Pairs each client invocation with the next completion of the same process.
pub fn pairs(history: &[Event]) -> Vec<Pair> {
    let mut open: std::collections::HashMap<i64, usize> = Default::default();
    let mut out: Vec<Pair> = Vec::new();
    for e in history.iter().filter(|e| e.process != NEMESIS) {
        match e.kind {
            Kind::Invoke => {
                open.insert(e.process, out.len());
                out.push(Pair {
                    invoke: e.clone(),
                    complete: None,
                });
            }
            _ => {
                if let Some(i) = open.remove(&e.process) {
                    out[i].complete = Some(e.clone());
                }
            }
        }
    }
    out
}

/// Builds histories by hand for checker tests.
#[cfg(test)]
pub mod build {
    use super::*;

    pub struct H {
        pub events: Vec<Event>,
        t: u64,
    }

    impl H {
        pub fn new() -> H {
            H {
                events: Vec::new(),
                t: 0,
            }
        }
        pub fn ev(&mut self, process: i64, kind: Kind, op: Op) -> &mut H {
            self.t += 10;
            self.events.push(Event {
                index: self.events.len(),
                time: self.t,
                process,
                kind,
                node: Some(0),
                op,
                error: None,
            });
            self
        }
    }
}
