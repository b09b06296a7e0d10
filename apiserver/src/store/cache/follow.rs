//! What a controller inside the apiserver waits on between passes: the next event under a
//! prefix of the cache (or a reset, or events missed), or a resync deadline, whichever
//! comes first. Subscribes again after the cache's channel closes.

use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;

use super::{Cache, Notice, Start};

pub struct Follow {
    prefix: &'static str,
    rx: Option<Receiver<Notice>>,
}

impl Follow {
    pub fn new(prefix: &'static str) -> Follow {
        Follow { prefix, rx: None }
    }

    /// Subscribes (events from now on) if it is not: call before a pass, so what the
    /// pass reads from the cache and what comes after are both seen.
    pub fn subscribe(&mut self, cache: &Cache) {
        if self.rx.is_none() {
            self.rx = cache
                .revision()
                .and_then(|r| cache.subscribe(self.prefix, Start::After(r)))
                .map(|s| s.rx);
        }
    }

    /// Returns when something under the prefix changed, or after `wait`.
    pub async fn changed(&mut self, wait: Duration) {
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        let Some(r) = self.rx.as_mut() else {
            deadline.await;
            return;
        };
        loop {
            tokio::select! {
                n = r.recv() => match n {
                    Ok(Notice::Event(e)) if e.obj.key.starts_with(self.prefix) => return,
                    Ok(Notice::Reset) | Err(RecvError::Lagged(_)) => return,
                    Err(RecvError::Closed) => {
                        self.rx = None;
                        return;
                    }
                    Ok(_) => continue,
                },
                _ = &mut deadline => return,
            }
        }
    }
}
