//! The watch workload's checker, for etcd's documented watch guarantees. Only the
//! workload's writers write during a run and every write is one Txn of at least one put, so
//! revisions after the base revision are dense: a revision a watcher skipped is missing.
//!
//! - ordered: a watcher's events never go back in revision;
//! - unique: no (revision, key) event twice;
//! - reliable: no revision skipped, unless the watcher was told it was compacted away;
//! - atomic: a revision's events arrive in one response, all puts of a Txn together;
//! - resumable: a watch resumed from a revision continues exactly there (checked as part of
//!   "reliable" across the watcher's reconnections);
//! - prev_kv, version and create_revision agree with the key's previous event (etcd leaves
//!   prev_kv out when the previous version was compacted away, so a missing prev_kv is
//!   excused at revisions up to the highest compaction requested);
//! - agreement: every watcher that saw a revision saw the same events;
//! - writes: an acknowledged Txn appears at its revision with its values; a Txn that
//!   certainly failed never appears.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Verdict;
use crate::history::{pairs, Event, Kind, Op};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kv {
    pub key: String,
    pub value: String,
    pub mod_revision: i64,
    pub create_revision: i64,
    pub version: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WEvent {
    pub delete: bool,
    /// For a delete, the key with empty value and mod_revision = the deletion's revision.
    pub kv: Kv,
    pub prev: Option<Kv>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Segment {
    pub node: usize,
    pub start_revision: i64,
    /// Responses carrying events, in arrival order.
    pub responses: Vec<Vec<WEvent>>,
    /// Set when the server cancelled the watch because `start_revision` was compacted.
    pub compacted: Option<i64>,
    pub end: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WatcherLog {
    pub id: usize,
    pub segments: Vec<Segment>,
}

/// What the checker needs besides the history.
pub struct Observed<'a> {
    pub watchers: &'a [WatcherLog],
    /// The revision before the first write of the run.
    pub base: i64,
    /// The revision of the last write (read after everything healed).
    pub last: Option<i64>,
}

pub fn check(history: &[Event], obs: &Observed) -> Verdict {
    let mut v = Verdict::new("watch");
    let mut global: BTreeMap<i64, (usize, Vec<WEvent>)> = BTreeMap::new();
    let mut delivered = 0usize;
    let mut behind = Vec::new();
    for w in obs.watchers {
        let mut seen: HashSet<(i64, String)> = HashSet::new();
        let mut expect: Option<i64> = None;
        let mut last_rev = 0i64;
        for (si, seg) in w.segments.iter().enumerate() {
            if let Some(e) = expect {
                if seg.start_revision != e {
                    v.anomaly(json!({"type": "harness-resumed-elsewhere", "watcher": w.id,
                        "segment": si, "expected": e, "start": seg.start_revision}));
                }
            }
            expect = Some(seg.start_revision);
            for resp in &seg.responses {
                let Some(first) = resp.first() else { continue };
                let r0 = first.kv.mod_revision;
                if r0 <= last_rev {
                    let kind = if r0 == last_rev {
                        "split-revision"
                    } else {
                        "out-of-order"
                    };
                    v.anomaly(json!({"type": kind, "watcher": w.id, "segment": si,
                        "revision": r0, "after": last_rev, "node": seg.node}));
                }
                let mut by_rev: BTreeMap<i64, Vec<WEvent>> = BTreeMap::new();
                let mut prev_in_resp = r0;
                for e in resp {
                    delivered += 1;
                    let r = e.kv.mod_revision;
                    if r < prev_in_resp {
                        v.anomaly(json!({"type": "out-of-order", "watcher": w.id,
                            "segment": si, "revision": r, "after": prev_in_resp}));
                    }
                    prev_in_resp = r;
                    if r < seg.start_revision {
                        v.anomaly(json!({"type": "event-before-start", "watcher": w.id,
                            "segment": si, "revision": r, "start": seg.start_revision}));
                    }
                    if !seen.insert((r, e.kv.key.clone())) {
                        v.anomaly(json!({"type": "duplicate-event", "watcher": w.id,
                            "segment": si, "revision": r, "key": e.kv.key, "node": seg.node}));
                    }
                    by_rev.entry(r).or_default().push(e.clone());
                }
                for (r, evs) in by_rev {
                    if let Some(e) = expect {
                        if r > e {
                            v.anomaly(json!({"type": "missing-revisions", "watcher": w.id,
                                "segment": si, "node": seg.node, "from": e, "to": r - 1}));
                        }
                    }
                    expect = Some(r + 1);
                    last_rev = last_rev.max(r);
                    match global.get_mut(&r) {
                        None => {
                            global.insert(r, (w.id, evs));
                        }
                        Some((other, theirs)) if !same_events(theirs, &evs) => {
                            v.anomaly(json!({"type": "watchers-disagree", "revision": r,
                                "watcher": w.id, "events": evs,
                                "other-watcher": other, "other-events": theirs}));
                        }
                        Some((_, theirs)) => {
                            // Keep every prev_kv some watcher was given.
                            for (mine, e) in theirs.iter_mut().zip(evs) {
                                if mine.prev.is_none() {
                                    mine.prev = e.prev;
                                }
                            }
                        }
                    }
                }
            }
            if let Some(c) = seg.compacted {
                // Told explicitly: revisions before `c` are gone; resume there.
                expect = Some(c.max(expect.unwrap_or(c)));
            }
        }
        if let (Some(last), Some(e)) = (obs.last, expect) {
            if e <= last {
                behind.push(json!({"watcher": w.id, "next": e, "last": last}));
            }
        }
    }
    if !behind.is_empty() {
        v.unknown("some watchers never caught up to the last write");
        v.stats["behind"] = json!(behind);
    }

    check_writes(history, &global, &mut v);
    let compacted = crate::history::compactions(history)
        .into_iter()
        .max()
        .unwrap_or(0);
    let checked = check_versions(obs.base, compacted, &global, &mut v);
    let stats = json!({
        "watchers": obs.watchers.len(),
        "segments": obs.watchers.iter().map(|w| w.segments.len()).sum::<usize>(),
        "events-delivered": delivered,
        "revisions-seen": global.len(),
        "base-revision": obs.base,
        "last-revision": obs.last,
        "revisions-version-checked": checked,
    });
    merge(&mut v.stats, stats);
    if obs.last.is_none() {
        v.unknown("the last revision could not be read");
    }
    v
}

/// Equal, except that a prev_kv one side lacks is not compared (it may have been
/// compacted by the time one of them was served); the replay judges missing ones.
fn same_events(a: &[WEvent], b: &[WEvent]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.delete == y.delete
                && x.kv == y.kv
                && (x.prev.is_none() || y.prev.is_none() || x.prev == y.prev)
        })
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

/// Txn ids are written as every put's value; a revision's puts come from one Txn.
fn check_writes(history: &[Event], global: &BTreeMap<i64, (usize, Vec<WEvent>)>, v: &mut Verdict) {
    struct W {
        puts: Vec<String>,
        deletes: Vec<String>,
        kind: Kind,
        revision: Option<i64>,
    }
    let mut writes: HashMap<u64, W> = HashMap::new();
    for p in pairs(history) {
        if let Op::Txn {
            id, puts, deletes, ..
        } = &p.invoke.op
        {
            let revision = match p.complete.as_ref().map(|c| &c.op) {
                Some(Op::Txn { revision, .. }) => *revision,
                _ => None,
            };
            writes.insert(
                *id,
                W {
                    puts: puts.clone(),
                    deletes: deletes.clone(),
                    kind: p.kind(),
                    revision,
                },
            );
        }
    }
    let mut seen_ids: HashMap<u64, i64> = HashMap::new();
    for (r, (_, evs)) in global {
        let ids: HashSet<&str> = evs
            .iter()
            .filter(|e| !e.delete)
            .map(|e| e.kv.value.as_str())
            .collect();
        if ids.len() != 1 {
            v.anomaly(json!({"type": "revision-mixes-txns", "revision": r, "events": evs}));
            continue;
        }
        let Some(id) = ids.into_iter().next().and_then(|s| s.parse::<u64>().ok()) else {
            v.anomaly(json!({"type": "unknown-value", "revision": r, "events": evs}));
            continue;
        };
        if let Some(first) = seen_ids.insert(id, *r) {
            v.anomaly(json!({"type": "txn-applied-twice", "id": id, "revisions": [first, r]}));
        }
        let Some(w) = writes.get(&id) else {
            v.anomaly(json!({"type": "unexpected-write", "id": id, "revision": r}));
            continue;
        };
        if w.kind == Kind::Fail {
            v.anomaly(json!({"type": "failed-write-visible", "id": id, "revision": r}));
        }
        if w.kind == Kind::Ok && w.revision != Some(*r) {
            v.anomaly(json!({"type": "acknowledged-at-other-revision", "id": id,
                "acknowledged": w.revision, "seen": r}));
        }
        let mut put_keys: Vec<&str> = evs
            .iter()
            .filter(|e| !e.delete)
            .map(|e| e.kv.key.as_str())
            .collect();
        put_keys.sort_unstable();
        let mut want: Vec<&str> = w.puts.iter().map(String::as_str).collect();
        want.sort_unstable();
        want.dedup();
        let stray_delete = evs
            .iter()
            .any(|e| e.delete && !w.deletes.contains(&e.kv.key));
        if put_keys != want || stray_delete {
            v.anomaly(
                json!({"type": "partial-or-wrong-txn", "id": id, "revision": r,
                "want-puts": want, "events": evs}),
            );
        }
    }
    // Acknowledged writes whose revision every watcher skipped are covered by
    // "missing-revisions"; one no watcher reached is not judged here.
}

/// Replays the agreed events from the base revision (the keys were all absent there) and
/// checks prev_kv, version and create_revision of each. Stops at the first revision no
/// watcher saw. Returns how many revisions were checked.
fn check_versions(
    base: i64,
    compacted: i64,
    global: &BTreeMap<i64, (usize, Vec<WEvent>)>,
    v: &mut Verdict,
) -> usize {
    let mut state: HashMap<String, Kv> = HashMap::new();
    let mut checked = 0;
    for (want, (r, (watcher, evs))) in (base + 1..).zip(global.range(base + 1..)) {
        if *r != want {
            break;
        }
        checked += 1;
        for e in evs {
            let prev = state.get(&e.kv.key).cloned();
            let excused = e.prev.is_none() && *r <= compacted;
            if e.prev != prev && !excused {
                v.anomaly(
                    json!({"type": "wrong-prev-kv", "revision": r, "watcher": watcher,
                    "key": e.kv.key, "prev-kv": e.prev, "expected": prev}),
                );
            }
            if e.delete {
                if prev.is_none() {
                    v.anomaly(json!({"type": "delete-of-absent-key", "revision": r,
                        "key": e.kv.key}));
                }
                state.remove(&e.kv.key);
                continue;
            }
            let (version, create) = match &prev {
                Some(p) => (p.version + 1, p.create_revision),
                None => (1, *r),
            };
            if e.kv.version != version || e.kv.create_revision != create {
                v.anomaly(
                    json!({"type": "wrong-version", "revision": r, "key": e.kv.key,
                    "version": e.kv.version, "expected-version": version,
                    "create-revision": e.kv.create_revision, "expected-create": create}),
                );
            }
            state.insert(e.kv.key.clone(), e.kv.clone());
        }
    }
    checked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Validity;
    use crate::history::build::H;

    fn put(key: &str, id: u64, rev: i64, prev: Option<Kv>) -> WEvent {
        let version = prev.as_ref().map_or(1, |p| p.version + 1);
        let create_revision = prev.as_ref().map_or(rev, |p| p.create_revision);
        WEvent {
            delete: false,
            kv: Kv {
                key: key.into(),
                value: id.to_string(),
                mod_revision: rev,
                create_revision,
                version,
            },
            prev,
        }
    }

    fn txn(id: u64, puts: &[&str], rev: Option<i64>) -> Op {
        Op::Txn {
            id,
            puts: puts.iter().map(|s| s.to_string()).collect(),
            deletes: vec![],
            revision: rev,
        }
    }

    /// Three txns at revisions 2, 3, 4: {a}, {a, b}, {b}.
    fn writes() -> (Vec<Event>, Vec<Vec<WEvent>>) {
        let mut h = H::new();
        h.ev(1, Kind::Invoke, txn(1, &["a"], None))
            .ev(1, Kind::Ok, txn(1, &["a"], Some(2)))
            .ev(1, Kind::Invoke, txn(2, &["a", "b"], None))
            .ev(1, Kind::Ok, txn(2, &["a", "b"], Some(3)))
            .ev(1, Kind::Invoke, txn(3, &["b"], None))
            .ev(1, Kind::Ok, txn(3, &["b"], Some(4)));
        let a2 = put("a", 1, 2, None);
        let a3 = put("a", 2, 3, Some(a2.kv.clone()));
        let b3 = put("b", 2, 3, None);
        let b4 = put("b", 3, 4, Some(b3.kv.clone()));
        (h.events, vec![vec![a2], vec![a3, b3], vec![b4]])
    }

    fn one_watcher(responses: Vec<Vec<WEvent>>) -> Vec<WatcherLog> {
        vec![WatcherLog {
            id: 0,
            segments: vec![Segment {
                node: 0,
                start_revision: 2,
                responses,
                compacted: None,
                end: String::new(),
            }],
        }]
    }

    fn run(history: &[Event], watchers: &[WatcherLog]) -> Verdict {
        check(
            history,
            &Observed {
                watchers,
                base: 1,
                last: Some(4),
            },
        )
    }

    fn types(v: &Verdict) -> Vec<String> {
        v.anomalies
            .iter()
            .map(|a| a["type"].as_str().unwrap_or("").to_string())
            .collect()
    }

    #[test]
    fn faithful_stream_is_valid() {
        let (h, resps) = writes();
        let v = run(&h, &one_watcher(resps));
        assert_eq!(v.valid, Validity::Valid, "{v:?}");
    }

    #[test]
    fn missing_event_is_caught() {
        let (h, mut resps) = writes();
        resps.remove(1);
        let v = run(&h, &one_watcher(resps));
        assert!(
            types(&v).contains(&"missing-revisions".to_string()),
            "{v:?}"
        );
    }

    #[test]
    fn duplicate_event_is_caught() {
        let (h, mut resps) = writes();
        resps.push(resps[2].clone());
        let v = run(&h, &one_watcher(resps));
        assert!(types(&v).contains(&"duplicate-event".to_string()), "{v:?}");
    }

    #[test]
    fn split_revision_is_caught() {
        let (h, resps) = writes();
        let split = vec![
            resps[0].clone(),
            vec![resps[1][0].clone()],
            vec![resps[1][1].clone()],
            resps[2].clone(),
        ];
        let v = run(&h, &one_watcher(split));
        assert!(types(&v).contains(&"split-revision".to_string()), "{v:?}");
    }

    #[test]
    fn wrong_prev_kv_and_disagreement_are_caught() {
        let (h, resps) = writes();
        let mut bad = resps.clone();
        if let Some(p) = bad[2][0].prev.as_mut() {
            p.value = "0".into();
        }
        let mut watchers = one_watcher(resps);
        let mut second = one_watcher(bad).remove(0);
        second.id = 1;
        watchers.insert(0, second);
        let v = run(&h, &watchers);
        let t = types(&v);
        assert!(t.contains(&"wrong-prev-kv".to_string()), "{v:?}");
        assert!(t.contains(&"watchers-disagree".to_string()), "{v:?}");
    }

    #[test]
    fn missing_prev_kv_is_excused_only_when_compacted() {
        let (mut h, mut resps) = writes();
        resps[2][0].prev = None;
        let v = run(&h, &one_watcher(resps.clone()));
        assert!(types(&v).contains(&"wrong-prev-kv".to_string()), "{v:?}");
        h.push(Event {
            index: h.len(),
            time: 1,
            process: crate::history::NEMESIS,
            kind: Kind::Info,
            node: None,
            op: Op::Nemesis {
                fault: "start-compact".into(),
                detail: crate::history::compaction_detail(4, "n1"),
            },
            error: None,
        });
        let v = run(&h, &one_watcher(resps));
        assert_eq!(v.valid, Validity::Valid, "{v:?}");
    }

    #[test]
    fn compaction_excuses_a_gap_only_when_announced() {
        let (h, resps) = writes();
        let mut w = one_watcher(vec![]);
        w[0].segments[0].compacted = Some(4);
        w[0].segments.push(Segment {
            node: 1,
            start_revision: 4,
            responses: vec![resps[2].clone()],
            compacted: None,
            end: String::new(),
        });
        let v = run(&h, &w);
        assert!(
            !types(&v).contains(&"missing-revisions".to_string()),
            "{v:?}"
        );
    }

    #[test]
    fn watcher_that_never_caught_up_is_unknown() {
        let (h, resps) = writes();
        let v = run(&h, &one_watcher(resps[..2].to_vec()));
        assert_eq!(v.valid, Validity::Unknown, "{v:?}");
    }
}
