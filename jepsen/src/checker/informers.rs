//! The informers workload's checker. The truth is the kvstore's own record of the
//! workload's ConfigMaps: every change of their keys, followed through the kvstore's watch
//! (complete by progress). The changes number the states the objects went through: state
//! 0 is before the first change, state k after the k-th. An informer (kube-rs's watcher:
//! list, then watch from the list's resourceVersion, relist after 410 Gone) must only ever
//! be at one of those states, and move forward through them one change at a time:
//!
//! - list-matches-no-state: a list (Init … InitDone) that is no state the objects were in;
//! - gap: a watch event that is not the change after the informer's state (it missed some);
//! - duplicate-or-out-of-order: an event at or before the informer's state;
//! - event-not-in-store / event-differs: an event the kvstore has no change for, or one that
//!   differs from it (name, value, deletion);
//! - list-went-back: a consistent list (resourceVersion "", kube-rs's `MostRecent`) at a
//!   state older than one the informer had seen. A list at resourceVersion "0" (`Any`) may
//!   be served from an apiserver's cache and be stale, as kube documents; those are counted
//!   (`stale-lists`), not anomalies;
//! - informer-behind: after the heal, an informer that never reached the last state;
//! - and for the writers: an acknowledged write missing from the kvstore or different there,
//!   a write that certainly failed but was applied, a value no writer wrote.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Verdict;
use crate::history::{pairs, Event, Kind, Op};

/// One change of one of the workload's objects, as the kvstore recorded it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub revision: i64,
    pub name: String,
    /// The value written; None: the object was deleted.
    pub value: Option<u64>,
    /// Milliseconds into the run when the harness's kvstore watch saw it.
    pub seen_ms: f64,
}

/// Every change of the workload's objects during the run, and whether the record is
/// complete (every revision up to the end was delivered).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Truth {
    pub changes: Vec<Change>,
    pub complete: bool,
    pub gap: Option<String>,
}

/// What an informer's watcher stream yielded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Seen {
    /// A list began (kube-rs `Init`).
    Init,
    /// An object of the list (`InitApply`).
    Listed {
        name: String,
        rv: i64,
        value: Option<u64>,
    },
    /// The list is complete (`InitDone`): the informer's cache is now the listed objects.
    Synced,
    /// An object added or modified (`Apply`).
    Applied {
        name: String,
        rv: i64,
        value: Option<u64>,
    },
    /// An object deleted (`Delete`); `rv` is the deletion's revision, as kube sends it.
    Deleted { name: String, rv: i64 },
    /// The stream yielded an error (the watcher retries by itself).
    Error { error: String },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Observation {
    pub at_ms: f64,
    #[serde(flatten)]
    pub seen: Seen,
}

/// One watcher stream, through one apiserver, from its first list to its end.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Segment {
    pub apiserver: usize,
    /// Lists are consistent reads (resourceVersion ""), not resourceVersion "0".
    pub consistent: bool,
    pub seen: Vec<Observation>,
    pub end: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InformerLog {
    pub id: usize,
    pub segments: Vec<Segment>,
}

/// The states the objects went through: each state's objects (name → resourceVersion),
/// and where each state's content was seen (a state can recur: all objects deleted).
struct States {
    states: Vec<BTreeMap<String, i64>>,
    by_content: HashMap<Vec<(String, i64)>, Vec<usize>>,
    /// Change index (1-based: change k leads to state k) by revision.
    by_rev: HashMap<i64, usize>,
}

fn content(m: &BTreeMap<String, i64>) -> Vec<(String, i64)> {
    m.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

impl States {
    fn new(changes: &[Change]) -> States {
        let mut cur = BTreeMap::new();
        let mut states = vec![cur.clone()];
        let mut by_rev = HashMap::new();
        for (i, c) in changes.iter().enumerate() {
            match c.value {
                Some(_) => cur.insert(c.name.clone(), c.revision),
                None => cur.remove(&c.name),
            };
            states.push(cur.clone());
            by_rev.insert(c.revision, i + 1);
        }
        let mut by_content: HashMap<Vec<(String, i64)>, Vec<usize>> = HashMap::new();
        for (i, s) in states.iter().enumerate() {
            by_content.entry(content(s)).or_default().push(i);
        }
        States {
            states,
            by_content,
            by_rev,
        }
    }

    fn last(&self) -> usize {
        self.states.len() - 1
    }
}

/// Where an informer is: the states its cache may be at (one after a watch event; after a
/// list, every state with the listed content), or unknown after an anomaly.
#[derive(Clone, Debug)]
enum Pos {
    None,
    At(Vec<usize>),
}

impl Pos {
    fn max(&self) -> Option<usize> {
        match self {
            Pos::None => None,
            Pos::At(v) => v.iter().max().copied(),
        }
    }
}

#[derive(Default)]
struct Stats {
    lists: usize,
    stale_lists: usize,
    events: usize,
    errors: usize,
    segments: usize,
    delays: Vec<f64>,
}

pub fn check(history: &[Event], truth: &Truth, informers: &[InformerLog]) -> Verdict {
    let mut v = Verdict::new("informers");
    let states = States::new(&truth.changes);
    let acked = check_writes(history, &truth.changes, &states, &mut v);
    let mut st = Stats::default();
    let mut behind = Vec::new();
    for inf in informers {
        let end = check_informer(inf, truth, &states, &mut v, &mut st);
        if end != Some(states.last()) {
            behind.push(json!({"informer": inf.id, "state": end, "last": states.last()}));
        }
    }
    for b in behind {
        if truth.complete {
            v.anomaly(json!({"type": "informer-behind", "at": b}));
        }
    }
    if !truth.complete {
        v.unknown(
            truth
                .gap
                .as_deref()
                .unwrap_or("the kvstore's record of the objects is incomplete"),
        );
    }
    st.delays.sort_by(f64::total_cmp);
    let pct = |p: f64| -> Option<f64> {
        let n = st.delays.len();
        (n > 0).then(|| st.delays[((n - 1) as f64 * p) as usize])
    };
    v.stats = json!({
        "changes": truth.changes.len(),
        "acknowledged-writes": acked,
        "informers": informers.len(),
        "segments": st.segments,
        "lists": st.lists,
        "stale-lists": st.stale_lists,
        "events": st.events,
        "errors": st.errors,
        "delivery-ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
    });
    v
}

/// Checks one informer; returns the state it ended at (when known and unambiguous).
fn check_informer(
    inf: &InformerLog,
    truth: &Truth,
    states: &States,
    v: &mut Verdict,
    st: &mut Stats,
) -> Option<usize> {
    let mut pos = Pos::None;
    // The furthest state the informer is known to have been at.
    let mut furthest: Option<usize> = None;
    for (si, seg) in inf.segments.iter().enumerate() {
        st.segments += 1;
        let mut listing: Option<BTreeMap<String, i64>> = None;
        for o in &seg.seen {
            // Where an anomaly was seen (built only for one).
            let at = || {
                json!({"informer": inf.id, "segment": si, "apiserver": seg.apiserver,
                "at-ms": o.at_ms})
            };
            match &o.seen {
                Seen::Error { .. } => st.errors += 1,
                Seen::Init => listing = Some(BTreeMap::new()),
                Seen::Listed { name, rv, value } => {
                    check_value(states, truth, name, *rv, *value, &at, v);
                    if let Some(l) = listing.as_mut() {
                        l.insert(name.clone(), *rv);
                    }
                }
                Seen::Synced => {
                    st.lists += 1;
                    let listed = listing.take().unwrap_or_default();
                    let Some(cands) = states.by_content.get(&content(&listed)) else {
                        v.anomaly(json!({"type": "list-matches-no-state", "at": at(),
                            "listed": listed}));
                        pos = Pos::None;
                        continue;
                    };
                    let newest = cands.iter().max().copied().unwrap_or(0);
                    if furthest.is_some_and(|f| newest < f) {
                        if seg.consistent {
                            v.anomaly(json!({"type": "list-went-back", "at": at(),
                                "state": newest, "had-seen": furthest}));
                        } else {
                            st.stale_lists += 1;
                        }
                    }
                    pos = Pos::At(cands.clone());
                }
                Seen::Applied { name, rv, .. } | Seen::Deleted { name, rv } => {
                    st.events += 1;
                    let Some(&k) = states.by_rev.get(rv) else {
                        v.anomaly(json!({"type": "event-not-in-store", "at": at(),
                            "event": o.seen}));
                        pos = Pos::None;
                        continue;
                    };
                    let c = &truth.changes[k - 1];
                    let value = match &o.seen {
                        Seen::Applied { value, .. } => *value,
                        _ => None,
                    };
                    if c.name != *name || c.value.is_some() != value.is_some() || c.value != value {
                        v.anomaly(json!({"type": "event-differs", "at": at(), "event": o.seen,
                            "store": c}));
                    }
                    st.delays.push(o.at_ms - c.seen_ms);
                    if let Pos::At(cands) = &pos {
                        if !cands.contains(&(k - 1)) {
                            let before: Vec<usize> =
                                cands.iter().copied().filter(|&c| c < k).collect();
                            match before.iter().max() {
                                None => v.anomaly(json!({"type": "duplicate-or-out-of-order",
                                    "at": at(), "revision": rv, "state": cands})),
                                Some(&from) => {
                                    let missed: Vec<i64> = truth.changes[from..k - 1]
                                        .iter()
                                        .take(5)
                                        .map(|c| c.revision)
                                        .collect();
                                    v.anomaly(json!({"type": "gap", "at": at(), "revision": rv,
                                        "missed": k - 1 - from, "first-missed": missed}));
                                }
                            }
                        }
                    }
                    pos = Pos::At(vec![k]);
                }
            }
            if let Some(m) = pos.max() {
                furthest = Some(furthest.map_or(m, |f| f.max(m)));
            }
        }
    }
    match pos {
        Pos::At(c) if c.contains(&states.last()) => Some(states.last()),
        Pos::At(c) if c.len() == 1 => Some(c[0]),
        _ => None,
    }
}

/// A listed object's value must be the one the kvstore holds at its resourceVersion.
fn check_value(
    states: &States,
    truth: &Truth,
    name: &str,
    rv: i64,
    value: Option<u64>,
    at: &dyn Fn() -> serde_json::Value,
    v: &mut Verdict,
) {
    let c = states.by_rev.get(&rv).map(|&k| &truth.changes[k - 1]);
    if !c.is_some_and(|c| c.name == name && c.value.is_some() && c.value == value) {
        v.anomaly(
            json!({"type": "listed-object-differs", "at": at(), "name": name, "rv": rv,
            "value": value, "store": c}),
        );
    }
}

/// The writers: acknowledged puts are in the store at their revision; puts that certainly
/// failed are not; every value in the store was written by someone.
/// Returns how many writes were acknowledged.
fn check_writes(history: &[Event], changes: &[Change], states: &States, v: &mut Verdict) -> usize {
    let mut written: HashSet<u64> = HashSet::new();
    let mut failed: HashSet<u64> = HashSet::new();
    let mut acked = 0usize;
    for p in pairs(history) {
        let Op::Put { key, value, .. } = &p.invoke.op else {
            continue;
        };
        written.insert(*value);
        match &p.complete {
            Some(d) if d.kind == Kind::Ok => {
                acked += 1;
                let rv = match &d.op {
                    Op::Put { rv, .. } => *rv,
                    _ => None,
                };
                let c = rv
                    .and_then(|r| i64::try_from(r).ok())
                    .and_then(|r| states.by_rev.get(&r))
                    .map(|&k| &changes[k - 1]);
                if !c.is_some_and(|c| c.name == *key && c.value == Some(*value)) {
                    v.anomaly(
                        json!({"type": "acknowledged-write-not-in-store", "key": key,
                        "value": value, "rv": rv, "store": c}),
                    );
                }
            }
            Some(d) if d.kind == Kind::Fail => {
                failed.insert(*value);
            }
            _ => {}
        }
    }
    let mut by_value: BTreeMap<u64, i64> = BTreeMap::new();
    for c in changes {
        let Some(val) = c.value else { continue };
        if !written.contains(&val) {
            v.anomaly(json!({"type": "value-nobody-wrote", "change": c}));
        }
        if failed.contains(&val) {
            v.anomaly(json!({"type": "failed-write-applied", "change": c}));
        }
        if let Some(r) = by_value.insert(val, c.revision) {
            v.anomaly(json!({"type": "value-written-twice", "value": val,
                "revisions": [r, c.revision]}));
        }
    }
    acked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(revision: i64, name: &str, value: Option<u64>) -> Change {
        Change {
            revision,
            name: name.into(),
            value,
            seen_ms: revision as f64,
        }
    }

    fn truth() -> Truth {
        Truth {
            changes: vec![
                ch(10, "a", Some(1)),
                ch(12, "b", Some(2)),
                ch(15, "a", Some(3)),
                ch(20, "b", None),
            ],
            complete: true,
            gap: None,
        }
    }

    /// Checks informers against `t`, with a history in which every value was written
    /// (acknowledged at its revision).
    fn check_all(t: &Truth, informers: &[InformerLog]) -> Verdict {
        use crate::history::Recorder;
        let rec = Recorder::new(std::time::Instant::now());
        for c in &t.changes {
            let Some(value) = c.value else { continue };
            let put = |rv| Op::Put {
                key: c.name.clone(),
                value,
                rv,
            };
            rec.record(0, Kind::Invoke, Some(0), put(None), None);
            rec.record(0, Kind::Ok, Some(0), put(Some(c.revision as u64)), None);
        }
        check(&rec.snapshot(), t, informers)
    }

    fn o(seen: Seen) -> Observation {
        Observation { at_ms: 100.0, seen }
    }

    fn applied(name: &str, rv: i64, value: u64) -> Observation {
        o(Seen::Applied {
            name: name.into(),
            rv,
            value: Some(value),
        })
    }

    fn listed(name: &str, rv: i64, value: u64) -> Observation {
        o(Seen::Listed {
            name: name.into(),
            rv,
            value: Some(value),
        })
    }

    fn informer(segments: Vec<(bool, Vec<Observation>)>) -> InformerLog {
        InformerLog {
            id: 0,
            segments: segments
                .into_iter()
                .map(|(consistent, seen)| Segment {
                    apiserver: 0,
                    consistent,
                    seen,
                    end: String::new(),
                })
                .collect(),
        }
    }

    fn types(v: &Verdict) -> Vec<String> {
        v.anomalies
            .iter()
            .map(|a| a["type"].as_str().unwrap_or("").to_string())
            .collect()
    }

    fn deleted(name: &str, rv: i64) -> Observation {
        o(Seen::Deleted {
            name: name.into(),
            rv,
        })
    }

    #[test]
    fn list_then_every_change_is_valid() {
        let inf = informer(vec![(
            true,
            vec![
                o(Seen::Init),
                listed("a", 10, 1),
                o(Seen::Synced),
                applied("b", 12, 2),
                applied("a", 15, 3),
                deleted("b", 20),
            ],
        )]);
        let v = check_all(&truth(), &[inf]);
        assert_eq!(types(&v), Vec::<String>::new(), "{:?}", v.anomalies);
        assert_eq!(v.valid, super::super::Validity::Valid);
    }

    #[test]
    fn a_missed_event_is_a_gap() {
        let inf = informer(vec![(
            true,
            vec![
                o(Seen::Init),
                o(Seen::Synced),
                applied("a", 10, 1),
                applied("a", 15, 3),
                deleted("b", 20),
            ],
        )]);
        assert_eq!(types(&check_all(&truth(), &[inf])), ["gap"]);
    }

    #[test]
    fn a_repeated_event_and_a_behind_informer_are_caught() {
        let inf = informer(vec![(
            true,
            vec![
                o(Seen::Init),
                o(Seen::Synced),
                applied("a", 10, 1),
                applied("b", 12, 2),
                applied("b", 12, 2),
            ],
        )]);
        assert_eq!(
            types(&check_all(&truth(), &[inf])),
            ["duplicate-or-out-of-order", "informer-behind"]
        );
    }

    #[test]
    fn lists_must_be_states_and_consistent_ones_never_go_back() {
        // b alone never existed: a was there first and never went.
        let bad = informer(vec![(
            true,
            vec![o(Seen::Init), listed("b", 12, 2), o(Seen::Synced)],
        )]);
        assert_eq!(
            types(&check_all(&truth(), &[bad])),
            ["list-matches-no-state", "informer-behind"]
        );
        let back = |consistent| {
            informer(vec![
                (
                    true,
                    vec![
                        o(Seen::Init),
                        listed("a", 15, 3),
                        listed("b", 12, 2),
                        o(Seen::Synced),
                    ],
                ),
                (
                    consistent,
                    vec![
                        o(Seen::Init),
                        listed("a", 10, 1),
                        o(Seen::Synced),
                        applied("b", 12, 2),
                        applied("a", 15, 3),
                        deleted("b", 20),
                    ],
                ),
            ])
        };
        assert_eq!(
            types(&check_all(&truth(), &[back(true)])),
            ["list-went-back"]
        );
        let v = check_all(&truth(), &[back(false)]);
        assert_eq!(types(&v), Vec::<String>::new());
        assert_eq!(v.stats["stale-lists"], 1);
    }

    #[test]
    fn an_empty_list_may_be_any_empty_state() {
        // Everything deleted, then created again: the empty state recurs.
        let t = Truth {
            changes: vec![
                ch(10, "a", Some(1)),
                ch(11, "a", None),
                ch(12, "a", Some(2)),
            ],
            complete: true,
            gap: None,
        };
        let inf = informer(vec![(
            true,
            vec![o(Seen::Init), o(Seen::Synced), applied("a", 12, 2)],
        )]);
        assert_eq!(types(&check_all(&t, &[inf])), Vec::<String>::new());
    }

    #[test]
    fn events_must_match_the_store() {
        let inf = informer(vec![(
            true,
            vec![
                o(Seen::Init),
                o(Seen::Synced),
                applied("a", 10, 7),
                applied("b", 13, 2),
            ],
        )]);
        assert_eq!(
            types(&check_all(&truth(), &[inf])),
            ["event-differs", "event-not-in-store", "informer-behind"]
        );
    }

    #[test]
    fn writes_are_checked_against_the_store() {
        use crate::history::Recorder;
        let rec = Recorder::new(std::time::Instant::now());
        let put = |value, rv| Op::Put {
            key: "a".into(),
            value,
            rv,
        };
        rec.record(0, Kind::Invoke, Some(0), put(1, None), None);
        rec.record(0, Kind::Ok, Some(0), put(1, Some(10)), None);
        rec.record(1, Kind::Invoke, Some(0), put(3, None), None);
        rec.record(1, Kind::Fail, Some(0), put(3, None), Some("409".into()));
        rec.record(2, Kind::Invoke, Some(0), put(9, None), None);
        rec.record(2, Kind::Ok, Some(0), put(9, Some(30)), None);
        let t = Truth {
            changes: vec![
                ch(10, "a", Some(1)),
                ch(15, "a", Some(3)),
                ch(16, "a", Some(4)),
            ],
            complete: true,
            gap: None,
        };
        let v = check(&rec.snapshot(), &t, &[]);
        assert_eq!(
            types(&v),
            [
                "acknowledged-write-not-in-store",
                "failed-write-applied",
                "value-nobody-wrote"
            ]
        );
    }
}
