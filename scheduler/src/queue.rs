//! The scheduling queue, as Kubernetes' PriorityQueue: pods wait in one of three places.
//! - active: ready to be tried, highest priority first, then oldest;
//! - backoff: tried and failed, waiting 1 s doubling to 10 s per attempt;
//! - unschedulable: fit nowhere; they move back when something changes that could make
//!   them fit (a node added or changed, a pod deleted) and at least every 5 minutes.
//!
//! Pure: time is passed in, so tests run without a clock.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::backoff::Backoff;
use tokio::time::Instant;

use crate::nodeinfo::PodInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
    /// Popped and being scheduled.
    InFlight,
}

#[derive(Debug, Clone)]
struct Entry {
    info: Arc<PodInfo>,
    place: Place,
    attempts: u32,
    /// When it was put where it is.
    since: Instant,
    /// When it was first added (for queue order and latency).
    added: Instant,
    /// Distinguishes current heap entries from stale ones.
    gen: u64,
}

#[derive(PartialEq, Eq)]
struct ActiveKey {
    priority: i32,
    added: Instant,
    gen: u64,
    uid: String,
}

impl Ord for ActiveKey {
    fn cmp(&self, o: &Self) -> Ordering {
        self.priority
            .cmp(&o.priority)
            .then_with(|| o.added.cmp(&self.added))
            .then_with(|| o.gen.cmp(&self.gen))
    }
}
impl PartialOrd for ActiveKey {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// `initial` doubling per attempt after the first, up to `max`; nothing before any attempt.
fn backoff(initial: Duration, max: Duration, attempts: u32) -> Duration {
    match attempts.checked_sub(1) {
        None => Duration::ZERO,
        Some(n) => Backoff::new(initial, max).nth(n),
    }
}

/// A pod handed out for one scheduling attempt.
#[derive(Debug, Clone)]
pub struct Popped {
    pub info: Arc<PodInfo>,
    pub attempts: u32,
    pub added: Instant,
    /// The scheduling cycle it was popped in.
    pub cycle: u64,
}

pub struct SchedulingQueue {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<ActiveKey>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    next_gen: u64,
    cycle: u64,
    /// The cycle in which something last asked to move unschedulable pods: a pod popped in
    /// or before that cycle that then fails goes to backoff, not unschedulable, since the
    /// change may have come while it was being tried.
    move_request_cycle: u64,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub max_unschedulable: Duration,
    /// When unschedulable pods were last scanned for staleness (a scan visits every pod,
    /// so it runs at most once a second, not on every pop).
    last_stale_scan: Option<Instant>,
}

impl Default for SchedulingQueue {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            next_gen: 0,
            cycle: 0,
            move_request_cycle: 0,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_unschedulable: Duration::from_secs(300),
            last_stale_scan: None,
        }
    }
}

impl SchedulingQueue {
    fn gen(&mut self) -> u64 {
        self.next_gen += 1;
        self.next_gen
    }

    fn put(&mut self, uid: &str, place: Place, now: Instant) {
        let gen = self.gen();
        let backoff_until = {
            let Some(e) = self.entries.get(uid) else {
                return;
            };
            e.since + self.backoff_for(e.attempts)
        };
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        e.place = place;
        e.gen = gen;
        match place {
            Place::Active => {
                e.since = now;
                self.active.push(ActiveKey {
                    priority: e.info.priority,
                    added: e.added,
                    gen,
                    uid: uid.to_string(),
                })
            }
            Place::Backoff => self
                .backoff
                .push(Reverse((backoff_until, gen, uid.to_string()))),
            Place::Unschedulable => e.since = now,
            Place::InFlight => {}
        }
    }

    pub fn backoff_for(&self, attempts: u32) -> Duration {
        backoff(self.initial_backoff, self.max_backoff, attempts)
    }

    /// A new pod to schedule, or a changed one. A change of anything but status (checked by
    /// the caller with `changed`) gives an unschedulable pod another try.
    pub fn upsert(&mut self, info: Arc<PodInfo>, changed: bool, now: Instant) {
        let uid = info.uid.clone();
        let initial = self.initial_backoff;
        let max = self.max_backoff;
        match self.entries.get_mut(&uid) {
            Some(e) => {
                e.info = info;
                if changed && e.place == Place::Unschedulable {
                    let place = if e.since + backoff(initial, max, e.attempts) > now {
                        Place::Backoff
                    } else {
                        Place::Active
                    };
                    self.put(&uid, place, now);
                }
            }
            None => {
                let gen = self.gen();
                self.entries.insert(
                    uid.clone(),
                    Entry {
                        info,
                        place: Place::Active,
                        attempts: 0,
                        since: now,
                        added: now,
                        gen,
                    },
                );
                self.put(&uid, Place::Active, now);
            }
        }
    }

    /// The pod is gone, bound, or no longer ours.
    pub fn remove(&mut self, uid: &str) {
        self.entries.remove(uid);
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.entries.contains_key(uid)
    }

    /// The queued version of a pod.
    pub fn get(&self, uid: &str) -> Option<&Arc<PodInfo>> {
        self.entries.get(uid).map(|e| &e.info)
    }

    /// Keeps only the pods `keep` accepts (and those being tried).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.entries
            .retain(|uid, e| e.place == Place::InFlight || keep(uid));
    }

    /// Moves pods whose backoff ended to active, and pods unschedulable for too long to
    /// backoff or active.
    pub fn flush(&mut self, now: Instant) {
        while let Some(Reverse((until, gen, uid))) = self.backoff.peek().cloned() {
            if until > now {
                break;
            }
            self.backoff.pop();
            if self
                .entries
                .get(&uid)
                .is_some_and(|e| e.gen == gen && e.place == Place::Backoff)
            {
                self.put(&uid, Place::Active, now);
            }
        }
        if self
            .last_stale_scan
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_stale_scan = Some(now);
        let stale: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.place == Place::Unschedulable && now >= e.since + self.max_unschedulable
            })
            .map(|(u, _)| u.clone())
            .collect();
        for uid in stale {
            self.put(&uid, Place::Active, now);
        }
    }

    /// Something changed that may make unschedulable pods fit.
    pub fn move_all_to_active_or_backoff(&mut self, now: Instant) {
        self.move_request_cycle = self.cycle;
        let uids: Vec<(String, bool)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.place == Place::Unschedulable)
            .map(|(u, e)| (u.clone(), e.since + self.backoff_for(e.attempts) > now))
            .collect();
        for (uid, backing_off) in uids {
            let place = if backing_off {
                Place::Backoff
            } else {
                Place::Active
            };
            self.put(&uid, place, now);
        }
    }

    /// The next pod to try, if any is active.
    pub fn pop(&mut self) -> Option<Popped> {
        while let Some(k) = self.active.pop() {
            let Some(e) = self.entries.get_mut(&k.uid) else {
                continue;
            };
            if e.gen != k.gen || e.place != Place::Active {
                continue;
            }
            e.place = Place::InFlight;
            e.attempts = e.attempts.saturating_add(1);
            self.cycle += 1;
            return Some(Popped {
                info: e.info.clone(),
                attempts: e.attempts,
                added: e.added,
                cycle: self.cycle,
            });
        }
        None
    }

    /// The attempt found no node. The pod waits in unschedulable, or in backoff when a move
    /// request came in while it was being tried.
    pub fn unschedulable(&mut self, p: &Popped, now: Instant) {
        let Some(e) = self.entries.get_mut(&p.info.uid) else {
            return;
        };
        if e.place != Place::InFlight {
            return;
        }
        e.since = now;
        let place = if self.move_request_cycle >= p.cycle {
            Place::Backoff
        } else {
            Place::Unschedulable
        };
        self.put(&p.info.uid, place, now);
    }

    /// The attempt failed for another reason (a binding error): try again after backoff.
    pub fn retry(&mut self, uid: &str, now: Instant) {
        if let Some(e) = self.entries.get_mut(uid) {
            e.since = now;
            self.put(uid, Place::Backoff, now);
        }
    }

    /// When the earliest backoff ends.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((t, _, _))| *t)
    }

    /// (active, backoff, unschedulable) counts, for metrics.
    pub fn sizes(&self) -> (usize, usize, usize) {
        let mut s = (0, 0, 0);
        for e in self.entries.values() {
            match e.place {
                Place::Active | Place::InFlight => s.0 += 1,
                Place::Backoff => s.1 += 1,
                Place::Unschedulable => s.2 += 1,
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::pod;

    fn info(name: &str, prio: i32) -> Arc<PodInfo> {
        let mut p = pod(name, "", "");
        p.spec.as_mut().unwrap().priority = Some(prio);
        PodInfo::new(Arc::new(p))
    }

    #[test]
    fn higher_priority_first_then_oldest() {
        let mut q = SchedulingQueue::default();
        let t = Instant::now();
        q.upsert(info("low", 0), true, t);
        q.upsert(info("old", 10), true, t + Duration::from_millis(1));
        q.upsert(info("new", 10), true, t + Duration::from_millis(2));
        let order: Vec<String> = std::iter::from_fn(|| q.pop())
            .map(|p| p.info.name.clone())
            .collect();
        assert_eq!(order, ["old", "new", "low"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_move_and_then_back_off() {
        let mut q = SchedulingQueue::default();
        let t = Instant::now();
        q.upsert(info("p", 0), true, t);
        let p = q.pop().unwrap();
        q.unschedulable(&p, t);
        q.flush(t + Duration::from_secs(60));
        assert!(q.pop().is_none(), "nothing changed: it stays unschedulable");
        assert_eq!(q.sizes(), (0, 0, 1));
        // A node appears 0.5 s later: the 1 s backoff has not ended yet.
        q.move_all_to_active_or_backoff(t + Duration::from_millis(500));
        assert_eq!(q.sizes(), (0, 1, 0));
        q.flush(t + Duration::from_millis(900));
        assert!(q.pop().is_none());
        q.flush(t + Duration::from_secs(1));
        let p = q.pop().expect("backoff over");
        assert_eq!(p.attempts, 2);
        // The second failure backs off 2 s.
        let t2 = t + Duration::from_secs(2);
        q.retry(&p.info.uid, t2);
        assert_eq!(q.next_wakeup(), Some(t2 + Duration::from_secs(2)));
    }

    #[test]
    fn a_move_during_the_attempt_sends_the_pod_to_backoff() {
        let mut q = SchedulingQueue::default();
        let t = Instant::now();
        q.upsert(info("p", 0), true, t);
        let p = q.pop().unwrap();
        q.move_all_to_active_or_backoff(t);
        q.unschedulable(&p, t);
        assert_eq!(q.sizes(), (0, 1, 0));
    }

    #[test]
    fn unschedulable_pods_are_retried_after_five_minutes() {
        let mut q = SchedulingQueue::default();
        let t = Instant::now();
        q.upsert(info("p", 0), true, t);
        let p = q.pop().unwrap();
        q.unschedulable(&p, t);
        q.flush(t + Duration::from_secs(299));
        assert!(q.pop().is_none());
        q.flush(t + Duration::from_secs(300));
        assert!(q.pop().is_some());
    }

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        let q = SchedulingQueue::default();
        let b: Vec<u64> = (1..=6).map(|a| q.backoff_for(a).as_secs()).collect();
        assert_eq!(b, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn a_status_only_update_does_not_requeue() {
        let mut q = SchedulingQueue::default();
        let t = Instant::now();
        q.upsert(info("p", 0), true, t);
        let p = q.pop().unwrap();
        q.unschedulable(&p, t);
        q.upsert(info("p", 0), false, t + Duration::from_secs(5));
        assert_eq!(q.sizes(), (0, 0, 1));
        q.upsert(info("p", 0), true, t + Duration::from_secs(5));
        assert_eq!(q.sizes(), (1, 0, 0));
    }
}
