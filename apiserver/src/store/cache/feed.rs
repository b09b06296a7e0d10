//! The feed that keeps the watch cache following the storage (etcd): a paged list of
//! `/registry/` at one revision, then one watch from the next revision on, listing again
//! when history is compacted; and `catch_up`, which brings the cache to a linearizable read's revision.
//!
//! The feed follows one member at a time. Every few seconds it compares its revision with a
//! linearizable read and asks the member for a progress notification; a member that cannot
//! bring the cache up to date (isolated, stuck) is abandoned for the next one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Cache, CachedObj};
use crate::etcd::prefix_end;
use crate::kinds::{storage_of, Kinds, CRD_PREFIX};
use crate::store::storage::{Storage, StorageError, WatchMessage, WatchSpec};

const PAGE: i64 = 2000;

/// Lists everything under `/registry/` at one revision, in pages.
async fn list_all(
    storage: &dyn Storage,
    kinds: &Kinds,
) -> Result<(BTreeMap<String, Arc<CachedObj>>, i64), StorageError> {
    let prefix = b"/registry/".to_vec();
    let end = prefix_end(&prefix);
    let mut start = prefix;
    let mut rev = 0;
    let mut out = BTreeMap::new();
    // Keys of a group no kind serves yet (custom resources whose CRD may come later in
    // the list), decoded once every CRD is known; and the CRDs.
    let mut later = Vec::new();
    let mut crds = Vec::new();
    loop {
        let r = storage.range(&start, &end, rev, PAGE).await?;
        if rev == 0 {
            rev = r.revision;
        }
        for kv in r.kvs.iter() {
            if kv.key.starts_with(CRD_PREFIX.as_bytes()) {
                crds.push((kv.key.clone(), kv.value.clone()));
            }
            match CachedObj::from_kv(kinds, &kv.key, &kv.value, kv.mod_revision) {
                Some(o) => {
                    out.insert(o.key.clone(), Arc::new(o));
                }
                None if std::str::from_utf8(&kv.key)
                    .ok()
                    .and_then(storage_of)
                    .is_some_and(|s| s.contains('.')) =>
                {
                    later.push(kv.clone())
                }
                None => {}
            }
        }
        match r.kvs.last() {
            Some(kv) if r.more => {
                start = kv.key.clone();
                start.push(0);
            }
            _ => break,
        }
    }
    kinds.reset_custom(
        crds.iter()
            .filter_map(|(k, v)| std::str::from_utf8(k).ok().map(|k| (k, v.as_slice()))),
    );
    for kv in later {
        if let Some(o) = CachedObj::from_kv(kinds, &kv.key, &kv.value, kv.mod_revision) {
            out.insert(o.key.clone(), Arc::new(o));
        }
    }
    Ok((out, rev))
}

/// Why the feed left a watch stream.
enum Left {
    /// History is gone: list again.
    Compacted,
    /// The member failed or fell behind: watch from the next one.
    Member,
}

/// Keeps the cache fed until the process ends.
pub async fn run(cache: Arc<Cache>, storage: Arc<dyn Storage>, check_every: Duration) {
    let mut member = storage.preferred_replica();
    loop {
        let (objects, rev) = match list_all(storage.as_ref(), &cache.kinds).await {
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
            match follow(&cache, storage.as_ref(), member, check_every).await {
                Left::Compacted => break,
                Left::Member => {
                    member = member.wrapping_add(1);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

async fn follow(
    cache: &Cache,
    storage: &dyn Storage,
    member: usize,
    check_every: Duration,
) -> Left {
    let from = cache.read().rev + 1;
    let name = storage.replica_name(member);
    let spec = WatchSpec {
        start: b"/registry/".to_vec(),
        end: prefix_end(b"/registry/"),
        from,
        prev_kv: false,
        progress_notify: true,
        replica: member,
    };
    let mut stream = match storage.watch(spec).await {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(member = name, error = %e, "watch cache: cannot watch");
            return Left::Member;
        }
    };
    tracing::info!(member = name, from, "watch cache: following");
    let mut ticker = tokio::time::interval(check_every);
    ticker.tick().await;
    // A revision the cache must reach before the next check.
    let mut must_reach: Option<i64> = None;
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(WatchMessage::Events(events)) => cache.apply(events),
                Some(WatchMessage::Progress(rev)) => cache.progress(rev),
                Some(WatchMessage::Compacted(rev)) => {
                    tracing::warn!(compact_revision = rev, "watch cache: history compacted; listing again");
                    return Left::Compacted;
                }
                Some(WatchMessage::Canceled(reason)) => {
                    tracing::warn!(%reason, "watch cache: watch canceled");
                    return Left::Member;
                }
                None => {
                    tracing::warn!(member = name, "watch cache: stream ended");
                    return Left::Member;
                }
            },
            _ = cache.progress_wanted.notified() => stream.request_progress().await,
            _ = ticker.tick() => {
                let have = cache.read().rev;
                if let Some(want) = must_reach.take() {
                    if have < want {
                        tracing::warn!(member = name, have, want, "watch cache: member fell behind");
                        return Left::Member;
                    }
                }
                if let Ok(cur) = storage.current_revision().await {
                    if cur > have {
                        must_reach = Some(cur);
                    }
                }
                stream.request_progress().await;
            }
        }
    }
}

/// Asks for a consistent view: the current revision read linearizably, then waits for the
/// cache to reach it. False if the caller should read the kvstore instead.
pub async fn catch_up(
    cache: &Cache,
    storage: &dyn Storage,
    limit: Duration,
) -> Result<Option<i64>, StorageError> {
    let cur = storage.current_revision().await?;
    if cache.revision().is_some_and(|r| r < cur) {
        cache.progress_wanted.notify_one();
    }
    Ok(cache.wait_for(cur, limit).await.then_some(cur))
}
