//! Following one prefix of the kvstore, every change of it, through whichever member
//! answers: a watch resumed after the last revision seen when its member fails or goes
//! quiet, with a progress request every second. It is complete when, after it was told
//! the final revision, a progress answer at or past that revision arrives: every change
//! up to the end was delivered.

use std::time::Duration;

use proto::etcdserverpb as pb;
use tokio::sync::watch as signal;
use tracing::debug;

use super::Ctx;

/// A follower with no response for this long is presumed stuck (an isolated member).
const IDLE: Duration = Duration::from_secs(3);

/// How following ended.
#[derive(Clone, Debug, Default)]
pub struct Followed {
    /// Every revision up to the final one was delivered.
    pub complete: bool,
    /// Why not, if not.
    pub gap: Option<String>,
}

/// Follows `prefix` from `base + 1`, handing every event to `on`, until `end` names a
/// final revision that was reached (or its sender is gone).
pub fn follow(
    ctx: Ctx,
    prefix: &'static str,
    base: i64,
    mut end: signal::Receiver<Option<i64>>,
    mut on: impl FnMut(&proto::mvccpb::Event) + Send + 'static,
) -> tokio::task::JoinHandle<Followed> {
    tokio::spawn(async move {
        let mut next = base.saturating_add(1);
        let mut node = 0usize;
        loop {
            let mut c = match ctx.client(node % ctx.cluster.size()) {
                Ok(c) => c,
                Err(_) => {
                    node += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let (tx, mut stream) = match c.watch(prefix, next).await {
                Ok(s) => s,
                Err(e) => {
                    debug!(prefix, error = %e, "follow: watch failed; another member");
                    node += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let mut ask = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = ask.tick() => {
                        // Progress requests keep a quiet stream answering, and tell when
                        // every revision up to the end was delivered.
                        let progress = pb::WatchRequest {
                            request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
                                pb::WatchProgressRequest {},
                            )),
                        };
                        if tx.send(progress).await.is_err() {
                            break;
                        }
                    }
                    r = end.changed() => {
                        if r.is_err() {
                            return Followed {
                                complete: false,
                                gap: Some("abandoned before the end".into()),
                            };
                        }
                    }
                    r = tokio::time::timeout(IDLE, stream.message()) => {
                        let Ok(Ok(Some(resp))) = r else {
                            debug!(prefix, "follow: stream ended, failed or stalled; another member");
                            break;
                        };
                        if resp.compact_revision > 0 {
                            return Followed {
                                complete: false,
                                gap: Some(format!(
                                    "{prefix}: compacted at {} before revision {next} was seen",
                                    resp.compact_revision
                                )),
                            };
                        }
                        for ev in &resp.events {
                            let Some(kv) = &ev.kv else { continue };
                            on(ev);
                            next = next.max(kv.mod_revision.saturating_add(1));
                        }
                        let at = resp.header.as_ref().map_or(0, |h| h.revision);
                        if resp.events.is_empty() && end.borrow().is_some_and(|e| at >= e) {
                            return Followed { complete: true, gap: None };
                        }
                    }
                }
            }
            node += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}
