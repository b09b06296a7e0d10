//! Updates: PUT of an object or of its `status`, and [`Store::guarded_update`], which
//! kinds' own subresources (a pod's binding, a namespace's finalize) write through too:
//! read, decide, write with a Txn guarded by the mod_revision read; a lost race is
//! retried unless the client named a resourceVersion.

use bytes::Bytes;
use serde_json::Value;

use super::admission::UpdateAdmission;
use super::storage::{Guard, Op, Txn};
use super::{encode_for_store, parse_rv, reconcile_meta, set_rv, Store, Stored, Target, Write};
use crate::error::ApiError;

/// What an update decided to do with the stored object.
pub(crate) enum Outcome {
    Put(Value),
    /// The object is gone for good (its last finalizer was removed while it was deleted).
    Delete(Value),
    Unchanged,
}

pub(super) const MAX_ATTEMPTS: usize = 8;

pub(super) fn conflict(t: &Target) -> ApiError {
    ApiError::Conflict {
        gr: t.kind.info().gr(),
        name: t.name().to_string(),
        message: "the object has been modified; please apply your changes to the latest version and try again".into(),
    }
}

/// The metadata fields only the server sets, copied from the stored object.
pub(super) const SERVER_OWNED: &[&str] = &[
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "name",
    "namespace",
];

pub(crate) fn strip_rv(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    v
}

/// Whether an object being deleted has nothing left holding it.
pub(crate) fn finished(v: &Value) -> bool {
    let meta = &v["metadata"];
    !meta["deletionTimestamp"].is_null()
        && meta["finalizers"].as_array().is_none_or(|f| f.is_empty())
        && meta["deletionGracePeriodSeconds"].as_i64().unwrap_or(0) == 0
        && v["spec"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty())
}

impl Store {
    pub(crate) async fn guarded_update(
        &self,
        t: &Target,
        precondition: Option<i64>,
        dry_run: bool,
        decide: impl FnMut(&Stored) -> Result<Outcome, ApiError>,
    ) -> Result<Value, ApiError> {
        self.guarded_update_with(t, precondition, dry_run, None, decide)
            .await
    }

    /// [`Store::guarded_update`], with the external admission (webhooks) of `ext`'s
    /// write through its subresource on every object decided, on each attempt.
    async fn guarded_update_with(
        &self,
        t: &Target,
        precondition: Option<i64>,
        dry_run: bool,
        ext: Option<(&Write, Option<&str>)>,
        mut decide: impl FnMut(&Stored) -> Result<Outcome, ApiError>,
    ) -> Result<Value, ApiError> {
        let key = t.key();
        for _ in 0..MAX_ATTEMPTS {
            let old = self.read(&key).await?.ok_or_else(|| t.not_found())?;
            if precondition.is_some_and(|rv| rv != old.mod_revision) {
                return Err(conflict(t));
            }
            let decided = match (decide(&old)?, ext) {
                (Outcome::Put(mut v), Some((w, sub))) if w.external.is_some() => {
                    w.external_mutate(t, sub, Some(&old.value), &mut v).await?;
                    w.external_validate(t, sub, Some(&old.value), &v).await?;
                    Outcome::Put(v)
                }
                (d, _) => d,
            };
            let (ops, mut out) = match decided {
                Outcome::Unchanged if !old.stale => return Ok(old.value),
                // As kube: an unchanged object stored with an older key or provider is
                // written again, so replacing every object rotates the key.
                Outcome::Unchanged => (
                    vec![Op::Put(key.clone(), encode_for_store(&old.value))],
                    old.value,
                ),
                Outcome::Put(v) => {
                    let mut ops = vec![Op::Put(key.clone(), encode_for_store(&v))];
                    let with = t.kind.companions(&key, Some(&old.value), Some(&v));
                    ops.extend(super::companion_ops(with));
                    (ops, v)
                }
                Outcome::Delete(v) => {
                    let mut ops = vec![Op::Delete(key.clone())];
                    ops.extend(self.release_ops(t, &v));
                    let with = t.kind.companions(&key, Some(&old.value), None);
                    ops.extend(super::companion_ops(with));
                    (ops, v)
                }
            };
            if dry_run {
                return Ok(out);
            }
            let txn = Txn {
                guards: vec![Guard::ModRevision(key.clone(), old.mod_revision)],
                ops,
                on_failure: vec![],
            };
            let r = self.commit(txn, t.kind.info().gr(), t.name()).await?;
            if r.succeeded {
                set_rv(&mut out, r.revision);
                return Ok(out);
            }
            if precondition.is_some() {
                return Err(conflict(t));
            }
        }
        Err(conflict(t))
    }

    /// PUT of an object (`sub` None) or of its status (`sub` Some("status")).
    pub async fn update(
        &self,
        t: &Target,
        body: &[u8],
        sub: Option<&str>,
        w: &Write,
    ) -> Result<Bytes, ApiError> {
        let dry_run = w.dry_run;
        let mut new = t.kind.decode(body)?;
        reconcile_meta(&mut new, t, true)?;
        let precondition = match new["metadata"]["resourceVersion"].as_str() {
            Some(rv) if !rv.is_empty() => Some(parse_rv(rv)?),
            _ => None,
        };
        let status_only = sub == Some("status");
        let adm = self.update_admission(t, sub).await?;
        let out = self
            .guarded_update_with(t, precondition, dry_run, Some((w, sub)), |old| {
                next_state(t, &new, old, status_only, w, true, &adm)
            })
            .await?;
        self.after_update(t, &adm, w).await;
        Ok(Bytes::from(serde_json::to_vec(&out).unwrap_or_default()))
    }

    /// PATCH with a JSON patch, a JSON merge patch or a strategic merge patch, applied to
    /// the stored object and then handled as an update of the result (re-applied to the
    /// newer object when a concurrent write wins). A resourceVersion in the patch is a
    /// precondition.
    pub async fn patch(
        &self,
        t: &Target,
        kind: crate::patch::PatchType,
        patch: &[u8],
        sub: Option<&str>,
        w: &Write,
        force: bool,
    ) -> Result<Patched, ApiError> {
        use crate::patch::PatchType;
        let dry_run = w.dry_run;
        if kind == PatchType::Apply {
            return self.apply(t, patch, sub, w, force).await;
        }
        let patch: Value = serde_json::from_slice(patch)
            .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?;
        match kind {
            PatchType::Merge | PatchType::Strategic if !patch.is_object() => {
                return Err(ApiError::BadRequest(
                    "a merge patch must be a JSON object".into(),
                ))
            }
            PatchType::Json => {
                let n = patch.as_array().map_or(0, Vec::len);
                if n > crate::patch::MAX_JSON_PATCH_OPS {
                    return Err(ApiError::TooLargeJsonPatch(n));
                }
            }
            _ => {}
        }
        let status_only = sub == Some("status");
        let mut warnings = Vec::new();
        let adm = self.update_admission(t, sub).await?;
        let out = self
            .guarded_update_with(t, None, dry_run, Some((w, sub)), |old| {
                // The patch applies to the object as the request's version serves it.
                let mut merged = t.kind.to_served(old.value.clone())?;
                match kind {
                    PatchType::Json => crate::patch::json_patch(&mut merged, &patch)
                        .map_err(ApiError::PatchRejected)?,
                    PatchType::Strategic => {
                        use crate::patch::strategic::{self, SmpError};
                        let schemas = super::patch_schemas();
                        let root = Some(t.kind.info().schema_name.as_str());
                        strategic::apply(schemas, root, &mut merged, &patch).map_err(
                            |e| match e {
                                SmpError::BadRequest(m) => ApiError::BadRequest(m),
                                SmpError::Invalid(m) => ApiError::PatchRejected(m),
                                SmpError::Internal(m) => ApiError::Internal(m),
                            },
                        )?
                    }
                    PatchType::Merge => crate::patch::merge(&mut merged, &patch),
                    PatchType::Apply => unreachable_apply()?,
                }
                let bytes = serde_json::to_vec(&merged).unwrap_or_default();
                warnings = w.check_fields(t, &bytes)?;
                let mut new = t.kind.decode(&bytes)?;
                reconcile_meta(&mut new, t, true)?;
                if let Some(rv) = patch["metadata"]["resourceVersion"].as_str() {
                    if parse_rv(rv)? != old.mod_revision {
                        return Err(conflict(t));
                    }
                }
                next_state(t, &new, old, status_only, w, true, &adm)
            })
            .await?;
        self.after_update(t, &adm, w).await;
        Ok(Patched {
            object: Bytes::from(serde_json::to_vec(&out).unwrap_or_default()),
            created: false,
            warnings,
        })
    }

    /// Server-side apply of `config` (JSON): merged into the stored object, or creating it.
    async fn apply(
        &self,
        t: &Target,
        config: &[u8],
        sub: Option<&str>,
        w: &Write,
        force: bool,
    ) -> Result<Patched, ApiError> {
        let info = t.kind.info();
        let config: Value = serde_json::from_slice(config).map_err(|e| {
            ApiError::BadRequest(format!(
                "error decoding YAML: {e} (apply patches are read as JSON here)"
            ))
        })?;
        if !config.is_object() {
            return Err(ApiError::BadRequest(
                "error decoding YAML: the apply configuration must be an object".into(),
            ));
        }
        if config["metadata"]
            .get("managedFields")
            .is_some_and(|m| !m.is_null())
        {
            return Err(ApiError::BadRequest(
                "metadata.managedFields must be nil".into(),
            ));
        }
        let (av, k) = (config["apiVersion"].as_str(), config["kind"].as_str());
        if av != Some(info.api_version().as_str()) || k != Some(info.kind) {
            return Err(ApiError::BadRequest(format!(
                "invalid object type: {}, Kind={}",
                av.unwrap_or(""),
                k.unwrap_or("")
            )));
        }
        let warnings = w.check_fields(t, &serde_json::to_vec(&config).unwrap_or_default())?;
        let writer = w.writer(t, sub);
        let schemas = super::patch_schemas();
        let ty = Some(info.schema_name.as_str());
        let apply_conflict = |c: crate::patch::apply::Conflicts| ApiError::ApplyConflict {
            message: c.message(),
            fields: c.fields,
        };
        for _ in 0..MAX_ATTEMPTS {
            let exists = self.read(&t.key()).await?.is_some();
            if !exists {
                if sub.is_some() {
                    return Err(t.not_found());
                }
                let merged = crate::patch::apply::apply(
                    schemas,
                    ty,
                    info.status,
                    None,
                    &config,
                    &writer,
                    force,
                )
                .map_err(apply_conflict)?;
                let obj = t
                    .kind
                    .decode(&serde_json::to_vec(&merged).unwrap_or_default())?;
                match self.create_object(t, obj, w, true).await {
                    Ok(object) => {
                        return Ok(Patched {
                            object,
                            created: true,
                            warnings,
                        })
                    }
                    // Someone created it meanwhile: apply to theirs.
                    Err(ApiError::AlreadyExists { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
            let status_only = sub == Some("status");
            let adm = self.update_admission(t, sub).await?;
            let r = self
                .guarded_update_with(t, None, w.dry_run, Some((w, sub)), |old| {
                    let served = t.kind.to_served(old.value.clone())?;
                    let merged = crate::patch::apply::apply(
                        schemas,
                        ty,
                        info.status,
                        Some(&served),
                        &config,
                        &writer,
                        force,
                    )
                    .map_err(apply_conflict)?;
                    let mut new = t
                        .kind
                        .decode(&serde_json::to_vec(&merged).unwrap_or_default())?;
                    reconcile_meta(&mut new, t, true)?;
                    next_state(t, &new, old, status_only, w, false, &adm)
                })
                .await;
            match r {
                // Deleted meanwhile: create it.
                Err(ApiError::NotFound { .. }) if sub.is_none() => continue,
                r => {
                    let r = r?;
                    self.after_update(t, &adm, w).await;
                    return Ok(Patched {
                        object: Bytes::from(serde_json::to_vec(&r).unwrap_or_default()),
                        created: false,
                        warnings,
                    });
                }
            }
        }
        Err(conflict(t))
    }
}

/// The object an update of `old` to `new` stores (or why it may not), as Kubernetes'
/// update strategy decides: server-owned metadata kept, status or spec kept depending on
/// the subresource, generation bumped on spec changes, finalizer rules, validation.
/// What a PATCH returns: the object, and whether an apply created it.
pub struct Patched {
    pub object: Bytes,
    pub created: bool,
    /// Warnings for the client (unknown fields under `fieldValidation=Warn`).
    pub warnings: Vec<String>,
}

/// `patch` hands applies to `apply` before this point; reaching it is a bug, not a panic.
fn unreachable_apply() -> Result<(), ApiError> {
    Err(ApiError::Internal(
        "an apply patch took the merge path".into(),
    ))
}

/// The outcome of writing `new` (a whole object) over `old` through subresource `sub`.
pub(super) fn next_state_of(
    t: &Target,
    new: &Value,
    old: &Stored,
    w: &Write,
    sub: &str,
) -> Result<Outcome, ApiError> {
    let mut new = new.clone();
    super::record_update(t, w, Some(sub), Some(&old.value), &mut new);
    next_state(t, &new, old, false, w, false, &UpdateAdmission::none())
}

/// The object to store when `new` is written over `old` by `w`; `record`: record the
/// writer in managedFields (false: the caller already did, as apply does); `adm`: the
/// validating admission of the update.
fn next_state(
    t: &Target,
    new: &Value,
    old: &Stored,
    status_only: bool,
    w: &Write,
    record: bool,
    adm: &UpdateAdmission,
) -> Result<Outcome, ApiError> {
    let info = t.kind.info();
    let old_v = &old.value;
    if let Some(uid) = new["metadata"]["uid"].as_str().filter(|u| !u.is_empty()) {
        if Some(uid) != old_v["metadata"]["uid"].as_str() {
            return Err(ApiError::Conflict {
                gr: info.gr(),
                name: t.name().to_string(),
                message: format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    old_v["metadata"]["uid"].as_str().unwrap_or("")
                ),
            });
        }
    }
    let mut result = if status_only {
        let mut r = old_v.clone();
        r["status"] = new["status"].clone();
        r
    } else {
        let mut r = new.clone();
        for f in SERVER_OWNED {
            match old_v["metadata"].get(*f) {
                Some(v) => r["metadata"][*f] = v.clone(),
                None => {
                    if let Some(m) = r["metadata"].as_object_mut() {
                        m.remove(*f);
                    }
                }
            }
        }
        if info.status {
            match old_v.get("status") {
                Some(s) => r["status"] = s.clone(),
                None => {
                    if let Some(m) = r.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        t.kind.prepare_update(&mut r, old_v)?;
        if info.generation && r["spec"] != old_v["spec"] {
            let g = old_v["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            r["metadata"]["generation"] = g.into();
        }
        r
    };
    if record {
        let sub = status_only.then_some("status");
        super::record_update(t, w, sub, Some(old_v), &mut result);
    } else {
        result["metadata"]["managedFields"] = new["metadata"]["managedFields"].clone();
    }
    // An object being deleted may lose finalizers but not gain new ones.
    if !old_v["metadata"]["deletionTimestamp"].is_null() {
        let had: Vec<&Value> = old_v["metadata"]["finalizers"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let added = result["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|a| a.iter().any(|f| !had.contains(&f)));
        if added {
            return Err(info.invalid(
                t.name(),
                vec![crate::error::FieldError::forbidden(
                    "metadata.finalizers",
                    "no new finalizers can be added if the object is being deleted",
                )],
            ));
        }
    }
    t.kind.validate(&result, Some(old_v))?;
    if !status_only {
        w.allowed(info, &result)?;
        adm.validate(t, &result, old_v)?;
    }
    if strip_rv(&result) == strip_rv(old_v) {
        return Ok(Outcome::Unchanged);
    }
    set_rv(&mut result, old.mod_revision);
    if finished(&result) {
        return Ok(Outcome::Delete(result));
    }
    Ok(Outcome::Put(result))
}
