//! delete and deletecollection: preconditions, the kind's refusal and grace period
//! (running pods), finalizers (including those propagationPolicy adds), and the final
//! removal with what the kind had claimed.

use serde::Deserialize;
use serde_json::Value;

use super::storage::Op;
use super::update::{finished, Outcome};
use super::{time_value, Store, Target};
use crate::error::ApiError;

/// `metav1.DeleteOptions`, from the body or the query.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub preconditions: Option<Preconditions>,
    pub propagation_policy: Option<String>,
    #[serde(default)]
    pub dry_run: Vec<String>,
    pub orphan_dependents: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

impl Preconditions {
    /// A conflict, in kube's words, when the stored object is not the one they name.
    pub(crate) fn check(&self, t: &Target, old: &super::Stored) -> Result<(), ApiError> {
        let conflict = |message: String| ApiError::Conflict {
            gr: t.kind.info().gr(),
            name: t.name().to_string(),
            message,
        };
        let uid = old.value["metadata"]["uid"].as_str().unwrap_or("");
        if let Some(want) = self.uid.as_deref().filter(|u| *u != uid) {
            return Err(conflict(format!(
                "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
            )));
        }
        let rv = old.mod_revision.to_string();
        if let Some(want) = self.resource_version.as_deref().filter(|r| *r != rv) {
            return Err(conflict(format!("Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}")));
        }
        Ok(())
    }
}

/// What a delete did: removed the object, or marked it and left it for whoever finishes it
/// (an agent, a controller removing its finalizer).
#[derive(Debug)]
pub struct Deleted {
    pub object: Value,
    pub finished: bool,
}

fn add_finalizer(v: &mut Value, f: &str) {
    let meta = &mut v["metadata"];
    if !meta["finalizers"].is_array() {
        meta["finalizers"] = Value::Array(vec![]);
    }
    if let Some(a) = meta["finalizers"].as_array_mut() {
        if !a.iter().any(|x| x == f) {
            a.push(f.into());
        }
    }
}

impl Store {
    pub async fn delete(&self, t: &Target, opts: &DeleteOptions) -> Result<Deleted, ApiError> {
        self.delete_as_of(t, opts, None).await
    }

    /// A delete that validating admission (webhooks, policies) decides first, on the
    /// object being deleted (operation DELETE, `oldObject`), as kube's registry asks them.
    /// The delete is made only if that object is still the stored one; if it changed
    /// meanwhile, admission decides again on the new one.
    pub async fn delete_admitted(
        &self,
        t: &Target,
        opts: &DeleteOptions,
        external: Option<&std::sync::Arc<dyn super::External>>,
        warnings: &super::Warnings,
    ) -> Result<Deleted, ApiError> {
        let Some(x) = external else {
            return self.delete(t, opts).await;
        };
        let dry_run = opts.dry_run.iter().any(|d| d == "All");
        for _ in 0..super::update::MAX_ATTEMPTS {
            let old = self.read(&t.key()).await?.ok_or_else(|| t.not_found())?;
            let a = super::Attributes {
                operation: "DELETE",
                target: t,
                name: t.name(),
                sub: None,
                old: Some(&old.value),
                dry_run,
                warnings,
            };
            x.validate(a, &old.value).await?;
            let moved = std::sync::atomic::AtomicBool::new(false);
            match self
                .delete_as_of(t, opts, Some((old.mod_revision, &moved)))
                .await
            {
                Err(_) if moved.load(std::sync::atomic::Ordering::Relaxed) => continue,
                r => return r,
            }
        }
        Err(super::update::conflict(t))
    }

    /// A delete; with `expect`, only of the object at that revision (else the flag is
    /// set and the delete refused).
    async fn delete_as_of(
        &self,
        t: &Target,
        opts: &DeleteOptions,
        expect: Option<(i64, &std::sync::atomic::AtomicBool)>,
    ) -> Result<Deleted, ApiError> {
        const POLICIES: &[&str] = &["Orphan", "Background", "Foreground"];
        if let Some(p) = opts.propagation_policy.as_deref() {
            if !POLICIES.contains(&p) {
                return Err(ApiError::Invalid {
                    kind: "DeleteOptions",
                    group: "",
                    name: String::new(),
                    causes: vec![crate::error::FieldError::not_supported(
                        "propagationPolicy",
                        p,
                        POLICIES,
                    )],
                });
            }
        }
        if opts.grace_period_seconds.is_some_and(|g| g < 0) {
            return Err(ApiError::Invalid {
                kind: "DeleteOptions",
                group: "",
                name: String::new(),
                causes: vec![crate::error::FieldError::invalid_raw(
                    "gracePeriodSeconds",
                    opts.grace_period_seconds.unwrap_or(0).to_string(),
                    "must be greater than or equal to 0",
                )],
            });
        }
        let info = t.kind.info();
        t.kind.check_delete(t.name())?;
        let dry_run = opts.dry_run.iter().any(|d| d == "All");
        let mut removed = false;
        let object = self
            .guarded_update(t, None, dry_run, |old| {
                removed = false;
                let v = &old.value;
                if let Some((rev, moved)) = expect {
                    if rev != old.mod_revision {
                        moved.store(true, std::sync::atomic::Ordering::Relaxed);
                        return Err(super::update::conflict(t));
                    }
                }
                if let Some(p) = &opts.preconditions {
                    p.check(t, old)?;
                }
                let mut r = v.clone();
                let deleting = !v["metadata"]["deletionTimestamp"].is_null();
                if !deleting {
                    match opts.propagation_policy.as_deref() {
                        Some("Foreground") => add_finalizer(&mut r, "foregroundDeletion"),
                        Some("Orphan") => add_finalizer(&mut r, "orphan"),
                        None if opts.orphan_dependents == Some(true) => {
                            add_finalizer(&mut r, "orphan")
                        }
                        None if opts.orphan_dependents.is_none() && info.orphan_by_default => {
                            add_finalizer(&mut r, "orphan")
                        }
                        _ => {}
                    }
                }
                let grace = t.kind.grace_period(v, opts.grace_period_seconds)?;
                let current = v["metadata"]["deletionGracePeriodSeconds"].as_i64();
                let g = grace.unwrap_or(0);
                if deleting && current.is_some_and(|c| c <= g) {
                    return Ok(Outcome::Unchanged);
                }
                let at = k8s_openapi::jiff::Timestamp::from_second(
                    super::now().0.as_second().saturating_add(g),
                )
                .unwrap_or(super::now().0);
                r["metadata"]["deletionTimestamp"] =
                    time_value(&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at));
                r["metadata"]["deletionGracePeriodSeconds"] = g.into();
                t.kind.mark_deleting(&mut r)?;
                if finished(&r) {
                    removed = true;
                    // The object as it was, not marked: it is simply gone.
                    return Ok(Outcome::Delete(v.clone()));
                }
                Ok(Outcome::Put(r))
            })
            .await?;
        Ok(Deleted {
            object,
            finished: removed,
        })
    }

    /// Ops that release what an object held (the keys its kind claimed), run in the same
    /// Txn that deletes it.
    pub(super) fn release_ops(&self, t: &Target, obj: &Value) -> Vec<Op> {
        t.kind.released(obj).into_iter().map(Op::Delete).collect()
    }

    /// deletecollection: every object the list options select, deleted one by one.
    pub async fn delete_collection(
        &self,
        t: &Target,
        list: &super::ListOptions,
        opts: &DeleteOptions,
        external: Option<&std::sync::Arc<dyn super::External>>,
        warnings: &super::Warnings,
    ) -> Result<Vec<Value>, ApiError> {
        let mut consistent = list.clone();
        consistent.resource_version = None;
        consistent.limit = None;
        consistent.continue_token = None;
        let items = self.list_values(t, &consistent).await?;
        let mut out = Vec::new();
        for item in items {
            let name = item["metadata"]["name"].as_str().unwrap_or("").to_string();
            let ns = item["metadata"]["namespace"].as_str().map(str::to_string);
            let one = Target {
                kind: t.kind.clone(),
                namespace: ns.filter(|_| t.kind.info().namespaced),
                name: Some(name),
            };
            match self.delete_admitted(&one, opts, external, warnings).await {
                Ok(d) => out.push(d.object),
                Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}
