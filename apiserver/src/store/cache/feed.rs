//! The feed that keeps the watch cache following etcd: a paged list of `/registry/` at one
//! revision, then one watch from the next revision on, listing again when history is
//! compacted; and `catch_up`, which brings the cache to a linearizable read's revision.
//!
//! The feed follows one member at a time. Every few seconds it compares its revision with a
//! linearizable read and asks the member for a progress notification; a member that cannot
//! bring the cache up to date (isolated, stuck) is abandoned for the next one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proto::etcdserverpb as pb;

use super::{Cache, CachedObj};
use crate::etcd::{prefix_end, Etcd, EtcdError};
use crate::kinds::Kinds;

const PAGE: i64 = 2000;

/// Lists everything under `/registry/` at one revision, in pages.
async fn list_all(
    etcd: &Etcd,
    kinds: &Kinds,
) -> Result<(BTreeMap<String, Arc<CachedObj>>, i64), EtcdError> {
    let prefix = b"/registry/".to_vec();
    let end = prefix_end(&prefix);
    let mut start = prefix;
    let mut rev = 0;
    let mut out = BTreeMap::new();
    loop {
        let r = etcd
            .range(pb::RangeRequest {
                key: start.clone(),
                range_end: end.clone(),
                limit: PAGE,
                revision: rev,
                ..Default::default()
            })
            .await?;
        if rev == 0 {
            rev = r.header.as_ref().map(|h| h.revision).unwrap_or(0);
        }
        for kv in &r.kvs {
            if let Some(o) = CachedObj::from_kv(kinds, &kv.key, &kv.value, kv.mod_revision) {
                out.insert(o.key.clone(), Arc::new(o));
            }
        }
        match r.kvs.last() {
            Some(kv) if r.more => {
                start = kv.key.clone();
                start.push(0);
            }
            _ => return Ok((out, rev)),
        }
    }
}

/// Why the feed left a watch stream.
enum Left {
    /// History is gone: list again.
    Compacted,
    /// The member failed or fell behind: watch from the next one.
    Member,
}

/// Keeps the cache fed until the process ends.
pub async fn run(cache: Arc<Cache>, etcd: Arc<Etcd>, check_every: Duration) {
    let mut member = etcd.preferred();
    loop {
        let (objects, rev) = match list_all(&etcd, &cache.kinds).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "watch cache: list failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        tracing::info!(objects = objects.len(), rev, "watch cache: listed");
        cache.reset(objects, rev);
        loop {
            match follow(&cache, &etcd, member, check_every).await {
                Left::Compacted => break,
                Left::Member => {
                    member += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

async fn follow(cache: &Cache, etcd: &Etcd, member: usize, check_every: Duration) -> Left {
    use pb::watch_request::RequestUnion;
    let from = cache.read().rev + 1;
    let create = pb::WatchCreateRequest {
        key: b"/registry/".to_vec(),
        range_end: prefix_end(b"/registry/"),
        start_revision: from,
        progress_notify: true,
        ..Default::default()
    };
    let (tx, mut stream) = match etcd.watch(member, create).await {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(member = etcd.member_url(member), error = %e, "watch cache: cannot watch");
            return Left::Member;
        }
    };
    tracing::info!(
        member = etcd.member_url(member),
        from,
        "watch cache: following"
    );
    let mut ticker = tokio::time::interval(check_every);
    ticker.tick().await;
    // A revision the cache must reach before the next check.
    let mut must_reach: Option<i64> = None;
    loop {
        tokio::select! {
            msg = stream.message() => match msg {
                Ok(Some(r)) => {
                    if r.compact_revision > 0 {
                        tracing::warn!(compact_revision = r.compact_revision, "watch cache: history compacted; listing again");
                        return Left::Compacted;
                    }
                    if r.canceled {
                        tracing::warn!(reason = %r.cancel_reason, "watch cache: watch canceled");
                        return Left::Member;
                    }
                    let rev = r.header.as_ref().map(|h| h.revision).unwrap_or(0);
                    if !r.events.is_empty() {
                        cache.apply(r.events);
                    } else if !r.created {
                        cache.progress(rev);
                    }
                }
                Ok(None) | Err(_) => {
                    tracing::warn!(member = etcd.member_url(member), "watch cache: stream ended");
                    return Left::Member;
                }
            },
            _ = cache.progress_wanted.notified() => {
                let _ = tx.send(pb::WatchRequest {
                    request_union: Some(RequestUnion::ProgressRequest(pb::WatchProgressRequest {})),
                }).await;
            }
            _ = ticker.tick() => {
                let have = cache.read().rev;
                if let Some(want) = must_reach.take() {
                    if have < want {
                        tracing::warn!(member = etcd.member_url(member), have, want, "watch cache: member fell behind");
                        return Left::Member;
                    }
                }
                if let Ok(cur) = etcd.current_revision().await {
                    if cur > have {
                        must_reach = Some(cur);
                    }
                }
                let _ = tx.send(pb::WatchRequest {
                    request_union: Some(RequestUnion::ProgressRequest(pb::WatchProgressRequest {})),
                }).await;
            }
        }
    }
}

/// Asks for a consistent view: the current revision read linearizably, then waits for the
/// cache to reach it. False if the caller should read the kvstore instead.
pub async fn catch_up(
    cache: &Cache,
    etcd: &Etcd,
    limit: Duration,
) -> Result<Option<i64>, EtcdError> {
    let cur = etcd.current_revision().await?;
    if cache.revision().is_some_and(|r| r < cur) {
        cache.progress_wanted.notify_one();
    }
    Ok(cache.wait_for(cur, limit).await.then_some(cur))
}
