//! The set workload's checker: every acknowledged insert must be in the final reads, nothing
//! never inserted may appear, an insert that certainly failed must not appear, and the final
//! reads through every member must agree.

use std::collections::BTreeSet;

use serde_json::json;

use super::{Validity, Verdict};
use crate::history::{pairs, Event, Kind, Op};

pub fn check(history: &[Event]) -> Verdict {
    let mut v = Verdict::new("set");
    let mut attempted = BTreeSet::new();
    let mut acked = BTreeSet::new();
    let mut unknown = BTreeSet::new();
    let mut failed = BTreeSet::new();
    let mut finals: Vec<(Option<usize>, BTreeSet<u64>)> = Vec::new();
    for p in pairs(history) {
        match (&p.invoke.op, p.kind()) {
            (Op::Add { element }, k) => {
                attempted.insert(*element);
                match k {
                    Kind::Ok => acked.insert(*element),
                    Kind::Fail => failed.insert(*element),
                    _ => unknown.insert(*element),
                };
            }
            (Op::ReadAll { .. }, Kind::Ok) => {
                if let Some(Op::ReadAll {
                    elements: Some(els),
                }) = p.complete.as_ref().map(|c| &c.op)
                {
                    finals.push((p.invoke.node, els.iter().copied().collect()));
                }
            }
            _ => {}
        }
    }
    let Some((_, read)) = finals.first().cloned() else {
        v.unknown("no final read succeeded");
        v.stats = json!({"attempted": attempted.len(), "acknowledged": acked.len()});
        return v;
    };
    for (node, other) in &finals[1..] {
        if *other != read {
            let only_first: Vec<_> = read.difference(other).take(20).collect();
            let only_other: Vec<_> = other.difference(&read).take(20).collect();
            v.anomaly(json!({
                "type": "final-reads-disagree",
                "node": node,
                "missing-on-node": only_first,
                "extra-on-node": only_other,
            }));
        }
    }
    let lost: Vec<u64> = acked.difference(&read).copied().collect();
    let unexpected: Vec<u64> = read.difference(&attempted).copied().collect();
    let failed_visible: Vec<u64> = failed.intersection(&read).copied().collect();
    let recovered = unknown.intersection(&read).count();
    for (kind, els) in [
        ("lost", &lost),
        ("unexpected", &unexpected),
        ("failed-but-present", &failed_visible),
    ] {
        if !els.is_empty() {
            v.anomaly(json!({
                "type": kind,
                "count": els.len(),
                "elements": els.iter().take(50).collect::<Vec<_>>(),
            }));
        }
    }
    v.stats = json!({
        "attempted": attempted.len(),
        "acknowledged": acked.len(),
        "unknown": unknown.len(),
        "failed": failed.len(),
        "final-reads": finals.len(),
        "read": read.len(),
        "lost": lost.len(),
        "unexpected": unexpected.len(),
        "recovered": recovered,
    });
    if v.anomalies.is_empty() {
        v.valid = Validity::Valid;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::build::H;

    fn add(e: u64) -> Op {
        Op::Add { element: e }
    }
    fn read_all(els: Option<Vec<u64>>) -> Op {
        Op::ReadAll { elements: els }
    }

    fn history(final_read: Vec<u64>) -> Vec<Event> {
        let mut h = H::new();
        h.ev(1, Kind::Invoke, add(1))
            .ev(1, Kind::Ok, add(1))
            .ev(2, Kind::Invoke, add(2))
            .ev(2, Kind::Info, add(2))
            .ev(3, Kind::Invoke, add(3))
            .ev(3, Kind::Ok, add(3))
            .ev(9, Kind::Invoke, read_all(None))
            .ev(9, Kind::Ok, read_all(Some(final_read)));
        h.events
    }

    #[test]
    fn all_acknowledged_present_is_valid_and_counts_recovered() {
        let v = check(&history(vec![1, 2, 3]));
        assert_eq!(v.valid, Validity::Valid);
        assert_eq!(v.stats["recovered"], 1);
    }

    #[test]
    fn lost_write_is_caught() {
        let v = check(&history(vec![1, 2]));
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.anomalies[0]["type"], "lost");
        assert_eq!(v.anomalies[0]["elements"][0], 3);
    }

    #[test]
    fn unexpected_element_is_caught() {
        let v = check(&history(vec![1, 3, 77]));
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.anomalies[0]["type"], "unexpected");
    }

    #[test]
    fn no_final_read_is_unknown_not_valid() {
        let mut h = H::new();
        h.ev(1, Kind::Invoke, add(1)).ev(1, Kind::Ok, add(1));
        assert_eq!(check(&h.events).valid, Validity::Unknown);
    }
}
