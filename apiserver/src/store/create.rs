//! create: metadata the server owns, the kind's preparation and validation, the namespace
//! check, and one Txn that succeeds only if the name and every key the kind claims (its
//! allocations) are free.

use bytes::Bytes;
use rand::Rng;
use serde_json::Value;

use super::storage::{Guard, Op, Txn};
use super::{encode_for_store, reconcile_meta, set_rv, time_value, Store, Target, Write};
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
        w.external_mutate(t, None, None, &mut obj).await?;
        t.kind.validate(&obj, None)?;
        w.allowed(info, &obj)?;
        self.validate_create(t, &obj, w).await?;
        w.external_validate(t, None, None, &obj).await?;
        let mut name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        if let Some(ns) = &t.namespace {
            self.check_namespace(ns).await?;
        }
        let mut key = Target {
            name: Some(name.clone()),
            ..t.clone()
        }
        .key();
        // What the kind allocates (a Service's cluster IP and node ports) is claimed as
        // keys in the object's own Txn. A value someone else took is drawn again if it was
        // random; if the client asked for it, the create fails.
        let requested = obj;
        for _ in 0..16 {
            let mut obj = requested.clone();
            obj["metadata"]["name"] = name.clone().into();
            let claims = t.kind.claims(&mut obj, &self.env)?;
            if dry_run {
                return Ok(Bytes::from(serde_json::to_vec(&obj).unwrap_or_default()));
            }
            let mut txn = Txn {
                guards: vec![Guard::Absent(key.clone())],
                ops: vec![Op::Put(key.clone(), encode_for_store(&obj))],
                on_failure: vec![key.clone()],
            };
            for c in &claims {
                txn.guards.push(Guard::Absent(c.key.clone()));
                txn.ops
                    .push(Op::Put(c.key.clone(), key.clone().into_bytes()));
                txn.on_failure.push(c.key.clone());
            }
            txn.ops.extend(super::companion_ops(t.kind.companions(
                &key,
                None,
                Some(&obj),
            )));
            let r = self.commit(txn, info.gr(), &name).await?;
            if r.succeeded {
                set_rv(&mut obj, r.revision);
                return Ok(Bytes::from(serde_json::to_vec(&obj).unwrap_or_default()));
            }
            let exists = r.found.first().copied().unwrap_or(false);
            if exists && generated {
                // A generated name that is taken is drawn again, as Kubernetes does.
                let prefix = obj["metadata"]["generateName"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                name = generated_name(&prefix);
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
                .zip(r.found.iter().skip(1))
                .filter(|(_, found)| **found)
                .filter_map(|(c, _)| c.taken.clone())
                .collect();
            if !refused.is_empty() {
                return Err(info.invalid(&name, refused));
            }
        }
        Err(ApiError::Internal(format!(
            "failed to allocate what this {} needs: the range is too full",
            info.kind
        )))
    }
}
