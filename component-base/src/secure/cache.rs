//! The verdict caches of a delegating port: a bounded map from a digest to a value that
//! expires. Pure: the caller passes the time.
//!
//! Contract: at most `capacity` entries; an entry is returned only before its expiry;
//! inserting into a full cache first drops the expired entries, then the one that expires
//! soonest, so a flood of new keys cannot grow it. Keys are SHA-256 digests of their parts,
//! so no bearer token is kept in memory and a long one costs no more than a short one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub type Key = [u8; 32];

/// The digest of `parts`, each length-prefixed so that no two lists of parts share one.
pub fn key(parts: &[&[u8]]) -> Key {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

#[derive(Debug)]
pub struct ExpiringCache<V> {
    capacity: usize,
    entries: HashMap<Key, (V, Instant)>,
}

impl<V: Clone> ExpiringCache<V> {
    /// A cache of at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        ExpiringCache {
            capacity: capacity.max(1),
            entries: HashMap::new(),
        }
    }

    /// The value of `k`, if it has not expired at `now`.
    pub fn get(&self, k: &Key, now: Instant) -> Option<V> {
        self.entries
            .get(k)
            .filter(|(_, expires)| now < *expires)
            .map(|(v, _)| v.clone())
    }

    /// Keeps `v` for `ttl` from `now`, making room as the contract says.
    pub fn insert(&mut self, k: Key, v: V, ttl: Duration, now: Instant) {
        if !self.entries.contains_key(&k) && self.entries.len() >= self.capacity {
            self.entries.retain(|_, (_, expires)| now < *expires);
            if self.entries.len() >= self.capacity {
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, expires))| *expires)
                    .map(|(k, _)| *k);
                if let Some(s) = soonest {
                    self.entries.remove(&s);
                }
            }
        }
        // A ttl past what an Instant holds: kept for no time rather than forever.
        let expires = now.checked_add(ttl).unwrap_or(now);
        self.entries.insert(k, (v, expires));
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

    #[test]
    fn keys_separate_their_parts() {
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
        assert_eq!(key(&[b"x"]), key(&[b"x"]));
    }

    #[test]
    fn entries_expire_and_the_cache_stays_bounded() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut c = ExpiringCache::new(3);
        c.insert(key(&[b"a"]), 1, 10 * s, t0);
        assert_eq!(c.get(&key(&[b"a"]), t0 + 9 * s), Some(1));
        assert_eq!(c.get(&key(&[b"a"]), t0 + 10 * s), None);
        assert_eq!(c.get(&key(&[b"b"]), t0), None);

        // Full: the expired go first, then the one that expires soonest.
        c.insert(key(&[b"b"]), 2, s, t0);
        c.insert(key(&[b"c"]), 3, 30 * s, t0);
        c.insert(key(&[b"d"]), 4, 20 * s, t0 + 2 * s);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&key(&[b"b"]), t0), None, "expired, dropped");
        assert_eq!(c.get(&key(&[b"a"]), t0 + 3 * s), Some(1));
        c.insert(key(&[b"e"]), 5, 60 * s, t0 + 3 * s);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&key(&[b"a"]), t0 + 3 * s), None, "expired soonest");
        for k in [b"c", b"d", b"e"] {
            assert!(c.get(&key(&[k]), t0 + 3 * s).is_some());
        }
        // Replacing a key never evicts another.
        c.insert(key(&[b"e"]), 6, 60 * s, t0 + 3 * s);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&key(&[b"e"]), t0 + 3 * s), Some(6));

        // A flood of new keys keeps it at its capacity.
        for i in 0..1000u32 {
            c.insert(key(&[&i.to_le_bytes()]), 0, s, t0 + 4 * s);
        }
        assert_eq!(c.len(), 3);
    }
}
