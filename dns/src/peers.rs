//! Which other instances' EndpointSlices to delete: those whose Lease has stopped being
//! renewed (the apiserver's endpoint reconciler for `kubernetes`, per instance).
//!
//! Contract: pure; an instance is expired only after its Lease (or its absence) has been
//! seen *unchanged* for longer than the Lease's duration by this instance's own clock, so
//! clock skew between hosts cannot expire a live instance, and a Lease not yet created by
//! a starting instance gets the same grace as an expired one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The default lease duration (s) when a Lease does not say.
pub const LEASE_SECONDS: u32 = 40;

/// What was read of one instance's Lease: something that changes on every renewal (the
/// renew time) and its duration; `None` when there is no Lease.
pub type LeaseMark = Option<(String, Duration)>;

#[derive(Debug)]
struct Seen {
    mark: LeaseMark,
    since: Instant,
}

/// The observations across rounds.
#[derive(Debug, Default)]
pub struct Peers {
    seen: HashMap<String, Seen>,
}

impl Peers {
    /// Given every instance that has a slice (`own` excluded by the caller) with its
    /// Lease as read now, returns those to delete, and forgets instances that are gone.
    pub fn expired(&mut self, now: Instant, instances: &[(String, LeaseMark)]) -> Vec<String> {
        self.seen
            .retain(|id, _| instances.iter().any(|(other, _)| other == id));
        let mut out = Vec::new();
        for (id, mark) in instances {
            let seen = self.seen.entry(id.clone()).or_insert_with(|| Seen {
                mark: mark.clone(),
                since: now,
            });
            if seen.mark != *mark {
                seen.mark = mark.clone();
                seen.since = now;
                continue;
            }
            let limit = mark
                .as_ref()
                .map(|(_, d)| *d)
                .unwrap_or(Duration::from_secs(u64::from(LEASE_SECONDS)));
            if now.saturating_duration_since(seen.since) > limit {
                out.push(id.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(v: &str) -> LeaseMark {
        Some((v.to_string(), Duration::from_secs(40)))
    }

    #[test]
    fn renewed_leases_never_expire() {
        let mut p = Peers::default();
        let t0 = Instant::now();
        for i in 0..10u64 {
            let now = t0 + Duration::from_secs(i * 30);
            let got = p.expired(now, &[("a".into(), mark(&i.to_string()))]);
            assert!(got.is_empty());
        }
    }

    #[test]
    fn unchanged_or_missing_leases_expire_after_their_duration() {
        let mut p = Peers::default();
        let t0 = Instant::now();
        let both = |m: LeaseMark| vec![("a".to_string(), mark("1")), ("b".to_string(), m)];
        assert!(p.expired(t0, &both(None)).is_empty());
        assert!(p
            .expired(t0 + Duration::from_secs(40), &both(None))
            .is_empty());
        let got = p.expired(t0 + Duration::from_secs(41), &both(None));
        assert_eq!(got, vec!["a".to_string(), "b".to_string()]);
        // A Lease appearing restarts the count.
        let got = p.expired(t0 + Duration::from_secs(42), &both(mark("x")));
        assert_eq!(got, vec!["a".to_string()]);
    }

    #[test]
    fn gone_instances_are_forgotten() {
        let mut p = Peers::default();
        let t0 = Instant::now();
        p.expired(t0, &[("a".into(), None)]);
        p.expired(t0 + Duration::from_secs(30), &[]);
        assert!(p
            .expired(t0 + Duration::from_secs(50), &[("a".into(), None)])
            .is_empty());
    }
}
