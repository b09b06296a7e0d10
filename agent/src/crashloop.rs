//! CrashLoopBackOff as the kubelet keeps it (client-go's flowcontrol.Backoff keyed by pod
//! and container): the first restart after an exit is immediate; each later one waits
//! 10 s, doubling to 5 minutes, counted from the container's exit; a container that ran
//! for more than 10 minutes (twice the cap) starts from 10 s again.

use std::collections::HashMap;
use std::time::Duration;

use flotilla_core::backoff::Backoff;
use jiff::Timestamp;

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
struct Entry {
    /// Its current delay is the window of the last restart.
    backoff: Backoff,
    last_restart: Timestamp,
}

#[derive(Debug, Default, Clone)]
pub struct CrashBackoff {
    entries: HashMap<String, Entry>,
}

fn expired(finished: Timestamp, e: &Entry) -> bool {
    finished.duration_since(e.last_restart).as_secs_f64() > (MAX * 2).as_secs_f64()
}

impl CrashBackoff {
    /// How long container `key`, which exited at `finished`, must still wait before its
    /// restart; `None` when it may restart now.
    pub fn remaining(&self, key: &str, finished: Timestamp, now: Timestamp) -> Option<Duration> {
        let e = self.entries.get(key)?;
        if expired(finished, e) {
            return None;
        }
        let delay = e.backoff.current().as_secs_f64();
        let since = now.duration_since(finished).as_secs_f64().max(0.0);
        (since < delay).then(|| Duration::from_secs_f64(delay - since))
    }

    /// The current window of `key` (what "back-off 20s restarting ..." names).
    pub fn delay(&self, key: &str) -> Duration {
        self.entries
            .get(key)
            .map_or(INITIAL, |e| e.backoff.current())
    }

    /// Records a restart of `key`, which had exited at `finished`.
    pub fn restarted(&mut self, key: &str, finished: Timestamp, now: Timestamp) {
        match self.entries.get_mut(key) {
            Some(e) if !expired(finished, e) => {
                e.backoff.next_delay();
                e.last_restart = now;
            }
            _ => {
                let mut backoff = Backoff::new(INITIAL, MAX);
                backoff.next_delay();
                self.entries.insert(
                    key.to_string(),
                    Entry {
                        backoff,
                        last_restart: now,
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn first_restart_is_immediate_then_doubles_to_five_minutes() {
        let mut b = CrashBackoff::default();
        assert_eq!(b.remaining("c", t(0), t(0)), None);
        b.restarted("c", t(0), t(0));
        // Exits again at 1 s: waits 10 s from the exit.
        assert_eq!(b.remaining("c", t(1), t(2)), Some(Duration::from_secs(9)));
        assert_eq!(b.remaining("c", t(1), t(11)), None);
        b.restarted("c", t(1), t(11));
        assert_eq!(b.delay("c"), Duration::from_secs(20));
        let mut now = 11;
        for _ in 0..10 {
            b.restarted("c", t(now), t(now));
            now += 1;
        }
        assert_eq!(b.delay("c"), MAX);
    }

    #[test]
    fn a_long_run_resets_the_backoff() {
        let mut b = CrashBackoff::default();
        b.restarted("c", t(0), t(0));
        b.restarted("c", t(1), t(11));
        assert_eq!(b.delay("c"), Duration::from_secs(20));
        // Ran from 11 s to 11 min 12 s: more than 10 minutes.
        assert_eq!(b.remaining("c", t(672), t(673)), None);
        b.restarted("c", t(672), t(673));
        assert_eq!(b.delay("c"), INITIAL);
    }
}
