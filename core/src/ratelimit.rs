//! A token bucket: `rate` tokens a second, at most `burst` saved up.
//!
//! Contract: a taker is never refused; it is told how long to wait for its token (zero
//! while the burst lasts), and takers are served in the order they took, each waiting
//! `1/rate` after the one before. The bucket reads no clock: the caller passes `now` and
//! sleeps for the returned duration, so it works from sync and async code alike and under
//! a paused test clock. Times that go backwards count as no time passing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    /// Tokens left as of the instant (negative: owed to takers still waiting); `None`
    /// before the first take, when the bucket is full.
    state: Mutex<Option<(f64, Instant)>>,
}

impl TokenBucket {
    /// A full bucket. `rate` is raised to at least 0.001 a second (a NaN rate is 0.001) and
    /// `burst` to at least one, so that every taker is eventually served.
    pub fn new(rate: f64, burst: u32) -> Self {
        TokenBucket {
            rate: rate.max(0.001),
            burst: f64::from(burst.max(1)),
            state: Mutex::new(None),
        }
    }

    /// Takes a token at `now`; returns how long the taker must wait for it.
    pub fn take(&self, now: Instant) -> Duration {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let tokens = self.refill(*s, now);
        *s = Some((tokens - 1.0, now));
        if tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::try_from_secs_f64((1.0 - tokens) / self.rate).unwrap_or(Duration::MAX)
        }
    }

    /// Takes a token at `now` only when one is there without waiting.
    pub fn try_take(&self, now: Instant) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let tokens = self.refill(*s, now);
        let ok = tokens >= 1.0;
        *s = Some((if ok { tokens - 1.0 } else { tokens }, now));
        ok
    }

    fn refill(&self, s: Option<(f64, Instant)>, now: Instant) -> f64 {
        match s {
            None => self.burst,
            Some((tokens, at)) => {
                let earned = now.saturating_duration_since(at).as_secs_f64() * self.rate;
                (tokens + earned).min(self.burst)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let l = TokenBucket::new(10.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.take(t0), Duration::ZERO, "the burst passes at once");
        }
        let waits: Vec<u128> = (0..3).map(|_| l.take(t0).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 300]);
        // A second later the debt is paid and the bucket is full again.
        assert_eq!(l.take(t0 + Duration::from_secs(1)), Duration::ZERO);
    }

    #[test]
    fn try_take_never_goes_into_debt() {
        let l = TokenBucket::new(1.0, 1);
        let t0 = Instant::now();
        assert!(l.try_take(t0));
        assert!(!l.try_take(t0));
        assert!(!l.try_take(t0 + Duration::from_millis(500)));
        assert!(l.try_take(t0 + Duration::from_secs(1)));
        // Time going backwards adds nothing.
        assert!(!l.try_take(t0));
    }

    #[test]
    fn odd_rates_are_clamped() {
        let t0 = Instant::now();
        for rate in [0.0, -1.0, f64::NAN] {
            let l = TokenBucket::new(rate, 0);
            assert_eq!(l.take(t0), Duration::ZERO);
            assert!((l.take(t0).as_secs_f64() - 1000.0).abs() < 1e-6);
        }
    }
}
