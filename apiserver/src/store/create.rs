//! create: metadata the server owns, the kind's preparation and validation, the namespace
//! check, cluster IP allocation, and one Txn that succeeds only if the name is free.

use bytes::Bytes;
use proto::etcdserverpb as pb;
use rand::Rng;
use serde_json::Value;

use super::{
    compare_absent, encode_for_store, header_rev, ipalloc, op_get, op_put, reconcile_meta, set_rv,
    time_value, Store, Target, Write,
};
use crate::error::{ApiError, FieldError};

/// The alphabet Kubernetes draws generated name suffixes from (no vowels, no look-alikes).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn generated_name(prefix: &str) -> String {
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| SUFFIX_ALPHABET[rng.random_range(0..SUFFIX_ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

impl Store {
    /// Creates the object in `body`; returns it as stored, with its resourceVersion.
    pub async fn create(&self, t: &Target, body: &[u8], w: &Write) -> Result<Bytes, ApiError> {
        let obj = t.kind.decode(body)?;
        self.create_object(t, obj, w, false).await
    }

    /// Creates a decoded object; `applied`: its managedFields are already an apply's.
    pub(super) async fn create_object(
        &self,
        t: &Target,
        mut obj: Value,
        w: &Write,
        applied: bool,
    ) -> Result<Bytes, ApiError> {
        let dry_run = w.dry_run;
        let info = t.kind.info();
        let generated;
        let url = Target {
            name: None,
            ..t.clone()
        };
        reconcile_meta(&mut obj, &url, false)?;
        {
            let meta = obj["metadata"]
                .as_object_mut()
                .ok_or_else(|| ApiError::BadRequest("metadata must be an object".into()))?;
            let has_name = meta
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            generated = !has_name;
            if !has_name {
                if let Some(prefix) = meta
                    .get("generateName")
                    .and_then(Value::as_str)
                    .filter(|g| !g.is_empty())
                {
                    let name = generated_name(prefix);
                    meta.insert("name".into(), name.into());
                }
            }
            meta.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
            meta.insert("creationTimestamp".into(), time_value(&super::now()));
            for owned in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
            ] {
                meta.remove(owned);
            }
            if info.generation {
                meta.insert("generation".into(), 1.into());
            } else {
                meta.remove("generation");
            }
        }
        t.kind.prepare_create(&mut obj)?;
        if !applied {
            super::record_update(t, w, None, None, &mut obj);
        }
        self.admit_create(t, &mut obj).await?;
        t.kind.validate(&obj, None)?;
        let mut name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        if let Some(ns) = &t.namespace {
            self.check_namespace(ns).await?;
        }
        let mut key = Target {
            name: Some(name.clone()),
            ..t.clone()
        }
        .key();
        let is_service = info.plural == "services" && info.group.is_empty();
        let requested_ip = obj["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
        let wants_ip =
            is_service && obj["spec"]["type"] != "ExternalName" && requested_ip != "None";
        let wants_node_ports = is_service
            && matches!(
                obj["spec"]["type"].as_str(),
                Some("NodePort" | "LoadBalancer")
            );
        let requested_ports: Vec<i64> = if wants_node_ports {
            obj["spec"]["ports"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| p["nodePort"].as_i64().unwrap_or(0))
                        .collect()
                })
                .unwrap_or_default()
        } else {
            vec![]
        };
        ipalloc::check_node_ports(&requested_ports).map_err(|e| info.invalid(&name, e))?;
        // Allocations (a cluster IP, node ports) are keys claimed in the object's own Txn.
        // One that someone else took is drawn again if it was random; if the client asked
        // for it, the create fails.
        for _ in 0..16 {
            let mut claims: Vec<(String, Option<FieldError>)> = Vec::new();
            if wants_ip {
                let ip = if requested_ip.is_empty() {
                    self.ips.random()
                } else {
                    self.ips
                        .check(&requested_ip)
                        .map_err(|e| info.invalid(&name, vec![e]))?
                };
                let taken = (!requested_ip.is_empty()).then(|| {
                    FieldError::invalid_raw(
                        "spec.clusterIPs",
                        format!("[]string{{{requested_ip:?}}}"),
                        format!("failed to allocate IP {requested_ip}: provided IP is already allocated"),
                    )
                });
                claims.push((ipalloc::key(ip), taken));
                obj["spec"]["clusterIP"] = ip.to_string().into();
                obj["spec"]["clusterIPs"] = serde_json::json!([ip.to_string()]);
            }
            let mut used: Vec<i64> = requested_ports
                .iter()
                .copied()
                .filter(|p| *p != 0)
                .collect();
            for (i, req) in requested_ports.iter().enumerate() {
                let port = if *req != 0 {
                    *req
                } else {
                    ipalloc::random_node_port(&mut used)
                };
                let taken = (*req != 0).then(|| {
                    FieldError::invalid_raw(
                        format!("spec.ports[{i}].nodePort"),
                        port.to_string(),
                        "provided port is already allocated",
                    )
                });
                claims.push((ipalloc::node_port_key(port), taken));
                obj["spec"]["ports"][i]["nodePort"] = port.into();
            }
            if dry_run {
                return Ok(Bytes::from(serde_json::to_vec(&obj).unwrap_or_default()));
            }
            let mut compare = vec![compare_absent(&key)];
            let mut success = vec![op_put(&key, encode_for_store(&obj))];
            let mut failure = vec![op_get(&key)];
            for (k, _) in &claims {
                compare.push(compare_absent(k));
                success.push(op_put(k, key.clone().into_bytes()));
                failure.push(op_get(k));
            }
            let r = self
                .etcd
                .txn(pb::TxnRequest {
                    compare,
                    success,
                    failure,
                })
                .await?;
            if r.succeeded {
                set_rv(&mut obj, header_rev(&r.header));
                return Ok(Bytes::from(serde_json::to_vec(&obj).unwrap_or_default()));
            }
            let exists = range_found(r.responses.first());
            if exists && generated {
                // A generated name that is taken is drawn again, as Kubernetes does.
                let prefix = obj["metadata"]["generateName"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                name = generated_name(&prefix);
                obj["metadata"]["name"] = name.clone().into();
                key = Target {
                    name: Some(name.clone()),
                    ..t.clone()
                }
                .key();
                continue;
            }
            if exists {
                return Err(ApiError::AlreadyExists {
                    gr: info.gr(),
                    name,
                });
            }
            let refused: Vec<FieldError> = claims
                .iter()
                .zip(r.responses.iter().skip(1))
                .filter(|(_, resp)| range_found(Some(resp)))
                .filter_map(|((_, taken), _)| taken.clone())
                .collect();
            if !refused.is_empty() {
                return Err(info.invalid(&name, refused));
            }
        }
        Err(ApiError::Internal(
            "failed to allocate a service IP or node port: the range is too full".into(),
        ))
    }
}

pub(super) fn range_found(op: Option<&pb::ResponseOp>) -> bool {
    matches!(
        op.and_then(|o| o.response.as_ref()),
        Some(pb::response_op::Response::ResponseRange(r)) if !r.kvs.is_empty()
    )
}
