//! create: metadata the server owns, the kind's preparation and validation, the namespace
//! check, cluster IP allocation, and one Txn that succeeds only if the name is free.

use bytes::Bytes;
use proto::etcdserverpb as pb;
use rand::Rng;
use serde_json::Value;

use super::{compare_absent, encode_for_store, header_rev, ipalloc, op_get, op_put, reconcile_meta, set_rv, time_value, Store, Target};
use crate::error::{ApiError, FieldError};

/// The alphabet Kubernetes draws generated name suffixes from (no vowels, no look-alikes).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn generated_name(prefix: &str) -> String {
    let mut rng = rand::rng();
    let suffix: String = (0..5).map(|_| SUFFIX_ALPHABET[rng.random_range(0..SUFFIX_ALPHABET.len())] as char).collect();
    format!("{prefix}{suffix}")
}

impl Store {
    /// Creates the object in `body`; returns it as stored, with its resourceVersion.
    pub async fn create(&self, t: &Target, body: &[u8], dry_run: bool) -> Result<Bytes, ApiError> {
        let info = t.kind.info();
        let mut obj = t.kind.decode(body)?;
        let generated;
        let url = Target { name: None, ..t.clone() };
        reconcile_meta(&mut obj, &url, false)?;
        {
            let meta = obj["metadata"].as_object_mut().ok_or_else(|| ApiError::BadRequest("metadata must be an object".into()))?;
            let has_name = meta.get("name").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
            generated = !has_name;
            if !has_name {
                if let Some(prefix) = meta.get("generateName").and_then(Value::as_str).filter(|g| !g.is_empty()) {
                    let name = generated_name(prefix);
                    meta.insert("name".into(), name.into());
                }
            }
            meta.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
            meta.insert("creationTimestamp".into(), time_value(&super::now()));
            for owned in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
                meta.remove(owned);
            }
            if info.generation {
                meta.insert("generation".into(), 1.into());
            } else {
                meta.remove("generation");
            }
        }
        t.kind.prepare_create(&mut obj)?;
        t.kind.validate(&obj, None)?;
        let mut name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        if let Some(ns) = &t.namespace {
            self.check_namespace(ns).await?;
        }
        let mut key = Target { name: Some(name.clone()), ..t.clone() }.key();
        let requested_ip = obj["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
        let wants_ip = info.plural == "services"
            && info.group.is_empty()
            && obj["spec"]["type"] != "ExternalName"
            && requested_ip != "None";
        // A random IP that someone else took is retried; a requested one is not.
        for _ in 0..16 {
            let mut compare = vec![compare_absent(&key)];
            let mut success = Vec::new();
            let mut ip_key = None;
            if wants_ip {
                let ip = if requested_ip.is_empty() {
                    self.ips.random()
                } else {
                    self.ips.check(&requested_ip).map_err(|e| info.invalid(&name, vec![e]))?
                };
                let k = ipalloc::key(ip);
                compare.push(compare_absent(&k));
                success.push(op_put(&k, key.clone().into_bytes()));
                ip_key = Some(k);
                obj["spec"]["clusterIP"] = ip.to_string().into();
                obj["spec"]["clusterIPs"] = serde_json::json!([ip.to_string()]);
            }
            if dry_run {
                return Ok(Bytes::from(serde_json::to_vec(&obj).unwrap_or_default()));
            }
            success.insert(0, op_put(&key, encode_for_store(&obj)));
            let mut failure = vec![op_get(&key)];
            if let Some(k) = &ip_key {
                failure.push(op_get(k));
            }
            let r = self.etcd.txn(pb::TxnRequest { compare, success, failure }).await?;
            if r.succeeded {
                set_rv(&mut obj, header_rev(&r.header));
                return Ok(Bytes::from(serde_json::to_vec(&obj).unwrap_or_default()));
            }
            let exists = range_found(r.responses.first());
            if exists && generated {
                // A generated name that is taken is drawn again, as Kubernetes does.
                let prefix = obj["metadata"]["generateName"].as_str().unwrap_or("").to_string();
                name = generated_name(&prefix);
                obj["metadata"]["name"] = name.clone().into();
                key = Target { name: Some(name.clone()), ..t.clone() }.key();
                continue;
            }
            if exists {
                return Err(ApiError::AlreadyExists { gr: info.gr(), name });
            }
            if !requested_ip.is_empty() {
                return Err(info.invalid(
                    &name,
                    vec![FieldError::invalid_raw(
                        "spec.clusterIPs",
                        format!("[]string{{{requested_ip:?}}}"),
                        format!("failed to allocate IP {requested_ip}: provided IP is already allocated"),
                    )],
                ));
            }
        }
        Err(ApiError::Internal("failed to allocate a service IP: the range is too full".into()))
    }
}

pub(super) fn range_found(op: Option<&pb::ResponseOp>) -> bool {
    matches!(
        op.and_then(|o| o.response.as_ref()),
        Some(pb::response_op::Response::ResponseRange(r)) if !r.kvs.is_empty()
    )
}
