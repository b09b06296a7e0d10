//! Lease deadlines, kept in memory on every member and enforced by the leader only.
//!
//! Grants and revocations reach every member through the log; only the leader counts down.
//! When a member becomes leader every deadline restarts at its full TTL, so a leader change
//! can only lengthen a lease, never shorten it (etcd does the same). Keep-alives go to the
//! leader and are not replicated. An expired lease is revoked through the log like a client
//! revocation, so its keys go in one revision.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// etcd's largest TTL, in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

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

    /// This member became leader: every lease starts over at its full TTL.
    pub fn promote(&self) {
        let now = Instant::now();
        self.with(|s| {
            s.leader = true;
            for t in s.leases.values_mut() {
                t.deadline = now + secs(t.ttl);
                t.revoking_since = None;
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

    /// Leases past their deadline that the leader should revoke now.
    pub fn expired(&self, retry_after: Duration) -> Vec<i64> {
        let now = Instant::now();
        self.with(|s| {
            if !s.leader {
                return Vec::new();
            }
            let mut out = Vec::new();
            for (id, t) in s.leases.iter_mut() {
                let retry = t
                    .revoking_since
                    .is_none_or(|at| now.duration_since(at) >= retry_after);
                if t.deadline <= now && retry {
                    t.revoking_since = Some(now);
                    out.push(*id);
                }
            }
            out
        })
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
            l.expired(Duration::from_secs(1)).is_empty(),
            "followers never expire leases"
        );
        l.promote();
        assert_eq!(l.expired(Duration::from_secs(60)), vec![1]);
        assert!(
            l.expired(Duration::from_secs(60)).is_empty(),
            "not proposed twice in a row"
        );
        l.granted(2, 100);
        assert_eq!(l.keep_alive(2), Some(100));
        assert_eq!(l.remaining(2).map(|r| r.0), Some(100));
        l.revoked(2);
        assert_eq!(l.keep_alive(2), None);
    }
}
