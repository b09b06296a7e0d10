//! The DaemonSet controller's backoff on failed daemon pods (kube's `failedPodsBackoff`, a
//! `flowcontrol.Backoff` from 1 s to 15 min): a node whose agent keeps failing the pod
//! (a port taken, an image that will not run) would otherwise see delete and create in a
//! hot loop. Keyed by DaemonSet uid, its observed generation and the node, so a new
//! template starts over; pure, the time given.

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_core::backoff::Backoff;

/// The first wait after a failed pod was deleted.
pub const INITIAL: Duration = Duration::from_secs(1);
/// The longest.
pub const MAX: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
    updated: jiff::Timestamp,
}

#[derive(Debug, Default)]
pub struct FailedPods {
    entries: BTreeMap<String, Entry>,
}

/// The key of `ds`'s pods on `node`.
pub fn key(uid: &str, observed_generation: i64, node: &str) -> String {
    format!("{uid}/{observed_generation}/{node}")
}

fn since(now: jiff::Timestamp, then: jiff::Timestamp) -> Duration {
    Duration::try_from(now.duration_since(then)).unwrap_or(Duration::ZERO)
}

impl FailedPods {
    /// Whether a failed pod under `key` may be deleted now: `Ok` records the deletion (the
    /// next wait doubles, up to [`MAX`]; after twice [`MAX`] of quiet it starts again at
    /// [`INITIAL`]); `Err` is the wait to look again after, while the last deletion is
    /// more recent than its wait.
    pub fn try_delete(&mut self, key: &str, now: jiff::Timestamp) -> Result<(), Duration> {
        let steps = Backoff::new(INITIAL, MAX);
        match self.entries.get_mut(key) {
            Some(e) if since(now, e.updated) < e.delay => Err(e.delay),
            Some(e) if since(now, e.updated) <= MAX.saturating_mul(2) => {
                e.delay = steps.after(Some(e.delay));
                e.updated = now;
                Ok(())
            }
            _ => {
                let delay = steps.after(None);
                self.entries.insert(
                    key.to_string(),
                    Entry {
                        delay,
                        updated: now,
                    },
                );
                Ok(())
            }
        }
    }

    /// Forgets keys quiet for more than twice [`MAX`] (kube's periodic `GC`).
    pub fn gc(&mut self, now: jiff::Timestamp) {
        self.entries
            .retain(|_, e| since(now, e.updated) <= MAX.saturating_mul(2));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_000_000 + secs).unwrap()
    }

    #[test]
    fn deletions_of_failed_pods_back_off_doubling_to_the_cap() {
        let mut b = FailedPods::default();
        assert_eq!(b.try_delete("k", at(0)), Ok(()), "the first goes at once");
        assert_eq!(b.try_delete("k", at(0)), Err(INITIAL));
        assert_eq!(b.try_delete("other", at(0)), Ok(()), "per key");
        assert_eq!(b.try_delete("k", at(1)), Ok(()));
        assert_eq!(b.try_delete("k", at(2)), Err(Duration::from_secs(2)));
        assert_eq!(b.try_delete("k", at(3)), Ok(()));
        assert_eq!(b.try_delete("k", at(6)), Err(Duration::from_secs(4)));
        let mut t = 7;
        for _ in 0..20 {
            let _ = b.try_delete("k", at(t));
            t += 900;
        }
        assert_eq!(b.try_delete("k", at(t - 900)), Err(MAX), "capped at 15 min");
    }

    #[test]
    fn a_quiet_key_starts_over_and_is_collected() {
        let mut b = FailedPods::default();
        for t in [0, 1, 3, 7] {
            assert_eq!(b.try_delete("k", at(t)), Ok(()));
        }
        assert_eq!(b.try_delete("k", at(8)), Err(Duration::from_secs(8)));
        assert_eq!(b.try_delete("k", at(7 + 1801)), Ok(()));
        assert_eq!(
            b.try_delete("k", at(7 + 1801)),
            Err(INITIAL),
            "started over"
        );
        b.gc(at(7 + 1801 + 1800));
        assert_eq!(b.len(), 1, "not yet quiet for 30 min");
        b.gc(at(7 + 1801 + 1801));
        assert!(b.is_empty());
    }
}
