//! Linearizability of one register (one key): the Wing & Gong search as refined by Lowe
//! (and used by porcupine): walk the history's calls and returns in time order, linearize a
//! call when the model allows it, backtrack at a return whose call is not yet linearized, and
//! memoize (set of linearized operations, model state) so no configuration is explored twice.
//!
//! An operation whose outcome is unknown returns at infinity: it may be linearized at any
//! point after its call, including "never" (after everything else).

use std::collections::HashSet;
use std::time::Instant;

/// A register operation with its observed result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegOp {
    /// Read that returned this value (None: absent).
    Read(Option<u64>),
    Write(u64),
    /// Compare-and-set that succeeded (failed ones had no effect and are left out).
    Cas(u64, u64),
    /// Create: succeeds only when the key is absent.
    Create(u64),
    /// Delete: succeeds only when the key is present.
    Delete,
}

#[derive(Clone, Copy, Debug)]
pub struct LinOp {
    pub call: u64,
    /// `u64::MAX`: outcome unknown.
    pub ret: u64,
    pub op: RegOp,
    /// Index into the caller's list of events, for reporting.
    pub tag: usize,
}

pub type State = Option<u64>;

fn step(state: State, op: RegOp) -> Option<State> {
    match op {
        RegOp::Read(v) => (state == v).then_some(state),
        RegOp::Write(v) => Some(Some(v)),
        RegOp::Cas(from, to) => (state == Some(from)).then_some(Some(to)),
        RegOp::Create(v) => state.is_none().then_some(Some(v)),
        RegOp::Delete => state.is_some().then_some(None),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Linearizable,
    NotLinearizable,
    /// The search ran past its deadline.
    Unknown,
}

const NONE: usize = usize::MAX;

/// Checks `ops` against a register starting in `init`. Stops with `Unknown` at `deadline`.
pub fn check(ops: &[LinOp], init: State, deadline: Instant) -> Outcome {
    let n = ops.len();
    if n == 0 {
        return Outcome::Linearizable;
    }
    // Entries: 2 per op, sorted by time, calls before returns at equal times.
    let mut entries: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        entries.push((o.call, false, i));
        entries.push((o.ret, true, i));
    }
    entries.sort_by_key(|&(t, is_ret, i)| (t, is_ret, i));
    // Doubly linked list over entry positions; position 2n is the head sentinel.
    let head = 2 * n;
    let mut next = vec![NONE; 2 * n + 1];
    let mut prev = vec![NONE; 2 * n + 1];
    let mut ret_pos = vec![0usize; n];
    let mut call_pos = vec![0usize; n];
    for (p, &(_, is_ret, i)) in entries.iter().enumerate() {
        if is_ret {
            ret_pos[i] = p;
        } else {
            call_pos[i] = p;
        }
    }
    next[head] = 0;
    prev[0] = head;
    for p in 0..2 * n {
        next[p] = if p + 1 < 2 * n { p + 1 } else { NONE };
        if p + 1 < 2 * n {
            prev[p + 1] = p;
        }
    }

    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, p: usize| {
        let (a, b) = (prev[p], next[p]);
        next[a] = b;
        if b != NONE {
            prev[b] = a;
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, p: usize| {
        let (a, b) = (prev[p], next[p]);
        next[a] = p;
        if b != NONE {
            prev[b] = p;
        }
    };

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state = init;
    let mut cur = next[head];
    let mut steps: u64 = 0;
    while next[head] != NONE {
        steps += 1;
        if steps % 4096 == 0 && Instant::now() > deadline {
            return Outcome::Unknown;
        }
        // `cur` never runs past the end (the list ends with a return), but if it did that
        // would be a dead end too.
        let call = (cur != NONE)
            .then(|| entries[cur])
            .filter(|&(_, is_ret, _)| !is_ret);
        if let Some((_, _, i)) = call {
            if let Some(new_state) = step(state, ops[i].op) {
                linearized[i / 64] |= 1 << (i % 64);
                if cache.insert((linearized.clone(), new_state)) {
                    stack.push((i, state));
                    state = new_state;
                    unlink(&mut next, &mut prev, call_pos[i]);
                    unlink(&mut next, &mut prev, ret_pos[i]);
                    cur = next[head];
                    continue;
                }
                linearized[i / 64] &= !(1 << (i % 64));
            }
            cur = next[cur];
            continue;
        }
        if cur != NONE && ops[entries[cur].2].ret == u64::MAX {
            // Returns at infinity sort last, so every operation still unlinearized has an
            // unknown outcome (a finite return would have come first): they never happened.
            return Outcome::Linearizable;
        }
        // A return whose call is not linearized: this path is dead; backtrack.
        let Some((j, old)) = stack.pop() else {
            return Outcome::NotLinearizable;
        };
        state = old;
        linearized[j / 64] &= !(1 << (j % 64));
        relink(&mut next, &mut prev, ret_pos[j]);
        relink(&mut next, &mut prev, call_pos[j]);
        cur = next[call_pos[j]];
    }
    Outcome::Linearizable
}

/// The history cut at `t`: operations called by then, with those that had not returned by
/// then made pending (reads dropped: a pending read has no effect).
pub fn prefix(ops: &[LinOp], t: u64) -> Vec<LinOp> {
    ops.iter()
        .filter(|o| o.call <= t)
        .filter_map(|o| {
            if o.ret <= t {
                Some(*o)
            } else if matches!(o.op, RegOp::Read(_)) {
                None
            } else {
                Some(LinOp {
                    ret: u64::MAX,
                    ..*o
                })
            }
        })
        .collect()
}

/// The shortest failing prefix of a non-linearizable history (linearizability is
/// prefix-closed, so a binary search over call times finds it). Returns its end time.
pub fn shortest_failing_prefix(ops: &[LinOp], init: State, deadline: Instant) -> Option<u64> {
    let mut times: Vec<u64> = ops.iter().map(|o| o.call).collect();
    times.extend(ops.iter().map(|o| o.ret).filter(|&r| r != u64::MAX));
    times.sort_unstable();
    times.dedup();
    let (mut lo, mut hi) = (0usize, times.len().checked_sub(1)?);
    if check(&prefix(ops, times[hi]), init, deadline) != Outcome::NotLinearizable {
        return None;
    }
    while lo < hi {
        let mid = (lo + hi) / 2;
        match check(&prefix(ops, times[mid]), init, deadline) {
            Outcome::NotLinearizable => hi = mid,
            Outcome::Linearizable => lo = mid + 1,
            Outcome::Unknown => return Some(times[hi]),
        }
    }
    Some(times[hi])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn op(call: u64, ret: u64, op: RegOp) -> LinOp {
        LinOp {
            call,
            ret,
            op,
            tag: 0,
        }
    }
    fn dl() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[test]
    fn create_needs_absence_and_delete_presence() {
        let d = Instant::now() + Duration::from_secs(5);
        let ok = [
            op(0, 1, RegOp::Create(1)),
            op(2, 3, RegOp::Delete),
            op(4, 5, RegOp::Read(None)),
            op(6, 7, RegOp::Create(2)),
            op(8, 9, RegOp::Read(Some(2))),
        ];
        assert_eq!(check(&ok, None, d), Outcome::Linearizable);
        let twice = [op(0, 1, RegOp::Create(1)), op(2, 3, RegOp::Create(2))];
        assert_eq!(check(&twice, None, d), Outcome::NotLinearizable);
        let absent = [op(0, 1, RegOp::Delete)];
        assert_eq!(check(&absent, None, d), Outcome::NotLinearizable);
        // An unknown delete may have happened.
        let maybe = [
            op(0, 1, RegOp::Write(1)),
            op(2, u64::MAX, RegOp::Delete),
            op(3, 4, RegOp::Read(None)),
            op(5, 6, RegOp::Create(3)),
        ];
        assert_eq!(check(&maybe, None, d), Outcome::Linearizable);
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = [
            op(0, 1, RegOp::Write(1)),
            op(2, 3, RegOp::Read(Some(1))),
            op(4, 5, RegOp::Cas(1, 2)),
            op(6, 7, RegOp::Read(Some(2))),
        ];
        assert_eq!(check(&h, None, dl()), Outcome::Linearizable);
    }

    #[test]
    fn stale_read_is_caught() {
        // write 1 completes, then write 2 completes, then a read returns 1.
        let h = [
            op(0, 1, RegOp::Write(1)),
            op(2, 3, RegOp::Write(2)),
            op(4, 5, RegOp::Read(Some(1))),
        ];
        assert_eq!(check(&h, None, dl()), Outcome::NotLinearizable);
        assert_eq!(shortest_failing_prefix(&h, None, dl()), Some(5));
    }

    #[test]
    fn concurrent_ops_may_take_either_order() {
        let h = [
            op(0, 10, RegOp::Write(1)),
            op(1, 11, RegOp::Write(2)),
            op(12, 13, RegOp::Read(Some(1))),
            op(14, 15, RegOp::Read(Some(1))),
        ];
        assert_eq!(check(&h, None, dl()), Outcome::Linearizable);
        // ...but two reads cannot see the writes in both orders.
        let h = [
            op(0, 10, RegOp::Write(1)),
            op(1, 11, RegOp::Write(2)),
            op(12, 13, RegOp::Read(Some(1))),
            op(14, 15, RegOp::Read(Some(2))),
            op(16, 17, RegOp::Read(Some(1))),
        ];
        assert_eq!(check(&h, None, dl()), Outcome::NotLinearizable);
    }

    #[test]
    fn unknown_write_may_take_effect_late_or_never() {
        let late = [
            op(0, u64::MAX, RegOp::Write(7)),
            op(5, 6, RegOp::Read(None)),
            op(100, 101, RegOp::Read(Some(7))),
        ];
        assert_eq!(check(&late, None, dl()), Outcome::Linearizable);
        let never = [
            op(0, u64::MAX, RegOp::Write(7)),
            op(100, 101, RegOp::Read(None)),
        ];
        assert_eq!(check(&never, None, dl()), Outcome::Linearizable);
        // but once seen, it cannot be unseen.
        let flicker = [
            op(0, u64::MAX, RegOp::Write(7)),
            op(10, 11, RegOp::Read(Some(7))),
            op(20, 21, RegOp::Read(None)),
        ];
        assert_eq!(check(&flicker, None, dl()), Outcome::NotLinearizable);
    }

    #[test]
    fn unknown_cas_that_cannot_apply_never_happened() {
        let h = [
            op(0, 1, RegOp::Write(1)),
            op(2, u64::MAX, RegOp::Cas(5, 6)),
            op(3, 4, RegOp::Read(Some(1))),
        ];
        assert_eq!(check(&h, None, dl()), Outcome::Linearizable);
    }

    #[test]
    fn lost_write_is_caught() {
        let h = [
            op(0, 1, RegOp::Write(1)),
            op(2, 3, RegOp::Cas(1, 2)),
            op(4, 5, RegOp::Read(Some(1))),
        ];
        assert_eq!(check(&h, None, dl()), Outcome::NotLinearizable);
    }

    #[test]
    fn search_past_its_deadline_is_unknown() {
        // Many concurrent writes and a read no order explains: exponential without a
        // deadline; with one already passed the answer must be unknown, never valid.
        let mut h: Vec<LinOp> = (0..40).map(|i| op(0, 1000, RegOp::Write(i))).collect();
        h.push(op(1001, 1002, RegOp::Read(Some(999))));
        assert_eq!(check(&h, None, Instant::now()), Outcome::Unknown);
    }
}
