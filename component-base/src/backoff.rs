//! Per-key exponential backoff, as client-go's ItemExponentialFailureRateLimiter:
//! `base * 2^failures`, capped; forgetting a key resets it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

pub struct KeyedBackoff<K> {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<K, u32>>,
}

impl<K: Hash + Eq> KeyedBackoff<K> {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Records a failure of `key` and returns how long to wait before retrying it.
    pub fn failed(&self, key: K) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = f.entry(key).or_insert(0);
        let d = self.base.saturating_mul(1u32 << (*n).min(30));
        *n = n.saturating_add(1);
        d.min(self.max)
    }

    /// `key` succeeded: its next failure starts from `base` again.
    pub fn forget(&self, key: &K) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let b = KeyedBackoff::new(Duration::from_millis(5), Duration::from_millis(30));
        assert_eq!(b.failed("a"), Duration::from_millis(5));
        assert_eq!(b.failed("a"), Duration::from_millis(10));
        assert_eq!(b.failed("a"), Duration::from_millis(20));
        assert_eq!(b.failed("a"), Duration::from_millis(30));
        assert_eq!(b.failed("b"), Duration::from_millis(5));
        b.forget(&"a");
        assert_eq!(b.failed("a"), Duration::from_millis(5));
    }
}
