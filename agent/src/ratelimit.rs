//! A token bucket shared by a node's pod workers, so that status writes of thousands of
//! pods stay within the agent's share of the apiserver (the kubelet's `--kube-api-qps` 50
//! and `--kube-api-burst` 100).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub struct RateLimiter {
    qps: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub fn new(qps: f64, burst: u32) -> Self {
        RateLimiter {
            qps: qps.max(0.001),
            burst: f64::from(burst.max(1)),
            state: Mutex::new((f64::from(burst.max(1)), Instant::now())),
        }
    }

    /// Takes one token, waiting for it when the bucket is empty.
    pub async fn acquire(&self) {
        let wait = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            self.take(&mut s, Instant::now())
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes a token at `now` from the bucket `(tokens, as of)`; returns how long the
    /// taker must wait for it. A negative balance is the wait of whoever took it.
    fn take(&self, s: &mut (f64, Instant), now: Instant) -> Duration {
        let (tokens, at) = *s;
        let tokens = (tokens + now.duration_since(at).as_secs_f64() * self.qps).min(self.burst);
        *s = (tokens - 1.0, now);
        if tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - tokens) / self.qps)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let l = RateLimiter::new(10.0, 3);
        let t0 = Instant::now();
        let mut s = (3.0, t0);
        for _ in 0..3 {
            assert_eq!(
                l.take(&mut s, t0),
                Duration::ZERO,
                "the burst passes at once"
            );
        }
        let waits: Vec<u128> = (0..3).map(|_| l.take(&mut s, t0).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 300]);
        // A second later the debt is paid and the bucket is full again.
        assert_eq!(l.take(&mut s, t0 + Duration::from_secs(1)), Duration::ZERO);
    }
}
