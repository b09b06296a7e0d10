//! Exponential backoff: `initial`, doubling after each failure, capped at `max`, with
//! optional jitter and a reset on success; and the same per key (client-go's
//! ItemExponentialFailureRateLimiter), for work queues.
//!
//! Contract: delays never overflow (they saturate, then the cap applies) and never exceed
//! `max` before jitter; jitter only ever adds, at most `factor` of the delay. Nothing here
//! sleeps: callers wait for the duration returned however they wait.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

/// One retrying thing's backoff. The first failure waits `initial`, each later one twice
/// the previous wait, at most `max`; [`Backoff::reset`] starts over.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: f64,
    /// The last delay handed out, without jitter; `None` before the first failure.
    current: Option<Duration>,
}

impl Backoff {
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            jitter: 0.0,
            current: None,
        }
    }

    /// Adds up to `factor` of each delay at random (client-go's `wait.Jitter`): with 0.2 a
    /// 10 s delay becomes 10 to 12 s. Zero (the default) adds nothing.
    pub fn with_jitter(mut self, factor: f64) -> Self {
        self.jitter = factor;
        self
    }

    /// Counts a failure and returns how long to wait before the next try.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.after(self.current);
        self.current = Some(d);
        jitter(d, self.jitter)
    }

    /// The delay that follows `prev` (`None`: the first failure), without jitter: the one
    /// doubling step every delay here is made of.
    pub fn after(&self, prev: Option<Duration>) -> Duration {
        match prev {
            None => self.initial,
            Some(d) => d.saturating_mul(2),
        }
        .min(self.max)
    }

    /// The delay of failure number `n` counting from 0 (`initial * 2^n`, at most `max`),
    /// without jitter and without counting it: what [`Backoff::next_delay`] returns after
    /// `n` earlier failures.
    pub fn nth(&self, n: u32) -> Duration {
        let d = match 2u32.checked_pow(n) {
            Some(m) => self.initial.saturating_mul(m),
            None if self.initial.is_zero() => Duration::ZERO,
            None => Duration::MAX,
        };
        d.min(self.max)
    }

    /// The current delay (the last one handed out, without jitter), or the first one
    /// before any failure.
    pub fn current(&self) -> Duration {
        self.current.unwrap_or_else(|| self.after(None))
    }

    /// Success: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.current = None;
    }
}

/// `d` plus up to `factor` of it, at random (client-go's `wait.Jitter`); `d` itself when
/// `factor` is not positive. Saturates at `Duration::MAX`.
pub fn jitter(d: Duration, factor: f64) -> Duration {
    if factor.is_nan() || factor <= 0.0 || d.is_zero() {
        return d;
    }
    let extra = Duration::try_from_secs_f64(d.as_secs_f64() * factor * rand::random::<f64>())
        .unwrap_or(Duration::MAX);
    d.saturating_add(extra)
}

/// Per-key exponential backoff, as client-go's ItemExponentialFailureRateLimiter:
/// `base * 2^failures`, capped; forgetting a key resets it. Shared by reference.
#[derive(Debug)]
pub struct KeyedBackoff<K> {
    policy: Backoff,
    failures: Mutex<HashMap<K, Backoff>>,
}

impl<K: Hash + Eq> KeyedBackoff<K> {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            policy: Backoff::new(base, max),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Jitter for every key's delays; see [`Backoff::with_jitter`].
    pub fn with_jitter(mut self, factor: f64) -> Self {
        self.policy = self.policy.with_jitter(factor);
        self
    }

    /// Records a failure of `key` and returns how long to wait before retrying it.
    pub fn failed(&self, key: K) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.entry(key)
            .or_insert_with(|| self.policy.clone())
            .next_delay()
    }

    /// `key` succeeded: its next failure starts from `base` again.
    pub fn forget(&self, key: &K) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// How many keys are backing off (have failed and not been forgotten).
    pub fn len(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

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
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn one_backoff_counts_resets_and_agrees_with_nth() {
        let mut b = Backoff::new(200 * MS, 7000 * MS);
        assert_eq!(b.current(), 200 * MS);
        let got: Vec<u64> = (0..7).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(got, [200, 400, 800, 1600, 3200, 6400, 7000]);
        assert_eq!(b.current(), 7000 * MS);
        for n in 0..7 {
            assert_eq!(b.nth(n).as_millis() as u64, got[n as usize]);
        }
        b.reset();
        assert_eq!(b.next_delay(), 200 * MS);
        assert_eq!(b.after(Some(3 * MS)), 6 * MS);
    }

    #[test]
    fn never_overflows() {
        let mut b = Backoff::new(Duration::MAX / 2, Duration::MAX);
        for _ in 0..70 {
            b.next_delay();
        }
        assert_eq!(b.current(), Duration::MAX);
        assert_eq!(b.nth(u32::MAX), Duration::MAX);
        assert_eq!(
            Backoff::new(Duration::ZERO, Duration::MAX).nth(100),
            Duration::ZERO
        );
        assert_eq!(Backoff::new(MS, 10 * MS).nth(1000), 10 * MS);
        assert_eq!(jitter(Duration::MAX, 1.0), Duration::MAX);
    }

    #[test]
    fn initial_above_the_cap_is_capped() {
        let mut b = Backoff::new(10 * MS, 5 * MS);
        assert_eq!(b.next_delay(), 5 * MS);
        assert_eq!(b.nth(0), 5 * MS);
    }

    #[test]
    fn jitter_only_adds_up_to_the_factor() {
        let mut b = Backoff::new(100 * MS, Duration::from_secs(1)).with_jitter(0.5);
        for want in [100, 200, 400] {
            let d = b.next_delay();
            assert!(d >= want * MS && d <= want * 3 / 2 * MS, "{d:?} for {want}");
        }
        // The doubling goes on from the delays without jitter.
        assert_eq!(b.current(), 400 * MS);
        assert_eq!(jitter(100 * MS, 0.0), 100 * MS);
        assert_eq!(jitter(100 * MS, f64::NAN), 100 * MS);
    }
}
