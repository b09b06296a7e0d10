//! The register workload's checker: every key is an independent register, checked for
//! linearizability on its own (keys are independent, so the search stays small).

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use super::linear::{self, LinOp, Outcome, RegOp};
use super::Verdict;
use crate::history::{pairs, Event, Kind, Op};

/// How many events of a failing prefix are shown in a report.
const SHOWN: usize = 16;

pub fn check(history: &[Event], deadline: Instant) -> Verdict {
    check_keys(
        "linearizable-register",
        history,
        deadline,
        |invoke, complete| {
            let key = match invoke {
                Op::Read { key, .. } | Op::Write { key, .. } | Op::Cas { key, .. } => key.clone(),
                _ => return vec![],
            };
            let op = match (invoke, complete) {
                (Op::Read { .. }, Some(Op::Read { value, .. })) => RegOp::Read(*value),
                // A read with no result has no effect.
                (Op::Read { .. }, _) => return vec![],
                (Op::Write { value, .. }, _) => RegOp::Write(*value),
                (Op::Cas { from, to, .. }, _) => RegOp::Cas(*from, *to),
                _ => return vec![],
            };
            vec![(key, op)]
        },
    )
}

/// Checks every key as an independent register. `ops_of` maps an operation (its
/// invocation, and its completion when it completed ok) to what it did to which keys;
/// failed operations are left out, and those of unknown outcome may take effect at any
/// time after their invocation. Reads must only be returned for completed operations.
pub fn check_keys(
    name: &str,
    history: &[Event],
    deadline: Instant,
    ops_of: impl Fn(&Op, Option<&Op>) -> Vec<(String, RegOp)>,
) -> Verdict {
    let mut v = Verdict::new(name);
    let mut by_key: BTreeMap<String, Vec<(LinOp, Vec<Event>)>> = BTreeMap::new();
    for p in pairs(history) {
        let (ret, complete) = match p.kind() {
            Kind::Ok => match &p.complete {
                Some(c) => (c.time, Some(&c.op)),
                None => continue,
            },
            Kind::Info => (u64::MAX, None),
            Kind::Fail | Kind::Invoke => continue,
        };
        for (key, op) in ops_of(&p.invoke.op, complete) {
            let mut events = vec![p.invoke.clone()];
            events.extend(p.complete.clone());
            let ops = by_key.entry(key).or_default();
            let tag = ops.len();
            ops.push((
                LinOp {
                    call: p.invoke.time,
                    ret,
                    op,
                    tag,
                },
                events,
            ));
        }
    }

    let (mut valid_keys, mut invalid_keys, mut unknown_keys) = (0, 0, 0);
    for (key, entries) in &by_key {
        let ops: Vec<LinOp> = entries.iter().map(|(o, _)| *o).collect();
        match linear::check(&ops, None, deadline) {
            Outcome::Linearizable => valid_keys += 1,
            Outcome::Unknown => unknown_keys += 1,
            Outcome::NotLinearizable => {
                invalid_keys += 1;
                let end = linear::shortest_failing_prefix(&ops, None, deadline);
                let mut shown: Vec<&LinOp> = ops
                    .iter()
                    .filter(|o| end.is_none_or(|t| o.call <= t))
                    .collect();
                shown.sort_by_key(|o| o.call);
                let skip = shown.len().saturating_sub(SHOWN);
                let events: Vec<&Event> = shown[skip..]
                    .iter()
                    .flat_map(|o| entries[o.tag].1.iter())
                    .filter(|e| end.is_none_or(|t| e.time <= t))
                    .collect();
                v.anomaly(json!({
                    "type": "nonlinearizable",
                    "key": key,
                    "operations": ops.len(),
                    "failing-prefix-ends-at-ns": end,
                    "last-events-of-failing-prefix": events,
                }));
            }
        }
    }
    v.stats = json!({
        "keys": by_key.len(),
        "valid-keys": valid_keys,
        "invalid-keys": invalid_keys,
        "unknown-keys": unknown_keys,
    });
    if unknown_keys > 0 {
        v.unknown("linearizability search ran out of time on some keys");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Validity;
    use crate::history::build::H;
    use std::time::Duration;

    fn read(k: &str, v: Option<u64>) -> Op {
        Op::Read {
            key: k.into(),
            value: v,
        }
    }
    fn write(k: &str, v: u64) -> Op {
        Op::Write {
            key: k.into(),
            value: v,
        }
    }

    #[test]
    fn stale_read_on_one_key_is_reported_with_its_key() {
        let mut h = H::new();
        h.ev(1, Kind::Invoke, write("a", 1))
            .ev(1, Kind::Ok, write("a", 1))
            .ev(2, Kind::Invoke, write("b", 5))
            .ev(2, Kind::Ok, write("b", 5))
            .ev(1, Kind::Invoke, write("a", 2))
            .ev(1, Kind::Ok, write("a", 2))
            .ev(3, Kind::Invoke, read("a", None))
            .ev(3, Kind::Ok, read("a", Some(1)))
            .ev(3, Kind::Invoke, read("b", None))
            .ev(3, Kind::Ok, read("b", Some(5)));
        let v = check(&h.events, Instant::now() + Duration::from_secs(5));
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.anomalies.len(), 1);
        assert_eq!(v.anomalies[0]["key"], "a");
        assert_eq!(v.stats["valid-keys"], 1);
    }

    #[test]
    fn failed_cas_has_no_effect_and_unknown_write_may_apply() {
        let mut h = H::new();
        let cas = Op::Cas {
            key: "a".into(),
            from: 9,
            to: 10,
        };
        h.ev(1, Kind::Invoke, write("a", 1))
            .ev(1, Kind::Ok, write("a", 1))
            .ev(1, Kind::Invoke, cas.clone())
            .ev(1, Kind::Fail, cas)
            .ev(2, Kind::Invoke, write("a", 3))
            .ev(2, Kind::Info, write("a", 3))
            .ev(3, Kind::Invoke, read("a", None))
            .ev(3, Kind::Ok, read("a", Some(3)));
        let v = check(&h.events, Instant::now() + Duration::from_secs(5));
        assert_eq!(v.valid, Validity::Valid, "{v:?}");
    }
}
