//! Expectations, as Kubernetes' ControllerExpectations: after a controller asks for pods
//! to be created or deleted, it does not act on the same owner again until its caches
//! have seen those changes (or five minutes pass), so a slow watch never causes double
//! creation or deletion.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Expect {
    adds: i64,
    deletes: HashSet<String>,
    at: Option<Instant>,
}

#[derive(Default)]
pub struct Expectations<K> {
    map: Mutex<HashMap<K, Expect>>,
}

impl<K: std::hash::Hash + Eq + Clone> Expectations<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Expect>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the owner's caches have caught up with what it asked for.
    pub fn satisfied(&self, key: &K) -> bool {
        match self.lock().get(key) {
            None => true,
            Some(e) => {
                (e.adds <= 0 && e.deletes.is_empty()) || e.at.is_none_or(|t| t.elapsed() >= TTL)
            }
        }
    }

    pub fn expect_creations(&self, key: &K, n: usize) {
        let mut m = self.lock();
        let e = m.entry(key.clone()).or_default();
        e.adds = n as i64;
        e.at = Some(Instant::now());
    }

    pub fn expect_deletions(&self, key: &K, uids: impl IntoIterator<Item = String>) {
        let mut m = self.lock();
        let e = m.entry(key.clone()).or_default();
        e.deletes = uids.into_iter().collect();
        e.at = Some(Instant::now());
    }

    /// A pod the owner created appeared (or its creation failed and never will).
    pub fn creation_observed(&self, key: &K) {
        if let Some(e) = self.lock().get_mut(key) {
            e.adds -= 1;
        }
    }

    /// A pod the owner deleted is gone or terminating (or the delete failed).
    pub fn deletion_observed(&self, key: &K, uid: &str) {
        if let Some(e) = self.lock().get_mut(key) {
            e.deletes.remove(uid);
        }
    }

    pub fn forget(&self, key: &K) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_every_expected_change() {
        let e = Expectations::<&str>::default();
        assert!(e.satisfied(&"rs"));
        e.expect_creations(&"rs", 2);
        assert!(!e.satisfied(&"rs"));
        e.creation_observed(&"rs");
        assert!(!e.satisfied(&"rs"));
        e.creation_observed(&"rs");
        assert!(e.satisfied(&"rs"));
        e.expect_deletions(&"rs", ["u1".to_string()]);
        assert!(!e.satisfied(&"rs"));
        e.deletion_observed(&"rs", "u2");
        assert!(!e.satisfied(&"rs"));
        e.deletion_observed(&"rs", "u1");
        assert!(e.satisfied(&"rs"));
    }
}
