//! Fencing the writes of a leader elected through a Lease.
//!
//! Lease-based leader election alone (client-go's, `component_base::leaderelection`)
//! keeps one leader acting only if the replicas' clocks run at the same rate and nothing
//! freezes a leader between deciding a write and sending it: a leader paused past its
//! lease, or whose write waits in a queue, can still write after another replica took the
//! lease. A fence closes that gap the way etcd's election does (writes guarded by the
//! leader key's revision):
//!
//! - Every write of a Lease that changes its holder or acquireTime (create, take-over,
//!   release, delete) also writes the Lease's *fence key* in the same Txn ([`key`]), so the fence key's
//!   mod_revision is the revision of the latest acquisition: the Lease's resourceVersion
//!   as the acquiring write returned it. Renewals leave it alone.
//! - A leader sends `Flotilla-Fence: <namespace>/<lease>@<that revision>` ([`HEADER`])
//!   with its writes. Every Txn the registry writes for such a request is guarded by the
//!   fence key's mod_revision being that revision, so a write from a replica that lost the
//!   lease fails by construction, in the kvstore, whichever apiserver it went through
//!   ([`Store::commit`]). The failure is a 409 Conflict that says so.
//!
//! The header needs no permission of its own: it can only make its sender's write fail,
//! and the error does not say who holds the lease. Reads ignore it. A request without it
//! is not fenced (kube's own clients).
//!
//! The fence of a request lives in a task-local set around the request's handling
//! ([`scope`]), so every write path of the registry (create, update, patch, the
//! subresources, delete) carries it without each one threading it through.

use std::future::Future;

use super::storage::{Guard, Txn, TxnResult};
use super::Store;
use crate::error::{ApiError, GroupResource};

/// The request header naming the sender's lease and acquisition.
pub const HEADER: &str = "flotilla-fence";

/// A leader's claim: the Lease, and the revision at which it acquired it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub namespace: String,
    pub name: String,
    pub revision: i64,
}

/// Where a Lease's fence lives: outside `/registry/`, so no list of a resource sees it.
pub fn key(namespace: &str, name: &str) -> String {
    format!("/flotilla/fences/leases/{namespace}/{name}")
}

impl Fence {
    /// Parses `<namespace>/<name>@<revision>`.
    pub fn parse(v: &str) -> Result<Fence, ApiError> {
        let bad = || {
            ApiError::BadRequest(format!(
                "invalid {HEADER} header {v:?}: expected <namespace>/<lease name>@<revision>"
            ))
        };
        let (lease, rev) = v.trim().rsplit_once('@').ok_or_else(bad)?;
        let (namespace, name) = lease.split_once('/').ok_or_else(bad)?;
        let revision = rev.parse::<i64>().ok().filter(|r| *r > 0).ok_or_else(bad)?;
        let segment = |s: &str| !s.is_empty() && !s.contains('/') && s.len() <= 253;
        if !segment(namespace) || !segment(name) {
            return Err(bad());
        }
        Ok(Fence {
            namespace: namespace.to_string(),
            name: name.to_string(),
            revision,
        })
    }

    /// The fence of a request's headers, if it has one.
    pub fn of(headers: &http::HeaderMap) -> Result<Option<Fence>, ApiError> {
        match headers.get(HEADER) {
            None => Ok(None),
            Some(v) => {
                let s = v.to_str().map_err(|_| {
                    ApiError::BadRequest(format!("invalid {HEADER} header: not ASCII"))
                })?;
                Fence::parse(s).map(Some)
            }
        }
    }

    fn key(&self) -> String {
        key(&self.namespace, &self.name)
    }

    fn refused(&self, gr: GroupResource, name: &str) -> ApiError {
        ApiError::Conflict {
            gr,
            name: name.to_string(),
            message: format!(
                "the writer no longer holds the lease {}/{}: it was acquired again after revision {}",
                self.namespace, self.name, self.revision
            ),
        }
    }
}

tokio::task_local! {
    static FENCE: Option<Fence>;
}

/// Runs a request's handling with its fence.
pub async fn scope<F: Future>(fence: Option<Fence>, f: F) -> F::Output {
    FENCE.scope(fence, f).await
}

fn current() -> Option<Fence> {
    FENCE.try_with(Clone::clone).ok().flatten()
}

impl Store {
    /// Writes a Txn of the registry, guarded by the request's fence when it has one.
    /// `gr` and `name` name the object in the error a refused fence gives.
    pub(super) async fn commit(
        &self,
        mut txn: Txn,
        gr: GroupResource,
        name: &str,
    ) -> Result<TxnResult, ApiError> {
        let fence = current();
        if let Some(f) = &fence {
            txn.guards.push(Guard::ModRevision(f.key(), f.revision));
        }
        let r = self.storage.txn(txn).await?;
        if let (false, Some(f)) = (r.succeeded, &fence) {
            // Which guard failed: a fence that moved is the answer even when the object
            // changed too (the writer is no longer the leader either way).
            let now = self.storage.get(&f.key()).await?;
            if now.map(|kv| kv.mod_revision) != Some(f.revision) {
                self.metrics
                    .fenced
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Err(f.refused(gr, name));
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_fence() {
        assert_eq!(
            Fence::parse("kube-system/kube-scheduler@42").unwrap(),
            Fence {
                namespace: "kube-system".into(),
                name: "kube-scheduler".into(),
                revision: 42
            }
        );
    }

    #[test]
    fn refuses_malformed_fences() {
        for v in [
            "",
            "kube-system/kube-scheduler",
            "kube-scheduler@4",
            "kube-system/kube-scheduler@0",
            "kube-system/kube-scheduler@-1",
            "kube-system/kube-scheduler@x",
            "/kube-scheduler@4",
            "kube-system/@4",
            "a/b/c@4",
        ] {
            assert!(
                matches!(Fence::parse(v), Err(ApiError::BadRequest(_))),
                "{v:?}"
            );
        }
    }
}
