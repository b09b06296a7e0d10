//! The objects workload's checkers. Each ConfigMap is a register checked for
//! linearizability on its own (kube promises linearizable GET and LIST when
//! resourceVersion is unset, and writes through any apiserver are kvstore transactions);
//! a list is a read of every key it was asked about, at one point within its call. And
//! an object's resourceVersion never goes back: an operation that began after another
//! ended sees the same resourceVersion or a later one.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use super::linear::RegOp;
use super::register::check_keys;
use super::Verdict;
use crate::history::{pairs, Event, Kind, Op};

pub fn check(history: &[Event], deadline: Instant) -> Vec<Verdict> {
    vec![linearizable(history, deadline), versions_grow(history)]
}

fn linearizable(history: &[Event], deadline: Instant) -> Verdict {
    check_keys(
        "linearizable-objects",
        history,
        deadline,
        |invoke, complete| match (invoke, complete) {
            (Op::Get { key, .. }, Some(Op::Get { value, .. })) => {
                vec![(key.clone(), RegOp::Read(*value))]
            }
            (Op::Put { key, value, .. }, _) => vec![(key.clone(), RegOp::Write(*value))],
            (Op::Update { key, from, to, .. }, _) => vec![(key.clone(), RegOp::Cas(*from, *to))],
            (Op::Create { key, value, .. }, _) => vec![(key.clone(), RegOp::Create(*value))],
            (Op::Delete { key }, _) => vec![(key.clone(), RegOp::Delete)],
            (
                Op::List { keys, .. },
                Some(Op::List {
                    found: Some(found), ..
                }),
            ) => keys
                .iter()
                .map(|k| {
                    let v = found.iter().find(|l| &l.key == k).and_then(|l| l.value);
                    (k.clone(), RegOp::Read(v))
                })
                .collect(),
            _ => vec![],
        },
    )
}

/// One resourceVersion observed: by the operation called at `call` that returned at
/// `ret`, as event `index`.
#[derive(Clone, Copy)]
struct Seen {
    call: u64,
    ret: u64,
    rv: u64,
    index: usize,
}

/// resourceVersions of one object never go back in real time.
fn versions_grow(history: &[Event]) -> Verdict {
    let mut v = Verdict::new("resource-versions-grow");
    let mut by_key: BTreeMap<&str, Vec<Seen>> = BTreeMap::new();
    let all = pairs(history);
    for p in &all {
        let Some(c) = p.complete.as_ref().filter(|c| c.kind == Kind::Ok) else {
            continue;
        };
        let seen = |rv: u64| Seen {
            call: p.invoke.time,
            ret: c.time,
            rv,
            index: c.index,
        };
        match &c.op {
            Op::Get {
                key, rv: Some(rv), ..
            }
            | Op::Put {
                key, rv: Some(rv), ..
            }
            | Op::Update {
                key, rv: Some(rv), ..
            }
            | Op::Create {
                key, rv: Some(rv), ..
            } => by_key.entry(key).or_default().push(seen(*rv)),
            Op::List {
                found: Some(found), ..
            } => {
                for l in found {
                    by_key.entry(&l.key).or_default().push(seen(l.rv));
                }
            }
            _ => {}
        }
    }
    let mut observations = 0;
    for (key, seen) in &by_key {
        observations += seen.len();
        // Sweep in call order, folding in every observation that returned before.
        let mut by_ret = seen.clone();
        by_ret.sort_by_key(|s| s.ret);
        let mut by_call = seen.clone();
        by_call.sort_by_key(|s| s.call);
        let mut done = 0;
        let mut highest: Option<Seen> = None;
        for later in &by_call {
            while done < by_ret.len() && by_ret[done].ret < later.call {
                if highest.is_none_or(|h| by_ret[done].rv > h.rv) {
                    highest = Some(by_ret[done]);
                }
                done += 1;
            }
            if let Some(h) = highest.filter(|h| h.rv > later.rv) {
                v.anomaly(json!({
                    "type": "resource-version-went-back",
                    "key": key,
                    "earlier": {"event": h.index, "resource-version": h.rv},
                    "later": {"event": later.index, "resource-version": later.rv},
                }));
            }
        }
    }
    v.stats = json!({"objects": by_key.len(), "observations": observations});
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Validity;
    use crate::history::build::H;
    use crate::history::Listed;
    use std::time::Duration;

    fn get(k: &str, v: Option<u64>, rv: Option<u64>) -> Op {
        Op::Get {
            key: k.into(),
            value: v,
            rv,
        }
    }
    fn put(k: &str, v: u64, rv: Option<u64>) -> Op {
        Op::Put {
            key: k.into(),
            value: v,
            rv,
        }
    }

    fn deadline() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn a_stale_list_is_caught_for_the_key_it_missed() {
        let mut h = H::new();
        let list = |found| Op::List {
            keys: vec!["a".into(), "b".into()],
            found,
        };
        h.ev(1, Kind::Invoke, put("a", 1, None))
            .ev(1, Kind::Ok, put("a", 1, Some(5)))
            .ev(2, Kind::Invoke, list(None))
            .ev(
                2,
                Kind::Ok,
                list(Some(vec![Listed {
                    key: "b".into(),
                    value: Some(7),
                    rv: 3,
                }])),
            );
        let v = check(&h.events, deadline());
        assert_eq!(v[0].valid, Validity::Invalid, "{v:?}");
        // "b" was never written, so it cannot hold 7 either.
        assert_eq!(v[0].stats["invalid-keys"], 2);
        assert_eq!(v[1].valid, Validity::Valid);
    }

    #[test]
    fn create_delete_and_failed_update_are_linearizable() {
        let mut h = H::new();
        let create = Op::Create {
            key: "a".into(),
            value: 1,
            rv: None,
        };
        let update = Op::Update {
            key: "a".into(),
            from: 9,
            to: 2,
            rv: None,
        };
        let delete = Op::Delete { key: "a".into() };
        h.ev(1, Kind::Invoke, create.clone())
            .ev(1, Kind::Ok, create)
            .ev(1, Kind::Invoke, update.clone())
            .ev(1, Kind::Fail, update)
            .ev(2, Kind::Invoke, delete.clone())
            .ev(2, Kind::Ok, delete)
            .ev(3, Kind::Invoke, get("a", None, None))
            .ev(3, Kind::Ok, get("a", None, None));
        let v = check(&h.events, deadline());
        assert_eq!(v[0].valid, Validity::Valid, "{v:?}");
    }

    #[test]
    fn a_resource_version_that_goes_back_is_caught_but_concurrent_ones_may_cross() {
        let mut h = H::new();
        h.ev(1, Kind::Invoke, put("a", 1, None))
            .ev(2, Kind::Invoke, get("a", None, None))
            .ev(1, Kind::Ok, put("a", 1, Some(10)))
            // Concurrent with the put: an older version is fine.
            .ev(2, Kind::Ok, get("a", Some(0), Some(4)));
        assert_eq!(versions_grow(&h.events).valid, Validity::Valid);
        h.ev(3, Kind::Invoke, get("a", None, None))
            .ev(3, Kind::Ok, get("a", Some(1), Some(9)));
        let v = versions_grow(&h.events);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.anomalies[0]["earlier"]["resource-version"], 10);
        assert_eq!(v.anomalies[0]["later"]["resource-version"], 9);
    }
}
