//! The registry: Kubernetes objects over the etcd v3 API.
//!
//! Objects are JSON under `/registry/<resource>/<namespace>/<name>` (cluster-scoped:
//! `/registry/<resource>/<name>`), stored without `metadata.resourceVersion`; on the way out
//! it is set to the key's mod_revision. Every write is one Txn guarded by the key's
//! create_revision (create) or mod_revision (update, delete), so concurrent writers through
//! any number of apiservers are serialized by the kvstore, never by this process.
//!
//! Layout: `storage/` (the interface under the registry: etcd and in-memory), `create.rs`,
//! `update.rs` (update, status, binding, finalize), `delete.rs`, `scale.rs`, `fence.rs`
//! (writes guarded by their sender's lease, and the one place Txns are committed),
//! `admission.rs`, `list.rs` (list, continue tokens), `cache.rs` and `cache/` (the watch
//! cache and the feed that follows etcd), `watch.rs` (client watches), `tests.rs` (the
//! registry on the in-memory storage).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

use crate::error::{ApiError, GroupResource};
use crate::kinds::{Kinds, Strategy};

mod admission;
pub mod cache;
mod create;
mod delete;
mod external;
pub mod fence;
pub mod list;
mod scale;
pub mod storage;
#[cfg(test)]
mod tests;
mod update;
pub(crate) use update::{finished, strip_rv, Outcome};
pub mod watch;

pub use delete::{DeleteOptions, Preconditions};
pub use list::{ListOptions, ListResult, RvMatch};

/// A check of the writer's right to store this object, beyond being allowed the verb on
/// it (RBAC's escalation prevention: `authz/escalation.rs`). It sees the object as it
/// will be stored, on create and on every update and patch.
pub trait WriteCheck: Send + Sync {
    fn check(&self, info: &crate::kinds::ResourceInfo, obj: &Value) -> Result<(), ApiError>;
}

/// Admission by parties outside the registry (admission webhooks), called at kube's
/// points: `mutate` after the built-in mutating plugins and before the kind's validation,
/// `validate` after the kind's validation and the built-in validating plugins. Each
/// returns the error the write fails with (a webhook's denial, or its failure under
/// failurePolicy Fail).
pub trait External: Send + Sync {
    fn mutate<'a>(
        &'a self,
        a: Attributes<'a>,
        obj: &'a mut Value,
    ) -> futures::future::BoxFuture<'a, Result<(), ApiError>>;
    fn validate<'a>(
        &'a self,
        a: Attributes<'a>,
        obj: &'a Value,
    ) -> futures::future::BoxFuture<'a, Result<(), ApiError>>;
}

/// What external admission is told of a write besides the object.
#[derive(Clone, Copy)]
pub struct Attributes<'a> {
    /// "CREATE", "UPDATE" or "DELETE".
    pub operation: &'static str,
    pub target: &'a Target,
    /// The object's name (a create's, once generated).
    pub name: &'a str,
    pub sub: Option<&'a str>,
    /// The stored object an update or delete replaces.
    pub old: Option<&'a Value>,
    pub dry_run: bool,
    pub warnings: &'a Warnings,
}

/// Who writes, and how: the field manager recorded in managedFields, dry run, and what
/// the writer may store.
#[derive(Clone)]
pub struct Write {
    pub dry_run: bool,
    pub manager: String,
    /// `fieldValidation` of a patch: checked on the patched object.
    pub validation: crate::fieldcheck::Directive,
    pub check: Option<Arc<dyn WriteCheck>>,
    /// Admission webhooks that may apply to this write (None: no configuration exists).
    pub external: Option<Arc<dyn External>>,
    /// What admission tells the client (PodSecurity's `warn`), sent as `Warning` headers.
    pub warnings: Warnings,
}

/// Warnings the registry adds for the client while it writes; the clones of one
/// request's [`Write`] share them.
#[derive(Clone, Default, Debug)]
pub struct Warnings(Arc<std::sync::Mutex<Vec<String>>>);

impl Warnings {
    /// Adds a warning, once.
    pub fn push(&self, warning: String) {
        if let Ok(mut v) = self.0.lock() {
            if !v.contains(&warning) {
                v.push(warning);
            }
        }
    }

    /// The warnings so far, leaving none.
    pub fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

impl Write {
    pub fn new(manager: impl Into<String>, dry_run: bool) -> Self {
        Write {
            dry_run,
            manager: manager.into(),
            validation: crate::fieldcheck::Directive::Warn,
            check: None,
            external: None,
            warnings: Warnings::default(),
        }
    }

    /// Runs the writer's check, if it has one.
    pub(crate) fn allowed(
        &self,
        info: &crate::kinds::ResourceInfo,
        obj: &Value,
    ) -> Result<(), ApiError> {
        match &self.check {
            Some(c) => c.check(info, obj),
            None => Ok(()),
        }
    }

    /// Unknown fields of a patched or applied object (JSON), by `validation`.
    pub(crate) fn check_fields(&self, t: &Target, obj: &[u8]) -> Result<Vec<String>, ApiError> {
        let i = t.kind.info();
        crate::fieldcheck::check(self.validation, i.kind, i.version, || {
            t.kind.unknown_fields(obj)
        })
    }

    fn writer(&self, t: &Target, subresource: Option<&str>) -> crate::patch::managed::Writer {
        crate::patch::managed::Writer {
            manager: self.manager.clone(),
            api_version: t.kind.info().api_version(),
            subresource: subresource.map(String::from),
        }
    }
}

/// The patch strategies and list keys of every built-in kind (from their OpenAPI
/// schemas), built on first use.
pub(crate) fn patch_schemas() -> &'static crate::patch::meta::Schemas {
    static S: std::sync::OnceLock<crate::patch::meta::Schemas> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let kinds: Vec<_> = crate::kinds::Kinds::all().iter().collect();
        crate::patch::meta::Schemas::new(crate::openapi::schemas::definitions(
            kinds.iter().map(|k| k.as_ref()),
        ))
    })
}

/// Records a non-apply write of `new` over `live` in `new`'s managedFields.
pub(crate) fn record_update(
    t: &Target,
    w: &Write,
    subresource: Option<&str>,
    live: Option<&Value>,
    new: &mut Value,
) {
    let info = t.kind.info();
    crate::patch::managed::record_update(
        patch_schemas(),
        Some(info.schema_name.as_str()),
        info.status,
        live,
        new,
        &w.writer(t, subresource),
    );
}

/// Where a request points: a kind, and the namespace and name from the URL.
#[derive(Clone)]
pub struct Target {
    pub kind: Arc<dyn Strategy>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Target {
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
    pub fn key(&self) -> String {
        object_key(
            self.kind.info().storage,
            self.namespace.as_deref(),
            self.name(),
        )
    }
    /// The key prefix of everything a list or watch of this target covers.
    pub fn prefix(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("/registry/{}/{}/", self.kind.info().storage, ns),
            None => format!("/registry/{}/", self.kind.info().storage),
        }
    }
    pub fn not_found(&self) -> ApiError {
        ApiError::NotFound {
            gr: self.kind.info().gr(),
            name: self.name().to_string(),
        }
    }
}

pub fn object_key(storage: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("/registry/{storage}/{ns}/{name}"),
        None => format!("/registry/{storage}/{name}"),
    }
}

/// An object as stored, with the revision that last changed it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub value: Value,
    pub mod_revision: i64,
    /// See `storage::Kv::stale`.
    pub stale: bool,
}

/// Parses a stored value and sets its resourceVersion.
pub fn decode_stored(bytes: &[u8], mod_revision: i64) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::Internal(format!("stored object does not decode: {e}")))?;
    // Another tool may have written anything under /registry/; only objects are served.
    if !v.is_object() || !v["metadata"].is_object() {
        return Err(ApiError::Internal(
            "the stored value is not a Kubernetes object".into(),
        ));
    }
    set_rv(&mut v, mod_revision);
    Ok(v)
}

pub fn set_rv(v: &mut Value, rev: i64) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), rev.to_string().into());
    }
}

/// The bytes to store: the object without resourceVersion.
pub fn encode_for_store(v: &Value) -> Vec<u8> {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("selfLink");
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The storage ops of a kind's companion writes.
fn companion_ops(with: Vec<crate::kinds::Companion>) -> impl Iterator<Item = storage::Op> {
    use crate::kinds::Companion;
    with.into_iter().map(|c| match c {
        Companion::Put(k, v) => storage::Op::Put(k, v),
        Companion::Delete(k) => storage::Op::Delete(k),
    })
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn now() -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::from_second(unix_now())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

pub fn time_value(t: &Time) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

/// What the registry needs: the storage, the kinds, the watch cache, settings.
pub struct Store {
    /// Where objects are read, written and watched (the kvstore through the etcd client,
    /// or a model).
    pub storage: Arc<dyn storage::Storage>,
    pub kinds: Kinds,
    pub cache: Arc<cache::Cache>,
    /// What kinds' hooks use of the configuration (the service IP range).
    pub env: crate::kinds::Env,
    /// How long a consistent list waits for the cache before reading etcd instead.
    pub cache_wait: Duration,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Store {
    /// Reads one object linearizably.
    pub async fn read(&self, key: &str) -> Result<Option<Stored>, ApiError> {
        match self.storage.get(key).await? {
            None => Ok(None),
            Some(kv) => Ok(Some(Stored {
                value: decode_stored(&kv.value, kv.mod_revision)?,
                mod_revision: kv.mod_revision,
                stale: kv.stale,
            })),
        }
    }

    /// `get`: resourceVersion unset reads the kvstore (consistent); "0" or any other value
    /// may be served from the cache when it is at least that new.
    pub async fn get(&self, t: &Target, rv: Option<&str>) -> Result<Bytes, ApiError> {
        let key = t.key();
        if let Some(rv) = rv.filter(|rv| !rv.is_empty()) {
            let min = parse_rv(rv)?;
            if self.cache.wait_for(min, self.cache_wait).await {
                return match self.cache.get(&key) {
                    Some(o) => Ok(o.json.clone()),
                    None => Err(t.not_found()),
                };
            }
        }
        match self.read(&key).await? {
            Some(s) => Ok(Bytes::from(
                serde_json::to_vec(&s.value).unwrap_or_default(),
            )),
            None => Err(t.not_found()),
        }
    }

    /// The namespace an object is created in must exist and not be terminating.
    async fn check_namespace(&self, ns: &str) -> Result<(), ApiError> {
        let key = object_key("namespaces", None, ns);
        let obj = match self.cache.get(&key) {
            Some(o) => Some(serde_json::from_slice::<Value>(&o.json).unwrap_or_default()),
            None => self.read(&key).await?.map(|s| s.value),
        };
        match obj {
            None => Err(ApiError::NotFound {
                gr: GroupResource {
                    group: "",
                    resource: "namespaces",
                },
                name: ns.to_string(),
            }),
            Some(v) if crate::kinds::namespace_terminating(&v) => {
                Err(ApiError::Forbidden(format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                )))
            }
            Some(_) => Ok(()),
        }
    }
}

pub fn parse_rv(rv: &str) -> Result<i64, ApiError> {
    rv.parse::<i64>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid resource version: {rv:?}")))
}

/// Checks the URL's namespace and name against the body's, and fills them in.
pub(crate) fn reconcile_meta(
    obj: &mut Value,
    t: &Target,
    name_required: bool,
) -> Result<(), ApiError> {
    let meta = obj["metadata"]
        .as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("metadata must be an object".into()))?;
    if let Some(ns) = &t.namespace {
        match meta.get("namespace").and_then(Value::as_str) {
            Some(b) if !b.is_empty() && b != ns => {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                ))
            }
            _ => {
                meta.insert("namespace".into(), ns.clone().into());
            }
        }
    }
    if let Some(name) = &t.name {
        match meta.get("name").and_then(Value::as_str) {
            Some(b) if b != name => {
                return Err(ApiError::BadRequest(format!(
                    "the name of the object ({b}) does not match the name on the URL ({name})"
                )))
            }
            None | Some("") if name_required => {
                meta.insert("name".into(), name.clone().into());
            }
            _ => {}
        }
    }
    Ok(())
}
