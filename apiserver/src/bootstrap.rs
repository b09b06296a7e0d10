//! What every cluster has from the start (the system namespaces, priority classes and
//! RBAC roles), and the periodic
//! compaction of the kvstore's history that kube-apiserver performs.

use std::sync::Arc;
use std::time::Duration;

use proto::etcdserverpb as pb;

use crate::error::ApiError;
use crate::etcd::Etcd;
use crate::store::{Store, Target};

/// Namespaces that may not be deleted (kube-apiserver's NamespaceLifecycle admission).
pub const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates the system namespaces and priority classes that are missing; retries until the
/// kvstore answers.
pub async fn ensure(store: Arc<Store>) {
    let mut objects = Vec::new();
    for ns in SYSTEM_NAMESPACES {
        objects.push((
            ("", "v1", "namespaces"),
            serde_json::json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns } }),
        ));
    }
    for (name, value, description) in crate::kinds::priorityclass::SYSTEM {
        objects.push((
            ("scheduling.k8s.io", "v1", "priorityclasses"),
            serde_json::json!({
                "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": { "name": name }, "value": value, "description": description,
            }),
        ));
    }
    let (roles, bindings) = crate::authz::bootstrap::objects();
    for r in roles {
        objects.push((("rbac.authorization.k8s.io", "v1", "clusterroles"), r));
    }
    for b in bindings {
        objects.push((
            ("rbac.authorization.k8s.io", "v1", "clusterrolebindings"),
            b,
        ));
    }
    for ((group, version, plural), body) in objects {
        let Some(kind) = store.kinds.find(group, version, plural) else {
            continue;
        };
        let t = Target {
            kind,
            namespace: None,
            name: None,
        };
        let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
        let body = serde_json::to_vec(&body).unwrap_or_default();
        loop {
            match store
                .create(
                    &t,
                    &body,
                    &crate::store::Write::new("flotilla-apiserver", false),
                )
                .await
            {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => break,
                Err(e) => {
                    tracing::warn!(object = %name, error = %e, "cannot create a system object yet");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

const COMPACT_KEY: &[u8] = b"compact_rev_key";

/// Every `every`, compacts the history up to the revision seen one interval earlier. As
/// kube-apiserver does, replicas agree through a Txn on `compact_rev_key`'s version, so
/// only one of them compacts per interval.
pub async fn compact_loop(etcd: Arc<Etcd>, every: Duration) {
    let mut version = 0i64;
    let mut last_rev = 0i64;
    loop {
        tokio::time::sleep(every).await;
        let txn = pb::TxnRequest {
            compare: vec![pb::Compare {
                result: pb::compare::CompareResult::Equal as i32,
                target: pb::compare::CompareTarget::Version as i32,
                key: COMPACT_KEY.to_vec(),
                range_end: vec![],
                target_union: Some(pb::compare::TargetUnion::Version(version)),
            }],
            success: vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                    key: COMPACT_KEY.to_vec(),
                    value: last_rev.to_string().into_bytes(),
                    ..Default::default()
                })),
            }],
            failure: vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
                    key: COMPACT_KEY.to_vec(),
                    ..Default::default()
                })),
            }],
        };
        let r = match etcd.txn(txn).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "compaction: kvstore unavailable");
                continue;
            }
        };
        let cur = r.header.as_ref().map(|h| h.revision).unwrap_or(0);
        if r.succeeded {
            version += 1;
            if last_rev > 0 {
                match etcd.compact(last_rev).await {
                    Ok(()) => tracing::info!(revision = last_rev, "compacted"),
                    Err(e) => tracing::debug!(error = %e, revision = last_rev, "compaction failed"),
                }
            }
        } else if let Some(pb::response_op::Response::ResponseRange(rr)) =
            r.responses.first().and_then(|o| o.response.clone())
        {
            // Someone else compacted this interval; follow their count.
            version = rr.kvs.first().map(|kv| kv.version).unwrap_or(0);
        }
        last_rev = cur;
    }
}
