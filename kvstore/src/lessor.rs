//! Lease deadlines, kept in memory on every member and enforced by the leader only.
//!
//! Grants and revocations reach every member through the log; only the leader counts down.
//! When a member becomes leader every deadline restarts at its full TTL, so a leader change
//! can only lengthen a lease, never shorten it (etcd does the same). Keep-alives go to the
//! leader and are not replicated. An expired lease is revoked through the log like a client
//! revocation, so its keys go in one revision.
//!
//! Expiry is rate-limited as etcd's lessor limits it (`leaseRevokeRate`): the leader
//! revokes at most `LEASE_REVOKE_RATE` leases a second, `revoke_limit` per
//! `EXPIRY_TICK`, earliest deadline first, so 100,000 leases expiring together become a
//! steady stream of revocations rather than a flood of proposals. On promotion, when
//! there are at least that many leases, deadlines that would pile up are spread out
//! (`spread_expiries`, etcd's `Promote`), so a new leader does not find them all due in
//! the same second.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// etcd's largest TTL, in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// etcd's `leaseRevokeRate`: expired leases revoked per second at most.
pub const LEASE_REVOKE_RATE: usize = 1000;
/// How often the leader looks for expired leases (etcd's lessor loop runs every 500 ms
/// and revokes at most `leaseRevokeRate / 2` each time).
pub const EXPIRY_TICK: Duration = Duration::from_millis(500);
/// etcd's `expiredLeaseRetryInterval`: a lease whose revocation was proposed and which
/// is still there after this long is proposed again.
pub const REVOKE_RETRY: Duration = Duration::from_secs(3);

/// Leases revoked per `tick` at most so that no more than `rate` are revoked a second
/// (500 per 500 ms for etcd's rate); at least one, so expiry always progresses.
pub fn revoke_limit(rate: usize, tick: Duration) -> usize {
    let per_tick = (rate as u128).saturating_mul(tick.as_millis()) / 1000;
    usize::try_from(per_tick).unwrap_or(usize::MAX).max(1)
}

/// etcd's pile-up avoidance at promotion: given the time left on each lease in ascending
/// order, the extra time each one gets so that no more than 3/4 of `rate` leases fall due
/// in any one second (a quarter of the rate is kept for leases that expire on their own).
/// A lease already `n` seconds after the start of a crowded window is pushed back by `n`
/// seconds less, so leases keep their order. Fewer leases than `rate` cannot pile up;
/// they are left alone.
pub fn spread_expiries(remaining: &[Duration], rate: usize) -> Vec<Duration> {
    let mut extra = vec![Duration::ZERO; remaining.len()];
    let target = (rate.saturating_mul(3) / 4).max(1);
    if remaining.len() < rate {
        return extra;
    }
    let Some(&first) = remaining.first() else {
        return extra;
    };
    let mut base = first;
    let mut next_window = base.saturating_add(Duration::from_secs(1));
    let mut expires = 0usize;
    for (i, &left) in remaining.iter().enumerate() {
        if left > next_window {
            base = left;
            next_window = base.saturating_add(Duration::from_secs(1));
            expires = 1;
            continue;
        }
        expires += 1;
        if expires <= target {
            continue;
        }
        let rate_delay = expires as f64 / target as f64 - left.saturating_sub(base).as_secs_f64();
        let delay = Duration::try_from_secs_f64(rate_delay.max(0.0)).unwrap_or(Duration::ZERO);
        next_window = base.saturating_add(delay);
        extra[i] = delay;
    }
    extra
}

#[derive(Debug, Clone, Copy)]
struct Timer {
    ttl: i64,
    deadline: Instant,
    /// When the leader last proposed revoking it, to avoid proposing again at once.
    revoking_since: Option<Instant>,
}

#[derive(Default)]
struct State {
    leases: HashMap<i64, Timer>,
    leader: bool,
}

#[derive(Default)]
pub struct Lessor {
    state: Mutex<State>,
}

impl Lessor {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    pub fn granted(&self, id: i64, ttl: i64) {
        let deadline = Instant::now() + secs(ttl);
        self.with(|s| {
            s.leases.insert(
                id,
                Timer {
                    ttl,
                    deadline,
                    revoking_since: None,
                },
            )
        });
    }

    pub fn revoked(&self, id: i64) {
        self.with(|s| s.leases.remove(&id));
    }

    /// Replaces every lease (after a snapshot was installed or at start).
    pub fn reset(&self, leases: impl IntoIterator<Item = (i64, i64)>) {
        let now = Instant::now();
        self.with(|s| {
            s.leases = leases
                .into_iter()
                .map(|(id, ttl)| {
                    (
                        id,
                        Timer {
                            ttl,
                            deadline: now + secs(ttl),
                            revoking_since: None,
                        },
                    )
                })
                .collect()
        });
    }

    /// This member became leader: every lease starts over at its full TTL, and leases
    /// that would fall due together are spread out (`spread_expiries`).
    pub fn promote(&self) {
        let now = Instant::now();
        self.with(|s| {
            s.leader = true;
            for t in s.leases.values_mut() {
                t.deadline = now + secs(t.ttl);
                t.revoking_since = None;
            }
            if s.leases.len() < LEASE_REVOKE_RATE {
                return;
            }
            let mut order: Vec<(Duration, i64)> = s
                .leases
                .iter()
                .map(|(id, t)| (t.deadline.saturating_duration_since(now), *id))
                .collect();
            order.sort_unstable();
            let left: Vec<Duration> = order.iter().map(|(d, _)| *d).collect();
            for ((_, id), extra) in order.iter().zip(spread_expiries(&left, LEASE_REVOKE_RATE)) {
                if let Some(t) = s.leases.get_mut(id) {
                    t.deadline += extra;
                }
            }
        });
    }

    pub fn demote(&self) {
        self.with(|s| s.leader = false);
    }

    pub fn is_leader(&self) -> bool {
        self.with(|s| s.leader)
    }

    /// Renews a lease on the leader; returns its TTL, or `None` if it does not exist or has
    /// already expired (its revocation may be on its way: a late keep-alive must not look
    /// like a success).
    pub fn keep_alive(&self, id: i64) -> Option<i64> {
        let now = Instant::now();
        self.with(|s| {
            let t = s.leases.get_mut(&id)?;
            if t.deadline <= now || t.revoking_since.is_some() {
                return None;
            }
            t.deadline = now + secs(t.ttl);
            Some(t.ttl)
        })
    }

    /// (granted TTL, remaining seconds) of a lease.
    pub fn remaining(&self, id: i64) -> Option<(i64, i64)> {
        let now = Instant::now();
        self.with(|s| {
            let t = s.leases.get(&id)?;
            let left = t.deadline.saturating_duration_since(now);
            Some((t.ttl, left.as_secs_f64().ceil() as i64))
        })
    }

    /// At most `limit` leases past their deadline that the leader should revoke now, the
    /// earliest deadlines first (etcd's `findExpiredLeases`); each is marked so that it is
    /// not handed out again before `retry_after`.
    pub fn expired(&self, retry_after: Duration, limit: usize) -> Vec<i64> {
        let now = Instant::now();
        self.with(|s| {
            if !s.leader || limit == 0 {
                return Vec::new();
            }
            let mut due: Vec<(Instant, i64)> = s
                .leases
                .iter()
                .filter(|(_, t)| {
                    t.deadline <= now
                        && t.revoking_since
                            .is_none_or(|at| now.duration_since(at) >= retry_after)
                })
                .map(|(id, t)| (t.deadline, *id))
                .collect();
            if due.len() > limit {
                due.select_nth_unstable(limit);
                due.truncate(limit);
            }
            due.sort_unstable();
            for (_, id) in &due {
                if let Some(t) = s.leases.get_mut(id) {
                    t.revoking_since = Some(now);
                }
            }
            due.into_iter().map(|(_, id)| id).collect()
        })
    }

    /// How many leases this member knows.
    pub fn len(&self) -> usize {
        self.with(|s| s.leases.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn secs(ttl: i64) -> Duration {
    Duration::from_secs(ttl.clamp(0, MAX_LEASE_TTL) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_leader_expires_and_promotion_restarts_ttls() {
        let l = Lessor::default();
        l.granted(1, 0);
        assert!(
            l.expired(Duration::from_secs(1), 10).is_empty(),
            "followers never expire leases"
        );
        l.promote();
        assert_eq!(l.expired(Duration::from_secs(60), 10), vec![1]);
        assert!(
            l.expired(Duration::from_secs(60), 10).is_empty(),
            "not proposed twice in a row"
        );
        l.granted(2, 100);
        assert_eq!(l.keep_alive(2), Some(100));
        assert_eq!(l.remaining(2).map(|r| r.0), Some(100));
        l.revoked(2);
        assert_eq!(l.keep_alive(2), None);
    }

    #[test]
    fn etcds_rate_is_500_revocations_per_500ms_tick() {
        assert_eq!(revoke_limit(LEASE_REVOKE_RATE, EXPIRY_TICK), 500);
        assert_eq!(
            revoke_limit(LEASE_REVOKE_RATE, Duration::from_secs(1)),
            1000
        );
        assert_eq!(revoke_limit(1, Duration::from_millis(100)), 1, "never zero");
        assert_eq!(
            revoke_limit(usize::MAX, Duration::MAX),
            usize::MAX,
            "saturates"
        );
    }

    #[test]
    fn expiry_hands_out_at_most_the_limit_earliest_deadline_first() {
        let l = Lessor::default();
        // Leases 1..=1200 with TTL 0 are all due; give them distinct deadlines in the past.
        let now = Instant::now();
        l.with(|s| {
            s.leader = true;
            for id in 1..=1200i64 {
                let age = Duration::from_millis(2000 - id as u64);
                s.leases.insert(
                    id,
                    Timer {
                        ttl: 0,
                        deadline: now - age,
                        revoking_since: None,
                    },
                );
            }
        });
        let limit = revoke_limit(LEASE_REVOKE_RATE, EXPIRY_TICK);
        let first = l.expired(REVOKE_RETRY, limit);
        assert_eq!(
            first,
            (1..=500).collect::<Vec<i64>>(),
            "oldest deadlines first"
        );
        let second = l.expired(REVOKE_RETRY, limit);
        assert_eq!(second, (501..=1000).collect::<Vec<i64>>());
        let third = l.expired(REVOKE_RETRY, limit);
        assert_eq!(third, (1001..=1200).collect::<Vec<i64>>());
        assert!(
            l.expired(REVOKE_RETRY, limit).is_empty(),
            "each handed out once"
        );
        // After the retry interval the ones still present come back, within the limit.
        assert_eq!(l.expired(Duration::ZERO, 7).len(), 7);
        assert!(l.expired(Duration::ZERO, 0).is_empty());
    }

    #[test]
    fn few_leases_are_never_spread() {
        let left = vec![Duration::from_secs(10); LEASE_REVOKE_RATE - 1];
        assert!(spread_expiries(&left, LEASE_REVOKE_RATE)
            .iter()
            .all(|d| d.is_zero()));
        assert!(spread_expiries(&[], LEASE_REVOKE_RATE).is_empty());
    }

    #[test]
    fn leases_due_together_are_spread_to_three_quarters_of_the_rate() {
        // 100,000 leases with one TTL, as after a promotion: all due in 60 s.
        let n = 100_000;
        let left = vec![Duration::from_secs(60); n];
        let extra = spread_expiries(&left, LEASE_REVOKE_RATE);
        let target = LEASE_REVOKE_RATE * 3 / 4;
        assert!(extra[..target].iter().all(|d| d.is_zero()));
        assert!(extra[target..].iter().all(|d| !d.is_zero()));
        // No second after the first holds more than the target.
        let mut per_second = std::collections::BTreeMap::new();
        for (l, e) in left.iter().zip(&extra) {
            *per_second.entry((*l + *e).as_secs()).or_insert(0usize) += 1;
        }
        assert!(
            per_second.values().all(|&c| c <= target + 1),
            "{per_second:?}"
        );
        // The last lease waits about n / target seconds more.
        let last = extra[n - 1].as_secs_f64();
        let want = n as f64 / target as f64;
        assert!((last - want).abs() < 1.5, "{last} vs {want}");
    }

    #[test]
    fn promotion_spreads_a_pile_up_and_keeps_every_lease() {
        let l = Lessor::default();
        for id in 1..=2000 {
            l.granted(id, 30);
        }
        l.promote();
        let deadlines: Vec<Duration> = l.with(|s| {
            let now = Instant::now();
            s.leases
                .values()
                .map(|t| t.deadline.saturating_duration_since(now))
                .collect()
        });
        assert_eq!(deadlines.len(), 2000);
        assert!(deadlines.iter().all(|d| *d <= Duration::from_secs(30 + 3)));
        let pushed = deadlines
            .iter()
            .filter(|d| **d > Duration::from_secs(30) + Duration::from_millis(500))
            .count();
        assert!(pushed >= 2000 - 750 - 1, "{pushed} leases spread out");
    }
}
